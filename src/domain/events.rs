//! The events of a course stream. Their `event_type` strings are stored
//! forever: never rename one; bump its `event_version` and upcast instead.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::elements::InteractiveElement;
use super::metadata::{CourseMetadata, Difficulty, MetadataChange};
use super::subtitles::Cue;

/// Tokens an LLM call (or a sum of calls) used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// The counts are an estimate (from the text's length): the server
    /// reported none. Absent in payloads when false, so events written
    /// before the field existed read as counted, and counted ones are
    /// stored as before (no new `event_version`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl std::ops::Add for TokenUsage {
    type Output = Self;
    /// A sum is estimated when any of its parts is.
    fn add(self, o: Self) -> Self {
        Self {
            prompt_tokens: self.prompt_tokens + o.prompt_tokens,
            completion_tokens: self.completion_tokens + o.completion_tokens,
            total_tokens: self.total_tokens + o.total_tokens,
            estimated: self.estimated || o.estimated,
        }
    }
}

/// A course was asked for. Status after: QUEUED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseRequested {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub topic: String,
    pub grade_level: Option<String>,
    pub num_lessons: u8,
    pub language: String,
    pub source_filter: Option<String>,
    /// Metadata the request gave (absent fields are not stored).
    #[serde(flatten)]
    pub metadata: CourseMetadata,
    /// Languages to translate the subtitles into, besides `language`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtitle_languages: Vec<String>,
}

/// A worker began (or resumed) generating. Status after: GENERATING.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationStarted {
    /// 1 for the first attempt, +1 after each retry.
    pub attempt: u32,
    pub model: String,
}

/// One planned lesson of the outline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonPlan {
    pub number: u32,
    pub title: String,
    #[serde(default)]
    pub concepts: Vec<String>,
    #[serde(default)]
    pub objectives: Vec<String>,
}

/// The course outline came back from the model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlineGenerated {
    pub title: String,
    pub description: String,
    pub lessons: Vec<LessonPlan>,
    pub model: String,
    #[serde(default)]
    pub usage: TokenUsage,
    /// Proposed tags, normalised; used where the request gave none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Proposed difficulty; used where the request gave none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Difficulty>,
    /// Proposed learning outcomes of the whole course; used where the
    /// request gave none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learning_outcomes: Vec<String>,
    /// The library chunks retrieved for the topic (none: not grounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retrieved: Vec<Retrieved>,
}

/// A titled section of a lesson, the structured twin of its markdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonSection {
    pub heading: String,
    pub body: String,
}

/// A multiple-choice question checking a lesson.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuizQuestion {
    pub question: String,
    pub options: Vec<String>,
    /// Index into `options` of the correct answer.
    pub answer_index: u32,
    pub explanation: String,
}

/// A source a lesson cites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub title: String,
    #[serde(default)]
    pub url: Option<String>,
    /// The library chunk cited, when the lesson was grounded in the user's
    /// documents: a fact of retrieval, not a claim of the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cited: Option<Citation>,
}

/// A retrieved chunk a lesson cites as `[S1]`, `[S2]`, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citation {
    /// `S1`, `S2`, ... as cited inline.
    pub label: String,
    pub source_id: Uuid,
    /// The document version cited (its chunks stay after newer versions).
    pub version: u32,
    pub chunk_id: Uuid,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// The heading path, joined by ` > `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading: Option<String>,
    /// The passage cited.
    pub passage: String,
}

/// What retrieval returned for a step, as the step's event records it: the
/// history shows exactly what the model saw, and an audit never searches again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retrieved {
    pub label: String,
    pub chunk_id: Uuid,
    pub source_id: Uuid,
    pub version: u32,
    /// `ts_rank_cd`, in millionths (an integer keeps events comparable).
    pub score_micros: u64,
}

/// One lesson came back from the model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonGenerated {
    pub number: u32,
    pub title: String,
    pub content_md: String,
    #[serde(default)]
    pub sections: Vec<LessonSection>,
    #[serde(default)]
    pub quiz: Vec<QuizQuestion>,
    #[serde(default)]
    pub sources: Vec<SourceRef>,
    pub model: String,
    #[serde(default)]
    pub usage: TokenUsage,
    /// Reading plus exercise time (see `lesson_minutes`); 0 in lessons
    /// recorded before it was estimated.
    #[serde(default)]
    pub estimated_minutes: u32,
    /// Code blocks, exercises and quizzes, structured (v3 on; the upcaster
    /// gives older lessons none).
    #[serde(default)]
    pub elements: Vec<InteractiveElement>,
    /// The library chunks retrieved for this lesson (none: not grounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retrieved: Vec<Retrieved>,
}

/// Every lesson is in. Status after: READY.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseCompleted {
    pub total_lessons: u32,
    pub usage: TokenUsage,
}

/// Generation stopped on an error. Status after: FAILED.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseFailed {
    /// `"outline"`, `"lesson 3"`, `"completion"`, ...
    pub step: String,
    pub error: String,
    /// Whether a retry may succeed (a timeout may, a rejected API key will not).
    pub retryable: bool,
}

/// A failed course was re-opened. Status after: QUEUED; steps already in the
/// log are kept and generation resumes at the first missing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationRetried {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Soft delete: gone from lists, still in history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourseDeleted {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Someone edited the course's metadata: the fields present are the new
/// values (the event's metadata says who).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CourseMetadataChanged {
    #[serde(flatten)]
    pub change: MetadataChange,
}

/// A lesson's subtitles in one language: in the course's language from its
/// narration script (no model call), in another translated by the model cue
/// by cue with the same timings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubtitlesGenerated {
    pub lesson: u32,
    pub language: String,
    pub cues: Vec<Cue>,
    /// The model that translated them (none for the course's language).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default)]
    pub usage: TokenUsage,
}

/// Subtitles in more languages were asked for (the request's
/// `subtitle_languages` need no such event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubtitlesRequested {
    pub languages: Vec<String>,
}

/// Translating a lesson's subtitles into a language failed: that language
/// stops (the course does not fail); asking for it again resumes it at the
/// lesson that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubtitlesFailed {
    pub lesson: u32,
    pub language: String,
    pub error: String,
    pub retryable: bool,
}

/// Every subtitle asked for after the course was READY is in (or failed):
/// the course leaves the work queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SubtitlesCompleted {
    pub languages: Vec<String>,
}

/// Undo of a soft delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CourseRestored {}

/// Any event of a course stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CourseEvent {
    CourseRequested(CourseRequested),
    GenerationStarted(GenerationStarted),
    OutlineGenerated(OutlineGenerated),
    LessonGenerated(LessonGenerated),
    CourseCompleted(CourseCompleted),
    CourseFailed(CourseFailed),
    GenerationRetried(GenerationRetried),
    CourseDeleted(CourseDeleted),
    CourseRestored(CourseRestored),
    CourseMetadataChanged(CourseMetadataChanged),
    SubtitlesGenerated(SubtitlesGenerated),
    SubtitlesRequested(SubtitlesRequested),
    SubtitlesFailed(SubtitlesFailed),
    SubtitlesCompleted(SubtitlesCompleted),
}

/// A stored event could not be read as a [`CourseEvent`].
#[derive(Debug, thiserror::Error)]
pub enum UpcastError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{event_type} has event_version {version}, newer than this build understands")]
    FutureVersion { event_type: String, version: i16 },
    #[error("{event_type} v{version} payload does not decode: {source}")]
    Payload {
        event_type: String,
        version: i16,
        source: serde_json::Error,
    },
}

macro_rules! event_kinds {
    ($($name:ident => $version:expr),* $(,)?) => {
        impl CourseEvent {
            /// The stored `event_type` string.
            pub(crate) fn event_type(&self) -> &'static str {
                match self { $(Self::$name(_) => stringify!($name),)* }
            }

            /// The schema version this build writes for this event type.
            pub(crate) fn event_version(&self) -> i16 {
                match self { $(Self::$name(_) => $version,)* }
            }

            /// The payload as stored in `events.payload`.
            pub(crate) fn payload(&self) -> Value {
                let value = match self { $(Self::$name(e) => serde_json::to_value(e),)* };
                value.expect("course events serialize to JSON")
            }

            /// Reads a stored event, upcasting older payload versions first.
            ///
            /// # Errors
            /// Unknown types, versions newer than this build, payloads that do not decode.
            pub(crate) fn from_stored(event_type: &str, version: i16, payload: Value) -> Result<Self, UpcastError> {
                let current = match event_type {
                    $(stringify!($name) => $version,)*
                    other => return Err(UpcastError::UnknownType(other.to_owned())),
                };
                if version > current {
                    return Err(UpcastError::FutureVersion { event_type: event_type.to_owned(), version });
                }
                let payload = upcast(event_type, version, payload);
                let err = |source| UpcastError::Payload { event_type: event_type.to_owned(), version, source };
                Ok(match event_type {
                    $(stringify!($name) => Self::$name(serde_json::from_value(payload).map_err(err)?),)*
                    _ => unreachable!("checked above"),
                })
            }
        }
    };
}

event_kinds! {
    CourseRequested => 1,
    GenerationStarted => 1,
    OutlineGenerated => 1,
    LessonGenerated => 3,
    CourseCompleted => 1,
    CourseFailed => 1,
    GenerationRetried => 1,
    CourseDeleted => 1,
    CourseRestored => 1,
    CourseMetadataChanged => 1,
    SubtitlesGenerated => 1,
    SubtitlesRequested => 1,
    SubtitlesFailed => 1,
    SubtitlesCompleted => 1,
}

/// Maps an older payload to the current shape of its event type, one version
/// step at a time. The only place that knows old shapes.
fn upcast(event_type: &str, mut version: i16, mut payload: Value) -> Value {
    while let Some(next) = upcast_step(event_type, version, &mut payload) {
        version = next;
    }
    payload
}

fn upcast_step(event_type: &str, version: i16, payload: &mut Value) -> Option<i16> {
    match (event_type, version) {
        // v1 of LessonGenerated (the predecessor's shape) called the markdown
        // `content`, the quiz `questions` with a `correct` index, and had no model.
        ("LessonGenerated", 1) => {
            if let Some(obj) = payload.as_object_mut() {
                if let Some(content) = obj.remove("content") {
                    obj.entry("content_md").or_insert(content);
                }
                if let Some(Value::Array(mut questions)) = obj.remove("questions") {
                    for q in questions.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(correct) = q.remove("correct") {
                            q.entry("answer_index").or_insert(correct);
                        }
                        q.entry("explanation")
                            .or_insert_with(|| Value::String(String::new()));
                    }
                    obj.entry("quiz").or_insert(Value::Array(questions));
                }
                obj.entry("model")
                    .or_insert_with(|| Value::String("unknown".into()));
            }
            Some(2)
        }
        // v3 added the interactive elements: a v2 lesson has none.
        ("LessonGenerated", 2) => {
            if let Some(obj) = payload.as_object_mut() {
                obj.entry("elements")
                    .or_insert_with(|| Value::Array(Vec::new()));
            }
            Some(3)
        }
        _ => None,
    }
}

macro_rules! from_payload {
    ($($name:ident),*) => {$(
        impl From<$name> for CourseEvent {
            fn from(e: $name) -> Self { Self::$name(e) }
        }
    )*};
}
from_payload!(
    CourseRequested,
    GenerationStarted,
    OutlineGenerated,
    LessonGenerated,
    CourseCompleted,
    CourseFailed,
    GenerationRetried,
    CourseDeleted,
    CourseRestored,
    CourseMetadataChanged,
    SubtitlesGenerated,
    SubtitlesRequested,
    SubtitlesFailed,
    SubtitlesCompleted
);
