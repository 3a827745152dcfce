//! `PATCH /courses/{id}`: edit a course's metadata. The edit is recorded as
//! `CourseMetadataChanged` with the caller in its metadata, so the course's
//! history shows who changed what.

use actix_web::{web, HttpResponse};
use serde_json::Value;
use uuid::Uuid;

use super::dto::CourseView;
use super::handlers::command;
use crate::domain::{Command, MetadataChange, RawMetadataChange};
use crate::ingress::http::error::{ApiError, ErrorBody};
use crate::ingress::http::{ApiState, User};

/// Edit the metadata of a course: author, tags, language, difficulty,
/// prerequisites, learning outcomes. Fields left out keep their values;
/// lists replace the old list. Repeating the current values records
/// nothing.
#[utoipa::path(
    patch, path = "/api/v1/courses/{id}", tag = "courses",
    params(("id" = Uuid, Path, description = "course id")),
    request_body = RawMetadataChange,
    responses(
        (status = 200, body = CourseView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the course is deleted", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn edit(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !body.is_object() {
        return Err(ApiError::invalid_request("an edit must be a JSON object"));
    }
    let raw: RawMetadataChange = serde_json::from_value(body).map_err(ApiError::invalid_request)?;
    let change = MetadataChange::parse(raw).map_err(ApiError::invalid_request)?;
    let view = command(&state, &user, id.into_inner(), || {
        Command::ChangeMetadata(change.clone())
    })
    .await?;
    Ok(HttpResponse::Ok().json(view))
}
