//! Who is looking at a page, and the CSRF token of its forms.
//!
//! With `AUTH_JWT_SECRET` set, a page needs the same bearer token as the
//! API, kept in an HttpOnly, SameSite=Strict cookie: pasted into the login
//! page, or given once as `?token=` (the page then redirects to itself
//! without it, so the token leaves the address bar and the history). Without
//! a secret everything is the local user, as in the API.
//!
//! Every form carries a CSRF token that must equal the one in a second
//! SameSite=Strict cookie (double submit): another site can neither read
//! the cookie nor make the browser send it.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use rand::RngCore;
use serde::Deserialize;

use super::views::{Layout, LoginPage};
use super::PageError;
use crate::ingress::http::auth::user_of_token;
use crate::ingress::http::{ApiState, Auth, User};

/// The cookie holding the caller's bearer token.
pub(crate) const SESSION_COOKIE: &str = "coursegen_session";
/// The cookie holding the CSRF token forms must repeat.
pub(crate) const CSRF_COOKIE: &str = "coursegen_csrf";

/// The caller of a page and the CSRF token its forms carry.
pub(crate) struct Session {
    pub user: User,
    pub csrf: String,
    /// The CSRF cookie must be set by this response (the first page seen).
    new_csrf: bool,
    /// Whether there is a login (and so a logout button).
    pub signed_in: bool,
}

impl Session {
    /// The session of a page request.
    ///
    /// # Errors
    /// A redirect to the login page without a valid token; a redirect to the
    /// same page without `?token=` once a given token is stored.
    pub(crate) fn begin(req: &HttpRequest, state: &ApiState) -> Result<Self, PageError> {
        if let Some(token) = query_token(req) {
            user_of_token(&state.auth, &token).map_err(|e| PageError::login(req, e))?;
            let target = without_token(req);
            return Err(PageError::Redirect {
                to: target,
                cookie: Some(Box::new(session_cookie(req, token))),
            });
        }
        let user = user_of(req, state)?;
        let (csrf, new_csrf) = match req.cookie(CSRF_COOKIE) {
            Some(c) if valid_csrf(c.value()) => (c.value().to_owned(), false),
            _ => (new_csrf_token(), true),
        };
        Ok(Self {
            user,
            csrf,
            new_csrf,
            signed_in: matches!(state.auth, Auth::Jwt(_)),
        })
    }

    /// The caller of a form post whose CSRF field is `csrf`.
    ///
    /// # Errors
    /// 403 page when the field does not match the cookie; the login page
    /// without a valid session.
    pub(crate) fn check_post(
        req: &HttpRequest,
        state: &ApiState,
        csrf: Option<&str>,
    ) -> Result<User, PageError> {
        let cookie = req.cookie(CSRF_COOKIE);
        let matches = match (cookie.as_ref().map(Cookie::value), csrf) {
            (Some(c), Some(f)) => valid_csrf(c) && constant_time_eq(c, f),
            _ => false,
        };
        if !matches {
            return Err(PageError::status(
                actix_web::http::StatusCode::FORBIDDEN,
                "This form has expired or did not come from this site. Go back, reload the \
                 page and send it again.",
            ));
        }
        user_of(req, state)
    }

    /// What every page's layout needs.
    pub(crate) fn layout(&self, title: impl Into<String>) -> Layout {
        Layout {
            title: title.into(),
            csrf: self.csrf.clone(),
            signed_in: self.signed_in,
        }
    }

    /// A page: `template` rendered, with the security headers, and the CSRF
    /// cookie when this is the first page.
    pub(crate) fn page(&self, template: &impl Template) -> Result<HttpResponse, PageError> {
        let html = template.render().map_err(PageError::template)?;
        let mut response = html_response(actix_web::http::StatusCode::OK);
        if self.new_csrf {
            response.cookie(csrf_cookie(&self.csrf));
        }
        Ok(response.body(html))
    }
}

/// An HTML answer with the headers every page has.
pub(crate) fn html_response(status: actix_web::http::StatusCode) -> actix_web::HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Content-Security-Policy", super::CONTENT_SECURITY_POLICY))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "same-origin"));
    response
}

fn user_of(req: &HttpRequest, state: &ApiState) -> Result<User, PageError> {
    match &state.auth {
        Auth::Local => user_of_token(&state.auth, ""),
        Auth::Jwt(_) => {
            let cookie = req
                .cookie(SESSION_COOKIE)
                .ok_or_else(|| PageError::login(req, "Sign in to see this page."))?;
            user_of_token(&state.auth, cookie.value())
        }
    }
    .map_err(|e| PageError::login(req, e))
}

fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The request's path and query without its `token` parameter.
fn without_token(req: &HttpRequest) -> String {
    let rest: Vec<(String, String)> =
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| q.into_inner())
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "token")
            .collect();
    let query = serde_urlencoded::to_string(&rest).unwrap_or_default();
    if query.is_empty() {
        req.path().to_owned()
    } else {
        format!("{}?{query}", req.path())
    }
}

fn session_cookie(req: &HttpRequest, token: String) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(req.connection_info().scheme() == "https")
        .finish()
}

fn csrf_cookie(value: &str) -> Cookie<'static> {
    Cookie::build(CSRF_COOKIE, value.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish()
}

fn new_csrf_token() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn valid_csrf(token: &str) -> bool {
    token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Where to go after signing in: a path of this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_owned(),
        _ => "/".to_owned(),
    }
}

/// Query of the login page.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    error: Option<String>,
}

/// The login page: paste a token.
pub(crate) async fn login_page(
    req: HttpRequest,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, PageError> {
    let (csrf, new_csrf) = match req.cookie(CSRF_COOKIE) {
        Some(c) if valid_csrf(c.value()) => (c.value().to_owned(), false),
        _ => (new_csrf_token(), true),
    };
    let session = Session {
        user: User {
            id: uuid::Uuid::nil(),
            admin: false,
        },
        csrf,
        new_csrf,
        signed_in: false,
    };
    let query = query.into_inner();
    session.page(&LoginPage {
        layout: session.layout("Sign in"),
        next: safe_next(query.next.as_deref()),
        error: query.error.map(|e| e.chars().take(300).collect()),
    })
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: Option<String>,
    next: Option<String>,
    csrf: Option<String>,
}

/// Stores a pasted token in the session cookie and goes on to `next`.
pub(crate) async fn login(
    req: HttpRequest,
    state: web::Data<ApiState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let next = safe_next(form.next.as_deref());
    let cookie_ok = req
        .cookie(CSRF_COOKIE)
        .zip(form.csrf.as_deref())
        .is_some_and(|(c, f)| valid_csrf(c.value()) && constant_time_eq(c.value(), f));
    let retry = |message: String| PageError::Redirect {
        to: format!(
            "/login?{}",
            serde_urlencoded::to_string([("next", next.as_str()), ("error", message.as_str())])
                .unwrap_or_default()
        ),
        cookie: None,
    };
    if !cookie_ok {
        return Err(retry("The form expired; please sign in again.".into()));
    }
    let token = form.token.unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        return Err(retry("Paste your access token.".into()));
    }
    if let Err(e) = user_of_token(&state.auth, &token) {
        return Err(retry(e.to_string()));
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .cookie(session_cookie(&req, token))
        .finish())
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub(crate) struct LogoutForm {
    csrf: Option<String>,
}

/// Forgets the session cookie.
pub(crate) async fn logout(
    req: HttpRequest,
    state: web::Data<ApiState>,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, PageError> {
    let csrf = form.into_inner().csrf;
    // A bad CSRF token is refused; an expired session may still log out.
    match Session::check_post(&req, &state, csrf.as_deref()) {
        Ok(_) | Err(PageError::Redirect { .. }) => {}
        Err(e) => return Err(e),
    }
    let mut gone = session_cookie(&req, String::new());
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .cookie(gone)
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed_after_login() {
        assert_eq!(safe_next(Some("/courses/1")), "/courses/1");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", ""] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn csrf_tokens_are_random_hex_and_compared_whole() {
        let a = new_csrf_token();
        assert!(valid_csrf(&a));
        assert_ne!(a, new_csrf_token());
        assert!(constant_time_eq(&a, &a.clone()));
        assert!(!constant_time_eq(&a, &a[..31]));
        assert!(!valid_csrf("not-a-token"));
    }
}
