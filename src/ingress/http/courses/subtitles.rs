//! Subtitles: ask for more languages (`POST /courses/{id}/subtitles`,
//! translated by the course's actor as resumable steps) and read a lesson's
//! track as JSON, WebVTT or SRT.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::dto::CourseView;
use super::handlers::{command, find_course};
use crate::domain::subtitles::{srt, webvtt, Cue};
use crate::domain::{parse_languages, Command};
use crate::ingress::http::error::{ApiError, ErrorBody};
use crate::ingress::http::{ApiState, User};
use crate::projections::courses::queries;

/// Body of `POST /courses/{id}/subtitles`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubtitlesRequest {
    /// BCP-47 tags (at most 10); the course's own language and languages
    /// already asked for are skipped.
    #[schema(min_items = 1, max_items = 10)]
    pub languages: Vec<String>,
}

/// Ask for the subtitles in more languages. 202: the course's actor
/// translates them lesson by lesson (see the job's subtitle steps); a
/// language whose translation is interrupted resumes at the lesson it
/// stopped at. 200 and nothing recorded when only the course's own
/// language is named. 409 for a FAILED or deleted course.
#[utoipa::path(
    post, path = "/api/v1/courses/{id}/subtitles", tag = "courses",
    params(("id" = Uuid, Path, description = "course id")),
    request_body = SubtitlesRequest,
    responses(
        (status = 202, body = CourseView),
        (status = 200, description = "Nothing to add: the languages named are the course's own, whose subtitles are always made", body = CourseView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn request(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body: SubtitlesRequest =
        serde_json::from_value(body.into_inner()).map_err(ApiError::invalid_request)?;
    if body.languages.is_empty() {
        return Err(ApiError::invalid_request("name at least one language"));
    }
    let course = find_course(&state, &user, id).await?;
    let languages = parse_languages("languages", body.languages, &course.language)
        .map_err(ApiError::invalid_request)?;
    if languages.is_empty() {
        // Only the course's own language, whose subtitles are always made:
        // nothing to add, nothing recorded.
        return Ok(HttpResponse::Ok().json(course));
    }
    let view = command(&state, &user, id, || Command::RequestSubtitles {
        languages: languages.clone(),
    })
    .await?;
    Ok(HttpResponse::Accepted().json(view))
}

/// Query of `GET /courses/{id}/lessons/{n}/subtitles`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SubtitlesQuery {
    /// BCP-47 tag (default: the course's language).
    pub lang: Option<String>,
    /// json (default), vtt or srt.
    pub format: Option<String>,
}

/// A subtitle file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Vtt,
    Srt,
}

impl Format {
    /// Every name [`Self::parse`] knows (in any case).
    pub(crate) const NAMES: [&'static str; 4] = ["json", "vtt", "webvtt", "srt"];

    /// `json`, `vtt` (or `webvtt`), `srt`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(Self::Json),
            "vtt" | "webvtt" => Some(Self::Vtt),
            "srt" => Some(Self::Srt),
            _ => None,
        }
    }
}

/// One lesson's subtitles in one language, as JSON (`cues` with `start_ms`,
/// `end_ms`, `text`), WebVTT (`text/vtt`) or SRT (`application/x-subrip`).
#[utoipa::path(
    get, path = "/api/v1/courses/{id}/lessons/{n}/subtitles", tag = "courses",
    params(("id" = Uuid, Path, description = "course id"), ("n" = u32, Path, description = "lesson number, from 1"), SubtitlesQuery),
    responses(
        (status = 200, description = "JSON, WebVTT or SRT, by `format`",
         content((Object = "application/json"), (String = "text/vtt"), (String = "application/x-subrip"))),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    state: web::Data<ApiState>,
    user: User,
    path: web::Path<(Uuid, u32)>,
    query: web::Query<SubtitlesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (id, n) = path.into_inner();
    let query = query.into_inner();
    let format = match query.format.as_deref() {
        None => Format::Json,
        Some(f) => Format::parse(f).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("unknown format {f:?}: use json, vtt or srt"),
            )
        })?,
    };
    let course = find_course(&state, &user, id).await?;
    if course.deleted_at.is_some() {
        return Err(ApiError::Gone(format!("course {id} was deleted")));
    }
    let language = match query
        .lang
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        None => course.language.clone(),
        Some(l) => crate::domain::metadata::parse_language_tag(l)
            .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?,
    };
    let missing = || {
        ApiError::NotFound(format!(
            "lesson {n} of course {id} has no subtitles in {language}"
        ))
    };
    let number = i32::try_from(n).map_err(|_| missing())?;
    let client = state.store.pool().get().await?;
    let (cues, model) = queries::subtitles(&client, id, number, &language)
        .await?
        .ok_or_else(missing)?;
    let parsed: Vec<Cue> =
        serde_json::from_value(cues.clone()).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(match format {
        Format::Json => HttpResponse::Ok().json(json!({
            "course_id": id, "lesson": number, "language": language, "model": model, "cues": cues,
        })),
        Format::Vtt => HttpResponse::Ok()
            .content_type("text/vtt; charset=utf-8")
            .body(webvtt(&parsed)),
        Format::Srt => HttpResponse::Ok()
            .content_type("application/x-subrip; charset=utf-8")
            .body(srt(&parsed)),
    })
}
