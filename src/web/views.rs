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
    /// Each tag and the library filtered by it.
    pub tags: Vec<(String, String)>,
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
    pub tag: String,
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
    /// The folders of the user's source library, to pick the filter from.
    pub folders: Vec<Choice>,
    /// Live documents in the library (0: the form says how to add some).
    pub documents: i64,
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
    /// The citation id the lesson's text uses (`S3`), for a cited passage.
    pub label: Option<String>,
    pub title: String,
    /// Only `http(s)` links are kept.
    pub url: Option<String>,
    pub detail: String,
    /// The passage cited, as the document has it.
    pub passage: Option<String>,
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
    /// Each tag and the library filtered by it.
    pub tags: Vec<(String, String)>,
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
    /// The lesson's interactive elements, in its order.
    pub elements: Vec<ElementCard>,
    /// The narration's cues in the course's language (or the first track).
    pub transcript: Option<Transcript>,
}

/// One interactive element, as the lesson page shows it. Every text is
/// model output: the template escapes it, and the exercise's markdown
/// comes from [`crate::render::snippet`].
pub(crate) struct ElementCard {
    /// `element-1`, `element-2`, ...: the page's anchor (the element's own
    /// id is model output).
    pub anchor: String,
    /// The `kind` name (a CSS class and what the script checks by).
    pub kind: &'static str,
    pub heading: String,
    pub body: ElementView,
}

/// What an element holds, by kind.
pub(crate) enum ElementView {
    Code {
        language: String,
        code: String,
        caption: String,
        output: Option<String>,
    },
    Exercise {
        difficulty: String,
        prompt_html: String,
        hints_html: Vec<String>,
        solution_html: String,
    },
    /// Single or multiple choice, or true / false (two options).
    Choice {
        question: String,
        /// Each option's letter (`A`, ...; none for true / false) and text.
        options: Vec<(String, String)>,
        /// Checkboxes rather than radio buttons.
        multiple: bool,
        /// The correct options' indexes, comma-separated (for the script).
        answer: String,
        /// The correct options, as the answer reveal says them.
        answer_text: String,
        explanation: String,
    },
    ShortAnswer {
        question: String,
        /// The accepted answers as a JSON array (for the script).
        accepted_json: String,
        answer_text: String,
        explanation: String,
    },
}

/// A lesson's subtitles read as a transcript.
pub(crate) struct Transcript {
    pub language: String,
    pub cues: Vec<TranscriptCue>,
    /// Each track's language and its WebVTT and SRT file.
    pub downloads: Vec<(String, String, String)>,
}

/// One cue of a transcript.
pub(crate) struct TranscriptCue {
    /// `m:ss` (or `h:mm:ss`).
    pub at: String,
    /// ISO 8601 duration from the start, for `<time datetime>`.
    pub datetime: String,
    pub text: String,
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
            let cited = s.get("cited").filter(|c| c.is_object());
            let cited_text = |k: &str| {
                cited
                    .and_then(|c| c.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let label = cited_text("label").filter(|l| crate::domain::citations::is_label(l));
            let label_id = label.clone().map(Value::String);
            let anchor = match label_id.as_ref().or(s.get("id")) {
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
            let detail = match cited {
                Some(c) => match (cited_text("heading"), c.get("page").and_then(Value::as_u64)) {
                    (Some(h), _) if !h.is_empty() => format!("section {h}"),
                    (_, Some(p)) => format!("page {p}"),
                    _ => String::new(),
                },
                None => ["path", "chunk_id", "version", "score"]
                    .iter()
                    .filter_map(|k| s.get(*k).filter(|v| !v.is_null()).map(|v| (k, v)))
                    .filter(|(k, _)| !(**k == "path" && text("title").is_none()))
                    .map(|(k, v)| match v {
                        Value::String(t) => format!("{k}: {t}"),
                        other => format!("{k}: {other}"),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            SourceLine {
                anchor: format!("cite-{anchor}"),
                label,
                title,
                url,
                detail,
                passage: cited_text("passage").filter(|p| !p.trim().is_empty()),
            }
        })
        .collect()
}

/// A course's sources, one line per document however many of its passages
/// the lessons cite (in order of first citation).
pub(crate) fn documents(value: &Value) -> Vec<SourceLine> {
    let mut out: Vec<(SourceLine, usize)> = Vec::new();
    for line in sources(value) {
        match out
            .iter_mut()
            .find(|(l, _)| l.title == line.title && l.url == line.url)
        {
            Some((_, n)) => *n += 1,
            None => out.push((line, 1)),
        }
    }
    out.into_iter()
        .map(|(mut line, n)| {
            if line.label.is_some() {
                line.detail = match n {
                    1 => "1 passage cited".to_owned(),
                    n => format!("{n} passages cited"),
                };
                line.passage = None;
            }
            line
        })
        .collect()
}

/// Lesson markdown with each citation (`[S1]`, `[S1, S2]`) of a listed
/// source turned into links to it (`#cite-S1`); code blocks left as they are.
pub(crate) fn link_citations(md: &str, sources: &[SourceLine]) -> String {
    let listed = |id: &str| sources.iter().any(|s| s.label.as_deref() == Some(id));
    let mut out = String::with_capacity(md.len() + 256);
    let mut in_code = false;
    for line in md.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_code = !in_code;
        }
        if in_code || t.starts_with("```") || t.starts_with("~~~") || t.starts_with("    ") {
            out.push_str(line);
            continue;
        }
        out.push_str(&crate::domain::citations::replace(line, |ids| {
            let links: Vec<String> = ids
                .iter()
                .map(|id| {
                    if listed(id) {
                        format!("[\\[{id}\\]](#cite-{id})")
                    } else {
                        format!("\\[{id}\\]")
                    }
                })
                .collect();
            links.join(" ")
        }));
    }
    out
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

    fn cited(label: &str, path: &str, heading: &str) -> Value {
        json!({
            "title": format!("Notes ({path})"), "url": null,
            "cited": {"label": label, "path": path, "heading": heading,
                      "passage": format!("passage {label}"), "chunk_id": "c", "version": 1}
        })
    }

    #[test]
    fn cited_passages_are_anchored_by_label_and_a_course_lists_each_document_once() {
        let value = json!([
            cited("S1", "a.md", "Intro"),
            cited("S2", "a.md", "Cells"),
            cited("S3", "b.md", "")
        ]);
        let lines = sources(&value);
        assert_eq!(lines[1].anchor, "cite-S2");
        assert_eq!(lines[1].label.as_deref(), Some("S2"));
        assert_eq!(lines[1].detail, "section Cells");
        assert_eq!(lines[1].passage.as_deref(), Some("passage S2"));
        let docs = documents(&value);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].detail, "2 passages cited");
        assert_eq!(docs[1].detail, "1 passage cited");

        let md = "Cells divide. [S1, S2] Not [S9] nor [x].\n\n```\n[S1]\n```\n";
        let linked = link_citations(md, &lines);
        assert_eq!(
            linked,
            "Cells divide. [\\[S1\\]](#cite-S1) [\\[S2\\]](#cite-S2) Not \\[S9\\] nor [x].\n\n```\n[S1]\n```\n"
        );
        let html = crate::render::markdown(&linked).html;
        assert!(
            html.contains(r##"<a href="#cite-S1""##) && html.contains(">[S1]</a>"),
            "{html}"
        );
    }
}
