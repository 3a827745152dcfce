//! `GET /courses/{id}/progress`: a course's live progress as Server-Sent
//! Events, polled from the read model.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::dto::CourseView;
use super::handlers::find_course;
use crate::domain::CourseStatus;
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
    fn of(v: &CourseView) -> Self {
        Self {
            course_id: v.course_id,
            status: v.status,
            lessons_generated: v.lessons_generated,
            total_lessons: v.total_lessons,
            error: v.error.clone(),
        }
    }

    fn finished(&self) -> bool {
        self.status.is_finished()
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
pub(crate) async fn progress(
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
