//! The web app at `/`: server-rendered pages (askama templates, checked at
//! compile time) over the same projections, commands and tenant rules as
//! the API, with a little progressive JavaScript (live progress, code
//! highlighting). Everything it serves is in the binary; no CDN.
//!
//! - [`session`]: who is looking (the token cookie, `?token=` once, the
//!   login page) and the CSRF token of every form.
//! - [`pages`]: the library, a course, a lesson.
//! - [`forms`]: the new-course form, delete / restore / retry, the quiz.
//! - [`elements`]: a lesson's interactive elements, its transcript and
//!   subtitle downloads.
//! - [`views`]: the templates and what they show.
//! - [`error`]: errors as HTML pages (another user's course is a 404 page).

mod elements;
mod error;
mod forms;
mod pages;
pub(crate) mod session;
mod views;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub(crate) use error::{not_found as not_found_page, PageError};

/// The stylesheet and the script, embedded in the binary.
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// What a page may load: only this origin's stylesheet and script, no
/// inline script, no framing. A script that slipped through the sanitiser
/// would still not run.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Registers the pages (before the API's routes, which keep `/api/v1`).
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").get(pages::library))
        .service(web::resource("/assets/app.css").get(css))
        .service(web::resource("/assets/app.js").get(js))
        .service(
            web::resource("/login")
                .get(session::login_page)
                .post(session::login),
        )
        .service(web::resource("/logout").post(session::logout))
        .service(
            web::resource("/courses/new")
                .get(forms::new_course)
                .post(forms::create_course),
        )
        .service(web::resource("/courses/{id}").get(pages::course))
        .service(web::resource("/courses/{id}/progress").get(pages::progress))
        .service(web::resource("/courses/{id}/delete").post(forms::delete))
        .service(web::resource("/courses/{id}/restore").post(forms::restore))
        .service(web::resource("/courses/{id}/retry").post(forms::retry))
        .service(web::resource("/courses/{id}/lessons/{n}").get(pages::lesson))
        .service(
            web::resource("/courses/{id}/lessons/{n}/subtitles.{ext}").get(elements::subtitle_file),
        )
        .service(web::resource("/courses/{id}/lessons/{n}/quiz").post(forms::check_quiz));
}

async fn css() -> HttpResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// Whether a path is the web app's (rather than the API's), for the
/// answer to a path nobody serves.
pub(crate) fn is_page_path(path: &str) -> bool {
    !(path.starts_with("/api/") || path == "/health" || path == "/metrics")
}
