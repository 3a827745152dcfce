//! Every query of the `courses` read model's tables, in one place: their
//! column lists, the rows they yield, the list query the API pages with,
//! and the recount of each table from the log. Static SQL lives in `sql/`.
//!
//! The HTTP handlers, the projector, the recount and `bench http`'s
//! baseline all take their SQL from here, so what the baseline measures is
//! exactly what a handler sends.

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::LessonStatus;
use crate::domain::{CourseStatus, Difficulty};
use crate::projections::recount::Recount;
use crate::store::Position;

/// The stored columns of `courses` (all but the generated `search`), in the
/// order [`CourseRecord::from_row`] reads them; a macro so that static
/// queries embed it at compile time.
macro_rules! course_columns {
    () => {
        "id, user_id, request_id, title, description, slug, slug_base, slug_transaction_id, \
         slug_position, topic, grade_level, language, source_filter, status, error_message, \
         total_lessons, lessons_generated, sources, prompt_tokens, completion_tokens, \
         total_tokens, attempt, model, created_at, updated_at, generated_at, deleted_at, \
         author, tags, difficulty, prerequisites, learning_outcomes, estimated_minutes, \
         subtitle_languages, subtitles_generated"
    };
}

/// The stored columns of `courses`, in [`CourseRecord`]'s order.
pub(crate) const COURSE_COLUMNS: &str = course_columns!();

/// The columns of `courses` that `CourseRequested` sets once and no later
/// event changes (an upsert leaves them as they are).
pub(super) const COURSE_FIXED_COLUMNS: [&str; 7] = [
    "id",
    "user_id",
    "request_id",
    "topic",
    "grade_level",
    "source_filter",
    "created_at",
];

/// The `text[]` columns of `courses`: the upsert ships them as `jsonb`
/// arrays (arrays of arrays must be rectangular in PostgreSQL).
pub(super) const COURSE_LIST_COLUMNS: [&str; 4] = [
    "tags",
    "prerequisites",
    "learning_outcomes",
    "subtitle_languages",
];

/// The columns of `lessons`, as the projector reads and writes them.
pub(crate) const LESSON_COLUMNS: &str =
    "course_id, lesson_number, title, concepts, objectives, status, generated_at";

/// The columns of `lesson_bodies`, as the projector writes them.
pub(crate) const LESSON_BODY_COLUMNS: &str =
    "course_id, lesson_number, content_md, content_json, sources, model, total_tokens, generated_at";

/// The columns of `lesson_checks`, as the projector writes them.
pub(crate) const LESSON_CHECK_COLUMNS: &str =
    "course_id, lesson_number, question_number, question, options, answer_index, explanation";

/// The columns of `interactive_elements`, as the projector writes them.
pub(crate) const ELEMENT_COLUMNS: &str =
    "course_id, lesson_number, position, element_id, kind, body";

/// The elements of lesson `$2` of course `$1`, in order (their JSON).
pub(crate) const ELEMENTS_OF_LESSON: &str = include_str!("sql/elements_of_lesson.sql");

/// The elements of every lesson of course `$1`: lesson number and JSON.
pub(crate) const ELEMENTS_OF_COURSE: &str = include_str!("sql/elements_of_course.sql");

/// The columns of `subtitles`, as the projector writes them.
pub(crate) const SUBTITLE_COLUMNS: &str =
    "course_id, lesson_number, language, cues, model, total_tokens, generated_at";

/// Lesson `$2` of course `$1` in language `$3`: cues and model.
pub(crate) const SUBTITLES: &str = include_str!("sql/subtitles_of_lesson.sql");

/// One course by id (`$1`).
pub(crate) const COURSE_BY_ID: &str =
    concat!("SELECT ", course_columns!(), " FROM courses WHERE id = $1");

/// A course's lessons (`$1`), in order: rows of [`LessonEntry`].
pub(crate) const LESSONS_OF_COURSE: &str = include_str!("sql/lessons_of_course.sql");

/// Lesson `$2` of course `$1` with its content and quiz: a row of [`Lesson`].
pub(crate) const LESSON: &str = include_str!("sql/lesson.sql");

/// Every lesson of course `$1` with its content and quiz: rows of [`Lesson`].
pub(crate) const LESSONS_FULL_OF_COURSE: &str = include_str!("sql/lessons_full_of_course.sql");

/// When the latest generation attempt of course `$1` started (the job view).
pub(crate) const ATTEMPT_STARTED: &str = include_str!("sql/attempt_started.sql");

/// A row of `courses`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CourseRecord {
    pub id: Uuid,
    pub user_id: Uuid,
    pub request_id: Uuid,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Unique: the base, numbered (`photosynthesis-2`) when courses share it.
    pub slug: String,
    /// What the slug is derived from (see `slug_base`).
    pub slug_base: String,
    /// The log position of the event that set the base: courses sharing it
    /// are numbered in this order.
    pub slug_position: Position,
    pub topic: String,
    pub grade_level: Option<String>,
    pub language: String,
    pub source_filter: Option<String>,
    pub status: CourseStatus,
    pub error_message: Option<String>,
    pub total_lessons: i32,
    pub lessons_generated: i32,
    /// Every source the lessons cite, first citation first.
    pub sources: Vec<Value>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub attempt: i32,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub generated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub author: Option<String>,
    /// Normalised tags: an edit's, else the request's, else the outline's.
    pub tags: Vec<String>,
    pub difficulty: Option<Difficulty>,
    pub prerequisites: Vec<String>,
    pub learning_outcomes: Vec<String>,
    /// Sum of the generated lessons' estimates (reading plus exercises).
    pub estimated_minutes: i32,
    /// Languages the subtitles are to be translated into, sorted.
    pub subtitle_languages: Vec<String>,
    /// Subtitle tracks recorded (one per lesson and language).
    pub subtitles_generated: i32,
}

impl CourseRecord {
    /// Reads a row selected with [`COURSE_COLUMNS`].
    ///
    /// # Errors
    /// A column that does not convert (a row of some other query).
    pub(crate) fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        let sources: Value = r.try_get(17)?;
        Ok(Self {
            id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            request_id: r.try_get(2)?,
            title: r.try_get(3)?,
            description: r.try_get(4)?,
            slug: r.try_get(5)?,
            slug_base: r.try_get(6)?,
            slug_position: Position {
                transaction_id: r.try_get(7)?,
                global_position: r.try_get(8)?,
            },
            topic: r.try_get(9)?,
            grade_level: r.try_get(10)?,
            language: r.try_get(11)?,
            source_filter: r.try_get(12)?,
            status: r.try_get(13)?,
            error_message: r.try_get(14)?,
            total_lessons: r.try_get(15)?,
            lessons_generated: r.try_get(16)?,
            sources: match sources {
                Value::Array(a) => a,
                _ => Vec::new(),
            },
            prompt_tokens: r.try_get(18)?,
            completion_tokens: r.try_get(19)?,
            total_tokens: r.try_get(20)?,
            attempt: r.try_get(21)?,
            model: r.try_get(22)?,
            created_at: r.try_get(23)?,
            updated_at: r.try_get(24)?,
            generated_at: r.try_get(25)?,
            deleted_at: r.try_get(26)?,
            author: r.try_get(27)?,
            tags: r.try_get(28)?,
            difficulty: r.try_get(29)?,
            prerequisites: r.try_get(30)?,
            learning_outcomes: r.try_get(31)?,
            estimated_minutes: r.try_get(32)?,
            subtitle_languages: r.try_get(33)?,
            subtitles_generated: r.try_get(34)?,
        })
    }
}

/// One entry of a course's table of contents (a row of [`LESSONS_OF_COURSE`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LessonEntry {
    pub number: i32,
    pub title: String,
    pub concepts: Vec<String>,
    pub objectives: Vec<String>,
    pub status: LessonStatus,
    pub generated_at: Option<DateTime<Utc>>,
}

impl LessonEntry {
    /// Reads a row of [`LESSONS_OF_COURSE`].
    ///
    /// # Errors
    /// A column that does not convert.
    pub(crate) fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            number: r.try_get(0)?,
            title: r.try_get(1)?,
            concepts: r.try_get(2)?,
            objectives: r.try_get(3)?,
            status: r.try_get(4)?,
            generated_at: r.try_get(5)?,
        })
    }
}

/// A lesson with what was generated for it (a row of [`LESSON`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Lesson {
    pub entry: LessonEntry,
    /// `None` until the lesson is generated.
    pub content_md: Option<String>,
    pub sections: Option<Value>,
    pub sources: Option<Value>,
    pub model: Option<String>,
    /// The quiz: question, options, answer_index, explanation.
    pub checks: Value,
}

impl Lesson {
    /// Reads a row of [`LESSON`].
    ///
    /// # Errors
    /// A column that does not convert.
    pub(crate) fn from_row(r: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            entry: LessonEntry::from_row(r)?,
            content_md: r.try_get(6)?,
            sections: r.try_get(7)?,
            sources: r.try_get(8)?,
            model: r.try_get(9)?,
            checks: r.try_get(10)?,
        })
    }
}

/// The course by id and its lessons, both statements pipelined on one
/// connection (the API's hottest read).
///
/// # Errors
/// The database failed.
pub(crate) async fn course_with_lessons(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<(Option<CourseRecord>, Vec<LessonEntry>), tokio_postgres::Error> {
    let (course_stmt, lessons_stmt) = futures::try_join!(
        client.prepare_cached(COURSE_BY_ID),
        client.prepare_cached(LESSONS_OF_COURSE)
    )?;
    let params: [&(dyn ToSql + Sync); 1] = [&id];
    let (course, lessons) = futures::try_join!(
        client.query_opt(&course_stmt, &params),
        client.query(&lessons_stmt, &params)
    )?;
    Ok((
        course.as_ref().map(CourseRecord::from_row).transpose()?,
        lessons
            .iter()
            .map(LessonEntry::from_row)
            .collect::<Result<_, _>>()?,
    ))
}

/// The course by id, deleted or not.
///
/// # Errors
/// The database failed.
pub(crate) async fn course(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<Option<CourseRecord>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(COURSE_BY_ID).await?;
    client
        .query_opt(&stmt, &[&id])
        .await?
        .as_ref()
        .map(CourseRecord::from_row)
        .transpose()
}

/// Lesson `number` of course `id`.
///
/// # Errors
/// The database failed.
pub(crate) async fn lesson(
    client: &deadpool_postgres::Client,
    id: Uuid,
    number: i32,
) -> Result<Option<Lesson>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(LESSON).await?;
    client
        .query_opt(&stmt, &[&id, &number])
        .await?
        .as_ref()
        .map(Lesson::from_row)
        .transpose()
}

/// The interactive elements of lesson `number` of course `id`, in order.
///
/// # Errors
/// The database failed.
pub(crate) async fn elements(
    client: &deadpool_postgres::Client,
    id: Uuid,
    number: i32,
) -> Result<Vec<Value>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(ELEMENTS_OF_LESSON).await?;
    client
        .query(&stmt, &[&id, &number])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// The cues (JSON) and model of lesson `number` of course `id` in `language`.
///
/// # Errors
/// The database failed.
pub(crate) async fn subtitles(
    client: &deadpool_postgres::Client,
    id: Uuid,
    number: i32,
    language: &str,
) -> Result<Option<(Value, Option<String>)>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(SUBTITLES).await?;
    client
        .query_opt(&stmt, &[&id, &number, &language])
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

/// Every track of lesson `number` of course `id`: language and cues
/// (JSON), by language (what the lesson page's transcript reads).
///
/// # Errors
/// The database failed.
pub(crate) async fn subtitles_of_lesson(
    client: &deadpool_postgres::Client,
    id: Uuid,
    number: i32,
) -> Result<Vec<(String, Value)>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT language, cues FROM subtitles
             WHERE course_id = $1 AND lesson_number = $2 ORDER BY language",
        )
        .await?;
    client
        .query(&stmt, &[&id, &number])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Every lesson's subtitles of course `id` in `language`: lesson number and
/// cues (JSON), in lesson order.
///
/// # Errors
/// The database failed.
pub(crate) async fn subtitles_of_course(
    client: &deadpool_postgres::Client,
    id: Uuid,
    language: &str,
) -> Result<Vec<(i32, Value)>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT lesson_number, cues FROM subtitles
             WHERE course_id = $1 AND language = $2 ORDER BY lesson_number",
        )
        .await?;
    client
        .query(&stmt, &[&id, &language])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Every lesson of course `id` with its content and quiz, and every
/// lesson's interactive elements (lesson number, JSON), all in order: what
/// an export reads, three statements pipelined on one connection.
///
/// # Errors
/// The database failed.
pub(crate) async fn lessons_with_elements(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<(Vec<Lesson>, Vec<(i32, Value)>), tokio_postgres::Error> {
    let (lessons_stmt, elements_stmt) = futures::try_join!(
        client.prepare_cached(LESSONS_FULL_OF_COURSE),
        client.prepare_cached(ELEMENTS_OF_COURSE)
    )?;
    let params: [&(dyn ToSql + Sync); 1] = [&id];
    let (lessons, elements) = futures::try_join!(
        client.query(&lessons_stmt, &params),
        client.query(&elements_stmt, &params)
    )?;
    Ok((
        lessons
            .iter()
            .map(Lesson::from_row)
            .collect::<Result<_, _>>()?,
        elements
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, tokio_postgres::Error>>()?,
    ))
}

/// Every subtitle track of course `id`: lesson number, language and cues
/// (JSON), by lesson then language (what an export carries).
///
/// # Errors
/// The database failed.
pub(crate) async fn subtitle_tracks(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<Vec<(i32, String, Value)>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(
            "SELECT lesson_number, language, cues FROM subtitles
             WHERE course_id = $1 ORDER BY lesson_number, language",
        )
        .await?;
    client
        .query(&stmt, &[&id])
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// When the latest generation attempt of course `id` started.
///
/// # Errors
/// The database failed.
pub(crate) async fn attempt_started(
    client: &deadpool_postgres::Client,
    id: Uuid,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let stmt = client.prepare_cached(ATTEMPT_STARTED).await?;
    client.query_one(&stmt, &[&id]).await?.try_get(0)
}

/// The order of a course list. Every order ends on `id`, so that pages do
/// not overlap when the sort key ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CourseOrder(&'static str);

impl CourseOrder {
    /// Newest first: the default, and what the list indexes are shaped for.
    pub(crate) const NEWEST: Self = Self("created_at DESC, id DESC");

    /// Every sort key [`Self::parse`] knows.
    pub(crate) const KEYS: [&'static str; 10] = [
        "created_at",
        "-created_at",
        "updated_at",
        "-updated_at",
        "title",
        "-title",
        "topic",
        "-topic",
        "status",
        "-status",
    ];

    /// The order a sort key names: `created_at`, `updated_at`, `title`,
    /// `topic` or `status`, ascending, or descending with a leading `-`.
    pub(crate) fn parse(key: &str) -> Option<Self> {
        Some(Self(match key {
            "created_at" => "created_at ASC, id ASC",
            "-created_at" => Self::NEWEST.0,
            "updated_at" => "updated_at ASC, id ASC",
            "-updated_at" => "updated_at DESC, id DESC",
            "title" => "title ASC NULLS LAST, id ASC",
            "-title" => "title DESC NULLS LAST, id DESC",
            "topic" => "topic ASC, id ASC",
            "-topic" => "topic DESC, id DESC",
            "status" => "status ASC, created_at DESC, id DESC",
            "-status" => "status DESC, created_at DESC, id DESC",
            _ => return None,
        }))
    }
}

/// A page of live (not deleted) courses: which ones, in which order. The
/// API validates the values; this turns them into SQL.
#[derive(Debug, Clone)]
pub(crate) struct CourseList {
    /// Only this user's courses.
    pub user: Option<Uuid>,
    pub status: Option<CourseStatus>,
    /// Only courses requested after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Full-text search over title, tags, topic and description (web search syntax).
    pub search: Option<String>,
    /// Only courses with this (normalised) tag.
    pub tag: Option<String>,
    /// Only courses by this author (any case).
    pub author: Option<String>,
    /// Only courses in this (canonical BCP-47) language.
    pub language: Option<String>,
    pub difficulty: Option<Difficulty>,
    pub order: CourseOrder,
    pub limit: i64,
    pub offset: i64,
}

/// The statements of a [`CourseList`] and their parameters.
pub(crate) struct CourseListSql<'a> {
    /// The page: `limit` courses from `offset`.
    pub page: String,
    pub page_params: Vec<&'a (dyn ToSql + Sync)>,
    /// How many courses match over all pages.
    pub count: String,
    pub count_params: Vec<&'a (dyn ToSql + Sync)>,
}

impl CourseList {
    /// The page and count statements. The same filters always give the same
    /// text, so prepared statements are reused.
    pub(crate) fn sql<'a>(&'a self) -> CourseListSql<'a> {
        let mut conditions = vec!["deleted_at IS NULL".to_owned()];
        let mut params: Vec<&'a (dyn ToSql + Sync)> = Vec::new();
        let mut param = |v: &'a (dyn ToSql + Sync)| {
            params.push(v);
            params.len()
        };
        if let Some(u) = &self.user {
            conditions.push(format!("user_id = ${}", param(u)));
        }
        if let Some(s) = &self.status {
            conditions.push(format!("status = ${}", param(s)));
        }
        if let Some(t) = &self.created_after {
            conditions.push(format!("created_at > ${}", param(t)));
        }
        if let Some(t) = &self.tag {
            conditions.push(format!("tags @> ARRAY[${}::text]", param(t)));
        }
        if let Some(a) = &self.author {
            conditions.push(format!("lower(author) = lower(${}::text)", param(a)));
        }
        if let Some(l) = &self.language {
            conditions.push(format!("language = ${}", param(l)));
        }
        if let Some(d) = &self.difficulty {
            conditions.push(format!("difficulty = ${}", param(d)));
        }
        if let Some(q) = &self.search {
            conditions.push(format!(
                "search @@ websearch_to_tsquery('simple', ${})",
                param(q)
            ));
        }
        let where_sql = conditions.join(" AND ");
        let n = params.len();
        let page = format!(
            "SELECT {COURSE_COLUMNS} FROM courses WHERE {where_sql} ORDER BY {} LIMIT ${} OFFSET ${}",
            self.order.0,
            n + 1,
            n + 2
        );
        let count = format!("SELECT count(*) FROM courses WHERE {where_sql}");
        let count_params = params.clone();
        params.push(&self.limit);
        params.push(&self.offset);
        CourseListSql {
            page,
            page_params: params,
            count,
            count_params,
        }
    }

    /// Runs the page and the count, pipelined on one connection.
    ///
    /// # Errors
    /// The database failed.
    pub(crate) async fn run(
        &self,
        client: &deadpool_postgres::Client,
    ) -> Result<(Vec<CourseRecord>, i64), tokio_postgres::Error> {
        let sql = self.sql();
        let (page_stmt, count_stmt) = futures::try_join!(
            client.prepare_cached(&sql.page),
            client.prepare_cached(&sql.count)
        )?;
        let (rows, count) = futures::try_join!(
            client.query(&page_stmt, &sql.page_params),
            client.query_one(&count_stmt, &sql.count_params)
        )?;
        let courses = rows
            .iter()
            .map(CourseRecord::from_row)
            .collect::<Result<_, _>>()?;
        Ok((courses, count.try_get(0)?))
    }
}

/// The recounts of the read model's tables from the log.
pub fn recounts() -> Vec<Recount> {
    vec![
        Recount {
            table: "courses",
            columns: COURSE_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_courses.sql"),
        },
        Recount {
            table: "lessons",
            columns: LESSON_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_lessons.sql"),
        },
        Recount {
            table: "lesson_bodies",
            columns: LESSON_BODY_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_lesson_bodies.sql"),
        },
        Recount {
            table: "lesson_checks",
            columns: LESSON_CHECK_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_lesson_checks.sql"),
        },
        Recount {
            table: "interactive_elements",
            columns: ELEMENT_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_interactive_elements.sql"),
        },
        Recount {
            table: "subtitles",
            columns: SUBTITLE_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_subtitles.sql"),
        },
    ]
}
