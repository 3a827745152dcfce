//! `/api/v1/jobs`: a course's generation seen as a job, as the predecessor's
//! API showed it (pending, running, completed, failed; progress 0..1). The
//! job id is the course id.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::courses::handlers::find_course;
use super::courses::{CourseView, ListParams};
use super::error::{ApiError, ErrorBody};
use super::{ApiState, User};
use crate::domain::{one_of, CourseStatus};
use crate::projections::courses::queries;

/// A course's generation seen as a job: its [`CourseStatus`] under the
/// names the predecessor's API used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl JobStatus {
    /// Every status, in the order of a job's life.
    pub(crate) const ALL: [Self; 4] = [Self::Pending, Self::Running, Self::Completed, Self::Failed];

    /// The name the API shows (`pending`, ...).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// The course status a job status filters on.
    pub(crate) fn course_status(self) -> CourseStatus {
        match self {
            Self::Pending => CourseStatus::Queued,
            Self::Running => CourseStatus::Generating,
            Self::Completed => CourseStatus::Ready,
            Self::Failed => CourseStatus::Failed,
        }
    }
}

impl From<CourseStatus> for JobStatus {
    fn from(status: CourseStatus) -> Self {
        match status {
            CourseStatus::Queued => Self::Pending,
            CourseStatus::Generating => Self::Running,
            CourseStatus::Ready => Self::Completed,
            CourseStatus::Failed => Self::Failed,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`JobStatus`]; it says which names are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {given:?}: use {}", one_of(&JobStatus::ALL.map(JobStatus::as_str)))]
pub(crate) struct UnknownJobStatus {
    pub given: String,
}

impl std::str::FromStr for JobStatus {
    type Err = UnknownJobStatus;

    /// Any ASCII case, as the `status` filter of `/jobs` has always accepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownJobStatus {
                given: s.to_owned(),
            })
    }
}

/// A generation job.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobView {
    /// The job id: the course id.
    pub id: Uuid,
    pub course_id: Uuid,
    /// pending, running, completed or failed.
    #[schema(value_type = String)]
    pub status: JobStatus,
    /// Lessons done over lessons planned, 0 to 1 (1 when completed).
    pub progress: f64,
    pub lessons_done: i32,
    pub lessons_total: i32,
    /// Subtitle steps recorded: one per lesson in the course's language,
    /// plus one per lesson and translation.
    pub subtitle_steps_done: i32,
    /// Subtitle steps planned: lessons × (1 + languages asked for).
    pub subtitle_steps_total: i32,
    /// Generation attempts started (retries add one).
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the latest attempt started (`GET /jobs/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// From request to completion or failure, in seconds.
    pub duration_secs: Option<f64>,
    pub error: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobPage {
    pub items: Vec<JobView>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

impl JobView {
    fn of(c: &CourseView) -> Self {
        let status = JobStatus::from(c.status);
        let finished_at = match status {
            JobStatus::Completed => c.generated_at.or(Some(c.updated_at)),
            JobStatus::Failed => Some(c.updated_at),
            JobStatus::Pending | JobStatus::Running => None,
        };
        let progress = if status == JobStatus::Completed {
            1.0
        } else if c.total_lessons > 0 {
            (f64::from(c.lessons_generated) / f64::from(c.total_lessons)).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            id: c.course_id,
            course_id: c.course_id,
            status,
            progress,
            lessons_done: c.lessons_generated,
            lessons_total: c.total_lessons,
            subtitle_steps_done: c.subtitles_generated,
            subtitle_steps_total: c
                .total_lessons
                .saturating_mul(1 + c.subtitle_languages.len() as i32),
            attempt: c.attempt,
            created_at: c.created_at,
            updated_at: c.updated_at,
            started_at: None,
            finished_at,
            duration_secs: finished_at
                .map(|f| (f - c.created_at).num_milliseconds() as f64 / 1000.0),
            error: c.error.clone(),
        }
    }
}

/// List generation jobs (the caller's; admins: everyone's).
#[utoipa::path(
    get, path = "/api/v1/jobs", tag = "jobs", params(ListParams),
    responses(
        (status = 200, body = JobPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "user names another user and the caller is no admin", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    state: web::Data<ApiState>,
    user: User,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let status = params
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()))?;
    let page = params.into_page(&user, status.map(JobStatus::course_status))?;
    let client = state.store.pool().get().await?;
    let (courses, total) = page.list.run(&client).await?;
    Ok(HttpResponse::Ok().json(JobPage {
        items: courses
            .into_iter()
            .map(|c| JobView::of(&CourseView::from(c)))
            .collect(),
        page: page.page,
        per_page: page.per_page,
        total,
    }))
}

/// One job, with the start of its latest attempt read from the log.
#[utoipa::path(
    get, path = "/api/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "job (course) id")),
    responses(
        (status = 200, body = JobView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let course = find_course(&state, &user, id).await?;
    let mut job = JobView::of(&course);
    let client = state.store.pool().get().await?;
    job.started_at = queries::attempt_started(&client, id).await?;
    Ok(HttpResponse::Ok().json(job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_status_is_its_course_status_renamed() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::from(status.course_status()), status);
            assert_eq!(
                status.to_string().to_uppercase().parse::<JobStatus>(),
                Ok(status)
            );
        }
        assert_eq!(
            "done".parse::<JobStatus>().unwrap_err().to_string(),
            "unknown status \"done\": use pending, running, completed or failed"
        );
    }
}
