//! The work of a runner: a task that connects, takes the projection's lock
//! and applies batch after batch (see the parent module for the rules).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use tokio::sync::watch;

use super::{dedicated_connection, ApplierError, BatchApplier, RunnerOptions, RunnerState};
use crate::projections::{ApplyError, CheckpointState};
use crate::retry::Backoff;
use crate::store::subscription::Waiter;
use crate::store::{read_all_after_as, EventStore, Position, RecordedEvent};

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

/// One runner's worker, moved into its task.
pub(super) struct Worker {
    pub(super) applier: Box<dyn BatchApplier>,
    pub(super) store: EventStore,
    pub(super) waiter: Waiter,
    pub(super) options: RunnerOptions,
    pub(super) state: Arc<Mutex<RunnerState>>,
    /// Delays between reconnects; reset once running.
    pub(super) backoff: Backoff,
    /// True once the runner is told to stop.
    pub(super) stop: watch::Receiver<bool>,
    /// The applier's [`BatchApplier::payload_sql`].
    pub(super) payload_sql: String,
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

    /// Runs sessions until told to stop, reconnecting after each loss.
    pub(super) async fn run(mut self) {
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
        let events = read_all_after_as(&tx, checkpoint, limit, &self.payload_sql)
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
