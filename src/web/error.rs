//! Errors of the web app as HTML pages: the API's errors keep their status
//! (another user's course is the same 404 page as a missing one), a missing
//! session goes to the login page.

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use askama::Template;

use super::session::html_response;
use super::views::{ErrorPage, Layout};
use crate::ingress::http::ApiError;

/// Why a page is not shown.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    /// Shown as an error page with this status.
    #[error("{message}")]
    Status { status: StatusCode, message: String },
    /// Go elsewhere (the login page, the page without `?token=`), maybe
    /// setting a cookie on the way.
    #[error("see {to}")]
    Redirect {
        to: String,
        cookie: Option<Box<Cookie<'static>>>,
    },
}

impl PageError {
    pub(crate) fn status(status: StatusCode, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            message: message.into(),
        }
    }

    /// The 404 page.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::status(StatusCode::NOT_FOUND, message)
    }

    /// To the login page, coming back to this request's page afterwards.
    pub(crate) fn login(req: &HttpRequest, why: impl std::fmt::Display) -> Self {
        let next = if req.method() == actix_web::http::Method::GET {
            req.uri()
                .path_and_query()
                .map_or("/".to_owned(), |p| p.to_string())
        } else {
            "/".to_owned()
        };
        let query = serde_urlencoded::to_string([
            ("next", next.as_str()),
            ("error", why.to_string().as_str()),
        ])
        .unwrap_or_default();
        Self::Redirect {
            to: format!("/login?{query}"),
            cookie: None,
        }
    }

    /// A template that does not render (a bug): a 500, logged.
    pub(crate) fn template(e: askama::Error) -> Self {
        tracing::error!(error = %e, "a page template failed");
        Self::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the service's log",
        )
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let status = e.status_code();
        if status == StatusCode::UNAUTHORIZED {
            return Self::Redirect {
                to: "/login".into(),
                cookie: None,
            };
        }
        let message = if status.is_server_error() {
            // The API's answer logs the cause; its message hides it.
            let _ = e.error_response();
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "The service is unavailable for a moment; try again shortly.".to_owned()
                }
                _ => "internal error; see the service's log".to_owned(),
            }
        } else {
            e.to_string()
        };
        Self::Status { status, message }
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Status { status, .. } => *status,
            Self::Redirect { .. } => StatusCode::SEE_OTHER,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Redirect { to, cookie } => {
                let mut response = HttpResponse::SeeOther();
                response.insert_header((header::LOCATION, to.as_str()));
                if let Some(c) = cookie {
                    response.cookie((**c).clone());
                }
                response.finish()
            }
            Self::Status { status, message } => error_page(*status, message),
        }
    }
}

/// The error page for `status`.
pub(crate) fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    let heading = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::GONE => "Deleted",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::CONFLICT => "Not possible now",
        s if s.is_client_error() => "Something is wrong with the request",
        _ => "Something went wrong",
    };
    let page = ErrorPage {
        layout: Layout {
            title: heading.to_owned(),
            csrf: String::new(),
            signed_in: false,
        },
        status: status.as_u16(),
        heading,
        message: message.to_owned(),
    };
    match page.render() {
        Ok(html) => html_response(status).body(html),
        Err(_) => HttpResponse::build(status).body(message.to_owned()),
    }
}

/// A path nobody serves: an HTML 404 page.
pub(crate) async fn not_found() -> HttpResponse {
    error_page(
        StatusCode::NOT_FOUND,
        "There is no page at this address. The library lists your courses.",
    )
}
