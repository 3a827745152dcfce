//! The runner of one projection: an actor owning a worker task that holds the
//! projection's lock and applies the log batch by batch.
//!
//! What it applies is a `BatchApplier`: a read model's tables (written in
//! the batch transaction), or a sink outside the database (the AMQP reply
//! publisher, which publishes each batch and returns once every publish is
//! confirmed, so the checkpoint only moves past what was delivered).
//!
//! - Exactly one active runner per projection across processes: the worker
//!   takes a session advisory lock on a dedicated connection (not the pool);
//!   a standby retries every [`RunnerOptions::lock_retry`] and takes over
//!   once the holder's connection is gone.
//! - Each batch is one transaction on that connection: read the checkpoint,
//!   read the events after it ([`read_all_after_as`](crate::store::read_all_after_as), each payload as
//!   [`BatchApplier::payload_sql`] says), apply them, advance
//!   the checkpoint, commit. A crash at any point rolls the whole batch back.
//! - Woken by the [`Notifier`](crate::store::subscription::Notifier) through
//!   a [`Waiter`], polling as a fallback; when behind, batches are
//!   [`RunnerOptions::batch_size`] events.
//! - A lost connection (the database's, or the applier's own) releases the
//!   lock: the runner reconnects after a `BatchApplier::reconnect_backoff`
//!   delay and competes for the lock again.
//! - A poison event stops this projection only: the batch is re-run one event
//!   at a time to find it, then the checkpoint row gets [`CheckpointState::Failed`],
//!   the error and the event's position, and the runner idles (re-checking
//!   the row now and then, so an operator's reset or a replay resumes it).
//! - Each batch takes the projection's pause lock shared: a replay takes it
//!   exclusively to swap its rebuilt tables in; the runner then resumes from
//!   the replay's checkpoint.
//! - A stop ([`StopRunner`]) is graceful: the worker is told, lets the batch
//!   in progress commit (a reply batch already published is checkpointed,
//!   not sent again), closes its connection (releasing the lock) and ends.
//!   Only a worker still busy after [`RunnerOptions::stop_timeout`] is
//!   aborted, its batch rolled back for the next runner to apply.
//!
//! The work runs in a task on the tokio runtime, never on the actor's thread.

#[cfg(test)]
mod tests;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Context, Handler, Message, MessageResult,
    ResponseActFuture, WrapFuture,
};
use async_trait::async_trait;
use deadpool_postgres::{ClientWrapper, Transaction};
use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::ApplyError;
use crate::retry::Backoff;
use crate::store::subscription::Waiter;
use crate::store::{EventStore, RecordedEvent};
use worker::Worker;

/// How a runner reads and waits.
#[derive(Debug, Clone, Copy)]
pub struct RunnerOptions {
    /// Most events applied per transaction.
    pub batch_size: i64,
    /// Longest wait between reads without a notification.
    pub poll_interval: Duration,
    /// How often a standby tries to take the lock.
    pub lock_retry: Duration,
    /// How often a failed or paused runner re-checks whether it may go on.
    pub idle_check: Duration,
    /// How long a stop waits for the batch in progress to commit before it
    /// aborts the worker (the batch then rolls back and is applied again by
    /// the next runner).
    pub stop_timeout: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            lock_retry: Duration::from_secs(1),
            idle_check: Duration::from_secs(1),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// What a runner is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerState {
    /// Connecting to the database.
    Starting,
    /// Another process holds the projection's lock; retrying.
    Standby,
    /// Holds the lock and applies events.
    Running,
    /// A replay of this projection is swapping its tables in.
    Paused,
    /// Stopped on a poison event (see the checkpoint's error).
    Failed,
    /// The actor was stopped.
    Stopped,
}

/// Why a [`BatchApplier`] did not open or apply a batch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplierError {
    /// What applying to tables fails with: a poison event, or the database
    /// connection.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// What a sink publishes to is unreachable or refused the batch: retry
    /// on new connections (the checkpoint has not moved).
    #[error(transparent)]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

/// What a runner keeps up to date with the log, one batch at a time.
///
/// The runner owns the lock, the checkpoint and the waiting; an applier
/// only says what a batch of events does.
#[async_trait]
pub(crate) trait BatchApplier: Send + Sync + 'static {
    /// The name of its checkpoint row (and of its logs and status).
    fn name(&self) -> &'static str;

    /// Key of the session advisory lock the active runner holds.
    fn lock_key(&self) -> i64;

    /// Key of the lock a replay takes exclusively to pause the runner (taken
    /// shared per batch); `None` for what is never replayed.
    fn pause_lock_key(&self) -> Option<i64> {
        None
    }

    /// The delays between reconnects after a lost connection (reset once
    /// the runner is running again).
    fn reconnect_backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Opens what applying needs besides the database, once the lock is
    /// held. An error counts as a lost connection.
    async fn open(&mut self) -> Result<(), ApplierError> {
        Ok(())
    }

    /// Whether what [`Self::open`] opened still works; asked before each batch.
    fn check(&self) -> Result<(), ApplierError> {
        Ok(())
    }

    /// Applies `events` (in log order, at least one) inside `tx`, which the
    /// runner then uses to advance the checkpoint and commits. Given by
    /// value, so that an applier working from its own form of the events
    /// can drop the raw ones first (a batch is then never held twice).
    async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ApplierError>;

    /// The SQL expression (over an `events` row) each event's payload is
    /// read as: `payload` itself, or (see [`payload_of_types`]) a JSON
    /// `null` for the event types the applier ignores, so that their
    /// payloads (a document's whole text, a lesson's) are neither
    /// decompressed nor sent to it.
    fn payload_sql(&self) -> String {
        "payload".to_owned()
    }

    /// Told of each change of the runner's state.
    fn state_changed(&self, _state: RunnerState) {}

    /// Told of each lost connection, before the runner reconnects.
    fn connection_lost(&mut self, _error: &str) {}
}

/// A [`BatchApplier::payload_sql`]: the payload of events whose type is
/// (`wanted`) or is not (`!wanted`) one of `types`, a JSON `null` for the
/// others.
pub(crate) fn payload_of_types(types: &[&str], wanted: bool) -> String {
    let list = types
        .iter()
        .map(|t| format!("'{}'", t.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let not = if wanted { "" } else { "NOT " };
    format!("CASE WHEN event_type {not}IN ({list}) THEN payload ELSE 'null'::jsonb END")
}

/// Asks a runner for its [`RunnerState`].
#[derive(Debug, Message)]
#[rtype(result = "RunnerState")]
pub(crate) struct GetRunnerState;

/// Stops a runner: its worker finishes the batch in progress, releases its
/// lock and ends (aborted after [`RunnerOptions::stop_timeout`]); answered
/// once it has.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct StopRunner;

/// The actor of one projection's runner.
pub struct ProjectionRunner {
    name: &'static str,
    /// Moved into the worker when the actor starts.
    applier: Option<Box<dyn BatchApplier>>,
    store: EventStore,
    wakeups: watch::Receiver<u64>,
    options: RunnerOptions,
    state: Arc<Mutex<RunnerState>>,
    /// Turned true to tell the worker to stop between batches.
    stop: watch::Sender<bool>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl ProjectionRunner {
    /// A runner of `applier`, woken by `wakeups` (a
    /// [`Notifier`](crate::store::subscription::Notifier)'s); it starts
    /// working when the actor starts.
    pub(crate) fn new(
        applier: Box<dyn BatchApplier>,
        store: EventStore,
        wakeups: watch::Receiver<u64>,
        options: RunnerOptions,
    ) -> Self {
        Self {
            name: applier.name(),
            applier: Some(applier),
            store,
            wakeups,
            options,
            state: Arc::new(Mutex::new(RunnerState::Starting)),
            stop: watch::channel(false).0,
            worker: None,
        }
    }
}

impl Actor for ProjectionRunner {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        let Some(applier) = self.applier.take() else {
            return;
        };
        let worker = Worker {
            backoff: applier.reconnect_backoff(),
            payload_sql: applier.payload_sql(),
            applier,
            store: self.store.clone(),
            waiter: Waiter::new(
                self.wakeups.clone(),
                self.options.poll_interval,
                Duration::from_millis(2),
            ),
            options: self.options,
            state: self.state.clone(),
            stop: self.stop.subscribe(),
        };
        // An actor first polled while its runtime shuts down has nothing to run.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.worker = Some(runtime.spawn(worker.run()));
        }
    }

    /// Stopped without a [`StopRunner`] (its System is shutting down): no
    /// time to let a batch finish.
    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(w) = self.worker.take() {
            w.abort();
        }
        *self.state.lock().expect("state lock") = RunnerState::Stopped;
    }
}

impl Handler<GetRunnerState> for ProjectionRunner {
    type Result = MessageResult<GetRunnerState>;

    fn handle(&mut self, _: GetRunnerState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(*self.state.lock().expect("state lock"))
    }
}

impl Handler<StopRunner> for ProjectionRunner {
    /// Waits for the worker in a future of the actor's, so that the actor
    /// keeps answering (its state) meanwhile.
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: StopRunner, _: &mut Context<Self>) -> Self::Result {
        self.stop.send_replace(true);
        let worker = self.worker.take();
        let (name, timeout) = (self.name, self.options.stop_timeout);
        let ended = async move {
            let Some(worker) = worker else { return };
            let abort = worker.abort_handle();
            if tokio::time::timeout(timeout, worker).await.is_err() {
                tracing::warn!(
                    projection = name,
                    ?timeout,
                    "projection runner did not stop in time; aborted (its batch rolls back)"
                );
                abort.abort();
            }
        };
        Box::pin(ended.into_actor(self).map(|(), runner, ctx| {
            *runner.state.lock().expect("state lock") = RunnerState::Stopped;
            ctx.stop();
        }))
    }
}

/// Opens a connection of its own (not from the pool), named for `pg_stat_activity`.
pub(crate) async fn dedicated_connection(
    store: &EventStore,
    application_name: &str,
) -> Result<ClientWrapper, tokio_postgres::Error> {
    let mut config = store.config().clone();
    config.application_name(application_name);
    let (client, connection) = config.connect(NoTls).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "dedicated connection ended");
        }
    });
    // Projection tables grow from empty (a new database, a replay's fresh
    // tables), and a generic plan cached while a table was tiny (sequential
    // scans) stays cached until an ANALYZE: every batch would then scan the
    // whole table. Planning each statement for its parameters costs far
    // less than one such scan. (A statement rather than a startup option,
    // which connection poolers in front of PostgreSQL may refuse.)
    client
        .batch_execute("SET plan_cache_mode = force_custom_plan")
        .await?;
    Ok(ClientWrapper::new(client, task))
}
