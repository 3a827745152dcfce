//! The REST API under `/api/v1` (actix-web), one file per resource:
//!
//! - [`courses`]: generate, list/search, read (with lessons), history, progress
//!   (SSE), soft delete, restore, retry.
//! - [`jobs`]: a course's generation seen as a job (the predecessor's API).
//! - [`sources`]: the caller's source library: upload, list, read, remove, search.
//! - [`system`]: health, Prometheus metrics, the OpenAPI document.
//! - [`auth`]: bearer JWTs, or the local user when no secret is configured.
//! - [`docs`]: what the OpenAPI document says of every operation alike.
//! - [`error`]: the one mapping of errors to statuses and JSON bodies.
//! - [`untrusted`]: the edge check of every request (no NUL character).
//!
//! Queries read the projections (and the log for history); writes go through
//! the domain's commands, then wait for the projection to pass the append so
//! that a following `GET` sees them (read-your-writes).

pub(crate) mod auth;
pub(crate) mod courses;
pub(crate) mod docs;
pub(crate) mod error;
pub(crate) mod jobs;
pub(crate) mod sources;
pub(crate) mod system;
pub(crate) mod untrusted;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::error::JsonPayloadError;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpServer};
use clap::Args;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;

use crate::projections::Projections;
use crate::store::EventStore;

pub use auth::{Auth, User, LOCAL_USER};
pub(crate) use error::ApiError;

/// Why the HTTP API did not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("binding the HTTP API to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the HTTP server")]
    Serve(#[source] std::io::Error),
}

/// Settings of the HTTP API.
#[derive(Clone, Args)]
pub struct HttpSettings {
    /// Address the HTTP API listens on (port 0: any free port).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// HS256 secret of the bearer JWTs (`sub`: user id, `role: "admin"`: sees
    /// everything). Unset: no authentication, loopback only, one local user.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub auth_jwt_secret: Option<String>,

    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "HTTP_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub http_max_body_bytes: usize,

    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "HTTP_WORKERS")]
    pub http_workers: Option<usize>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            auth_jwt_secret: None,
            http_max_body_bytes: 64 * 1024,
            http_workers: None,
        }
    }
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("http_addr", &self.http_addr)
            .field(
                "auth_jwt_secret",
                &self.auth_jwt_secret.as_ref().map(|_| "<hidden>"),
            )
            .field("http_max_body_bytes", &self.http_max_body_bytes)
            .field("http_workers", &self.http_workers)
            .finish()
    }
}

/// The health of a component the API does not own (the AMQP ingress, ...),
/// as its hook reports it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComponentHealth {
    /// Whether it works; a component that does not makes `/health` a 503.
    pub ok: bool,
    /// A short state, e.g. `connected`, `reconnecting`.
    pub state: String,
}

/// A probe of a component's health, called on every `/health`.
pub(crate) type HealthHook = Arc<dyn Fn() -> ComponentHealth + Send + Sync>;

/// Health probes other parts of the service register (by name, e.g.
/// `"amqp"`), at any time: shared by the running API.
#[derive(Clone, Default)]
pub struct HealthHooks(Arc<Mutex<Vec<(String, HealthHook)>>>);

impl HealthHooks {
    /// Adds (or replaces) the probe of component `name`.
    pub fn register(&self, name: &str, hook: HealthHook) {
        let mut hooks = self.0.lock().expect("health hooks lock");
        hooks.retain(|(n, _)| n != name);
        hooks.push((name.to_owned(), hook));
    }

    /// Runs every probe.
    pub(crate) fn check(&self) -> Vec<(String, ComponentHealth)> {
        let hooks = self.0.lock().expect("health hooks lock").clone();
        hooks.into_iter().map(|(n, h)| (n, h())).collect()
    }
}

/// What every handler shares.
pub(crate) struct ApiState {
    pub store: EventStore,
    pub auth: Auth,
    /// This process's projection runners (health, lag); `None` if they run elsewhere.
    pub projections: Option<Arc<Projections>>,
    pub health: HealthHooks,
    pub metrics: PrometheusHandle,
    /// How long a write waits for the projection to show it before answering.
    pub read_your_writes: Duration,
    /// What progress streams follow courses through (one for all streams).
    pub watch: courses::watch::CourseWatch,
    /// Semantic retrieval's endpoint: vectors stored at upload, fused at
    /// search. `None`: full text alone.
    pub embedder: Option<crate::sources::embeddings::Embedder>,
}

impl ApiState {
    /// State over `store` with `auth`, no projections and no hooks; its
    /// course watcher (started on the current runtime) only polls until
    /// given wake-ups.
    pub(crate) fn new(store: EventStore, auth: Auth) -> Self {
        let watch = courses::watch::CourseWatch::start(store.clone(), None);
        Self {
            store,
            auth,
            projections: None,
            health: HealthHooks::default(),
            metrics: prometheus(),
            read_your_writes: Duration::from_secs(5),
            watch,
            embedder: None,
        }
    }
}

/// The process-wide Prometheus recorder (installed on first use) that the
/// `metrics` macros across the crate record into and `/metrics` renders.
pub(crate) fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .expect("non-empty buckets")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Registers the routes (under `/api/v1`, plus `/health` and `/metrics` at
/// the root for probes and scrapers) and the extractor error handlers.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    untrusted::configure(cfg, max_body_bytes);
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(|err, _| json_error(err).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_query", err.to_string()).into()),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|err, _| ApiError::bad_request("invalid_path", err.to_string()).into()),
    )
    .service(
        web::scope("/api/v1")
            .service(resource("/courses/generate").post(courses::handlers::generate))
            .service(resource("/courses").get(courses::handlers::list))
            .service(
                resource("/courses/{id}")
                    .get(courses::handlers::get)
                    .delete(courses::handlers::delete)
                    .patch(courses::metadata::edit),
            )
            .service(resource("/courses/{id}/lessons/{n}").get(courses::handlers::lesson))
            .service(
                resource("/courses/{id}/lessons/{n}/elements").get(courses::elements::elements),
            )
            .service(resource("/courses/{id}/lessons/{n}/subtitles").get(courses::subtitles::get))
            .service(resource("/courses/{id}/subtitles").post(courses::subtitles::request))
            .service(resource("/courses/{id}/events").get(courses::handlers::events))
            .service(resource("/courses/{id}/export").get(courses::export::export))
            .service(resource("/courses/{id}/progress").get(courses::progress::progress))
            .service(resource("/courses/{id}/restore").post(courses::handlers::restore))
            .service(resource("/courses/{id}/retry").post(courses::handlers::retry))
            .service(resource("/sources").post(sources::add).get(sources::list))
            .service(resource("/sources/search").get(sources::search))
            .service(
                resource("/sources/{id}")
                    .get(sources::get)
                    .delete(sources::delete),
            )
            .service(resource("/jobs").get(jobs::list))
            .service(resource("/jobs/{id}").get(jobs::get))
            .service(resource("/health").get(system::health))
            .service(resource("/metrics").get(system::metrics))
            .service(resource("/openapi.json").get(system::openapi)),
    )
    .service(resource("/health").get(system::health))
    .service(resource("/metrics").get(system::metrics))
    .default_service(web::to(not_found));
}

/// A route whose other methods answer a JSON 405 rather than an empty one.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// A JSON 405 whose `Allow` lists the methods the OpenAPI document gives
/// the route (RFC 9110 asks for it on every 405).
async fn method_not_allowed(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    use actix_web::http::header::{HeaderValue, ALLOW};
    use actix_web::ResponseError;
    let mut response = ApiError::MethodNotAllowed.error_response();
    if let Some(allow) = req
        .match_pattern()
        .as_deref()
        .and_then(docs::allowed_methods)
    {
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    if crate::web::is_page_path(req.path()) {
        return Ok(crate::web::not_found_page().await);
    }
    Err(ApiError::NotFound(
        "no such endpoint; see /api/v1/openapi.json".into(),
    ))
}

fn json_error(err: JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::PayloadTooLarge(
            format!("the body is {length} bytes; at most {limit} are accepted"),
        ),
        JsonPayloadError::Overflow { limit } => {
            ApiError::PayloadTooLarge(format!("the body is over the limit of {limit} bytes"))
        }
        JsonPayloadError::ContentType => {
            ApiError::UnsupportedMediaType("send the body as application/json".into())
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}"))
        }
        other => ApiError::bad_request("invalid_body", other.to_string()),
    }
}

/// Records every request's latency by method, route pattern and status.
async fn track_latency(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method: &'static str = match *req.method() {
        actix_web::http::Method::GET => "GET",
        actix_web::http::Method::POST => "POST",
        actix_web::http::Method::DELETE => "DELETE",
        actix_web::http::Method::PUT => "PUT",
        actix_web::http::Method::PATCH => "PATCH",
        actix_web::http::Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
        "status" => response.status().as_u16().to_string(),
    )
    .record(start.elapsed().as_secs_f64());
    Ok(response)
}

/// The address to bind: `settings.http_addr`, moved to the loopback
/// interface (same port) when there is no authentication.
pub(crate) fn bind_address(settings: &HttpSettings, auth: &Auth) -> SocketAddr {
    let mut addr = settings.http_addr;
    if matches!(auth, Auth::Local) {
        if !addr.ip().is_loopback() {
            tracing::warn!(
                requested = %addr,
                "AUTH_JWT_SECRET is not set: binding to loopback only instead"
            );
            addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        tracing::warn!(
            user = %LOCAL_USER,
            "AUTH_JWT_SECRET is not set: the HTTP API has no authentication, listens on \
             loopback only and serves one local user (an admin)"
        );
    }
    addr
}

/// Binds and starts the HTTP server on the current actix System; returns the
/// running server (await or stop it through its handle) and the bound address.
///
/// # Errors
/// The address cannot be bound.
pub(crate) fn start(
    state: ApiState,
    settings: &HttpSettings,
) -> Result<(Server, SocketAddr), StartError> {
    let listener = bind(settings, &state.auth)?;
    serve(state, listener, settings)
}

/// Binds the API's address (see [`bind_address`]); done before anything
/// else starts, so that a taken port fails the start cleanly.
///
/// # Errors
/// The address cannot be bound.
pub(crate) fn bind(settings: &HttpSettings, auth: &Auth) -> Result<TcpListener, StartError> {
    let addr = bind_address(settings, auth);
    TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })
}

/// Starts the HTTP server on an already bound `listener`.
///
/// # Errors
/// The listener cannot be used.
pub(crate) fn serve(
    state: ApiState,
    listener: TcpListener,
    settings: &HttpSettings,
) -> Result<(Server, SocketAddr), StartError> {
    let bound = listener.local_addr().map_err(StartError::Serve)?;
    let state = web::Data::new(state);
    let max_body = settings.http_max_body_bytes;
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(untrusted::reject_nul))
            .wrap(from_fn(track_latency))
            .configure(crate::web::configure)
            .configure(|cfg| configure(cfg, max_body))
    })
    .disable_signals()
    .shutdown_timeout(5);
    if let Some(workers) = settings.http_workers {
        server = server.workers(workers.max(1));
    }
    let server = server.listen(listener).map_err(StartError::Serve)?.run();
    tracing::info!(address = %bound, "HTTP API listening");
    Ok((server, bound))
}
