//! Validation of a course request, shared by every ingress (CLI, HTTP, AMQP),
//! and of the other free texts users send (a delete or retry [`Reason`]).
//!
//! A request has one JSON shape everywhere: [`RawCourseRequest::from_json`]
//! reads it and [`CourseRequest::parse`] checks it, so the AMQP consumer and
//! `POST /courses/generate` refuse the same body with the same message.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::events::CourseRequested;
use super::metadata::{
    parse_author, parse_difficulty, parse_list, parse_tags, CourseMetadata, MAX_LIST_ITEMS,
    MAX_TAGS, MAX_TAG_CHARS,
};

/// Lessons in a course when the request does not say.
pub const DEFAULT_NUM_LESSONS: u8 = 4;
const MAX_TOPIC_CHARS: usize = 200;
const MAX_GRADE_CHARS: usize = 50;
const MAX_SOURCE_FILTER_CHARS: usize = 200;
const MAX_LESSONS: i64 = 20;
const MAX_REASON_CHARS: usize = 500;
/// Most subtitle languages one request may ask for.
pub const MAX_SUBTITLE_LANGUAGES: usize = 10;

/// A request as it arrives on the wire (the AMQP message, the body of
/// `POST /courses/generate`), before validation.
///
/// Loose on purpose: numbers are `i64` and strings optional so that a bad
/// value yields a precise [`ValidationError`] instead of a generic decode
/// error. Fields it does not know are refused, on every ingress alike.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GenerateRequest)]
pub struct RawCourseRequest {
    /// Idempotency key (UUID): the same user and request id always mean the
    /// same course. Required over AMQP; generated over HTTP and the CLI when
    /// absent.
    #[schema(format = Uuid)]
    pub request_id: Option<String>,
    /// The owner (UUID). Over HTTP an admin may name any user; anyone else
    /// only themselves (another id is 403). Absent over HTTP: the caller.
    #[schema(format = Uuid)]
    pub user_id: Option<String>,
    /// What the course teaches (at most 200 characters, not blank, no
    /// control characters).
    #[schema(required = true, value_type = String, min_length = 1, max_length = 200,
             pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$")]
    pub topic: Option<String>,
    /// Audience, e.g. "Grade 8" (at most 50 characters).
    #[schema(max_length = 50)]
    pub grade_level: Option<String>,
    /// 1 to 20 (default 4).
    #[schema(minimum = 1, maximum = 20)]
    #[serde(default, deserialize_with = "integral")]
    pub num_lessons: Option<i64>,
    /// BCP-47 tag (default "en").
    pub language: Option<String>,
    /// Relative path prefix restricting the sources (at most 200 characters).
    #[schema(
        max_length = 200,
        pattern = r"^ *$|^([^./\\:\u0000-\u001f\u007f-\u009f][^/\\:\u0000-\u001f\u007f-\u009f]*|\.[^./\\:\u0000-\u001f\u007f-\u009f][^/\\:\u0000-\u001f\u007f-\u009f]*|\.\.[^/\\:\u0000-\u001f\u007f-\u009f]+|\.)([/\\]([^./\\:\u0000-\u001f\u007f-\u009f][^/\\:\u0000-\u001f\u007f-\u009f]*|\.[^./\\:\u0000-\u001f\u007f-\u009f][^/\\:\u0000-\u001f\u007f-\u009f]*|\.\.[^/\\:\u0000-\u001f\u007f-\u009f]+|\.|))*$"
    )]
    pub source_filter: Option<String>,
    /// Who the course is credited to (at most 100 characters).
    #[schema(max_length = 100)]
    pub author: Option<String>,
    /// At most 20 tags of at most 40 characters, normalised (lower case,
    /// spaces become `-`). Absent: the outline proposes some.
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
    /// beginner, intermediate or advanced. Absent: the outline proposes one.
    pub difficulty: Option<String>,
    /// What learners should know first (at most 20 items).
    #[schema(max_items = 20)]
    pub prerequisites: Option<Vec<String>>,
    /// What learners can do afterwards (at most 20 items). Absent: the
    /// outline proposes them.
    #[schema(max_items = 20)]
    pub learning_outcomes: Option<Vec<String>>,
    /// BCP-47 tags of languages to translate the subtitles into (at most 10;
    /// subtitles in `language` are always made).
    #[schema(max_items = 10)]
    pub subtitle_languages: Option<Vec<String>>,
}

impl RawCourseRequest {
    /// Reads a request from its JSON value, as every ingress does.
    ///
    /// # Errors
    /// [`ValidationError::NotAnObject`] for anything but an object,
    /// [`ValidationError::Shape`] for a field of the wrong type or an
    /// unknown field (serde's message, which names the field).
    pub fn from_json(value: Value) -> Result<Self, ValidationError> {
        if !value.is_object() {
            return Err(ValidationError::NotAnObject(json_kind(&value)));
        }
        serde_json::from_value(value).map_err(|e| ValidationError::Shape(e.to_string()))
    }
}

/// An optional integer, written `4` or `4.0` alike: JSON (and JSON
/// Schema's `integer`) does not tell them apart.
fn integral<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
            _ => Err(D::Error::custom(format!(
                "invalid number {n}, expected an integer"
            ))),
        },
    }
}

/// `a string`, `an array`, ...: what a JSON value is, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Why a request was refused; the message is meant for the requester.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("a request must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A field of the wrong type or an unknown field, in serde's words.
    #[error("{0}")]
    Shape(String),
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} must be a UUID, got {value:?}")]
    NotUuid { field: &'static str, value: String },
    #[error("topic must be 1 to {MAX_TOPIC_CHARS} characters after trimming, got {0}")]
    TopicLength(usize),
    #[error("num_lessons must be between 1 and {MAX_LESSONS}, got {0}")]
    NumLessons(i64),
    #[error("grade_level must be at most {MAX_GRADE_CHARS} characters, got {0}")]
    GradeLength(usize),
    #[error("language must be a BCP-47 tag such as \"en\" or \"pt-BR\", got {0:?}")]
    Language(String),
    #[error("source_filter must be a relative path prefix of at most {MAX_SOURCE_FILTER_CHARS} characters: {0}")]
    SourceFilter(&'static str),
    #[error("{field} must not contain control characters")]
    ControlCharacters { field: &'static str },
    #[error("reason must be at most {MAX_REASON_CHARS} characters, got {0}")]
    ReasonLength(usize),
    #[error("author must be at most 100 characters, got {0}")]
    AuthorLength(usize),
    #[error("at most {MAX_TAGS} tags are allowed, got {0}")]
    TooManyTags(usize),
    #[error("a tag must be at most {MAX_TAG_CHARS} characters, got {0:?}")]
    TagLength(String),
    #[error("difficulty must be beginner, intermediate or advanced, got {0:?}")]
    Difficulty(String),
    #[error("{field} may list at most {MAX_LIST_ITEMS} items, got {got}")]
    ListLength { field: &'static str, got: usize },
    #[error("each item of {field} must be at most 300 characters")]
    ItemLength { field: &'static str },
    #[error("{field} must not be empty: give the new list")]
    EmptyList { field: &'static str },
    #[error("at most {MAX_SUBTITLE_LANGUAGES} subtitle languages may be asked for, got {0}")]
    TooManyLanguages(usize),
    #[error("name at least one field to change: author, tags, language, difficulty, prerequisites or learning_outcomes")]
    NothingToChange,
}

impl ValidationError {
    /// The request field the error is about, if one: where a form shows it.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::NotAnObject(_) | Self::Shape(_) | Self::NothingToChange => None,
            Self::Missing { field }
            | Self::NotUuid { field, .. }
            | Self::ControlCharacters { field }
            | Self::ListLength { field, .. }
            | Self::ItemLength { field }
            | Self::EmptyList { field } => Some(field),
            Self::TopicLength(_) => Some("topic"),
            Self::NumLessons(_) => Some("num_lessons"),
            Self::GradeLength(_) => Some("grade_level"),
            Self::Language(_) => Some("language"),
            Self::SourceFilter(_) => Some("source_filter"),
            Self::ReasonLength(_) => Some("reason"),
            Self::AuthorLength(_) => Some("author"),
            Self::TooManyTags(_) | Self::TagLength(_) => Some("tags"),
            Self::Difficulty(_) => Some("difficulty"),
            Self::TooManyLanguages(_) => Some("subtitle_languages"),
        }
    }
}

/// A validated course request. Construct it with [`CourseRequest::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseRequest {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub topic: String,
    pub grade_level: Option<String>,
    pub num_lessons: u8,
    pub language: String,
    pub source_filter: Option<String>,
    /// Author, tags, difficulty, prerequisites, outcomes as requested.
    pub metadata: CourseMetadata,
    /// Canonical, distinct, without `language`.
    pub subtitle_languages: Vec<String>,
}

impl CourseRequest {
    /// Validates a raw request.
    ///
    /// # Errors
    /// The first rule the request breaks, as a [`ValidationError`].
    pub fn parse(raw: RawCourseRequest) -> Result<Self, ValidationError> {
        let request_id = parse_uuid("request_id", raw.request_id)?;
        let user_id = parse_uuid("user_id", raw.user_id)?;

        let topic = raw
            .topic
            .ok_or(ValidationError::Missing { field: "topic" })?;
        // Control characters are refused before trimming, so that a tab or
        // a newline at either end is refused like one inside.
        reject_control("topic", &topic)?;
        // Bounds count the text as sent, as the API document states them.
        let sent_chars = topic.chars().count();
        let topic = topic.trim().to_owned();
        if topic.is_empty() {
            return Err(ValidationError::TopicLength(0));
        }
        if sent_chars > MAX_TOPIC_CHARS {
            return Err(ValidationError::TopicLength(sent_chars));
        }

        let num_lessons = raw.num_lessons.unwrap_or(i64::from(DEFAULT_NUM_LESSONS));
        if !(1..=MAX_LESSONS).contains(&num_lessons) {
            return Err(ValidationError::NumLessons(num_lessons));
        }

        if let Some(grade) = &raw.grade_level {
            reject_control("grade_level", grade)?;
            let n = grade.chars().count();
            if n > MAX_GRADE_CHARS {
                return Err(ValidationError::GradeLength(n));
            }
        }
        let grade_level = non_blank(raw.grade_level);

        for (field, value) in [("language", &raw.language), ("difficulty", &raw.difficulty)] {
            if let Some(v) = value {
                reject_control(field, v)?;
            }
        }
        let language = match non_blank(raw.language) {
            None => "en".to_owned(),
            Some(tag) => parse_language(&tag)?,
        };

        // A prefix is compared as given, so it is not trimmed: spaces alone
        // are no filter, and anything else is checked as it is.
        let source_filter = raw.source_filter.filter(|f| !f.chars().all(|c| c == ' '));
        if let Some(filter) = &source_filter {
            check_source_filter(filter)?;
        }

        let metadata = CourseMetadata {
            author: parse_author(raw.author)?,
            tags: parse_tags(raw.tags.unwrap_or_default())?,
            difficulty: non_blank(raw.difficulty)
                .map(|d| parse_difficulty(&d))
                .transpose()?,
            prerequisites: parse_list("prerequisites", raw.prerequisites.unwrap_or_default())?,
            learning_outcomes: parse_list(
                "learning_outcomes",
                raw.learning_outcomes.unwrap_or_default(),
            )?,
        };

        let subtitle_languages = parse_languages(
            "subtitle_languages",
            raw.subtitle_languages.unwrap_or_default(),
            &language,
        )?;

        Ok(Self {
            request_id,
            user_id,
            topic,
            grade_level,
            num_lessons: num_lessons as u8,
            language,
            source_filter,
            metadata,
            subtitle_languages,
        })
    }

    /// The event recording this request.
    pub fn into_event(self) -> CourseRequested {
        CourseRequested {
            request_id: self.request_id,
            user_id: self.user_id,
            topic: self.topic,
            grade_level: self.grade_level,
            num_lessons: self.num_lessons,
            language: self.language,
            source_filter: self.source_filter,
            metadata: self.metadata,
            subtitle_languages: self.subtitle_languages,
        }
    }
}

/// Why a course is deleted or retried, kept in its history: a checked text
/// like every other a user sends. Construct it with [`Reason::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// A reason from what the user typed: trimmed, blank means none.
    ///
    /// # Errors
    /// More than 500 characters, or control characters (NUL included).
    pub fn parse(text: Option<String>) -> Result<Option<Self>, ValidationError> {
        if let Some(t) = &text {
            reject_control("reason", t)?;
        }
        let Some(text) = non_blank(text) else {
            return Ok(None);
        };
        let n = text.chars().count();
        if n > MAX_REASON_CHARS {
            return Err(ValidationError::ReasonLength(n));
        }
        Ok(Some(Self(text)))
    }

    /// The text, as the event stores it.
    pub fn into_inner(self) -> String {
        self.0
    }
}

fn parse_uuid(field: &'static str, value: Option<String>) -> Result<Uuid, ValidationError> {
    let value = value.ok_or(ValidationError::Missing { field })?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::Missing { field });
    }
    Uuid::parse_str(trimmed).map_err(|_| ValidationError::NotUuid {
        field,
        value: value.chars().take(64).collect(),
    })
}

fn non_blank(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(super) fn reject_control(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.chars().any(char::is_control) {
        return Err(ValidationError::ControlCharacters { field });
    }
    Ok(())
}

/// Canonical form of a BCP-47 tag (`pt-br` becomes `pt-BR`).
pub(super) fn parse_language(tag: &str) -> Result<String, ValidationError> {
    let bad = || ValidationError::Language(tag.chars().take(40).collect());
    if tag.len() > 35 {
        return Err(bad());
    }
    let parsed = language_tags::LanguageTag::parse(tag).map_err(|_| bad())?;
    parsed.validate().map_err(|_| bad())?;
    Ok(parsed.canonicalize().map_err(|_| bad())?.to_string())
}

/// Subtitle languages: each a BCP-47 tag, canonical, repeats and `source`
/// dropped, at most [`MAX_SUBTITLE_LANGUAGES`].
///
/// `field` names the list in an error (`subtitle_languages` in a course
/// request, `languages` in a request for more subtitles).
///
/// # Errors
/// A tag with a control character (refused before blanks are trimmed, as in
/// every other text field); a tag that is not BCP-47; too many.
pub fn parse_languages(
    field: &'static str,
    tags: Vec<String>,
    source: &str,
) -> Result<Vec<String>, ValidationError> {
    // The list as sent is bounded (as the API documents it), repeats included.
    if tags.len() > MAX_SUBTITLE_LANGUAGES {
        return Err(ValidationError::TooManyLanguages(tags.len()));
    }
    let mut out: Vec<String> = Vec::new();
    for tag in tags {
        reject_control(field, &tag)?;
        let Some(tag) = non_blank(Some(tag)) else {
            continue;
        };
        let tag = parse_language(&tag)?;
        if tag != source && !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_SUBTITLE_LANGUAGES {
        return Err(ValidationError::TooManyLanguages(out.len()));
    }
    Ok(out)
}

fn check_source_filter(filter: &str) -> Result<(), ValidationError> {
    if filter.chars().count() > MAX_SOURCE_FILTER_CHARS {
        return Err(ValidationError::SourceFilter("too long"));
    }
    if filter.chars().any(char::is_control) {
        return Err(ValidationError::SourceFilter("control characters"));
    }
    if filter.starts_with('/') || filter.starts_with('\\') || filter.contains(':') {
        return Err(ValidationError::SourceFilter(
            "absolute paths are not allowed",
        ));
    }
    if filter.split(['/', '\\']).any(|part| part == "..") {
        return Err(ValidationError::SourceFilter("\"..\" is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_naming_the_field() {
        let err = RawCourseRequest::from_json(json!({"topic": "x", "owner": "me"})).unwrap_err();
        assert!(err.to_string().contains("unknown field `owner`"), "{err}");
        let err = RawCourseRequest::from_json(json!({"num_lessons": "four"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        let err = RawCourseRequest::from_json(json!([1])).unwrap_err();
        assert_eq!(err, ValidationError::NotAnObject("an array"));
    }

    #[test]
    fn every_field_of_the_amqp_request_is_read() {
        let raw = RawCourseRequest::from_json(json!({
            "request_id": "r", "user_id": "u", "topic": "t", "grade_level": "g",
            "num_lessons": 3, "source_filter": "s/", "language": "de", "author": "Ada",
            "tags": ["X"], "difficulty": "advanced", "prerequisites": ["p"],
            "learning_outcomes": ["o"]
        }))
        .unwrap();
        assert_eq!(raw.user_id.as_deref(), Some("u"));
        assert_eq!(raw.num_lessons, Some(3));
        assert_eq!(raw.tags, Some(vec!["X".to_owned()]));
        assert_eq!(raw.learning_outcomes, Some(vec!["o".to_owned()]));
    }

    #[test]
    fn a_reason_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(Reason::parse(None), Ok(None));
        assert_eq!(Reason::parse(Some("   ".into())), Ok(None));
        let reason = Reason::parse(Some("  spam ".into())).unwrap().unwrap();
        assert_eq!(reason.into_inner(), "spam");
        assert!(Reason::parse(Some("é".repeat(500))).unwrap().is_some());
        assert_eq!(
            Reason::parse(Some("é".repeat(501))),
            Err(ValidationError::ReasonLength(501))
        );
        for bad in ["a\u{0}b", "line\nbreak", "esc\u{1b}[31m"] {
            assert_eq!(
                Reason::parse(Some(bad.into())),
                Err(ValidationError::ControlCharacters { field: "reason" }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_subtitle_language_with_a_control_character_is_refused_not_trimmed() {
        let err = parse_languages("languages", vec!["\tfr".to_owned()], "en").unwrap_err();
        assert_eq!(
            err,
            ValidationError::ControlCharacters { field: "languages" }
        );
        let err = CourseRequest::parse(
            RawCourseRequest::from_json(json!({
                "request_id": "6f1c2a52-2c3e-4f54-9b0e-3f8d2f4a9c11",
                "user_id": "00000000-0000-4000-8000-000000000001", "topic": "t",
                "subtitle_languages": ["de", "fr\n"]
            }))
            .unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("subtitle_languages"));
        // Blanks are still only skipped, and spaces trimmed.
        assert_eq!(
            parse_languages("languages", vec![" ".into(), " fr ".into()], "en").unwrap(),
            ["fr"]
        );
    }
}
