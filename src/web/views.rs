//! The pages' templates (under `templates/`, checked when the crate
//! compiles) and the plain values they show: every text is escaped by the
//! template, except lesson HTML, which comes from [`crate::render::markdown`].

use askama::Template;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::CourseStatus;

/// What the layout around every page needs.
pub(crate) struct Layout {
    pub title: String,
    /// The CSRF token of the page's forms (the logout button's too).
    pub csrf: String,
    /// Whether a login is in use (shows the logout button).
    pub signed_in: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub layout: Layout,
    pub status: u16,
    pub heading: &'static str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub layout: Layout,
    pub next: String,
    pub error: Option<String>,
}

/// One course in the library.
pub(crate) struct CourseCard {
    pub url: String,
    pub title: String,
    pub topic: String,
    pub status: String,
    pub status_class: &'static str,
    pub lessons_generated: i32,
    pub total_lessons: i32,
    pub language: String,
    pub created: String,
}

/// One choice of a `<select>`.
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "library.html")]
pub(crate) struct LibraryPage {
    pub layout: Layout,
    pub items: Vec<CourseCard>,
    pub q: String,
    pub language: String,
    pub statuses: Vec<Choice>,
    /// Whether any filter is on (an empty result then means "no match").
    pub filtered: bool,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub error: Option<String>,
}

/// What the new-course form holds (as typed) and what is wrong with it.
#[derive(Default)]
pub(crate) struct CourseForm {
    pub topic: String,
    pub num_lessons: String,
    pub grade_level: String,
    pub language: String,
    pub source_filter: String,
    /// The field the error is about, and the API's message for it.
    pub error: Option<(String, String)>,
}

impl CourseForm {
    /// The error message of `field`, if the error is about it.
    pub(crate) fn error_of(&self, field: &str) -> Option<&str> {
        self.error
            .as_ref()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    /// The error message not about one of the form's fields.
    pub(crate) fn general_error(&self) -> Option<&str> {
        const FIELDS: [&str; 5] = [
            "topic",
            "num_lessons",
            "grade_level",
            "language",
            "source_filter",
        ];
        self.error
            .as_ref()
            .filter(|(f, _)| !FIELDS.contains(&f.as_str()))
            .map(|(_, m)| m.as_str())
    }
}

#[derive(Template)]
#[template(path = "new.html")]
pub(crate) struct NewCoursePage {
    pub layout: Layout,
    pub form: CourseForm,
}

/// One lesson of a course's outline.
pub(crate) struct LessonLine {
    pub number: i32,
    pub title: String,
    pub url: Option<String>,
    pub concepts: String,
}

/// One event of a course's history.
pub(crate) struct EventLine {
    pub version: i32,
    pub event_type: String,
    pub at: String,
    pub summary: String,
}

/// A source a course or lesson used.
pub(crate) struct SourceLine {
    pub anchor: String,
    pub title: String,
    /// Only `http(s)` links are kept.
    pub url: Option<String>,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "course.html")]
pub(crate) struct CoursePage {
    pub layout: Layout,
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub status_class: &'static str,
    /// Still generating: the page follows the progress stream.
    pub live: bool,
    pub failed: bool,
    pub deleted: bool,
    pub error: Option<String>,
    pub lessons_generated: i32,
    pub total_lessons: i32,
    pub lessons: Vec<LessonLine>,
    pub metadata: Vec<(String, String)>,
    pub sources: Vec<SourceLine>,
    pub tokens: (i64, i64, i64),
    pub events: Vec<EventLine>,
    /// A message after an action (deleted, restored, retried).
    pub notice: Option<String>,
}

/// One section of a lesson, for its navigation.
pub(crate) struct SectionLink {
    pub id: String,
    pub text: String,
    pub sub: bool,
}

/// One quiz question, and how it was answered when checked.
pub(crate) struct QuizQuestion {
    pub index: usize,
    pub question: String,
    pub options: Vec<QuizOption>,
    pub explanation: String,
    /// `Some(right)` once checked.
    pub verdict: Option<bool>,
    /// Whether an option was chosen (when checked).
    pub answered: bool,
}

/// One option of a quiz question.
pub(crate) struct QuizOption {
    pub index: usize,
    pub text: String,
    pub chosen: bool,
    pub correct: bool,
}

#[derive(Template)]
#[template(path = "lesson.html")]
pub(crate) struct LessonPage {
    pub layout: Layout,
    pub course_url: String,
    pub course_title: String,
    pub number: i32,
    pub title: String,
    pub objectives: Vec<String>,
    pub html: String,
    pub sections: Vec<SectionLink>,
    pub prev: Option<(String, String)>,
    pub next: Option<(String, String)>,
    pub quiz_url: String,
    pub quiz: Vec<QuizQuestion>,
    /// `(right, of)` once the quiz was checked.
    pub score: Option<(usize, usize)>,
    pub sources: Vec<SourceLine>,
}

/// The CSS class of a status badge.
pub(crate) fn status_class(status: CourseStatus) -> &'static str {
    match status {
        CourseStatus::Queued => "queued",
        CourseStatus::Generating => "generating",
        CourseStatus::Ready => "ready",
        CourseStatus::Failed => "failed",
    }
}

/// A time as pages show it.
pub(crate) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The sources of a course or lesson (a JSON array of objects with
/// `title`, `url` and, once sources land, `id`, `path`, `chunk`...).
pub(crate) fn sources(value: &Value) -> Vec<SourceLine> {
    let Some(items) = value.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let text = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_owned);
            let anchor = match s.get("id") {
                Some(Value::String(id))
                    if !id.is_empty()
                        && id.len() <= 64
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    id.clone()
                }
                Some(Value::String(id)) => crate::render::slug(id),
                Some(Value::Number(n)) => n.to_string(),
                _ => (i + 1).to_string(),
            };
            let title = text("title")
                .or_else(|| text("path"))
                .or_else(|| s.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("Source {}", i + 1));
            let url = text("url").filter(|u| {
                let lower = u.to_ascii_lowercase();
                lower.starts_with("https://") || lower.starts_with("http://")
            });
            let detail = ["path", "chunk_id", "version", "score"]
                .iter()
                .filter_map(|k| s.get(*k).filter(|v| !v.is_null()).map(|v| (k, v)))
                .filter(|(k, _)| !(**k == "path" && text("title").is_none()))
                .map(|(k, v)| match v {
                    Value::String(t) => format!("{k}: {t}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", ");
            SourceLine {
                anchor: format!("cite-{anchor}"),
                title,
                url,
                detail,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sources_keep_only_web_links_and_get_citation_anchors() {
        let lines = sources(&json!([
            { "title": "A textbook", "url": null },
            { "title": "Bad", "url": "javascript:alert(1)" },
            { "id": "S3", "path": "notes/cells.md", "url": "https://example.org/c" },
        ]));
        assert_eq!(lines[0].anchor, "cite-1");
        assert_eq!(lines[0].url, None);
        assert_eq!(lines[1].url, None);
        assert_eq!(lines[2].anchor, "cite-S3");
        assert_eq!(lines[2].title, "notes/cells.md");
        assert_eq!(lines[2].url.as_deref(), Some("https://example.org/c"));
    }
}
