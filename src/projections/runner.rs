//! The runner of one projection: an actor owning a worker task that holds the
//! projection's lock and applies the log batch by batch.
//!
//! - Exactly one active runner per projection across processes: the worker
//!   takes a session advisory lock on a dedicated connection (not the pool);
//!   a standby retries every [`RunnerOptions::lock_retry`] and takes over
//!   once the holder's connection is gone.
//! - Each batch is one transaction on that connection: read the checkpoint,
//!   read the events after it ([`read_all_after_with`]), apply them, advance
//!   the checkpoint, commit. A crash at any point rolls the whole batch back.
//! - Woken by the [`Notifier`], polling as a fallback; when behind, batches
//!   are [`RunnerOptions::batch_size`] events.
//! - A poison event stops this projection only: the batch is re-run one event
//!   at a time to find it, then the checkpoint row gets `state = 'failed'`,
//!   the error and the event's position, and the runner idles (re-checking
//!   the row now and then, so an operator's reset or a replay resumes it).
//! - Each batch takes the projection's pause lock shared: a replay takes it
//!   exclusively to swap its rebuilt tables in; the runner then resumes from
//!   the replay's checkpoint.
//!
//! The work runs in a task on the tokio runtime, never on the actor's thread.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, ActorContext, Context, Handler, Message, MessageResult};
use deadpool_postgres::ClientWrapper;
use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::{ApplyError, Decoded, Projection};
use crate::store::subscription::Notifier;
use crate::store::{read_all_after_with, EventStore, Position};

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
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            lock_retry: Duration::from_secs(1),
            idle_check: Duration::from_secs(1),
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

/// Asks a runner for its [`RunnerState`].
#[derive(Debug, Message)]
#[rtype(result = "RunnerState")]
pub struct GetRunnerState;

/// Stops a runner: its worker ends and its lock is released at once.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopRunner;

/// The actor of one projection's runner.
pub struct ProjectionRunner {
    projection: Projection,
    store: EventStore,
    notifier: Arc<Notifier>,
    options: RunnerOptions,
    state: Arc<Mutex<RunnerState>>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl ProjectionRunner {
    /// A runner of `projection`; it starts working when the actor starts.
    pub fn new(
        projection: Projection,
        store: EventStore,
        notifier: Arc<Notifier>,
        options: RunnerOptions,
    ) -> Self {
        Self {
            projection,
            store,
            notifier,
            options,
            state: Arc::new(Mutex::new(RunnerState::Starting)),
            worker: None,
        }
    }
}

impl Actor for ProjectionRunner {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        let worker = Worker {
            projection: self.projection,
            store: self.store.clone(),
            wakeups: self.notifier.wakeups(),
            options: self.options,
            state: self.state.clone(),
        };
        // An actor first polled while its runtime shuts down has nothing to run.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.worker = Some(runtime.spawn(worker.run()));
        }
    }

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
    type Result = ();

    fn handle(&mut self, _: StopRunner, ctx: &mut Context<Self>) {
        if let Some(w) = self.worker.take() {
            w.abort();
        }
        *self.state.lock().expect("state lock") = RunnerState::Stopped;
        ctx.stop();
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
    /// The checkpoint row says failed: idle.
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

struct Worker {
    projection: Projection,
    store: EventStore,
    wakeups: watch::Receiver<u64>,
    options: RunnerOptions,
    state: Arc<Mutex<RunnerState>>,
}

impl Worker {
    fn set(&self, state: RunnerState) {
        let mut s = self.state.lock().expect("state lock");
        if *s != state {
            tracing::info!(projection = %self.projection, ?state, "projection runner");
            *s = state;
        }
    }

    async fn run(mut self) {
        let name = format!("coursegen-projection-{}", self.projection);
        loop {
            self.set(RunnerState::Starting);
            let mut conn = match dedicated_connection(&self.store, &name).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(projection = %self.projection, error = %e, "cannot connect");
                    tokio::time::sleep(self.options.lock_retry).await;
                    continue;
                }
            };
            match self.acquire(&conn).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(projection = %self.projection, error = %e, "lost connection while standing by");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            self.set(RunnerState::Running);
            let e = self.work(&mut conn).await;
            tracing::warn!(projection = %self.projection, error = %e, "projection connection lost; reconnecting");
            drop(conn);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until this worker holds the projection's session lock.
    async fn acquire(&self, conn: &ClientWrapper) -> Result<(), tokio_postgres::Error> {
        let key = self.projection.runner_lock_key();
        loop {
            let got: bool = conn
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await?
                .get(0);
            if got {
                conn.execute(
                    "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[&self.projection.name()],
                )
                .await?;
                return Ok(());
            }
            self.set(RunnerState::Standby);
            tokio::time::sleep(self.options.lock_retry).await;
        }
    }

    /// Applies batches until the connection fails.
    async fn work(&mut self, conn: &mut ClientWrapper) -> String {
        // After a failing batch: one event per batch up to its end, to find the poison.
        let mut single_step_until: Option<Position> = None;
        let mut retry_soon: Option<Duration> = None;
        loop {
            self.wakeups.borrow_and_update();
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
                    retry_soon = None;
                    tracing::trace!(projection = %self.projection, count, ?last, "applied");
                }
                Ok(BatchOutcome::Empty) => {
                    self.set(RunnerState::Running);
                    single_step_until = None;
                    let wait = retry_soon.unwrap_or(self.options.poll_interval);
                    let woken = tokio::select! {
                        changed = self.wakeups.changed() => match changed {
                            Ok(()) => true,
                            Err(_) => { tokio::time::sleep(wait).await; false }
                        },
                        () = tokio::time::sleep(wait) => false,
                    };
                    // A wake-up whose transaction is not past the read horizon
                    // yet: look again soon rather than after a full poll.
                    retry_soon = match (woken, retry_soon) {
                        (true, _) => Some(Duration::from_millis(2)),
                        (false, Some(d)) if d < self.options.poll_interval => Some(d * 2),
                        _ => None,
                    };
                }
                Ok(BatchOutcome::Paused) => {
                    self.set(RunnerState::Paused);
                    tokio::time::sleep(self.options.idle_check.min(Duration::from_millis(200)))
                        .await;
                }
                Ok(BatchOutcome::Failed) => {
                    self.set(RunnerState::Failed);
                    tokio::time::sleep(self.options.idle_check).await;
                }
                Err(BatchError::Connection(e)) => return e,
                Err(BatchError::Event {
                    position,
                    error,
                    batch_len,
                    last,
                }) => {
                    if batch_len > 1 {
                        tracing::warn!(projection = %self.projection, ?position, %error,
                            "batch failed; retrying one event at a time");
                        single_step_until = Some(last);
                        continue;
                    }
                    tracing::error!(projection = %self.projection, ?position, %error,
                        "poison event: projection stopped");
                    if let Err(e) = self.record_failure(conn, position, &error).await {
                        return e.to_string();
                    }
                    single_step_until = None;
                    self.set(RunnerState::Failed);
                }
            }
        }
    }

    /// One transaction: checkpoint, events, apply, checkpoint.
    async fn batch(
        &self,
        conn: &mut ClientWrapper,
        limit: i64,
    ) -> Result<BatchOutcome, BatchError> {
        let name = self.projection.name();
        let tx = conn.transaction().await?;
        let free: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock_shared($1)",
                &[&self.projection.pause_lock_key()],
            )
            .await?
            .get(0);
        if !free {
            tx.rollback().await?;
            return Ok(BatchOutcome::Paused);
        }
        let stmt = tx
            .prepare_cached(
                "SELECT transaction_id, global_position, state FROM projection_checkpoints WHERE name = $1",
            )
            .await?;
        let row = tx.query_one(&stmt, &[&name]).await?;
        if row.get::<_, String>(2) != "running" {
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
        let Some(last) = events.last().map(|e| e.position()) else {
            tx.rollback().await?;
            return Ok(BatchOutcome::Empty);
        };
        let decoded: Vec<Decoded> = events
            .iter()
            .map(|e| Decoded::new(self.projection, e))
            .collect();
        drop(events);
        if let Err(e) = self.projection.apply(&tx, "", &decoded).await {
            return Err(match e {
                ApplyError::Connection(e) => BatchError::Connection(e.to_string()),
                ApplyError::Event { position, error } => {
                    let _ = tx.rollback().await;
                    BatchError::Event {
                        position,
                        error,
                        batch_len: decoded.len(),
                        last,
                    }
                }
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
        Ok(BatchOutcome::Applied {
            count: decoded.len(),
            last,
        })
    }

    async fn record_failure(
        &self,
        conn: &ClientWrapper,
        position: Position,
        error: &str,
    ) -> Result<(), tokio_postgres::Error> {
        conn.execute(
            "UPDATE projection_checkpoints
             SET state = 'failed', error = $2, failed_transaction_id = $3, failed_position = $4,
                 updated_at = now()
             WHERE name = $1",
            &[
                &self.projection.name(),
                &error,
                &position.transaction_id,
                &position.global_position,
            ],
        )
        .await?;
        Ok(())
    }
}
