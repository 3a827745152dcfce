//! What `/courses` and `/jobs` take and answer: request bodies, query
//! parameters (validated into a read-model query) and the JSON views.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{Course, CourseStatus, Difficulty};
use crate::ingress::http::{ApiError, User};
use crate::projections::courses::queries::{CourseList, CourseOrder, CourseRecord, LessonEntry};
use crate::projections::courses::LessonStatus;
use crate::store::RecordedEvent;

/// Token totals of a course.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Tokens {
    pub prompt: i64,
    pub completion: i64,
    pub total: i64,
}

/// A course as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct CourseView {
    pub course_id: Uuid,
    pub user_id: Uuid,
    pub request_id: Uuid,
    pub title: Option<String>,
    pub description: Option<String>,
    pub slug: Option<String>,
    pub topic: String,
    pub grade_level: Option<String>,
    pub language: String,
    pub source_filter: Option<String>,
    /// QUEUED, GENERATING, READY or FAILED.
    #[schema(value_type = String)]
    pub status: CourseStatus,
    pub error: Option<String>,
    pub total_lessons: i32,
    pub lessons_generated: i32,
    #[schema(value_type = Vec<Object>)]
    pub sources: Value,
    pub tokens: Tokens,
    pub attempt: i32,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub generated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// Who the course is credited to.
    pub author: Option<String>,
    /// Normalised tags (an edit's, else the request's, else the outline's proposal).
    pub tags: Vec<String>,
    /// beginner, intermediate or advanced.
    pub difficulty: Option<Difficulty>,
    pub prerequisites: Vec<String>,
    pub learning_outcomes: Vec<String>,
    /// Reading time of the generated lessons plus their quizzes and exercises.
    pub estimated_minutes: i32,
    /// Languages the subtitles are translated into (besides `language`).
    pub subtitle_languages: Vec<String>,
    /// Subtitle tracks recorded, one per lesson and language.
    pub subtitles_generated: i32,
    /// The course's lessons (only on `GET /courses/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lessons: Option<Vec<LessonSummary>>,
}

impl From<CourseRecord> for CourseView {
    fn from(c: CourseRecord) -> Self {
        Self {
            course_id: c.id,
            user_id: c.user_id,
            request_id: c.request_id,
            title: c.title,
            description: c.description,
            slug: Some(c.slug),
            topic: c.topic,
            grade_level: c.grade_level,
            language: c.language,
            source_filter: c.source_filter,
            status: c.status,
            error: c.error_message,
            total_lessons: c.total_lessons,
            lessons_generated: c.lessons_generated,
            sources: Value::Array(c.sources),
            tokens: Tokens {
                prompt: c.prompt_tokens,
                completion: c.completion_tokens,
                total: c.total_tokens,
            },
            attempt: c.attempt,
            model: c.model,
            created_at: c.created_at,
            updated_at: c.updated_at,
            generated_at: c.generated_at,
            deleted_at: c.deleted_at,
            author: c.author,
            tags: c.tags,
            difficulty: c.difficulty,
            prerequisites: c.prerequisites,
            learning_outcomes: c.learning_outcomes,
            estimated_minutes: c.estimated_minutes,
            subtitle_languages: c.subtitle_languages,
            subtitles_generated: c.subtitles_generated,
            lessons: None,
        }
    }
}

impl CourseView {
    /// A course the projection has not caught up with yet, read from its events.
    pub(crate) fn from_stream(id: Uuid, course: &Course, events: &[RecordedEvent]) -> Option<Self> {
        let request = course.request.as_ref()?;
        let first = events.first()?;
        let last = events.last()?;
        let at = |t: &str| {
            events
                .iter()
                .rev()
                .find(|e| e.event_type == t)
                .map(|e| e.recorded_at)
        };
        Some(Self {
            course_id: id,
            user_id: request.user_id,
            request_id: request.request_id,
            title: course.outline.as_ref().map(|o| o.title.clone()),
            description: course.outline.as_ref().map(|o| o.description.clone()),
            slug: None,
            topic: request.topic.clone(),
            grade_level: request.grade_level.clone(),
            language: course.language.clone(),
            source_filter: request.source_filter.clone(),
            status: course.status.unwrap_or(CourseStatus::Queued),
            error: course
                .failure
                .as_ref()
                .filter(|_| course.status == Some(CourseStatus::Failed))
                .map(|f| format!("{}: {}", f.step, f.error)),
            total_lessons: course.planned_lessons() as i32,
            lessons_generated: course.lessons_done.len() as i32,
            sources: Value::Array(vec![]),
            tokens: Tokens {
                prompt: course.usage.prompt_tokens as i64,
                completion: course.usage.completion_tokens as i64,
                total: course.usage.total_tokens as i64,
            },
            attempt: course.attempt as i32,
            model: None,
            created_at: first.recorded_at,
            updated_at: last.recorded_at,
            generated_at: (course.status == Some(CourseStatus::Ready))
                .then(|| at("CourseCompleted"))
                .flatten(),
            deleted_at: course.deleted.then(|| at("CourseDeleted")).flatten(),
            author: course.metadata.author.clone(),
            tags: course.metadata.tags.clone(),
            difficulty: course.metadata.difficulty,
            prerequisites: course.metadata.prerequisites.clone(),
            learning_outcomes: course.metadata.learning_outcomes.clone(),
            estimated_minutes: i32::try_from(course.estimated_minutes).unwrap_or(i32::MAX),
            subtitle_languages: {
                let mut l = course.subtitle_languages.clone();
                l.sort();
                l
            },
            subtitles_generated: course.subtitles.len() as i32,
            lessons: None,
        })
    }
}

/// One entry of a course's table of contents.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct LessonSummary {
    pub number: i32,
    pub title: String,
    pub concepts: Vec<String>,
    pub objectives: Vec<String>,
    /// PENDING or GENERATED.
    #[schema(value_type = String)]
    pub status: LessonStatus,
    pub generated_at: Option<DateTime<Utc>>,
}

impl From<LessonEntry> for LessonSummary {
    fn from(l: LessonEntry) -> Self {
        Self {
            number: l.number,
            title: l.title,
            concepts: l.concepts,
            objectives: l.objectives,
            status: l.status,
            generated_at: l.generated_at,
        }
    }
}

/// A page of courses.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CoursePage {
    pub items: Vec<CourseView>,
    pub page: i64,
    pub per_page: i64,
    /// Courses matching the filters, over all pages.
    pub total: i64,
}

/// A lesson with its content.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LessonView {
    pub course_id: Uuid,
    pub number: i32,
    pub title: String,
    pub concepts: Vec<String>,
    pub objectives: Vec<String>,
    #[schema(value_type = String)]
    pub status: LessonStatus,
    pub generated_at: Option<DateTime<Utc>>,
    /// The lesson as markdown.
    pub content: String,
    /// The structured sections (heading, body).
    #[schema(value_type = Vec<Object>)]
    pub sections: Value,
    /// Multiple-choice questions (question, options, answer_index, explanation).
    #[schema(value_type = Vec<Object>)]
    pub quiz: Value,
    #[schema(value_type = Vec<Object>)]
    pub sources: Value,
    pub model: Option<String>,
    /// Code blocks, exercises and quizzes (`kind`: code_block, exercise,
    /// single_choice, multiple_choice, true_false, short_answer), each with
    /// a stable `id`.
    #[schema(value_type = Vec<Object>)]
    pub elements: Value,
}

/// A lesson's interactive elements.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ElementsView {
    pub course_id: Uuid,
    pub lesson: i32,
    /// As in [`LessonView::elements`].
    #[schema(value_type = Vec<Object>)]
    pub elements: Value,
}

/// One event of a course's history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventView {
    pub global_position: i64,
    pub stream_version: i32,
    pub event_type: String,
    pub event_version: i16,
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl From<RecordedEvent> for EventView {
    fn from(e: RecordedEvent) -> Self {
        Self {
            global_position: e.global_position,
            stream_version: e.stream_version,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
            recorded_at: e.recorded_at,
        }
    }
}

/// Why a course is deleted (optional body of `DELETE`).
#[derive(Debug, Default, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReasonParams {
    /// Kept in the history: at most 500 characters, no control characters
    /// (otherwise 400).
    pub reason: Option<String>,
}

/// Query of `GET /courses` (and `GET /jobs`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Page number, from 1.
    pub page: Option<i64>,
    /// Items per page, 1 to 100 (default 20).
    pub per_page: Option<i64>,
    /// QUEUED, GENERATING, READY or FAILED (jobs: pending, running, completed, failed).
    pub status: Option<String>,
    /// Only this user's courses (admins; others may only name themselves).
    pub user: Option<Uuid>,
    /// Only courses requested after this instant (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Full-text search over title, tags, topic and description (web search syntax).
    pub q: Option<String>,
    /// Only courses with this tag, normalised like tags are (trimmed, a
    /// leading `#` dropped, lowercase, words joined by `-`: `Earth Science`
    /// finds `earth-science`); at most 40 characters once normalised.
    pub tag: Option<String>,
    /// Only courses by this author (any case).
    pub author: Option<String>,
    /// Only courses in this language (BCP-47, e.g. `pt-BR`).
    pub language: Option<String>,
    /// Only courses of this difficulty: beginner, intermediate or advanced.
    pub difficulty: Option<String>,
    /// created_at, -created_at (default), updated_at, title, status, topic; `-` for descending.
    pub sort: Option<String>,
}

/// Highest `page` of a list.
pub(crate) const MAX_PAGE: i64 = 1_000_000;
/// Longest full-text search `q`, in characters.
pub(crate) const MAX_QUERY_CHARS: usize = 200;
/// Highest `per_page` of a list.
pub(crate) const MAX_PER_PAGE: i64 = 100;

/// A validated list request: the read-model query and the page it is.
pub(crate) struct ListPage {
    pub list: CourseList,
    pub page: i64,
    pub per_page: i64,
}

impl ListParams {
    /// Validates the parameters for `user`; `status` is the already-parsed
    /// course status (`/courses` and `/jobs` name statuses differently).
    ///
    /// # Errors
    /// 400 for a value out of range, 403 for another user's list.
    pub(crate) fn into_page(
        self,
        user: &User,
        status: Option<CourseStatus>,
    ) -> Result<ListPage, ApiError> {
        let page = self.page.unwrap_or(1);
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("page must be between 1 and {MAX_PAGE}, got {page}"),
            ));
        }
        let per_page = self.per_page.unwrap_or(20);
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}"),
            ));
        }
        let owner = match (user.admin, self.user) {
            (true, u) => u,
            (false, Some(u)) if u != user.id => {
                return Err(ApiError::Forbidden(
                    "only admins may list other users' courses".into(),
                ))
            }
            (false, _) => Some(user.id),
        };
        let search = self.q.filter(|q| !q.trim().is_empty());
        if search
            .as_ref()
            .is_some_and(|q| q.chars().count() > MAX_QUERY_CHARS)
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("q must be at most {MAX_QUERY_CHARS} characters"),
            ));
        }
        let order = match self.sort.as_deref() {
            None => CourseOrder::NEWEST,
            Some(key) => CourseOrder::parse(key).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_query",
                    format!(
                        "unknown sort {key:?}: use created_at, updated_at, title, topic or \
                         status, with a leading - for descending"
                    ),
                )
            })?,
        };
        let invalid = |e: crate::domain::ValidationError| {
            ApiError::bad_request("invalid_query", e.to_string())
        };
        let tag = match self.tag.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(
                crate::domain::metadata::parse_tags(vec![t.to_owned()])
                    .map_err(invalid)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        ApiError::bad_request("invalid_query", "tag is empty once normalised")
                    })?,
            ),
        };
        let author = self
            .author
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty());
        if author
            .as_ref()
            .is_some_and(|a| a.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(
                "invalid_query",
                "author must not contain control characters",
            ));
        }
        if author.as_ref().is_some_and(|a| a.chars().count() > 100) {
            return Err(ApiError::bad_request(
                "invalid_query",
                "author must be at most 100 characters",
            ));
        }
        let language = self
            .language
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .map(|l| crate::domain::metadata::parse_language_tag(&l))
            .transpose()
            .map_err(invalid)?;
        let difficulty = self
            .difficulty
            .as_deref()
            .map(str::parse::<Difficulty>)
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
        Ok(ListPage {
            list: CourseList {
                user: owner,
                status,
                created_after: self.created_after,
                tag,
                author,
                language,
                difficulty,
                search,
                order,
                limit: per_page,
                offset: (page - 1) * per_page,
            },
            page,
            per_page,
        })
    }
}
