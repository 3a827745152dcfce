//! Operations: `/health` (readiness: database, projections, registered
//! components such as AMQP), `/metrics` (Prometheus text) and
//! `/openapi.json` (generated from the handlers' annotations).

use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::docs::{CommonResponses, ParameterSchemas};
use super::error::{error_chain, ErrorBody};
use super::{courses, jobs, sources, ApiState, ComponentHealth};
use crate::projections::ProjectionStatus;

/// The database's answer to a trivial query.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DatabaseHealth {
    pub ok: bool,
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// What `/health` reports.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthReport {
    /// `ok`, or `unavailable` (then the status is 503).
    pub status: &'static str,
    pub database: DatabaseHealth,
    /// Components registered by other parts of the service (e.g. `amqp`).
    #[schema(value_type = Object)]
    pub components: serde_json::Map<String, serde_json::Value>,
    /// This process's projections: state, checkpoint and lag.
    #[schema(value_type = Vec<Object>)]
    pub projections: Vec<ProjectionStatus>,
}

/// Why the database probe failed.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Query(#[from] tokio_postgres::Error),
    #[error("no answer within 2 s")]
    Timeout,
}

async fn database_health(state: &ApiState) -> DatabaseHealth {
    let start = Instant::now();
    let probe = async {
        let client = state.store.pool().get().await?;
        client.simple_query("SELECT 1").await?;
        Ok::<_, ProbeError>(())
    };
    let result = match tokio::time::timeout(Duration::from_secs(2), probe).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout),
    };
    DatabaseHealth {
        ok: result.is_ok(),
        latency_ms: start.elapsed().as_secs_f64() * 1000.0,
        error: result.err().map(|e| error_chain(&e)),
    }
}

/// Readiness: 200 when the database answers, every projection runner of
/// this process is up (running, or standing by for another process) and
/// every registered component is ok; 503 otherwise.
#[utoipa::path(
    get, path = "/api/v1/health", tag = "system",
    responses((status = 200, body = HealthReport), (status = 503, body = HealthReport))
)]
pub(crate) async fn health(state: web::Data<ApiState>) -> HttpResponse {
    let database = database_health(&state).await;
    let projections = match (&state.projections, database.ok) {
        (Some(p), true) => p.status().await,
        _ => Vec::new(),
    };
    let mut components = serde_json::Map::new();
    let mut ok = database.ok;
    for (name, health) in state.health.check() {
        ok &= health.ok;
        components.insert(
            name,
            serde_json::to_value(&health).expect("health serializes"),
        );
    }
    // Not ready while a runner is still connecting, nor once one stopped on
    // a poison event (its read model no longer advances).
    ok &= projections.iter().all(|p| {
        !matches!(
            p.state,
            crate::projections::RunnerState::Starting | crate::projections::RunnerState::Failed
        )
    });
    let report = HealthReport {
        status: if ok { "ok" } else { "unavailable" },
        database,
        components,
        projections,
    };
    if ok {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}

/// Prometheus metrics: HTTP latency, events appended, LLM calls, tokens and
/// errors, projection lag, live course actors.
#[utoipa::path(
    get, path = "/api/v1/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub(crate) async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    if let Some(p) = &state.projections {
        for s in p.status().await {
            metrics::gauge!("coursegen_projection_lag_events", "projection" => s.name.clone())
                .set(s.lag_events as f64);
            metrics::gauge!("coursegen_projection_lag_seconds", "projection" => s.name)
                .set(s.lag_seconds);
        }
    }
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "coursegen", description = "Event-sourced course generation: topic in, full online course out."),
    paths(
        courses::handlers::generate, courses::handlers::list, courses::handlers::get,
        courses::handlers::lesson, courses::handlers::events, courses::progress::progress,
        courses::handlers::delete, courses::handlers::restore, courses::handlers::retry,
        courses::metadata::edit, courses::elements::elements, courses::subtitles::request,
        courses::subtitles::get, courses::export::export, jobs::list, jobs::get, health, metrics,
        openapi, sources::add, sources::list, sources::get, sources::delete, sources::search,
    ),
    components(schemas(
        ErrorBody, ComponentHealth, crate::domain::RawCourseRequest,
        crate::domain::RawMetadataChange, crate::domain::Difficulty, courses::CourseView,
        courses::CoursePage, courses::LessonSummary, courses::LessonView, courses::dto::ElementsView,
        courses::subtitles::SubtitlesRequest, courses::EventView,
        courses::Progress, courses::Tokens, jobs::JobView, jobs::JobPage, HealthReport,
        DatabaseHealth, sources::TextSource, sources::UploadForm, sources::IngestView, sources::SourceView,
        crate::projections::sources::queries::SourceRow,
        crate::projections::sources::queries::ChunkRow,
        crate::projections::sources::queries::SearchHit,
    )),
    modifiers(&BearerAuth, &CommonResponses, &ParameterSchemas)
)]
pub(crate) struct ApiDoc;

/// This document.
#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object))
)]
pub(crate) async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::docs::document())
}
