//! The running service: `Application::build` starts everything `coursegen
//! serve` runs (store subscription, scheduler and course actors);
//! `run_until_stopped` waits for SIGINT/SIGTERM and shuts down cleanly.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use clap::Args;

use crate::actors::scheduler::{self, Scheduler, SchedulerSettings};
use crate::ingress::amqp::{AmqpService, AmqpSettings, AmqpStatus};
use crate::llm::{self, LlmClient, LlmSettings};
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

    /// RabbitMQ ingress (off unless AMQP_URL is set).
    #[command(flatten)]
    pub amqp: AmqpSettings,
}

/// Everything `serve` runs, started.
pub struct Application {
    scheduler: Addr<Scheduler>,
    queue: WorkQueue,
    grace: Duration,
    /// The RabbitMQ consumer and reply publisher, when AMQP_URL is set.
    amqp: Option<AmqpService>,
    _notifier: Notifier,
}

impl Application {
    /// Starts the service on `store` with the LLM the settings name.
    /// Must run inside an actix `System`.
    ///
    /// # Errors
    /// Unusable LLM settings.
    pub fn build(store: EventStore, args: &ServeArgs) -> anyhow::Result<Self> {
        let llm = llm::client_from_settings(&args.llm)?;
        tracing::info!(provider = ?args.llm.provider(), model = llm.model(), "language model");
        let amqp_store = store.clone();
        let mut app = Self::with_llm(
            store,
            llm,
            &args.scheduler,
            args.llm.llm_max_concurrency.saturating_mul(2),
            Duration::from_secs_f64(args.shutdown_grace_secs.max(0.0)),
        );
        app.amqp =
            args.amqp.amqp_url.is_some().then(|| {
                AmqpService::start(amqp_store, app._notifier.wakeups(), args.amqp.clone())
            });
        Ok(app)
    }

    /// Starts the service with a given LLM client (benchmarks); `max_active`
    /// applies unless the settings name a number of active courses.
    pub fn with_llm(
        store: EventStore,
        llm: Arc<dyn LlmClient>,
        scheduler: &SchedulerSettings,
        max_active: usize,
        grace: Duration,
    ) -> Self {
        let notifier = Notifier::start(store.config().clone());
        let scheduler = Scheduler::new(store, llm, Some(notifier.wakeups()), scheduler, max_active);
        let queue = scheduler.queue();
        Self {
            scheduler: scheduler.start(),
            queue,
            grace,
            amqp: None,
            _notifier: notifier,
        }
    }

    /// The RabbitMQ connection state (for `/health`), when AMQP is on.
    pub fn amqp_status(&self) -> Option<AmqpStatus> {
        self.amqp.as_ref().map(AmqpService::status)
    }

    /// Runs until SIGINT or SIGTERM, then stops cleanly.
    ///
    /// # Errors
    /// Signal handlers that cannot be installed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        self.stop().await;
        Ok(())
    }

    /// Stops taking work, lets in-flight steps finish (within the grace
    /// period) and releases this instance's leases.
    pub async fn stop(self) {
        if let Some(amqp) = self.amqp {
            amqp.stop().await;
        }
        scheduler::shutdown(&self.scheduler, &self.queue, self.grace).await;
        tracing::info!("stopped");
    }
}
