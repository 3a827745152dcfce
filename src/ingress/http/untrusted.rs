//! The edge check every request passes before any handler: no NUL character
//! anywhere a text could carry one to SQL. PostgreSQL refuses NUL in `text`
//! and in `jsonb` ("invalid byte sequence for encoding UTF8: 0x00"), so a NUL
//! that got through would be a 500 instead of the client's mistake.
//!
//! One middleware for every route (the ones other modules add included), so
//! no handler has to remember it. It looks at:
//!
//! - the path and query string: `%00`, percent-encoded (a raw NUL cannot
//!   pass the HTTP parser);
//! - header values: a raw NUL byte (the parser refuses them today; checked
//!   so that a laxer server version or an HTTP/2 peer cannot change that);
//! - text bodies (JSON, forms, `text/*`): a raw NUL byte, the JSON escape
//!   `\u0000` (one preceded by an odd run of backslashes, so `\\u0000`,
//!   an escaped backslash before `u0000`, passes) and, in forms, `%00`.
//!   Such bodies are read up to the configured limit (larger: 413) and
//!   handed on unchanged. Binary bodies (uploads) are the business of their
//!   extractor, which must check the text it gets out of them.
//!
//! Answer: 400 `{"error": "nul_character", "message": ...}`, naming where.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::error::ApiError;
use crate::ingress::nul;

/// The error code of a request refused for a NUL character.
pub(crate) const NUL_CODE: &str = "nul_character";

/// The largest body the check reads, as app data (the JSON limit).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub usize);

/// The middleware: refuses a request that carries a NUL character (see the
/// module's header), or passes it on with its body intact.
pub(crate) async fn reject_nul<B: MessageBody>(
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let refusal = match uri_or_headers(&req) {
        Some(e) => Some(e),
        None if is_text_body(req.headers()) => {
            let limit = req
                .app_data::<BodyLimit>()
                .copied()
                .unwrap_or(BodyLimit(64 * 1024))
                .0;
            match read_body(req.take_payload(), limit).await {
                Ok(body) => {
                    let found = body_nul(req.headers(), &body);
                    req.set_payload(Payload::from(body));
                    found
                }
                Err(e) => Some(e),
            }
        }
        None => None,
    };
    match refusal {
        Some(e) => {
            let response = e.error_response();
            Ok(req.into_response(response).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

fn nul(place: &str) -> ApiError {
    ApiError::bad_request(
        NUL_CODE,
        format!("{place} contains a NUL character (U+0000), which is never accepted"),
    )
}

fn uri_or_headers(req: &ServiceRequest) -> Option<ApiError> {
    let uri = req.uri();
    if nul::in_url(uri.path().as_bytes()) {
        return Some(nul("the path"));
    }
    if uri
        .query()
        .is_some_and(|q| nul::has_percent_nul(q.as_bytes()))
    {
        return Some(nul("the query string"));
    }
    req.headers()
        .iter()
        .find(|(_, v)| v.as_bytes().contains(&0))
        .map(|(name, _)| nul(&format!("the {name} header")))
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

fn is_form(headers: &HeaderMap) -> bool {
    content_type(headers).as_deref() == Some("application/x-www-form-urlencoded")
}

/// JSON (`application/json`, `*+json`), forms and `text/*`: bodies whose
/// bytes become text; anything else is left to its extractor. A body without
/// a type is looked at too, since it may still be parsed as text.
fn is_text_body(headers: &HeaderMap) -> bool {
    match content_type(headers) {
        None => headers.contains_key(header::CONTENT_LENGTH),
        Some(t) => {
            t == "application/json"
                || t.ends_with("+json")
                || t == "application/x-www-form-urlencoded"
                || t.starts_with("text/")
        }
    }
}

async fn read_body(mut payload: Payload, limit: usize) -> Result<Bytes, ApiError> {
    let too_large =
        || ApiError::PayloadTooLarge(format!("the body is over the limit of {limit} bytes"));
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn body_nul(headers: &HeaderMap, body: &[u8]) -> Option<ApiError> {
    let found = nul::in_json(body) || (is_form(headers) && nul::has_percent_nul(body));
    found.then(|| nul("the body"))
}

/// Installs the check's body limit (the app's JSON limit).
pub(crate) fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(BodyLimit(max_body_bytes));
}
