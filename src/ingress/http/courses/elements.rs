//! `GET /courses/{id}/lessons/{n}/elements`: a lesson's interactive
//! elements alone (code blocks, exercises, quizzes), for players that render
//! them beside the markdown.

use actix_web::{web, HttpResponse};
use serde_json::Value;
use uuid::Uuid;

use super::dto::ElementsView;
use super::handlers::find_course;
use crate::ingress::http::error::{ApiError, ErrorBody};
use crate::ingress::http::{ApiState, User};
use crate::projections::courses::queries;

/// A lesson's interactive elements, in the lesson's order. 404 until the
/// lesson is generated.
#[utoipa::path(
    get, path = "/api/v1/courses/{id}/lessons/{n}/elements", tag = "courses",
    params(("id" = Uuid, Path, description = "course id"), ("n" = u32, Path, description = "lesson number, from 1")),
    responses(
        (status = 200, body = ElementsView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn elements(
    state: web::Data<ApiState>,
    user: User,
    path: web::Path<(Uuid, u32)>,
) -> Result<HttpResponse, ApiError> {
    let (id, n) = path.into_inner();
    let course = find_course(&state, &user, id).await?;
    if course.deleted_at.is_some() {
        return Err(ApiError::Gone(format!("course {id} was deleted")));
    }
    let not_generated =
        || ApiError::NotFound(format!("lesson {n} of course {id} is not generated yet"));
    let number = i32::try_from(n).map_err(|_| not_generated())?;
    let client = state.store.pool().get().await?;
    let lesson = queries::lesson(&client, id, number).await?;
    if lesson.and_then(|l| l.content_md).is_none() {
        return Err(not_generated());
    }
    let elements = queries::elements(&client, id, number).await?;
    Ok(HttpResponse::Ok().json(ElementsView {
        course_id: id,
        lesson: number,
        elements: Value::Array(elements),
    }))
}
