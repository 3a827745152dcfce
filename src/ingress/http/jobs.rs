//! `/api/v1/jobs`: a course's generation seen as a job, as the predecessor's
//! API showed it (pending, running, completed, failed; progress 0..1). The
//! job id is the course id.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::courses::{find_course, CourseView, ListParams, ListQuery};
use super::error::{ApiError, ErrorBody};
use super::{ApiState, User};

/// A generation job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job id: the course id.
    pub id: Uuid,
    pub course_id: Uuid,
    /// pending, running, completed or failed.
    pub status: &'static str,
    /// Lessons done over lessons planned, 0 to 1 (1 when completed).
    pub progress: f64,
    pub lessons_done: i32,
    pub lessons_total: i32,
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
pub struct JobPage {
    pub items: Vec<JobView>,
    pub page: i64,
    pub per_page: i64,
    pub total: i64,
}

fn job_status(course_status: &str) -> &'static str {
    match course_status {
        "QUEUED" => "pending",
        "GENERATING" => "running",
        "READY" => "completed",
        _ => "failed",
    }
}

fn course_status(job_status: &str) -> Result<&'static str, ApiError> {
    match job_status.to_ascii_lowercase().as_str() {
        "pending" => Ok("QUEUED"),
        "running" => Ok("GENERATING"),
        "completed" => Ok("READY"),
        "failed" => Ok("FAILED"),
        _ => Err(ApiError::bad_request(
            "invalid_query",
            format!("unknown status {job_status:?}: use pending, running, completed or failed"),
        )),
    }
}

impl JobView {
    fn of(c: &CourseView) -> Self {
        let status = job_status(&c.status);
        let finished_at = match status {
            "completed" => c.generated_at.or(Some(c.updated_at)),
            "failed" => Some(c.updated_at),
            _ => None,
        };
        let progress = if status == "completed" {
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
    ),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<ApiState>,
    user: User,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let status = params.status.as_deref().map(course_status).transpose()?;
    let query = ListQuery::parse(&user, params, status)?;
    let (courses, total) = query.run(&state).await?;
    Ok(HttpResponse::Ok().json(JobPage {
        items: courses.iter().map(JobView::of).collect(),
        page: query.page,
        per_page: query.per_page,
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
pub async fn get(
    state: web::Data<ApiState>,
    user: User,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let course = find_course(&state, &user, id).await?;
    let mut job = JobView::of(&course);
    let client = state.store.pool().get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT max(recorded_at) FROM events
             WHERE stream_id = $1 AND event_type = 'GenerationStarted'",
        )
        .await?;
    job.started_at = client.query_one(&stmt, &[&id]).await?.get(0);
    Ok(HttpResponse::Ok().json(job))
}
