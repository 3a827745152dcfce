//! The whole course as every export format reads it, loaded from the
//! `courses` read model in one place.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::subtitles::Cue;
use crate::domain::{CourseStatus, Difficulty, InteractiveElement, LessonSection, QuizQuestion};
use crate::projections::courses::queries::{self, CourseRecord};

/// A course with everything generated for it: what `course.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CourseExport {
    pub id: Uuid,
    pub user_id: Uuid,
    pub title: String,
    pub description: String,
    /// Unique among courses: the name of the backup directory and of downloads.
    pub slug: String,
    pub topic: String,
    pub grade_level: Option<String>,
    pub language: String,
    pub status: CourseStatus,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub difficulty: Option<Difficulty>,
    pub prerequisites: Vec<String>,
    pub learning_outcomes: Vec<String>,
    pub estimated_minutes: i32,
    pub model: Option<String>,
    pub total_tokens: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub generated_at: Option<DateTime<Utc>>,
    /// Set on a soft-deleted course.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Every source the lessons cite, first citation first.
    pub sources: Vec<Value>,
    /// The outline and the lessons, in order.
    pub lessons: Vec<LessonExport>,
}

/// One lesson: its place in the outline and what was generated for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LessonExport {
    pub number: i32,
    pub title: String,
    pub concepts: Vec<String>,
    pub objectives: Vec<String>,
    /// The lesson's markdown, whole (empty while not generated).
    pub content_md: String,
    pub sections: Vec<LessonSection>,
    pub quiz: Vec<QuizQuestion>,
    pub elements: Vec<InteractiveElement>,
    pub sources: Vec<Value>,
    pub model: Option<String>,
    /// The narration's timed cues by language (`start_ms`, `end_ms`, `text`).
    pub subtitles: BTreeMap<String, Vec<Cue>>,
}

impl LessonExport {
    /// `NN-<lesson-slug>`: the stem of the lesson's file in every package,
    /// unique within the course because of the number.
    pub fn file_stem(&self) -> String {
        format!("{:02}-{}", self.number, crate::render::slug(&self.title))
    }
}

/// Why a course could not be loaded for export.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// A stored JSON column is not what the events record (a bug or a
    /// hand-edited table).
    #[error("course {course} lesson {lesson}: stored {what} do not read: {error}")]
    Corrupt {
        course: Uuid,
        lesson: i32,
        what: &'static str,
        error: String,
    },
}

fn parse<T: serde::de::DeserializeOwned>(
    course: Uuid,
    lesson: i32,
    what: &'static str,
    value: Value,
) -> Result<T, LoadError> {
    serde_json::from_value(value).map_err(|e| LoadError::Corrupt {
        course,
        lesson,
        what,
        error: e.to_string(),
    })
}

/// Loads course `id` with all its lessons (deleted ones too: callers decide).
///
/// # Errors
/// Database errors, and stored JSON that does not read as the events' types.
pub async fn load(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<Option<CourseExport>, LoadError> {
    let Some(record) = queries::course(client, id).await? else {
        return Ok(None);
    };
    load_lessons(client, record).await.map(Some)
}

async fn load_lessons(
    client: &deadpool_postgres::Client,
    record: CourseRecord,
) -> Result<CourseExport, LoadError> {
    let id = record.id;
    let ((lessons_rows, element_rows), track_rows) = futures::try_join!(
        queries::lessons_with_elements(client, id),
        queries::subtitle_tracks(client, id)
    )?;
    let mut tracks: BTreeMap<i32, BTreeMap<String, Vec<Cue>>> = BTreeMap::new();
    for (n, language, cues) in track_rows {
        let cues = parse(id, n, "subtitles", cues)?;
        tracks.entry(n).or_default().insert(language, cues);
    }
    let mut elements: BTreeMap<i32, Vec<InteractiveElement>> = BTreeMap::new();
    for (n, body) in element_rows {
        let element = parse(id, n, "interactive elements", body)?;
        elements.entry(n).or_default().push(element);
    }
    let mut lessons = Vec::with_capacity(lessons_rows.len());
    for lesson in lessons_rows {
        let n = lesson.entry.number;
        lessons.push(LessonExport {
            number: n,
            title: lesson.entry.title,
            concepts: lesson.entry.concepts,
            objectives: lesson.entry.objectives,
            content_md: lesson.content_md.unwrap_or_default(),
            sections: match lesson.sections {
                Some(v) => parse(id, n, "sections", v)?,
                None => Vec::new(),
            },
            quiz: parse(id, n, "quiz", lesson.checks)?,
            elements: elements.remove(&n).unwrap_or_default(),
            sources: match lesson.sources {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            },
            model: lesson.model,
            subtitles: tracks.remove(&n).unwrap_or_default(),
        });
    }
    Ok(CourseExport {
        id,
        user_id: record.user_id,
        title: record.title.unwrap_or_else(|| record.topic.clone()),
        description: record.description.unwrap_or_default(),
        slug: record.slug,
        topic: record.topic,
        grade_level: record.grade_level,
        language: record.language,
        status: record.status,
        author: record.author,
        tags: record.tags,
        difficulty: record.difficulty,
        prerequisites: record.prerequisites,
        learning_outcomes: record.learning_outcomes,
        estimated_minutes: record.estimated_minutes,
        model: record.model,
        total_tokens: record.total_tokens,
        created_at: record.created_at,
        updated_at: record.updated_at,
        generated_at: record.generated_at,
        deleted_at: record.deleted_at,
        sources: record.sources,
        lessons,
    })
}
