//! `/api/v1/courses`: request a course, list and search them, read one with
//! its lessons, its history and its live progress; soft delete, restore and
//! retry.
//!
//! A course that is not the caller's answers 404, exactly like one that does
//! not exist, so ids of other users' courses cannot be probed.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::{ApiError, ErrorBody};
use super::{ApiState, User};
use crate::domain::{Command, Course, CourseRequest, CourseStatus, DomainError, RawCourseRequest};
use crate::projections::wait_for_position;
use crate::store::courses::{self, CommandError, Submitted};
use crate::store::{Appended, Metadata, RecordedEvent, StoreError};

/// The body of `POST /courses/generate`: the AMQP request without `user_id`
/// (the caller is the user).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// Idempotency key (UUID): the same user and request id always mean the
    /// same course. Generated when absent.
    pub request_id: Option<String>,
    /// What the course teaches (1 to 200 characters).
    pub topic: Option<String>,
    /// Audience, e.g. "Grade 8".
    pub grade_level: Option<String>,
    /// 1 to 20 (default 4).
    pub num_lessons: Option<i64>,
    /// BCP-47 tag (default "en").
    pub language: Option<String>,
    /// Relative path prefix restricting the sources.
    pub source_filter: Option<String>,
}

/// Token totals of a course.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tokens {
    pub prompt: i64,
    pub completion: i64,
    pub total: i64,
}

/// A course as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseView {
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub request_id: Uuid,
    pub title: Option<String>,
    pub description: Option<String>,
    pub slug: Option<String>,
    pub topic: String,
    pub grade_level: Option<String>,
    pub language: String,
    pub source_filter: Option<String>,
    /// QUEUED, GENERATING, READY or FAILED.
    pub status: String,
    pub error: Option<String>,
    pub total_lessons: i32,
    pub lessons_generated: i32,
    #[schema(value_type = Vec<Object>)]
    pub sources: Value,
    pub tokens: Tokens,
    pub attempt: i32,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub generated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The course's lessons (only on `GET /courses/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lessons: Option<Vec<LessonSummary>>,
}

/// One entry of a course's table of contents.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LessonSummary {
    pub number: i32,
    pub title: String,
    pub concepts: Vec<String>,
    pub objectives: Vec<String>,
    /// PENDING or GENERATED.
    pub status: String,
    pub generated_at: Option<DateTime<Utc>>,
}

/// A page of courses.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoursePage {
    pub items: Vec<CourseView>,
    pub page: i64,
    pub per_page: i64,
    /// Courses matching the filters, over all pages.
    pub total: i64,
}

/// A lesson with its content.
#[derive(Debug, Serialize, ToSchema)]
pub struct LessonView {
    pub course_id: Uuid,
    pub number: i32,
    pub title: String,
    pub concepts: Vec<String>,
    pub objectives: Vec<String>,
    pub status: String,
    pub generated_at: Option<DateTime<Utc>>,
    /// The lesson as markdown.
    pub content: String,
    /// The structured sections (heading, body).
    #[schema(value_type = Vec<Object>)]
    pub sections: Value,
    /// Multiple-choice questions (question, options, answer_index, explanation).
    #[schema(value_type = Vec<Object>)]
    pub quiz: Value,
    #[schema(value_type = Vec<Object>)]
    pub sources: Value,
    pub model: Option<String>,
}

/// One event of a course's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub global_position: i64,
    pub stream_version: i32,
    pub event_type: String,
    pub event_version: i16,
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

/// Why a course is deleted (optional body of `DELETE`).
#[derive(Debug, Default, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReasonParams {
    /// Kept in the history.
    pub reason: Option<String>,
}

/// Query of `GET /courses` (and `GET /jobs`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Items per page, 1 to 100 (default 20).
    pub per_page: Option<i64>,
    /// QUEUED, GENERATING, READY or FAILED (jobs: pending, running, completed, failed).
    pub status: Option<String>,
    /// Only this user's courses (admins; others may only name themselves).
    pub user: Option<Uuid>,
    /// Only courses requested after this instant (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Full-text search over title, topic and description (web search syntax).
    pub q: Option<String>,
    /// created_at, -created_at (default), updated_at, title, status, topic; `-` for descending.
    pub sort: Option<String>,
}

pub(crate) const COURSE_COLUMNS: &str =
    "id, user_id, request_id, title, description, slug, topic, grade_level, \
     language, source_filter, status, error_message, total_lessons, lessons_generated, sources, \
     prompt_tokens, completion_tokens, total_tokens, attempt, model, created_at, updated_at, \
     generated_at, deleted_at";

/// One course by id (built once: it is on the hottest path).
static COURSE_BY_ID: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {COURSE_COLUMNS} FROM courses WHERE id = $1"));

fn course_from_row(r: &Row) -> CourseView {
    CourseView {
        course_id: r.get(0),
        user_id: r.get(1),
        request_id: r.get(2),
        title: r.get(3),
        description: r.get(4),
        slug: r.get(5),
        topic: r.get(6),
        grade_level: r.get(7),
        language: r.get(8),
        source_filter: r.get(9),
        status: r.get(10),
        error: r.get(11),
        total_lessons: r.get(12),
        lessons_generated: r.get(13),
        sources: r.get(14),
        tokens: Tokens {
            prompt: r.get(15),
            completion: r.get(16),
            total: r.get(17),
        },
        attempt: r.get(18),
        model: r.get(19),
        created_at: r.get(20),
        updated_at: r.get(21),
        generated_at: r.get(22),
        deleted_at: r.get(23),
        lessons: None,
    }
}

/// A course the projection has not caught up with yet, read from its events.
fn course_from_stream(id: Uuid, course: &Course, events: &[RecordedEvent]) -> Option<CourseView> {
    let request = course.request.as_ref()?;
    let first = events.first()?;
    let last = events.last()?;
    let at = |t: &str| {
        events
            .iter()
            .rev()
            .find(|e| e.event_type == t)
            .map(|e| e.recorded_at)
    };
    Some(CourseView {
        course_id: id,
        user_id: request.user_id,
        request_id: request.request_id,
        title: course.outline.as_ref().map(|o| o.title.clone()),
        description: course.outline.as_ref().map(|o| o.description.clone()),
        slug: None,
        topic: request.topic.clone(),
        grade_level: request.grade_level.clone(),
        language: request.language.clone(),
        source_filter: request.source_filter.clone(),
        status: course
            .status
            .map(CourseStatus::as_str)
            .unwrap_or("QUEUED")
            .to_owned(),
        error: course
            .failure
            .as_ref()
            .filter(|_| course.status == Some(CourseStatus::Failed))
            .map(|f| format!("{}: {}", f.step, f.error)),
        total_lessons: course.planned_lessons() as i32,
        lessons_generated: course.lessons_done.len() as i32,
        sources: Value::Array(vec![]),
        tokens: Tokens {
            prompt: course.usage.prompt_tokens as i64,
            completion: course.usage.completion_tokens as i64,
            total: course.usage.total_tokens as i64,
        },
        attempt: course.attempt as i32,
        model: None,
        created_at: first.recorded_at,
        updated_at: last.recorded_at,
        generated_at: (course.status == Some(CourseStatus::Ready))
            .then(|| at("CourseCompleted"))
            .flatten(),
        deleted_at: course.deleted.then(|| at("CourseDeleted")).flatten(),
        lessons: None,
    })
}

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
    let stmt = client.prepare_cached(&COURSE_BY_ID).await?;
    let view = match client.query_opt(&stmt, &[&id]).await? {
        Some(row) => Some(course_from_row(&row)),
        None => {
            drop(client);
            let (course, events) = courses::load(&state.store, id).await?;
            course_from_stream(id, &course, &events)
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
    if let Some(a) = appended {
        if let Err(e) =
            wait_for_position(&state.store, "courses", a.position, state.read_your_writes).await
        {
            tracing::warn!(error = %e, "projection did not catch up; answering from the log");
        }
    }
}

fn location(id: Uuid) -> String {
    format!("/api/v1/courses/{id}")
}

/// Request a course.
///
/// 202 with the new course; 200 with the same course when this user already
/// sent this `request_id` (nothing new is recorded); 409 when the request id
/// was used for a different request.
#[utoipa::path(
    post, path = "/api/v1/courses/generate", tag = "courses",
    request_body = GenerateRequest,
    responses(
        (status = 202, description = "Requested", body = CourseView),
        (status = 200, description = "Already requested: the same course", body = CourseView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn generate(
    state: web::Data<ApiState>,
    user: User,
    body: web::Json<GenerateRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let request = CourseRequest::parse(RawCourseRequest {
        request_id: Some(
            body.request_id
                .unwrap_or_else(|| Uuid::new_v4().to_string()),
        ),
        user_id: Some(user.id.to_string()),
        topic: body.topic,
        grade_level: body.grade_level,
        num_lessons: body.num_lessons,
        language: body.language,
        source_filter: body.source_filter,
    })
    .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))?;
    let (id, outcome) = courses::submit(&state.store, request, Metadata::producer("http"))
        .await
        .map_err(|e| match e {
            CommandError::Rejected(DomainError::RequestMismatch) => ApiError::Conflict(
                "this request_id was already used for a different request".into(),
            ),
            other => other.into(),
        })?;
    let mut response = match outcome {
        Submitted::Created(appended) => {
            metrics::counter!("coursegen_courses_requested_total", "ingress" => "http")
                .increment(1);
            read_your_write(&state, Some(appended)).await;
            HttpResponse::Accepted()
        }
        Submitted::Duplicate => HttpResponse::Ok(),
    };
    let view = find_course(&state, &user, id).await?;
    Ok(response
        .insert_header((header::LOCATION, location(id)))
        .json(view))
}

/// The SQL of a list query: WHERE clause and parameters, shared by
/// `/courses` and `/jobs`.
pub(crate) struct ListQuery {
    pub page: i64,
    pub per_page: i64,
    where_sql: String,
    order_sql: &'static str,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl ListQuery {
    /// Validates `p` for `user`; `status` is the already-mapped course status.
    pub(crate) fn parse(
        user: &User,
        p: ListParams,
        status: Option<&'static str>,
    ) -> Result<Self, ApiError> {
        let page = p.page.unwrap_or(1);
        if !(1..=1_000_000).contains(&page) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("page must be between 1 and 1000000, got {page}"),
            ));
        }
        let per_page = p.per_page.unwrap_or(20);
        if !(1..=100).contains(&per_page) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("per_page must be between 1 and 100, got {per_page}"),
            ));
        }
        let mut conditions = vec!["deleted_at IS NULL".to_owned()];
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut param = |v: Box<dyn ToSql + Sync + Send>| {
            params.push(v);
            params.len()
        };
        match (user.admin, p.user) {
            (true, Some(u)) => conditions.push(format!("user_id = ${}", param(Box::new(u)))),
            (true, None) => {}
            (false, Some(u)) if u != user.id => {
                return Err(ApiError::Forbidden(
                    "only admins may list other users' courses".into(),
                ))
            }
            (false, _) => conditions.push(format!("user_id = ${}", param(Box::new(user.id)))),
        }
        if let Some(s) = status {
            conditions.push(format!("status = ${}", param(Box::new(s))));
        }
        if let Some(t) = p.created_after {
            conditions.push(format!("created_at > ${}", param(Box::new(t))));
        }
        if let Some(q) = p.q.filter(|q| !q.trim().is_empty()) {
            if q.chars().count() > 200 {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "q must be at most 200 characters",
                ));
            }
            conditions.push(format!(
                "search @@ websearch_to_tsquery('simple', ${})",
                param(Box::new(q))
            ));
        }
        let order_sql = match p.sort.as_deref().unwrap_or("-created_at") {
            "created_at" => "created_at ASC, id ASC",
            "-created_at" => "created_at DESC, id DESC",
            "updated_at" => "updated_at ASC, id ASC",
            "-updated_at" => "updated_at DESC, id DESC",
            "title" => "title ASC NULLS LAST, id ASC",
            "-title" => "title DESC NULLS LAST, id DESC",
            "topic" => "topic ASC, id ASC",
            "-topic" => "topic DESC, id DESC",
            "status" => "status ASC, created_at DESC, id DESC",
            "-status" => "status DESC, created_at DESC, id DESC",
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "unknown sort {other:?}: use created_at, updated_at, title, topic or \
                         status, with a leading - for descending"
                    ),
                ))
            }
        };
        Ok(Self {
            page,
            per_page,
            where_sql: conditions.join(" AND "),
            order_sql,
            params,
        })
    }

    /// Runs the page and the count (pipelined on one connection).
    pub(crate) async fn run(&self, state: &ApiState) -> Result<(Vec<CourseView>, i64), ApiError> {
        let client = state.store.pool().get().await?;
        let n = self.params.len();
        let page_sql = format!(
            "SELECT {COURSE_COLUMNS} FROM courses WHERE {} ORDER BY {} LIMIT ${} OFFSET ${}",
            self.where_sql,
            self.order_sql,
            n + 1,
            n + 2
        );
        let count_sql = format!("SELECT count(*) FROM courses WHERE {}", self.where_sql);
        let (page_stmt, count_stmt) = futures::try_join!(
            client.prepare_cached(&page_sql),
            client.prepare_cached(&count_sql)
        )?;
        let offset = (self.page - 1) * self.per_page;
        let mut page_params: Vec<&(dyn ToSql + Sync)> =
            self.params.iter().map(|p| p.as_ref() as _).collect();
        let count_params = page_params.clone();
        page_params.push(&self.per_page);
        page_params.push(&offset);
        let (rows, count) = futures::try_join!(
            client.query(&page_stmt, &page_params),
            client.query_one(&count_stmt, &count_params)
        )?;
        Ok((rows.iter().map(course_from_row).collect(), count.get(0)))
    }
}

fn course_status(s: &str) -> Result<&'static str, ApiError> {
    match s.to_ascii_uppercase().as_str() {
        "QUEUED" => Ok("QUEUED"),
        "GENERATING" => Ok("GENERATING"),
        "READY" => Ok("READY"),
        "FAILED" => Ok("FAILED"),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            format!("unknown status {s:?}: use QUEUED, GENERATING, READY or FAILED"),
        )),
    }
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
pub async fn list(
    state: web::Data<ApiState>,
    user: User,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let status = params.status.as_deref().map(course_status).transpose()?;
    let query = ListQuery::parse(&user, params, status)?;
    let (items, total) = query.run(&state).await?;
    Ok(HttpResponse::Ok().json(CoursePage {
        items,
        page: query.page,
        per_page: query.per_page,
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
pub async fn get(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let client = state.store.pool().get().await?;
    let (course_stmt, lessons_stmt) = futures::try_join!(
        client.prepare_cached(&COURSE_BY_ID),
        client.prepare_cached(
            "SELECT lesson_number, title, concepts, objectives, status, generated_at
             FROM lessons WHERE course_id = $1 ORDER BY lesson_number"
        )
    )?;
    let params: [&(dyn ToSql + Sync); 1] = [&id];
    let (course, lessons) = futures::try_join!(
        client.query_opt(&course_stmt, &params),
        client.query(&lessons_stmt, &params)
    )?;
    drop(client);
    let mut view = match course {
        Some(row) => {
            let v = course_from_row(&row);
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
    view.lessons = Some(
        lessons
            .iter()
            .map(|r| LessonSummary {
                number: r.get(0),
                title: r.get(1),
                concepts: r.get(2),
                objectives: r.get(3),
                status: r.get(4),
                generated_at: r.get(5),
            })
            .collect(),
    );
    Ok(HttpResponse::Ok().json(view))
}

/// One lesson: JSON (content, sections, quiz, sources), or its markdown
/// with `Accept: text/markdown`.
#[utoipa::path(
    get, path = "/api/v1/courses/{id}/lessons/{n}", tag = "courses",
    params(("id" = Uuid, Path, description = "course id"), ("n" = u32, Path, description = "lesson number, from 1")),
    responses(
        (status = 200, body = LessonView, content_type = "application/json"),
        (status = 200, body = String, content_type = "text/markdown"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn lesson(
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
    let client = state.store.pool().get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT lesson_number, title, concepts, objectives, status, generated_at,
                    content_md, content_json, sources, model, checks
             FROM v_lessons_full WHERE course_id = $1 AND lesson_number = $2",
        )
        .await?;
    let row = client
        .query_opt(&stmt, &[&id, &number])
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("course {id} has no lesson {n}")))?;
    let content: Option<String> = row.get(6);
    let Some(content) = content else {
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
    Ok(HttpResponse::Ok().json(LessonView {
        course_id: id,
        number: row.get(0),
        title: row.get(1),
        concepts: row.get(2),
        objectives: row.get(3),
        status: row.get(4),
        generated_at: row.get(5),
        content,
        sections: row
            .get::<_, Option<Value>>(7)
            .unwrap_or(Value::Array(vec![])),
        sources: row
            .get::<_, Option<Value>>(8)
            .unwrap_or(Value::Array(vec![])),
        model: row.get(9),
        quiz: row.get(10),
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
pub async fn events(
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
    let views: Vec<EventView> = events
        .into_iter()
        .map(|e| EventView {
            global_position: e.global_position,
            stream_version: e.stream_version,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(views))
}

/// What one progress message says.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Progress {
    pub course_id: Uuid,
    pub status: String,
    pub lessons_generated: i32,
    pub total_lessons: i32,
    pub error: Option<String>,
}

impl Progress {
    fn of(v: &CourseView) -> Self {
        Self {
            course_id: v.course_id,
            status: v.status.clone(),
            lessons_generated: v.lessons_generated,
            total_lessons: v.total_lessons,
            error: v.error.clone(),
        }
    }

    fn finished(&self) -> bool {
        self.status == "READY" || self.status == "FAILED"
    }
}

/// How often the progress stream looks at the course.
const PROGRESS_POLL: Duration = Duration::from_millis(200);
/// A comment line this often keeps proxies from closing an idle stream.
const PROGRESS_KEEPALIVE: Duration = Duration::from_secs(15);

/// Live progress as Server-Sent Events: a `progress` event (JSON [`Progress`])
/// whenever status or lesson count change, ending after READY or FAILED.
#[utoipa::path(
    get, path = "/api/v1/courses/{id}/progress", tag = "courses",
    params(("id" = Uuid, Path, description = "course id")),
    responses(
        (status = 200, description = "text/event-stream of `progress` events", body = Progress, content_type = "text/event-stream"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn progress(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let first = Progress::of(&find_course(&state, &user, id).await?);
    struct Cursor {
        state: web::Data<ApiState>,
        user: User,
        last: Option<Progress>,
        next: Option<Progress>,
        done: bool,
    }
    let cursor = Cursor {
        state,
        user,
        last: None,
        next: Some(first),
        done: false,
    };
    let stream = futures::stream::unfold(cursor, move |mut c| async move {
        if c.done {
            return None;
        }
        let mut quiet = Duration::ZERO;
        loop {
            let current = match c.next.take() {
                Some(p) => p,
                None => match find_course(&c.state, &c.user, id).await {
                    Ok(v) => Progress::of(&v),
                    Err(e) => {
                        c.done = true;
                        let msg = format!(
                            "event: error\ndata: {}\n\n",
                            serde_json::json!({"message": e.to_string()})
                        );
                        return Some((Ok::<_, actix_web::Error>(web::Bytes::from(msg)), c));
                    }
                },
            };
            if c.last.as_ref() != Some(&current) {
                c.done = current.finished();
                let data = serde_json::to_string(&current).expect("progress serializes");
                c.last = Some(current);
                return Some((
                    Ok(web::Bytes::from(format!(
                        "event: progress\ndata: {data}\n\n"
                    ))),
                    c,
                ));
            }
            tokio::time::sleep(PROGRESS_POLL).await;
            quiet += PROGRESS_POLL;
            if quiet >= PROGRESS_KEEPALIVE {
                return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), c));
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream))
}

/// Runs a command on a course the caller may see, retrying when a
/// concurrent writer (the course's actor) got in first, then waits for the
/// projection and returns the course as it is now.
async fn command(
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
pub async fn delete(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
    params: web::Query<ReasonParams>,
) -> Result<HttpResponse, ApiError> {
    let reason = params.into_inner().reason;
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
pub async fn restore(
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
pub async fn retry(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
    params: web::Query<ReasonParams>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let reason = params.into_inner().reason;
    let view = command(&state, &user, id, || Command::Retry {
        reason: reason.clone(),
    })
    .await?;
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, location(id)))
        .json(view))
}
