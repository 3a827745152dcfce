//! `/api/v1/sources`: the caller's source library. Upload (multipart, or
//! JSON with the text), list by prefix, read one document with its chunks,
//! remove, and search as retrieval does. Another user's document is a 404.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::error::ErrorBody;
use super::{ApiError, ApiState, User};
use crate::projections::sources::queries::{self, ChunkRow, SearchHit, SourceRow};
use crate::projections::{wait_for_position, Projection};
use crate::sources::semantic::{self, SemanticError};
use crate::sources::{self, IngestError, IngestOutcome, NewSource, MAX_SOURCE_BYTES};
use crate::store::{Appended, Metadata};

/// A document given as text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TextSource {
    /// Library path, e.g. `microbiology/cells.md`.
    pub path: String,
    /// The document's text.
    pub text: String,
    /// `text/markdown`, `text/plain` (default: from the path's extension, else plain text) or `text/html`.
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    /// Language code; detected when omitted.
    #[serde(default)]
    pub language: Option<String>,
}

/// What an upload did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngestView {
    /// `added`, `updated` or `unchanged`.
    pub outcome: &'static str,
    pub source: SourceRow,
}

/// A document with the chunks of its current version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SourceView {
    #[serde(flatten)]
    pub source: SourceRow,
    pub chunks: Vec<ChunkRow>,
}

/// `?prefix=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PrefixParams {
    /// Only paths starting with this, e.g. `microbiology/`.
    #[serde(default)]
    pub prefix: String,
}

/// The longest search text, in characters.
pub(crate) const MAX_SEARCH_CHARS: usize = 500;

/// `?q=&prefix=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchParams {
    /// Words, "quoted phrases", `or`, `-excluded`.
    pub q: String,
    #[serde(default)]
    pub prefix: String,
    /// Most chunks returned, 1 to 100 (default 5).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

fn rejected(e: IngestError) -> ApiError {
    match e {
        IngestError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
        IngestError::Unsupported(_) => ApiError::UnsupportedMediaType(e.to_string()),
        IngestError::Store(s) => ApiError::from(s),
        IngestError::Embeddings(_) => ApiError::Unavailable(e.to_string()),
        IngestError::Unreadable(_) | IngestError::Encrypted | IngestError::Empty => {
            ApiError::bad_request("unreadable_source", e.to_string())
        }
        IngestError::InvalidPath(_) | IngestError::InvalidLanguage(_) => {
            ApiError::invalid_request(e)
        }
    }
}

fn prefix(p: &str) -> Result<String, ApiError> {
    sources::parse_prefix(p).map_err(ApiError::invalid_request)
}

fn prefix_filter(p: &str) -> Result<String, ApiError> {
    sources::parse_prefix_filter(p).map_err(ApiError::invalid_request)
}

/// Waits (bounded) until the `sources` projection shows an append, so that
/// the caller's next read sees its write; false when it did not in time (the
/// write stands: a lagging projection only means answering from the log).
async fn read_your_write(state: &ApiState, appended: Option<Appended>) -> bool {
    let Some(a) = appended else { return true };
    match wait_for_position(
        &state.store,
        Projection::Sources.name(),
        a.position,
        state.read_your_writes,
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "sources projection did not catch up; answering from the log");
            false
        }
    }
}

/// An uploaded file: its bytes and what the form said about it.
#[derive(Default)]
struct Upload {
    bytes: Vec<u8>,
    file_name: Option<String>,
    media_type: Option<String>,
    path: Option<String>,
    prefix: Option<String>,
    title: Option<String>,
    language: Option<String>,
    has_file: bool,
}

/// The multipart form of `POST /api/v1/sources`, as the OpenAPI document
/// describes it (the handler reads the parts as they stream in).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct UploadForm {
    /// The document: Markdown, plain text, HTML, PDF or DOCX, at most 25 MiB.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Its path in the library, e.g. `microbiology/cells.pdf` (default: the file name).
    path: Option<String>,
    /// A folder to put it in when `path` is not given, e.g. `microbiology/`.
    prefix: Option<String>,
    /// Its title (default: from the document).
    title: Option<String>,
    /// Its language tag (default: detected).
    language: Option<String>,
}

/// Reads a multipart form: a `file` part, and optional `path`, `prefix`,
/// `title`, `language` parts. Stops reading past [`MAX_SOURCE_BYTES`].
async fn read_multipart(req: &HttpRequest, payload: web::Payload) -> Result<Upload, ApiError> {
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut up = Upload::default();
    let bad = |e: actix_multipart::MultipartError| {
        ApiError::bad_request("invalid_body", format!("invalid multipart body: {e}"))
    };
    while let Some(field) = form.next().await {
        let mut field = field.map_err(bad)?;
        let name = field.name().unwrap_or_default().to_owned();
        let mut data = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad)?;
            if data.len() + chunk.len() > MAX_SOURCE_BYTES {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the file is over the limit of {MAX_SOURCE_BYTES} bytes"
                )));
            }
            data.extend_from_slice(&chunk);
        }
        let text = || {
            String::from_utf8(data.clone()).map_err(|_| {
                ApiError::bad_request("invalid_body", format!("form field {name} is not UTF-8"))
            })
        };
        match name.as_str() {
            "file" => {
                up.file_name = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .map(str::to_owned);
                up.media_type = field.content_type().map(|m| m.essence_str().to_owned());
                up.bytes = data;
                up.has_file = true;
            }
            "path" => up.path = Some(text()?),
            "prefix" => up.prefix = Some(text()?),
            "title" => up.title = Some(text()?),
            "language" => up.language = Some(text()?),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_body",
                    format!("unknown form field {other:?} (file, path, prefix, title, language)"),
                ))
            }
        }
    }
    if !up.has_file {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the form has no `file` part",
        ));
    }
    Ok(up)
}

/// Adds a document to the caller's library: a multipart form with a `file`
/// (and optionally `path` or `prefix`, `title`, `language`), or JSON with
/// the text. The same content at the same path records nothing; changed
/// content is a new version.
#[utoipa::path(
    post, path = "/api/v1/sources", tag = "sources",
    request_body(
        description = "JSON with the text, or a multipart form: parts file (required), path, prefix, title, language",
        content((TextSource = "application/json"), (UploadForm = "multipart/form-data")),
    ),
    responses(
        (status = 201, description = "Added (or a new version)", body = IngestView),
        (status = 200, description = "Unchanged: the same content is the current version", body = IngestView),
        (status = 400, description = "invalid path or language, unreadable or encrypted file, no text", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "over the size limit", body = ErrorBody),
        (status = 415, description = "unsupported file type", body = ErrorBody),
        (status = 503, description = "embeddings configured, but the endpoint failed: nothing stored", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn add(
    state: web::Data<ApiState>,
    user: User,
    req: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let metadata = Metadata {
        user_id: Some(user.id),
        ..Metadata::producer("http")
    };
    let outcome = if content_type.starts_with("multipart/form-data") {
        let up = read_multipart(&req, payload).await?;
        let path = match (up.path, up.file_name) {
            (Some(p), _) => p,
            (None, Some(name)) => {
                let name = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_owned();
                match up.prefix.as_deref().map(prefix).transpose()? {
                    Some(p) if !p.is_empty() => {
                        format!("{}/{name}", p.trim_end_matches('/'))
                    }
                    _ => name,
                }
            }
            (None, None) => {
                return Err(ApiError::invalid_request(
                    "name the document: a `path` part, or a file name on the `file` part",
                ))
            }
        };
        sources::ingest_with(
            &state.store,
            state.embedder.as_ref(),
            &NewSource {
                user_id: user.id,
                path: &path,
                bytes: &up.bytes,
                media_type: up.media_type.as_deref(),
                language: up.language.as_deref(),
                title: up.title.as_deref(),
            },
            &metadata,
        )
        .await
        .map_err(rejected)?
    } else if content_type.starts_with("application/json") {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
            if body.len() + chunk.len() > MAX_SOURCE_BYTES * 2 {
                return Err(ApiError::PayloadTooLarge(format!(
                    "the body is over the limit of {} bytes",
                    MAX_SOURCE_BYTES * 2
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text: TextSource = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}"))
        })?;
        let media_type = text.media_type.clone().or_else(|| {
            sources::MediaType::from_path(&text.path)
                .filter(|m| *m != sources::MediaType::Pdf)
                .map_or(Some("text/plain".to_owned()), |_| None)
        });
        if media_type
            .as_deref()
            .and_then(sources::MediaType::parse)
            .is_some_and(|m| m == sources::MediaType::Pdf)
        {
            return Err(ApiError::UnsupportedMediaType(
                "a PDF cannot be sent as JSON text: upload it as multipart/form-data".into(),
            ));
        }
        sources::ingest_with(
            &state.store,
            state.embedder.as_ref(),
            &NewSource {
                user_id: user.id,
                path: &text.path,
                bytes: text.text.as_bytes(),
                media_type: media_type.as_deref(),
                language: text.language.as_deref(),
                title: text.title.as_deref(),
            },
            &metadata,
        )
        .await
        .map_err(rejected)?
    } else {
        return Err(ApiError::UnsupportedMediaType(
            "send multipart/form-data (a `file` part) or application/json ({path, text})".into(),
        ));
    };
    let row = if read_your_write(&state, outcome.appended()).await {
        queries::get(state.store.pool(), user.id, outcome.id()).await?
    } else {
        sources::row_from_log(&state.store, outcome.id()).await?
    }
    .ok_or_else(|| ApiError::NotFound(format!("document {} is not shown yet", outcome.id())))?;
    let (status, label) = match outcome {
        IngestOutcome::Added { .. } => (actix_web::http::StatusCode::CREATED, "added"),
        IngestOutcome::Updated { .. } => (actix_web::http::StatusCode::CREATED, "updated"),
        IngestOutcome::Unchanged { .. } => (actix_web::http::StatusCode::OK, "unchanged"),
    };
    Ok(HttpResponse::build(status).json(IngestView {
        outcome: label,
        source: row,
    }))
}

/// The caller's documents whose path starts with `prefix`, by path.
#[utoipa::path(
    get, path = "/api/v1/sources", tag = "sources", params(PrefixParams),
    responses(
        (status = 200, body = Vec<SourceRow>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    state: web::Data<ApiState>,
    user: User,
    params: web::Query<PrefixParams>,
) -> Result<HttpResponse, ApiError> {
    let p = prefix_filter(&params.prefix)?;
    Ok(HttpResponse::Ok().json(queries::list(state.store.pool(), user.id, &p).await?))
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound(format!("no document {id} in your library"))
}

/// Document `id` of the caller's library; 404 for anyone else's.
async fn owned(state: &ApiState, user: &User, id: Uuid) -> Result<SourceRow, ApiError> {
    queries::get(state.store.pool(), user.id, id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// One document with the chunks of its current version.
#[utoipa::path(
    get, path = "/api/v1/sources/{id}", tag = "sources",
    params(("id" = Uuid, Path, description = "document id")),
    responses(
        (status = 200, body = SourceView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "no such document, or not the caller's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let row = owned(&state, &user, id).await?;
    let chunks = queries::chunks(state.store.pool(), id, row.version).await?;
    Ok(HttpResponse::Ok().json(SourceView {
        source: row,
        chunks,
    }))
}

/// Removes a document (soft delete: courses that cited it keep their citations).
#[utoipa::path(
    delete, path = "/api/v1/sources/{id}", tag = "sources",
    params(("id" = Uuid, Path, description = "document id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, description = "no such document, or not the caller's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let row = owned(&state, &user, id).await?;
    let metadata = Metadata {
        user_id: Some(user.id),
        ..Metadata::producer("http")
    };
    let appended = sources::remove(&state.store, user.id, id, &row.path, &metadata)
        .await?
        .ok_or_else(|| not_found(id))?;
    read_your_write(&state, Some(appended)).await;
    Ok(HttpResponse::NoContent().finish())
}

/// What retrieval finds for `q` in the caller's library under `prefix`, best
/// first: by full text (score: `ts_rank_cd`), fused with the nearest chunk
/// vectors when embeddings are configured (score: the fused one).
#[utoipa::path(
    get, path = "/api/v1/sources/search", tag = "sources", params(SearchParams),
    responses(
        (status = 200, body = Vec<SearchHit>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 503, description = "embeddings configured, but the endpoint failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn search(
    state: web::Data<ApiState>,
    user: User,
    params: web::Query<SearchParams>,
) -> Result<HttpResponse, ApiError> {
    let q = params.q.trim();
    if q.is_empty() || q.chars().count() > MAX_SEARCH_CHARS || q.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must be 1 to 500 characters without control characters",
        ));
    }
    let limit = params.limit.unwrap_or(5);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1 to 100",
        ));
    }
    let p = prefix_filter(&params.prefix)?;
    let hits = semantic::search(
        state.store.pool(),
        state.embedder.as_ref(),
        user.id,
        q,
        q,
        &p,
        limit,
    )
    .await
    .map_err(|e| match e {
        SemanticError::Database(e) => ApiError::from(e),
        SemanticError::Embeddings(e) => ApiError::Unavailable(format!(
            "semantic search is configured but the query could not be embedded: {e}"
        )),
    })?;
    Ok(HttpResponse::Ok().json(hits))
}
