//! Rebuilding a projection from the whole log, blue-green.
//!
//! 1. Take the projection's replay lock (one replay at a time) and create
//!    fresh tables `<table>_next`.
//! 2. Read the log from the start (a reader task, so reading and decoding
//!    overlap with applying) and apply it to the fresh tables, batch by
//!    batch. The live runner keeps the old tables current meanwhile, and
//!    queries keep reading them.
//! 3. Once caught up, in one transaction: take the pause lock exclusively
//!    (the live runner waits), apply the last events, drop the old tables,
//!    rename the fresh ones, recreate the views and write the checkpoint.
//!    The live runner resumes from that checkpoint.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use super::runner::dedicated_connection;
use super::{ApplyError, Decoded, Projection, ProjectionError};
use crate::store::{read_all_after_with, EventStore, Position};

/// Suffix of the tables a replay builds.
const NEXT: &str = "_next";
/// Events per read and per transaction while rebuilding.
const BATCH: i64 = 1000;

/// What a replay did.
#[derive(Debug, Clone, Copy)]
pub struct ReplayReport {
    pub projection: Projection,
    /// Events read from the log (all types).
    pub events: u64,
    pub elapsed: Duration,
    /// The checkpoint the rebuilt projection starts from.
    pub checkpoint: Position,
}

/// Rebuilds `projection` from the whole log and swaps it in; `progress`
/// shows a progress bar (events/s, ETA) on stderr.
///
/// # Errors
/// [`ProjectionError::ReplayRunning`] if another replay of it runs;
/// [`ProjectionError::ReplayFailed`] when an event cannot be applied (the old
/// tables then stay in place, untouched); database errors.
pub async fn replay(
    store: &EventStore,
    projection: Projection,
    progress: bool,
) -> Result<ReplayReport, ProjectionError> {
    let started = Instant::now();
    let mut conn = dedicated_connection(store, &format!("coursegen-replay-{projection}")).await?;
    let got: bool = conn
        .query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&projection.replay_lock_key()],
        )
        .await?
        .get(0);
    if !got {
        return Err(ProjectionError::ReplayRunning(projection.name().to_owned()));
    }
    let tables: Vec<&str> = projection.tables().to_vec();
    conn.execute("SELECT coursegen_drop_tables($1, $2)", &[&tables, &NEXT])
        .await?;
    conn.batch_execute(&projection.create_tables_sql(NEXT))
        .await?;

    let total: i64 = conn
        .query_one("SELECT count(*) FROM events", &[])
        .await?
        .get(0);
    let bar = if progress {
        let bar = ProgressBar::new(total.max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>15} [{elapsed_precise}] {wide_bar} {pos}/{len} events {per_sec} ETA {eta}",
            )
            .expect("valid template"),
        );
        bar.set_prefix(projection.name());
        bar
    } else {
        ProgressBar::hidden()
    };

    let result = rebuild(store, &mut conn, projection, &bar).await;
    let result = match result {
        Ok((position, events)) => swap(&mut conn, projection, position, events, &bar)
            .await
            .map(|(checkpoint, events)| ReplayReport {
                projection,
                events,
                elapsed: started.elapsed(),
                checkpoint,
            }),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = conn
            .execute("SELECT coursegen_drop_tables($1, $2)", &[&tables, &NEXT])
            .await;
    }
    bar.finish();
    let _ = conn
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&projection.replay_lock_key()],
        )
        .await;
    result
}

fn failed(projection: Projection, e: ApplyError) -> ProjectionError {
    match e {
        ApplyError::Connection(e) => ProjectionError::Database(e),
        ApplyError::Event { position, error } => ProjectionError::ReplayFailed {
            name: projection.name().to_owned(),
            position: position.global_position,
            error,
        },
    }
}

/// Applies the log to the fresh tables until caught up; the position reached
/// and the number of events read.
async fn rebuild(
    store: &EventStore,
    conn: &mut deadpool_postgres::ClientWrapper,
    projection: Projection,
    bar: &ProgressBar,
) -> Result<(Position, u64), ProjectionError> {
    let (tx, mut rx) = mpsc::channel::<Result<Vec<Decoded>, ProjectionError>>(4);
    let reader_store = store.clone();
    let reader = tokio::spawn(async move {
        let mut position = Position::START;
        loop {
            let batch = match reader_store.read_all_after(position, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            let Some(last) = batch.last() else { return };
            position = last.position();
            // Decoding is CPU work: keep it off the async workers' hot path.
            let decoded = tokio::task::spawn_blocking(move || {
                batch
                    .iter()
                    .map(|e| Decoded::new(projection, e))
                    .collect::<Vec<_>>()
            })
            .await
            .expect("decoding does not panic");
            if tx.send(Ok(decoded)).await.is_err() {
                return;
            }
        }
    });
    let mut position = Position::START;
    let mut events = 0u64;
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        let t = conn.transaction().await?;
        projection
            .apply(&t, NEXT, &batch)
            .await
            .map_err(|e| failed(projection, e))?;
        t.commit().await?;
        position = batch.last().map(|d| d.position).unwrap_or(position);
        events += batch.len() as u64;
        bar.inc(batch.len() as u64);
    }
    reader.await.expect("reader does not panic");
    Ok((position, events))
}

/// Pauses the live runner, applies what is left, swaps the tables in and
/// writes the checkpoint, all in one transaction.
async fn swap(
    conn: &mut deadpool_postgres::ClientWrapper,
    projection: Projection,
    mut position: Position,
    mut events: u64,
    bar: &ProgressBar,
) -> Result<(Position, u64), ProjectionError> {
    let t = conn.transaction().await?;
    t.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&projection.pause_lock_key()],
    )
    .await?;
    loop {
        let batch = read_all_after_with(&t, position, BATCH).await?;
        let Some(last) = batch.last() else { break };
        position = last.position();
        let decoded: Vec<Decoded> = batch.iter().map(|e| Decoded::new(projection, e)).collect();
        projection
            .apply(&t, NEXT, &decoded)
            .await
            .map_err(|e| failed(projection, e))?;
        events += decoded.len() as u64;
        bar.inc(decoded.len() as u64);
    }
    let tables: Vec<&str> = projection.tables().to_vec();
    t.execute("SELECT coursegen_swap_tables($1, $2)", &[&tables, &NEXT])
        .await?;
    t.batch_execute(&projection.create_views_sql()).await?;
    t.execute(
        "INSERT INTO projection_checkpoints (name, transaction_id, global_position, state, updated_at)
         VALUES ($1, $2, $3, 'running', now())
         ON CONFLICT (name) DO UPDATE
         SET transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position,
             state = 'running', error = NULL, failed_transaction_id = NULL, failed_position = NULL,
             updated_at = now()",
        &[
            &projection.name(),
            &position.transaction_id,
            &position.global_position,
        ],
    )
    .await?;
    t.commit().await?;
    Ok((position, events))
}
