//! [`ApiError`]: every way an API call can fail, and the one place that maps
//! failures to HTTP statuses and the JSON error body
//! `{"error": code, "message": text}`.
//!
//! A database out of reach (stopped, restarting, refusing connections) is
//! not a bug of the request: it is a 503 with `Retry-After`, so clients wait
//! and try again; every other failure of the service is a 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::DomainError;
use crate::projections::ProjectionError;
use crate::store::courses::CommandError;
use crate::store::StoreError;

/// The error body every failing endpoint answers with.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable, machine-readable code (`not_found`, `invalid_query`, ...).
    pub error: &'static str,
    /// What went wrong, for a human.
    pub message: String,
}

/// Why an API call failed. Client mistakes are 4xx with a precise message;
/// only failures of the service itself are 500 (and logged with their cause).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The input was understood but is not acceptable (validation).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// No or an invalid bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or it belongs to someone else (indistinguishable on purpose).
    #[error("{0}")]
    NotFound(String),
    /// The course was soft-deleted; its history remains and it can be restored.
    #[error("{0}")]
    Gone(String),
    /// The course's state does not allow the action (retry of a READY course, ...).
    #[error("{0}")]
    Conflict(String),
    /// The route exists, but not with this method.
    #[error("this method is not allowed here; see /api/v1/openapi.json")]
    MethodNotAllowed,
    /// The body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A dependency is down (health check).
    #[error("{0}")]
    Unavailable(String),
    /// The database cannot be reached right now; the cause is logged.
    #[error("the database is unavailable; try again in a few seconds")]
    DatabaseUnavailable(#[source] InternalError),
    /// Something broke on our side.
    #[error(transparent)]
    Internal(InternalError),
}

/// Seconds a 503 asks the client to wait before trying again.
pub(crate) const RETRY_AFTER_SECS: u32 = 5;

/// A failure of the service itself: a 500 for the caller, logged here with
/// its whole cause chain.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("database query failed")]
    Database(#[from] tokio_postgres::Error),
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("event store failed")]
    Store(#[from] StoreError),
    #[error("projection failed")]
    Projection(#[from] ProjectionError),
    /// A stored value the projection wrote does not decode.
    #[error("stored data does not decode")]
    Decode(#[from] serde_json::Error),
    /// A course could not be read for an export.
    #[error("export failed")]
    Export(#[from] crate::export::LoadError),
    /// A handler ran in an app that was not given the [`super::ApiState`].
    #[error("the API state is not configured")]
    NoState,
}

/// An error and its causes, outermost first: `a: b: c`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

impl ApiError {
    /// A 400 with `code`.
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The 400 of a request body that does not parse or validate: one code for
    /// every handler, so clients branch on a single `invalid_request`.
    pub(crate) fn invalid_request(message: impl std::fmt::Display) -> Self {
        Self::bad_request("invalid_request", message.to_string())
    }

    /// The 404 of a course that does not exist or is not the caller's.
    pub(crate) fn course_not_found(id: uuid::Uuid) -> Self {
        Self::NotFound(format!("no course with id {id}"))
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Gone(_) => "deleted",
            Self::Conflict(_) => "conflict",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Unavailable(_) | Self::DatabaseUnavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable(_) | Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            Self::Internal(e) => {
                tracing::error!(error = error_chain(e), "request failed");
                "internal error; see the service's log".to_owned()
            }
            Self::DatabaseUnavailable(e) => {
                tracing::warn!(error = error_chain(e), "database unavailable");
                self.to_string()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            Self::Unavailable(_) | Self::DatabaseUnavailable(_) => {
                response.insert_header(("Retry-After", RETRY_AFTER_SECS.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: self.code(),
            message,
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                Self::Conflict("the course changed meanwhile; try again".into())
            }
            other => InternalError::from(other).into(),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        InternalError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        InternalError::from(e).into()
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        InternalError::from(e).into()
    }
}

impl From<InternalError> for ApiError {
    fn from(e: InternalError) -> Self {
        if database_unreachable(&e) {
            Self::DatabaseUnavailable(e)
        } else {
            Self::Internal(e)
        }
    }
}

/// Whether `e` (or what caused it) is the database being out of reach,
/// rather than a statement or the service failing.
fn database_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<deadpool_postgres::PoolError>() {
            return pool_unavailable(e);
        }
        if let Some(e) = e.downcast_ref::<tokio_postgres::Error>() {
            return connection_failed(e);
        }
        cause = e.source();
    }
    false
}

/// No pooled connection: none came free in time, the pool is closed, or a
/// new connection could not be opened (the server is down, not accepting
/// connections, or full). A failing post-create hook is the service's own.
fn pool_unavailable(e: &deadpool_postgres::PoolError) -> bool {
    use deadpool_postgres::PoolError;
    matches!(
        e,
        PoolError::Timeout(_) | PoolError::Closed | PoolError::Backend(_)
    )
}

/// The connection broke under a statement: closed, an I/O error (no SQLSTATE
/// then), or the server saying it is going away or cannot serve one more
/// (SQLSTATE class 08, 57P01 to 57P03, 53300). A statement's own error,
/// or one without SQLSTATE and without I/O (a value that does not convert,
/// say), is not.
fn connection_failed(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code);
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Rejected(DomainError::NotFound) => {
                Self::NotFound("no such course".into())
            }
            CommandError::Rejected(rule) => Self::Conflict(rule.to_string()),
            CommandError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;
    use deadpool_postgres::{PoolError, TimeoutType};

    use super::*;

    fn answer(e: ApiError) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = e.error_response();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status();
        let body = response.into_body().try_into_bytes().unwrap();
        (status, retry_after, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn no_free_connection_is_a_503_with_retry_after() {
        let (status, retry_after, body) = answer(PoolError::Timeout(TimeoutType::Wait).into());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.as_deref(), Some("5"));
        assert_eq!(body["error"], "unavailable");
    }

    #[test]
    fn the_same_failure_inside_a_store_error_is_a_503_too() {
        let e = StoreError::Pool(PoolError::Closed);
        let (status, _, _) = answer(CommandError::Store(e).into());
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_failure_of_the_service_itself_stays_a_500() {
        for e in [
            ApiError::from(PoolError::NoRuntimeSpecified),
            InternalError::NoState.into(),
        ] {
            let (status, retry_after, body) = answer(e);
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(retry_after, None);
            assert_eq!(body["error"], "internal");
        }
    }
}
