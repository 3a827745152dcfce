//! The forms: a new course (checked by the domain's request rules, so its
//! messages are the API's), delete / restore / retry, and a lesson's quiz.
//! Every post carries the CSRF token ([`Session::check_post`]).

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::pages::{course_id, lesson_page};
use super::session::Session;
use super::views::{Choice, CourseForm, NewCoursePage};
use super::PageError;
use crate::domain::{Command, CourseRequest, RawCourseRequest, Reason, ValidationError};
use crate::ingress::http::courses::handlers::{command, submit};
use crate::ingress::http::{ApiError, ApiState};
use crate::projections::sources::queries as sources;

/// `/courses/new`: the empty form.
pub(crate) async fn new_course(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, PageError> {
    let session = Session::begin(&req, &state)?;
    let form = CourseForm {
        num_lessons: crate::domain::DEFAULT_NUM_LESSONS.to_string(),
        ..CourseForm::default()
    };
    let page = new_course_page(&state, &session, form).await?;
    session.page(&page)
}

/// The form with the user's source folders to pick the filter from (and
/// the value sent, when it is none of them: it stays as it was sent).
async fn new_course_page(
    state: &ApiState,
    session: &Session,
    form: CourseForm,
) -> Result<NewCoursePage, PageError> {
    let (prefixes, documents) = sources::prefixes(state.store.pool(), session.user.id)
        .await
        .map_err(ApiError::from)?;
    let chosen = form.source_filter.trim().to_owned();
    let mut folders: Vec<Choice> = prefixes
        .into_iter()
        .map(|p| Choice {
            selected: p.prefix == chosen,
            label: format!(
                "{} ({} document{})",
                p.prefix,
                p.documents,
                if p.documents == 1 { "" } else { "s" }
            ),
            value: p.prefix,
        })
        .collect();
    if !chosen.is_empty() && !folders.iter().any(|c| c.selected) {
        folders.push(Choice {
            value: chosen.clone(),
            label: chosen,
            selected: true,
        });
    }
    Ok(NewCoursePage {
        layout: session.layout("New course"),
        form,
        folders,
        documents,
    })
}

/// What the new-course form sends (every field as typed).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NewCourseForm {
    topic: Option<String>,
    num_lessons: Option<String>,
    grade_level: Option<String>,
    language: Option<String>,
    source_filter: Option<String>,
    csrf: Option<String>,
}

impl NewCourseForm {
    /// The request's JSON, as an API client would send it: blank fields
    /// left out, the lesson count a number when it is one (otherwise the
    /// text, which the request's reader refuses as the API does).
    fn to_json(&self) -> Value {
        let mut body = Map::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.trim().is_empty()) {
                body.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        };
        put("topic", &self.topic);
        put("grade_level", &self.grade_level);
        put("language", &self.language);
        put("source_filter", &self.source_filter);
        if let Some(n) = self.num_lessons.as_deref().map(str::trim) {
            match n.parse::<i64>() {
                Ok(n) => {
                    body.insert("num_lessons".into(), n.into());
                }
                Err(_) if n.is_empty() => {}
                Err(_) => {
                    body.insert("num_lessons".into(), Value::String(n.to_owned()));
                }
            }
        }
        Value::Object(body)
    }

    fn into_form(self, error: Option<(String, String)>) -> CourseForm {
        CourseForm {
            topic: self.topic.unwrap_or_default(),
            num_lessons: self.num_lessons.unwrap_or_default(),
            grade_level: self.grade_level.unwrap_or_default(),
            language: self.language.unwrap_or_default(),
            source_filter: self.source_filter.unwrap_or_default(),
            error,
        }
    }
}

/// The field a refusal is about; a shape error can only be the lesson
/// count, the one field that is not text.
fn field_of(e: &ValidationError) -> &'static str {
    match e {
        ValidationError::Shape(_) => "num_lessons",
        other => other.field().unwrap_or("form"),
    }
}

/// Requests the course and goes to its page; a refused request shows the
/// form again with the API's message beside the field it is about.
pub(crate) async fn create_course(
    req: HttpRequest,
    state: web::Data<ApiState>,
    form: web::Form<NewCourseForm>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let user = Session::check_post(&req, &state, form.csrf.as_deref())?;
    let checked = RawCourseRequest::from_json(form.to_json()).and_then(|mut raw| {
        raw.user_id = Some(user.id.to_string());
        raw.request_id = Some(Uuid::new_v4().to_string());
        CourseRequest::parse(raw.clone()).map(|_| raw)
    });
    let raw = match checked {
        Ok(raw) => raw,
        Err(e) => {
            let session = Session::begin(&req, &state)?;
            let field = field_of(&e).to_owned();
            let form = form.into_form(Some((field, e.to_string())));
            let page = new_course_page(&state, &session, form).await?;
            let mut response = session.page(&page)?;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            return Ok(response);
        }
    };
    let (view, _) = submit(&state, &user, raw).await?;
    Ok(see_other(&format!(
        "/courses/{}?done=created",
        view.course_id
    )))
}

/// The form of an action on a course.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ActionForm {
    csrf: Option<String>,
    reason: Option<String>,
}

/// Deletes the course (soft), then shows its page with Restore.
pub(crate) async fn delete(
    req: HttpRequest,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, PageError> {
    act(req, state, id, form, "deleted", |reason| Command::Delete {
        reason,
    })
    .await
}

/// Restores a deleted course.
pub(crate) async fn restore(
    req: HttpRequest,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, PageError> {
    act(req, state, id, form, "restored", |_| Command::Restore).await
}

/// Retries a failed course.
pub(crate) async fn retry(
    req: HttpRequest,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, PageError> {
    act(req, state, id, form, "retried", |reason| Command::Retry {
        reason,
    })
    .await
}

/// Runs a course command as the API does, then back to the course page.
async fn act(
    req: HttpRequest,
    state: web::Data<ApiState>,
    id: web::Path<String>,
    form: web::Form<ActionForm>,
    done: &str,
    make: impl Fn(Option<Reason>) -> Command,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    let user = Session::check_post(&req, &state, form.csrf.as_deref())?;
    let id = course_id(&id)?;
    let reason = Reason::parse(form.reason)
        .map_err(|e| PageError::status(StatusCode::BAD_REQUEST, e.to_string()))?;
    command(&state, &user, id, || make(reason.clone())).await?;
    Ok(see_other(&format!("/courses/{id}?done={done}")))
}

/// Checks the quiz (fields `q0`, `q1`, ...: the chosen option's index) and
/// shows the lesson with each answer marked and explained.
pub(crate) async fn check_quiz(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
    form: web::Form<HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    let form = form.into_inner();
    Session::check_post(&req, &state, form.get("csrf").map(String::as_str))?;
    let session = Session::begin(&req, &state)?;
    let answers: Vec<Option<usize>> = (0..50)
        .map(|i| form.get(&format!("q{i}")).and_then(|a| a.parse().ok()))
        .collect();
    let (id, n) = path.into_inner();
    let page = lesson_page(&state, &session, &id, &n, Some(&answers)).await?;
    session.page(&page)
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(form: NewCourseForm) -> (String, String) {
        let e = RawCourseRequest::from_json(form.to_json())
            .and_then(|mut raw| {
                raw.user_id = Some(Uuid::nil().to_string());
                raw.request_id = Some(Uuid::nil().to_string());
                CourseRequest::parse(raw)
            })
            .unwrap_err();
        (field_of(&e).to_owned(), e.to_string())
    }

    #[test]
    fn the_form_is_refused_with_the_api_messages_beside_the_field() {
        let (field, message) = refusal(NewCourseForm {
            topic: Some("Cells".into()),
            num_lessons: Some("30".into()),
            ..NewCourseForm::default()
        });
        assert_eq!(field, "num_lessons");
        assert_eq!(message, "num_lessons must be between 1 and 20, got 30");
        let (field, message) = refusal(NewCourseForm::default());
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("topic", "topic is required")
        );
        let (field, _) = refusal(NewCourseForm {
            topic: Some("Cells".into()),
            num_lessons: Some("many".into()),
            ..NewCourseForm::default()
        });
        assert_eq!(field, "num_lessons");
        let (field, _) = refusal(NewCourseForm {
            topic: Some("Cells".into()),
            language: Some("not a tag!".into()),
            ..NewCourseForm::default()
        });
        assert_eq!(field, "language");
    }
}
