//! `GET /courses/{id}/export`: a READY course as a zip download (JSON,
//! Markdown, SCORM 1.2 or Common Cartridge), compressed while it streams.

use actix_web::http::header::{ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::handlers::find_course;
use crate::domain::CourseStatus;
use crate::export::{self, archive, ExportFormat};
use crate::ingress::http::error::{ApiError, ErrorBody, InternalError};
use crate::ingress::http::{ApiState, User};

/// Query of `GET /courses/{id}/export`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// json (default), markdown, scorm12 or cc.
    pub format: Option<String>,
}

/// Download a READY course as a zip named after its slug
/// (`<slug>-json.zip`, `<slug>-markdown.zip`, `<slug>-scorm12.zip`, or
/// `<slug>.imscc` for a Common Cartridge). A course that is not the
/// caller's answers 404; a deleted one 410; one still generating or failed
/// (or just finished, before the read model has it) 409.
#[utoipa::path(
    get, path = "/api/v1/courses/{id}/export", tag = "courses",
    params(("id" = Uuid, Path, description = "course id"), ExportQuery),
    responses(
        (status = 200, description = "The package", content_type = "application/zip", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "Not READY", body = ErrorBody),
        (status = 410, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn export(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let format = match query.into_inner().format.as_deref() {
        None => ExportFormat::Json,
        Some(f) => f
            .parse::<ExportFormat>()
            .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?,
    };
    let view = find_course(&state, &user, id).await?;
    if view.deleted_at.is_some() {
        return Err(ApiError::Gone(format!(
            "course {id} was deleted; POST /api/v1/courses/{id}/restore brings it back"
        )));
    }
    if view.status != CourseStatus::Ready {
        return Err(ApiError::Conflict(format!(
            "course {id} is {}: only READY courses are exported",
            view.status
        )));
    }
    let client = state.store.pool().get().await?;
    let course = export::load(&client, id)
        .await
        .map_err(|e| ApiError::from(InternalError::Export(e)))?
        // Found in the log only: the read model has not caught up yet.
        .ok_or_else(|| {
            ApiError::Conflict(format!(
                "course {id} is not in the read model yet; try again in a moment"
            ))
        })?;
    drop(client);
    let name = format.archive_name(&course.slug);
    let files = format.files(&course);
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name)],
        })
        .streaming(archive::stream_zip(files, course.updated_at)))
}
