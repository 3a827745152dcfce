//! The `/courses` handlers: request a course, list and search them, read
//! one with its lessons and its history; soft delete, restore and retry.
//!
//! A course that is not the caller's answers 404, exactly like one that does
//! not exist, so ids of other users' courses cannot be probed.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;
use uuid::Uuid;

use super::dto::{
    CoursePage, CourseView, EventView, LessonSummary, LessonView, ListParams, ReasonParams,
};
use crate::domain::{Command, CourseRequest, CourseStatus, DomainError, RawCourseRequest, Reason};
use crate::ingress::http::error::{ApiError, ErrorBody};
use crate::ingress::http::{ApiState, User};
use crate::projections::courses::queries;
use crate::projections::wait_for_position;
use crate::store::courses::{self, CommandError, Submitted};
use crate::store::{Appended, Metadata, Position, StoreError};

/// The course `id` if the caller may see it (deleted ones included): from
/// the projection, or from the log while the projection has not caught up.
///
/// # Errors
/// 404 when it does not exist or is someone else's.
pub(crate) async fn find_course(
    state: &ApiState,
    user: &User,
    id: Uuid,
) -> Result<CourseView, ApiError> {
    let client = state.store.pool().get().await?;
    let view = match queries::course(&client, id).await? {
        Some(record) => Some(CourseView::from(record)),
        None => {
            drop(client);
            let (course, events) = courses::load(&state.store, id).await?;
            CourseView::from_stream(id, &course, &events)
        }
    };
    match view {
        Some(v) if user.may_access(v.user_id) => Ok(v),
        _ => Err(ApiError::course_not_found(id)),
    }
}

/// Waits (bounded) until the `courses` projection shows an append, so that
/// the caller's next read sees its write. A slow projection only means the
/// answer is built from the log instead.
async fn read_your_write(state: &ApiState, appended: Option<Appended>) {
    read_your_write_to(state, appended.map(|a| a.position)).await;
}

async fn read_your_write_to(state: &ApiState, position: Option<Position>) {
    if let Some(position) = position {
        if let Err(e) =
            wait_for_position(&state.store, "courses", position, state.read_your_writes).await
        {
            tracing::warn!(error = %e, "projection did not catch up; answering from the log");
        }
    }
}

/// Waits (bounded) until the `courses` projection has applied every event of
/// course `id`'s stream, so that what the log says of the course (as
/// `find_course` may answer) is also in the projection's lessons.
async fn caught_up(state: &ApiState, id: Uuid) -> Result<(), ApiError> {
    let head = state.store.stream_head(id).await?;
    read_your_write_to(state, head).await;
    Ok(())
}

fn location(id: Uuid) -> String {
    format!("/api/v1/courses/{id}")
}

/// Request a course. The body is the AMQP request (`request_id` optional
/// here: generated when absent), read and checked by the same code, so a bad
/// body gets the AMQP error reply's message. `user_id` names the owner: any
/// user for an admin (the local user included), only the caller otherwise.
///
/// 202 with the new course; 200 with the same course when this user already
/// sent this `request_id` (nothing new is recorded); 403 for another user's
/// `user_id` from a non-admin; 409 when the request id was used for a
/// different request.
#[utoipa::path(
    post, path = "/api/v1/courses/generate", tag = "courses",
    request_body = RawCourseRequest,
    responses(
        (status = 202, description = "Requested", body = CourseView),
        (status = 200, description = "Already requested: the same course", body = CourseView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "user_id names another user and the caller is no admin", body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn generate(
    state: web::Data<ApiState>,
    user: User,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let raw = RawCourseRequest::from_json(body.into_inner()).map_err(ApiError::invalid_request)?;
    let (view, created) = submit(&state, &user, raw).await?;
    let mut response = if created {
        HttpResponse::Accepted()
    } else {
        HttpResponse::Ok()
    };
    Ok(response
        .insert_header((header::LOCATION, location(view.course_id)))
        .json(view))
}

/// Validates and records a request for `user`, as every HTTP ingress (the
/// API, the web app's form) does: `user_id` defaults to the caller,
/// `request_id` to a new one. Returns the course and whether it is new.
///
/// # Errors
/// 400 with the domain's message for a request that breaks a rule, 403 for another user's `user_id` from a non-admin, 409 for a reused request id.
pub(crate) async fn submit(
    state: &ApiState,
    user: &User,
    mut raw: RawCourseRequest,
) -> Result<(CourseView, bool), ApiError> {
    raw.user_id.get_or_insert_with(|| user.id.to_string());
    raw.request_id
        .get_or_insert_with(|| Uuid::new_v4().to_string());
    let request = CourseRequest::parse(raw).map_err(ApiError::invalid_request)?;
    if !user.may_act_for(request.user_id) {
        return Err(ApiError::Forbidden(format!(
            "user_id {} is not you: only admins may request courses for other users",
            request.user_id
        )));
    }
    let (id, outcome) = courses::submit(&state.store, request, Metadata::producer("http"))
        .await
        .map_err(|e| match e {
            CommandError::Rejected(DomainError::RequestMismatch) => ApiError::Conflict(
                "this request_id was already used for a different request".into(),
            ),
            other => other.into(),
        })?;
    let created = match outcome {
        Submitted::Created(appended) => {
            metrics::counter!("coursegen_courses_requested_total", "ingress" => "http")
                .increment(1);
            read_your_write(state, Some(appended)).await;
            true
        }
        Submitted::Duplicate => false,
    };
    Ok((find_course(state, user, id).await?, created))
}

/// List the caller's courses (admins: everyone's), newest first by default.
#[utoipa::path(
    get, path = "/api/v1/courses", tag = "courses", params(ListParams),
    responses(
        (status = 200, body = CoursePage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    state: web::Data<ApiState>,
    user: User,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let status = params
        .status
        .as_deref()
        .map(str::parse::<CourseStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let page = params.into_page(&user, status)?;
    let client = state.store.pool().get().await?;
    let (courses, total) = page.list.run(&client).await?;
    Ok(HttpResponse::Ok().json(CoursePage {
        items: courses.into_iter().map(CourseView::from).collect(),
        page: page.page,
        per_page: page.per_page,
        total,
    }))
}

/// One course with its lesson list. A soft-deleted course answers 410.
#[utoipa::path(
    get, path = "/api/v1/courses/{id}", tag = "courses",
    params(("id" = Uuid, Path, description = "course id")),
    responses(
        (status = 200, body = CourseView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let client = state.store.pool().get().await?;
    let (course, lessons) = queries::course_with_lessons(&client, id).await?;
    drop(client);
    let mut view = match course {
        Some(record) => {
            let v = CourseView::from(record);
            if !user.may_access(v.user_id) {
                return Err(ApiError::course_not_found(id));
            }
            v
        }
        None => find_course(&state, &user, id).await?,
    };
    if view.deleted_at.is_some() {
        return Err(ApiError::Gone(format!(
            "course {id} was deleted; POST /api/v1/courses/{id}/restore brings it back"
        )));
    }
    view.lessons = Some(lessons.into_iter().map(LessonSummary::from).collect());
    Ok(HttpResponse::Ok().json(view))
}

/// One lesson: JSON (content, sections, quiz, sources, interactive elements), or its markdown
/// with `Accept: text/markdown`.
#[utoipa::path(
    get, path = "/api/v1/courses/{id}/lessons/{n}", tag = "courses",
    params(("id" = Uuid, Path, description = "course id"), ("n" = u32, Path, description = "lesson number, from 1")),
    responses(
        (status = 200, description = "The lesson (JSON, or its markdown with `Accept: text/markdown`)",
         content((LessonView = "application/json"), (String = "text/markdown"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn lesson(
    state: web::Data<ApiState>,
    user: User,
    path: web::Path<(Uuid, u32)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (id, n) = path.into_inner();
    let course = find_course(&state, &user, id).await?;
    if course.deleted_at.is_some() {
        return Err(ApiError::Gone(format!("course {id} was deleted")));
    }
    let number = i32::try_from(n)
        .map_err(|_| ApiError::NotFound(format!("course {id} has no lesson {n}")))?;
    let mut client = state.store.pool().get().await?;
    let mut lesson = queries::lesson(&client, id, number).await?;
    if lesson.as_ref().is_none_or(|l| l.content_md.is_none()) {
        // The course may have been answered from the log (find_course) while
        // the projection lags: wait for it to reach the stream's last event.
        drop(client);
        caught_up(&state, id).await?;
        client = state.store.pool().get().await?;
        lesson = queries::lesson(&client, id, number).await?;
    }
    let lesson =
        lesson.ok_or_else(|| ApiError::NotFound(format!("course {id} has no lesson {n}")))?;
    let Some(content) = lesson.content_md else {
        return Err(ApiError::NotFound(format!(
            "lesson {n} of course {id} is not generated yet"
        )));
    };
    let wants_markdown = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/markdown"));
    if wants_markdown {
        return Ok(HttpResponse::Ok()
            .content_type("text/markdown; charset=utf-8")
            .body(content));
    }
    let elements = queries::elements(&client, id, number).await?;
    let entry = lesson.entry;
    Ok(HttpResponse::Ok().json(LessonView {
        course_id: id,
        number: entry.number,
        title: entry.title,
        concepts: entry.concepts,
        objectives: entry.objectives,
        status: entry.status,
        generated_at: entry.generated_at,
        content,
        sections: lesson.sections.unwrap_or(Value::Array(vec![])),
        sources: lesson.sources.unwrap_or(Value::Array(vec![])),
        model: lesson.model,
        quiz: lesson.checks,
        elements: Value::Array(elements),
    }))
}

/// The course's history: every event of its stream, oldest first (deleted
/// courses included).
#[utoipa::path(
    get, path = "/api/v1/courses/{id}/events", tag = "courses",
    params(("id" = Uuid, Path, description = "course id")),
    responses(
        (status = 200, body = Vec<EventView>),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let events = state.store.read_stream(id).await?;
    let owner = events
        .first()
        .and_then(|e| e.payload.get("user_id"))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok());
    match owner {
        Some(owner) if user.may_access(owner) => {}
        _ => return Err(ApiError::course_not_found(id)),
    }
    let views: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// Runs a command on a course the caller may see, retrying when a
/// concurrent writer (the course's actor) got in first, then waits for the
/// projection and returns the course as it is now.
pub(crate) async fn command(
    state: &ApiState,
    user: &User,
    id: Uuid,
    make: impl Fn() -> Command,
) -> Result<CourseView, ApiError> {
    find_course(state, user, id).await?;
    let mut metadata = Metadata::producer("http");
    metadata.user_id = Some(user.id);
    let mut attempts = 0;
    let appended = loop {
        attempts += 1;
        match courses::execute(&state.store, id, make(), &metadata).await {
            Ok((_, appended)) => break appended,
            Err(CommandError::Store(StoreError::Conflict { .. })) if attempts < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    };
    read_your_write(state, appended).await;
    find_course(state, user, id).await
}

/// The checked `reason` of a delete or retry.
///
/// # Errors
/// 400 for a reason too long or with control characters.
fn reason(params: ReasonParams) -> Result<Option<Reason>, ApiError> {
    Reason::parse(params.reason).map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))
}

/// Soft-delete a course: gone from lists and reads, kept in its history
/// (`CourseDeleted`); `restore` undoes it.
#[utoipa::path(
    delete, path = "/api/v1/courses/{id}", tag = "courses",
    params(("id" = Uuid, Path, description = "course id"), ReasonParams),
    responses(
        (status = 200, body = CourseView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "already deleted", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
    params: web::Query<ReasonParams>,
) -> Result<HttpResponse, ApiError> {
    let reason = reason(params.into_inner())?;
    let view = command(&state, &user, id.into_inner(), || Command::Delete {
        reason: reason.clone(),
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Undo a soft delete (`CourseRestored`).
#[utoipa::path(
    post, path = "/api/v1/courses/{id}/restore", tag = "courses",
    params(("id" = Uuid, Path, description = "course id")),
    responses(
        (status = 200, body = CourseView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not deleted", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn restore(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let view = command(&state, &user, id.into_inner(), || Command::Restore).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Re-open a FAILED course (`GenerationRetried`): generation resumes at the
/// first missing step. 409 for a course that is not FAILED.
#[utoipa::path(
    post, path = "/api/v1/courses/{id}/retry", tag = "courses",
    params(("id" = Uuid, Path, description = "course id"), ReasonParams),
    responses(
        (status = 202, body = CourseView),
        (status = 404, body = ErrorBody),
        (status = 409, description = "not FAILED", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn retry(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
    params: web::Query<ReasonParams>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let reason = reason(params.into_inner())?;
    let view = command(&state, &user, id, || Command::Retry {
        reason: reason.clone(),
    })
    .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location(id)))
        .json(view))
}
