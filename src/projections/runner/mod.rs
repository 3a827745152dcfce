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
//!   read the events after it ([`read_all_after_with`]), apply them, advance
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

use std::future::Future;
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

use super::{ApplyError, CheckpointState};
use crate::retry::Backoff;
use crate::store::subscription::Waiter;
use crate::store::{read_all_after_with, EventStore, Position, RecordedEvent};

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

    /// Told of each change of the runner's state.
    fn state_changed(&self, _state: RunnerState) {}

    /// Told of each lost connection, before the runner reconnects.
    fn connection_lost(&mut self, _error: &str) {}
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

/// What one batch did.
enum BatchOutcome {
    Applied {
        count: usize,
        last: Position,
    },
    Empty,
    /// A replay holds the pause lock.
    Paused,
    /// The checkpoint row is not running (failed, or stopped by hand): idle.
    Failed,
}

enum BatchError {
    /// The event at `position` cannot be applied; the batch ended at `last`.
    Event {
        position: Position,
        error: String,
        batch_len: usize,
        last: Position,
    },
    /// The connection or server failed: reconnect and retry.
    Connection(String),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Connection(e.to_string())
    }
}

/// Why a session ended.
enum SessionEnd {
    /// Told to stop: between batches, or while waiting.
    Stopped,
    /// A connection failed (why): reconnect.
    Lost(String),
}

/// `work`, unless a stop comes first (`None` then).
async fn unless_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        // An error: the actor (the sender) is gone; so is the reason to go on.
        _ = stop.wait_for(|stop| *stop) => None,
        out = work => Some(out),
    }
}

struct Worker {
    applier: Box<dyn BatchApplier>,
    store: EventStore,
    waiter: Waiter,
    options: RunnerOptions,
    state: Arc<Mutex<RunnerState>>,
    /// Delays between reconnects; reset once running.
    backoff: Backoff,
    /// True once the runner is told to stop.
    stop: watch::Receiver<bool>,
}

impl Worker {
    fn set(&self, state: RunnerState) {
        let mut s = self.state.lock().expect("state lock");
        if *s != state {
            tracing::info!(
                projection = self.applier.name(),
                ?state,
                "projection runner"
            );
            *s = state;
            drop(s);
            self.applier.state_changed(state);
        }
    }

    async fn run(mut self) {
        let name = format!("coursegen-projection-{}", self.applier.name());
        loop {
            self.set(RunnerState::Starting);
            let error = match self.session(&name).await {
                SessionEnd::Stopped => break,
                SessionEnd::Lost(error) => error,
            };
            tracing::warn!(projection = self.applier.name(), %error,
                "projection connection lost; reconnecting");
            self.applier.connection_lost(&error);
            let delay = self.backoff.next_delay();
            if unless_stopped(&mut self.stop, tokio::time::sleep(delay))
                .await
                .is_none()
            {
                break;
            }
        }
        self.set(RunnerState::Stopped);
    }

    /// Connects, takes the lock (standing by until then), opens the applier
    /// and applies batches until a connection fails or a stop; the lock goes
    /// with the connection when this returns.
    async fn session(&mut self, application_name: &str) -> SessionEnd {
        let connecting = dedicated_connection(&self.store, application_name);
        let mut conn = match unless_stopped(&mut self.stop, connecting).await {
            None => return SessionEnd::Stopped,
            Some(Ok(c)) => c,
            Some(Err(e)) => return SessionEnd::Lost(format!("cannot connect: {e}")),
        };
        match self.acquire(&conn).await {
            Ok(true) => {}
            Ok(false) => return SessionEnd::Stopped,
            Err(e) => {
                return SessionEnd::Lost(format!("lost the connection while standing by: {e}"))
            }
        }
        match unless_stopped(&mut self.stop, self.applier.open()).await {
            None => return SessionEnd::Stopped,
            Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
            Some(Ok(())) => {}
        }
        self.set(RunnerState::Running);
        self.backoff.reset();
        self.work(&mut conn).await
    }

    /// Waits until this worker holds the projection's session lock (`true`)
    /// or is told to stop (`false`).
    async fn acquire(&mut self, conn: &ClientWrapper) -> Result<bool, tokio_postgres::Error> {
        let key = self.applier.lock_key();
        loop {
            let got: bool = conn
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await?
                .get(0);
            if got {
                conn.execute(
                    "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[&self.applier.name()],
                )
                .await?;
                return Ok(true);
            }
            self.set(RunnerState::Standby);
            let retry = tokio::time::sleep(self.options.lock_retry);
            if unless_stopped(&mut self.stop, retry).await.is_none() {
                return Ok(false);
            }
        }
    }

    /// Applies batches until a connection fails or a stop (checked between
    /// batches and while waiting: a batch begun is committed).
    async fn work(&mut self, conn: &mut ClientWrapper) -> SessionEnd {
        // After a failing batch: one event per batch up to its end, to find the poison.
        let mut single_step_until: Option<Position> = None;
        loop {
            if *self.stop.borrow() {
                return SessionEnd::Stopped;
            }
            if let Err(e) = self.applier.check() {
                return SessionEnd::Lost(e.to_string());
            }
            self.waiter.reading();
            let limit = if single_step_until.is_some() {
                1
            } else {
                self.options.batch_size
            };
            match self.batch(conn, limit).await {
                Ok(BatchOutcome::Applied { count, last }) => {
                    self.set(RunnerState::Running);
                    if single_step_until.is_some_and(|until| last >= until) {
                        single_step_until = None;
                    }
                    self.waiter.found();
                    tracing::trace!(projection = self.applier.name(), count, ?last, "applied");
                }
                Ok(BatchOutcome::Empty) => {
                    self.set(RunnerState::Running);
                    single_step_until = None;
                    unless_stopped(&mut self.stop, self.waiter.wait()).await;
                }
                Ok(BatchOutcome::Paused) => {
                    self.set(RunnerState::Paused);
                    let recheck = self.options.idle_check.min(Duration::from_millis(200));
                    unless_stopped(&mut self.stop, tokio::time::sleep(recheck)).await;
                }
                Ok(BatchOutcome::Failed) => {
                    self.set(RunnerState::Failed);
                    let recheck = tokio::time::sleep(self.options.idle_check);
                    unless_stopped(&mut self.stop, recheck).await;
                }
                Err(BatchError::Connection(e)) => return SessionEnd::Lost(e),
                Err(BatchError::Event {
                    position,
                    error,
                    batch_len,
                    last,
                }) => {
                    if batch_len > 1 {
                        tracing::warn!(projection = self.applier.name(), ?position, %error,
                            "batch failed; retrying one event at a time");
                        single_step_until = Some(last);
                        continue;
                    }
                    tracing::error!(projection = self.applier.name(), ?position, %error,
                        "poison event: projection stopped");
                    if let Err(e) = self.record_failure(conn, position, &error).await {
                        return SessionEnd::Lost(e.to_string());
                    }
                    single_step_until = None;
                    self.set(RunnerState::Failed);
                }
            }
        }
    }

    /// One transaction: checkpoint, events, apply, checkpoint.
    async fn batch(
        &mut self,
        conn: &mut ClientWrapper,
        limit: i64,
    ) -> Result<BatchOutcome, BatchError> {
        let name = self.applier.name();
        let tx = conn.transaction().await?;
        if let Some(key) = self.applier.pause_lock_key() {
            let free: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock_shared($1)", &[&key])
                .await?
                .get(0);
            if !free {
                tx.rollback().await?;
                return Ok(BatchOutcome::Paused);
            }
        }
        let stmt = tx
            .prepare_cached(
                "SELECT transaction_id, global_position, state FROM projection_checkpoints WHERE name = $1",
            )
            .await?;
        let row = tx.query_one(&stmt, &[&name]).await?;
        if row.get::<_, CheckpointState>(2) != CheckpointState::Running {
            tx.rollback().await?;
            return Ok(BatchOutcome::Failed);
        }
        let checkpoint = Position {
            transaction_id: row.get(0),
            global_position: row.get(1),
        };
        let events = read_all_after_with(&tx, checkpoint, limit)
            .await
            .map_err(|e| BatchError::Connection(e.to_string()))?;
        let Some(last) = events.last().map(RecordedEvent::position) else {
            tx.rollback().await?;
            return Ok(BatchOutcome::Empty);
        };
        let count = events.len();
        if let Err(e) = self.applier.apply(&tx, events).await {
            return Err(match e {
                ApplierError::Apply(ApplyError::Event { position, error }) => {
                    let _ = tx.rollback().await;
                    BatchError::Event {
                        position,
                        error,
                        batch_len: count,
                        last,
                    }
                }
                other => BatchError::Connection(other.to_string()),
            });
        }
        let stmt = tx
            .prepare_cached(
                "UPDATE projection_checkpoints
                 SET transaction_id = $2, global_position = $3, updated_at = now()
                 WHERE name = $1",
            )
            .await?;
        tx.execute(&stmt, &[&name, &last.transaction_id, &last.global_position])
            .await?;
        tx.commit().await?;
        Ok(BatchOutcome::Applied { count, last })
    }

    async fn record_failure(
        &self,
        conn: &ClientWrapper,
        position: Position,
        error: &str,
    ) -> Result<(), tokio_postgres::Error> {
        conn.execute(
            "UPDATE projection_checkpoints
             SET state = $5, error = $2, failed_transaction_id = $3, failed_position = $4,
                 updated_at = now()
             WHERE name = $1",
            &[
                &self.applier.name(),
                &error,
                &position.transaction_id,
                &position.global_position,
                &CheckpointState::Failed,
            ],
        )
        .await?;
        Ok(())
    }
}
