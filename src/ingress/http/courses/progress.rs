//! `GET /courses/{id}/progress`: a course's live progress as Server-Sent
//! Events, followed through the API's shared
//! [`CourseWatch`](super::watch::CourseWatch) (woken by
//! appends, not polling the database per stream).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::handlers::find_course;
use crate::domain::{Course, CourseStatus};
use crate::ingress::http::error::{ApiError, ErrorBody};
use crate::ingress::http::{ApiState, User};

/// What one progress message says.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub(crate) struct Progress {
    pub course_id: Uuid,
    #[schema(value_type = String)]
    pub status: CourseStatus,
    pub lessons_generated: i32,
    pub total_lessons: i32,
    pub error: Option<String>,
}

impl Progress {
    /// The progress of course `id` as its events left it (the rules of
    /// [`CourseView::from_stream`](super::CourseView::from_stream)).
    fn of(id: Uuid, course: &Course) -> Self {
        Self {
            course_id: id,
            status: course.status.unwrap_or(CourseStatus::Queued),
            lessons_generated: course.lessons_done.len() as i32,
            total_lessons: course.planned_lessons() as i32,
            error: course
                .failure
                .as_ref()
                .filter(|_| course.status == Some(CourseStatus::Failed))
                .map(|f| format!("{}: {}", f.step, f.error)),
        }
    }

    fn finished(&self) -> bool {
        self.status.is_finished()
    }
}

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
pub(crate) async fn progress(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    stream(&state, &user, id.into_inner()).await
}

/// The progress stream of course `id` for `user` (the API's and the web
/// app's).
///
/// # Errors
/// 404 for a course the user may not see.
pub(crate) async fn stream(
    state: &ApiState,
    user: &User,
    id: Uuid,
) -> Result<HttpResponse, ApiError> {
    // Who may see it, and a 404 for a course that does not exist.
    find_course(state, user, id).await?;
    let course = state.watch.follow(id).await?;
    struct Cursor {
        course: tokio::sync::watch::Receiver<Course>,
        last: Option<Progress>,
        done: bool,
    }
    let cursor = Cursor {
        course,
        last: None,
        done: false,
    };
    let stream = futures::stream::unfold(cursor, move |mut c| async move {
        if c.done {
            return None;
        }
        loop {
            let current = Progress::of(id, &c.course.borrow_and_update());
            if c.last.as_ref() != Some(&current) {
                c.done = current.finished();
                let data = serde_json::to_string(&current).expect("progress serializes");
                c.last = Some(current);
                return Some((
                    Ok::<_, actix_web::Error>(web::Bytes::from(format!(
                        "event: progress\ndata: {data}\n\n"
                    ))),
                    c,
                ));
            }
            match tokio::time::timeout(PROGRESS_KEEPALIVE, c.course.changed()).await {
                Ok(Ok(())) => {}
                // The watcher is gone (the API is stopping).
                Ok(Err(_)) => return None,
                Err(_) => return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), c)),
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream))
}
