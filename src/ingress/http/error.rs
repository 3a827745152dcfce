//! [`ApiError`]: every way an API call can fail, and the one place that maps
//! failures to HTTP statuses and the JSON error body
//! `{"error": code, "message": text}`.

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
    /// Something broke on our side.
    #[error(transparent)]
    Internal(#[from] InternalError),
}

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
            Self::Unavailable(_) => "unavailable",
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
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            Self::Internal(e) => {
                tracing::error!(error = error_chain(e), "request failed");
                "internal error; see the service's log".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized(_)) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
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
            other => Self::Internal(other.into()),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        Self::Internal(e.into())
    }
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
