//! The running service: `Application::build` starts everything `coursegen
//! serve` runs (store subscription, scheduler and course actors);
//! `Application::stop` shuts it down cleanly (the CLI calls it on a signal).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use clap::Args;

use crate::actors::scheduler::{self, Scheduler, SchedulerSettings};
use crate::ingress::amqp::{replies, AmqpService, AmqpSettings, AmqpStatus};
use crate::ingress::http::courses::watch::CourseWatch;
use crate::ingress::http::{
    self as http_api, ApiState, Auth, ComponentHealth, HealthHooks, HttpSettings,
};
use crate::llm::{self, LlmClient, LlmSettings};
use crate::projections::{self, Projections};
use crate::sources::embeddings::{Embedder, EmbeddingsArgs};
use crate::store::subscription::Notifier;
use crate::store::work::WorkQueue;
use crate::store::EventStore;

/// Options of `coursegen serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub llm: LlmSettings,

    #[command(flatten)]
    pub scheduler: SchedulerSettings,

    /// Seconds to let in-flight steps finish on shutdown before leaving them
    /// to be resumed by the next start (or another instance).
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 30.0)]
    pub shutdown_grace_secs: f64,

    #[command(flatten)]
    pub http: HttpSettings,

    /// RabbitMQ ingress (off unless AMQP_URL is set).
    #[command(flatten)]
    pub amqp: AmqpSettings,

    #[command(flatten)]
    pub export: crate::config::ExportSettings,

    /// Semantic retrieval (off unless EMBEDDINGS_MODEL and EMBEDDINGS_BASE_URL are set).
    #[command(flatten)]
    pub embeddings: EmbeddingsArgs,
}

/// Everything `serve` runs, started.
pub struct Application {
    scheduler: Addr<Scheduler>,
    queue: WorkQueue,
    grace: Duration,
    _notifier: Arc<Notifier>,
    store: EventStore,
    /// Where the file backup projector writes (off when `None`).
    export_dir: Option<std::path::PathBuf>,
    /// The projection runners, once [`Application::start_http`] started them.
    projections: Option<Arc<Projections>>,
    /// The running HTTP API and its bound address.
    http: Option<(actix_web::dev::ServerHandle, std::net::SocketAddr)>,
    health: HealthHooks,
    /// The RabbitMQ consumer and reply publisher, when AMQP_URL is set.
    amqp: Option<AmqpService>,
    /// Semantic retrieval's endpoint (ingest over HTTP, search), when configured.
    embedder: Option<Embedder>,
}

impl Application {
    /// Starts the service on `store` with the LLM the settings name.
    /// Must run inside an actix `System`.
    ///
    /// # Errors
    /// Unusable LLM settings; half of the embeddings settings.
    pub fn build(store: EventStore, args: &ServeArgs) -> anyhow::Result<Self> {
        let llm = llm::client_from_settings(&args.llm)?;
        tracing::info!(provider = ?args.llm.provider(), model = llm.model(), "language model");
        let embedder = args.embeddings.embedder()?;
        if let Some(e) = &embedder {
            tracing::info!(
                model = e.model(),
                "semantic retrieval on: vectors fused with full text"
            );
        }
        let mut app = Self::with_parts(
            store,
            llm,
            embedder,
            &args.scheduler,
            args.llm.llm_max_concurrency.saturating_mul(2),
            Duration::from_secs_f64(args.shutdown_grace_secs.max(0.0)),
        );
        app.export_dir.clone_from(&args.export.export_dir);
        if args.amqp.amqp_url.is_some() {
            let amqp = AmqpService::start(
                app.store.clone(),
                app._notifier.wakeups(),
                args.amqp.clone(),
            );
            let status = amqp.status();
            app.health.register(
                "amqp",
                Arc::new(move || {
                    let now = status.snapshot();
                    ComponentHealth {
                        ok: now.healthy(),
                        state: format!(
                            "consumer {:?}, reply publisher {:?}",
                            now.consumer.state, now.publisher.state
                        )
                        .to_lowercase(),
                    }
                }),
            );
            app.amqp = Some(amqp);
        }
        Ok(app)
    }

    /// Starts the write side with a given LLM client (benchmarks); `max_active`
    /// applies unless the settings name a number of active courses.
    pub(crate) fn with_llm(
        store: EventStore,
        llm: Arc<dyn LlmClient>,
        scheduler: &SchedulerSettings,
        max_active: usize,
        grace: Duration,
    ) -> Self {
        Self::with_parts(store, llm, None, scheduler, max_active, grace)
    }

    /// [`Self::with_llm`], retrieving with `embedder` too when given.
    fn with_parts(
        store: EventStore,
        llm: Arc<dyn LlmClient>,
        embedder: Option<Embedder>,
        scheduler: &SchedulerSettings,
        max_active: usize,
        grace: Duration,
    ) -> Self {
        // The NOTIFY sender lives on this (the System's) runtime, which lasts
        // as long as the service, not on an HTTP worker's.
        store.send_notifications_on(tokio::runtime::Handle::current());
        let notifier = Arc::new(Notifier::start(store.config().clone()));
        let scheduler = Scheduler::new(
            store.clone(),
            llm,
            Some(notifier.wakeups()),
            scheduler,
            max_active,
        )
        .with_embedder(embedder.clone());
        let queue = scheduler.queue();
        Self {
            scheduler: scheduler.start(),
            queue,
            grace,
            _notifier: notifier,
            store,
            export_dir: None,
            projections: None,
            http: None,
            health: HealthHooks::default(),
            amqp: None,
            embedder,
        }
    }

    /// Starts the read side: the projection runners and the HTTP API on
    /// `settings.http_addr` (what `coursegen serve` adds to [`Self::build`]).
    /// Returns the bound address (useful with port 0).
    ///
    /// # Errors
    /// Database errors starting the runners; an address that cannot be bound.
    pub async fn start_http(
        &mut self,
        settings: &HttpSettings,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let auth = Auth::new(settings.auth_jwt_secret.as_deref());
        let listener = http_api::bind(settings, &auth)?;
        if self.projections.is_none() {
            let mut runners =
                projections::start_runners(self.store.clone(), self._notifier.clone()).await?;
            // The reply publisher runs from `build` on (AMQP needs no HTTP),
            // and is reported and stopped with the read models.
            if let Some(publisher) = self.amqp.as_ref().and_then(AmqpService::publisher) {
                runners.add(replies::NAME, publisher);
            }
            if let Some(dir) = &self.export_dir {
                let backup = crate::export::backup::start(
                    self.store.clone(),
                    self._notifier.wakeups(),
                    dir.clone(),
                    projections::RunnerOptions::default(),
                )
                .await?;
                runners.add(crate::export::backup::NAME, backup);
            }
            self.projections = Some(Arc::new(runners));
        }
        let mut state = ApiState::new(self.store.clone(), auth);
        // Progress streams are woken by appends, on this (the System's) runtime.
        state.watch = CourseWatch::start(self.store.clone(), Some(self._notifier.wakeups()));
        state.projections = self.projections.clone();
        state.health = self.health.clone();
        state.embedder.clone_from(&self.embedder);
        let (server, addr) = http_api::serve(state, listener, settings)?;
        self.http = Some((server.handle(), addr));
        actix_rt::spawn(server);
        Ok(addr)
    }

    /// How many course actors this process runs now (0: it drives no course).
    pub async fn active_courses(&self) -> usize {
        self.scheduler
            .send(scheduler::ActiveCourses)
            .await
            .unwrap_or(0)
    }

    /// The RabbitMQ connection state, when AMQP is on.
    pub fn amqp_status(&self) -> Option<AmqpStatus> {
        self.amqp.as_ref().map(AmqpService::status)
    }

    /// Where other components (the AMQP ingress, ...) register their health
    /// probe for `/health`.
    pub fn health_hooks(&self) -> HealthHooks {
        self.health.clone()
    }

    /// Stops taking work, lets in-flight steps finish (within the grace
    /// period) and releases this instance's leases.
    pub async fn stop(self) {
        if let Some(amqp) = self.amqp {
            amqp.stop().await;
        }
        if let Some((server, _)) = &self.http {
            server.stop(true).await;
        }
        // Other holders (the HTTP state) may keep the handle alive: the
        // runners are stopped through it, whoever else holds it.
        if let Some(p) = &self.projections {
            p.stop().await;
        }
        scheduler::shutdown(&self.scheduler, &self.queue, self.grace).await;
        tracing::info!("stopped");
    }
}
