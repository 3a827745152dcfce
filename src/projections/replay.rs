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

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use super::runner::dedicated_connection;
use super::stages;
use super::{ApplyError, CheckpointState, Decoded, Projection, ProjectionError};
use crate::domain::{CourseEvent, LessonGenerated, SubtitlesGenerated};
use crate::store::{read_all_after_as, EventStore, Position, RecordedEvent};

/// Suffix of the tables a replay builds.
const NEXT: &str = "_next";
/// Events per read and per transaction while rebuilding.
const BATCH: i64 = 1000;
/// Events applied before the fresh tables are first analyzed (then again
/// each time they have doubled).
const ANALYZE_FIRST: usize = 2000;

/// The payload a rebuild reads: a `LessonGenerated` of the current shape
/// without its content (`content_md` emptied, `sections` left out) and a
/// `SubtitlesGenerated` without its cues, which the courses writer copies
/// from the log server-side (`from_log` in its fold) and no projection
/// reads from the decoded event; everything else whole (upcast payloads
/// too, whose content is written from the decoded event). The live runner
/// reads payloads whole.
fn slim_payload_sql() -> String {
    let lesson = CourseEvent::from(LessonGenerated::default()).event_version();
    let subtitles = CourseEvent::from(SubtitlesGenerated::default()).event_version();
    format!(
        "CASE WHEN event_type = 'LessonGenerated' AND event_version = {lesson}
              THEN (payload - 'sections') || '{{\"content_md\": \"\"}}'::jsonb
              WHEN event_type = 'SubtitlesGenerated' AND event_version = {subtitles}
              THEN payload || '{{\"cues\": []}}'::jsonb
              ELSE payload END"
    )
}

/// Indexes of the fresh tables that are built after the load rather than
/// kept up to date row by row: every index but the unique ones (which
/// the writes' `ON CONFLICT` and the slug trigger rely on) and those a
/// projection reads while it loads.
async fn defer_indexes(
    conn: &deadpool_postgres::ClientWrapper,
    projection: Projection,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|t| format!("{t}{NEXT}"))
        .collect();
    let Some(keep) = projection.indexes_read_while_loading() else {
        return Ok(Vec::new());
    };
    let keep: Vec<String> = keep
        .iter()
        .map(|(table, index)| format!("{table}{NEXT}_{index}"))
        .collect();
    let rows = conn
        .query(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
             FROM pg_index i
             JOIN pg_class t ON t.oid = i.indrelid
             WHERE t.relname = ANY($1) AND t.relnamespace = current_schema()::regnamespace
               AND NOT i.indisunique AND i.indexrelid::regclass::text <> ALL($2)",
            &[&tables, &keep],
        )
        .await?;
    let mut definitions = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        conn.batch_execute(&format!("DROP INDEX {name}")).await?;
        definitions.push(row.get(1));
    }
    Ok(definitions)
}

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
/// As [`replay_all`].
pub async fn replay(
    store: &EventStore,
    projection: Projection,
    progress: bool,
) -> Result<ReplayReport, ProjectionError> {
    let mut reports = replay_all(store, &[projection], progress).await?;
    Ok(reports.remove(0))
}

/// One projection being rebuilt: its own connection (holding its replay lock).
struct Target {
    projection: Projection,
    conn: deadpool_postgres::ClientWrapper,
    /// The indexes built once the fresh tables are loaded.
    deferred_indexes: Vec<String>,
}

/// Rebuilds several projections in one pass over the log: one reader, one
/// applier per projection on its own connection (so they run in parallel),
/// then each swapped in with its own checkpoint.
///
/// # Errors
/// [`ProjectionError::NothingToReplay`] for an empty list;
/// [`ProjectionError::ReplayRunning`] if another replay of one of them runs;
/// [`ProjectionError::ReplayFailed`] when an event cannot be applied (the old
/// tables then stay in place, untouched); database errors.
pub(crate) async fn replay_all(
    store: &EventStore,
    projections: &[Projection],
    progress: bool,
) -> Result<Vec<ReplayReport>, ProjectionError> {
    if projections.is_empty() {
        return Err(ProjectionError::NothingToReplay);
    }
    let started = Instant::now();
    let mut targets = Vec::new();
    for &projection in projections {
        let conn = dedicated_connection(store, &format!("coursegen-replay-{projection}")).await?;
        // The fresh tables are only swapped in by the final (durable) commit:
        // a crash before it loses nothing a new replay would not redo, so the
        // bulk batches need not wait for their WAL flush.
        conn.batch_execute("SET synchronous_commit = off").await?;
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
        let deferred_indexes = defer_indexes(&conn, projection).await?;
        targets.push(Target {
            projection,
            conn,
            deferred_indexes,
        });
    }
    let total: i64 = targets[0]
        .conn
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
        bar.set_prefix(
            projections
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join("+"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let (targets, rebuilt) = rebuild(store, targets, &bar).await;
    let mut result = rebuilt;
    let mut reports = Vec::new();
    let mut targets = targets;
    if let Ok((position, events)) = result {
        for t in &mut targets {
            let built = stages::timed("index builds", async {
                t.conn
                    .batch_execute("SET maintenance_work_mem = '256MB'")
                    .await?;
                for definition in &t.deferred_indexes {
                    t.conn.batch_execute(definition).await?;
                }
                Ok::<(), tokio_postgres::Error>(())
            })
            .await;
            if let Err(e) = built {
                result = Err(e.into());
                break;
            }
            // Statistics before the tables go live, outside the swap's pause.
            let analyzed = stages::timed(
                "ANALYZE before the swap",
                t.conn.batch_execute(&analyze_sql(t.projection)),
            )
            .await;
            if let Err(e) = analyzed {
                result = Err(e.into());
                break;
            }
            let swapped = stages::timed(
                "swap",
                swap(&mut t.conn, t.projection, position, events, &bar),
            )
            .await;
            match swapped {
                Ok((checkpoint, events)) => reports.push(ReplayReport {
                    projection: t.projection,
                    events,
                    elapsed: started.elapsed(),
                    checkpoint,
                }),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    bar.finish();
    for t in &targets {
        if result.is_err() {
            let tables: Vec<&str> = t.projection.tables().to_vec();
            let _ = t
                .conn
                .execute("SELECT coursegen_drop_tables($1, $2)", &[&tables, &NEXT])
                .await;
        }
        let _ = t
            .conn
            .execute(
                "SELECT pg_advisory_unlock($1)",
                &[&t.projection.replay_lock_key()],
            )
            .await;
    }
    result.map(|_| reports)
}

/// `ANALYZE` of the fresh tables of `projection`.
fn analyze_sql(projection: Projection) -> String {
    let tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|table| format!("{table}{NEXT}"))
        .collect();
    format!("ANALYZE {}", tables.join(", "))
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

/// Applies `decoded` to the fresh tables inside `t`. When an event of the
/// batch cannot be applied, the batch is applied again one event at a time
/// (after rolling back to a savepoint), as the live runner does: a batch is
/// written set-wise, so a refused statement names only the batch, and the
/// error must name the event that caused it.
///
/// # Errors
/// [`ProjectionError::ReplayFailed`] naming the event; database errors.
async fn apply_finding_poison(
    t: &mut Transaction<'_>,
    projection: Projection,
    decoded: &[Decoded],
) -> Result<(), ProjectionError> {
    if decoded.len() > 1 {
        let whole = t.savepoint("coursegen_replay_batch").await?;
        match projection.apply(&whole, NEXT, decoded).await {
            Ok(()) => {
                whole.commit().await?;
                return Ok(());
            }
            Err(ApplyError::Event { .. }) => whole.rollback().await?,
            Err(e) => return Err(failed(projection, e)),
        }
    }
    for event in decoded {
        projection
            .apply(t, NEXT, std::slice::from_ref(event))
            .await
            .map_err(|e| failed(projection, e))?;
    }
    Ok(())
}

type Batch = Arc<Vec<RecordedEvent>>;

/// Applies the log to every target's fresh tables until caught up; gives the
/// connections back with the position reached and the events read.
async fn rebuild(
    store: &EventStore,
    targets: Vec<Target>,
    bar: &ProgressBar,
) -> (Vec<Target>, Result<(Position, u64), ProjectionError>) {
    let mut senders = Vec::new();
    let mut appliers = Vec::new();
    for (i, target) in targets.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Batch>(4);
        senders.push(tx);
        let bar = (i == 0).then(|| bar.clone());
        appliers.push(tokio::spawn(apply_batches(target, rx, bar)));
    }
    let reader_store = store.clone();
    let reader = tokio::spawn(async move { read_log(&reader_store, &senders, BATCH).await });
    let read = reader.await.expect("reader does not panic");
    let mut targets = Vec::new();
    let mut outcome = read;
    for a in appliers {
        let (target, applied) = a.await.expect("applier does not panic");
        if let (Err(e), Ok(_)) = (applied, &outcome) {
            outcome = Err(e);
        }
        targets.push(target);
    }
    (targets, outcome)
}

/// Reads the whole log in batches of `batch` and hands each to every
/// applier; returns the position reached and the events read. Stops early
/// once an applier is gone (it failed, and the replay with it): reading on
/// would only load the rest of the log for nobody.
///
/// # Errors
/// Database errors.
async fn read_log(
    store: &EventStore,
    senders: &[mpsc::Sender<Batch>],
    batch: i64,
) -> Result<(Position, u64), ProjectionError> {
    let mut position = Position::START;
    let mut events = 0u64;
    let payload = slim_payload_sql();
    let client = store.pool().get().await?;
    loop {
        if senders.iter().any(mpsc::Sender::is_closed) {
            return Ok((position, events));
        }
        let read = stages::timed(
            "read the log",
            read_all_after_as(&client, position, batch, &payload),
        )
        .await?;
        let Some(last) = read.last() else {
            return Ok((position, events));
        };
        position = last.position();
        events += read.len() as u64;
        let read = Arc::new(read);
        for s in senders {
            if s.send(read.clone()).await.is_err() {
                // Its applier failed: it reports why.
                return Ok((position, events));
            }
        }
    }
}

/// Applies the batches of one target, each in its own transaction.
async fn apply_batches(
    mut target: Target,
    mut rx: mpsc::Receiver<Batch>,
    bar: Option<ProgressBar>,
) -> (Target, Result<(), ProjectionError>) {
    let projection = target.projection;
    // Decoding is CPU work: a stage of its own, off the async workers, so
    // the next batch decodes while this one is applied.
    let (decoded_tx, mut decoded_rx) = mpsc::channel::<Vec<Decoded>>(2);
    let decoder = tokio::spawn(async move {
        loop {
            // The applier gone (failed): drop `rx` at once, so the reader stops.
            let batch = tokio::select! {
                batch = rx.recv() => batch,
                () = decoded_tx.closed() => None,
            };
            let Some(batch) = batch else { return };
            let decoded = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let decoded = batch
                    .iter()
                    .map(|e| Decoded::new(projection, e))
                    .collect::<Vec<_>>();
                stages::add("decode", started.elapsed());
                decoded
            })
            .await
            .expect("decoding does not panic");
            if decoded_tx.send(decoded).await.is_err() {
                return;
            }
        }
    });
    let analyze = analyze_sql(projection);
    let mut applied = 0usize;
    let mut next_analyze = ANALYZE_FIRST;
    let result = async {
        while let Some(decoded) = decoded_rx.recv().await {
            let started = Instant::now();
            let events = decoded.len();
            let mut t = target.conn.transaction().await?;
            apply_finding_poison(&mut t, projection, &decoded).await?;
            stages::timed("commit", t.commit()).await?;
            stages::add(apply_stage(projection), started.elapsed());
            applied += events;
            if applied >= next_analyze {
                // Fresh tables have no statistics: without them the planner
                // takes `x = ANY($1)` for most of the table and scans it all.
                stages::timed(
                    "ANALYZE during the load",
                    target.conn.batch_execute(&analyze),
                )
                .await?;
                next_analyze = applied * 2;
            }
            if let Some(bar) = &bar {
                bar.inc(events as u64);
            }
            tracing::debug!(projection = %projection, events,
                ms = started.elapsed().as_millis() as u64, "replayed a batch");
        }
        Ok::<(), ProjectionError>(())
    }
    .await;
    drop(decoded_rx);
    let _ = decoder.await;
    (target, result)
}

/// The stage a projection's batches are timed under (transaction and
/// commit included).
fn apply_stage(projection: Projection) -> &'static str {
    match projection {
        Projection::Courses => "apply courses (all its tables)",
        Projection::CourseSummary => "apply course_summary",
        Projection::Sources => "apply sources",
    }
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
    let mut t = conn.transaction().await?;
    // The swap is what makes the rebuild real: it waits for its WAL flush.
    t.batch_execute("SET LOCAL synchronous_commit = on").await?;
    t.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&projection.pause_lock_key()],
    )
    .await?;
    let payload = slim_payload_sql();
    loop {
        let batch = read_all_after_as(&t, position, BATCH, &payload).await?;
        let Some(last) = batch.last() else { break };
        position = last.position();
        let decoded: Vec<Decoded> = batch.iter().map(|e| Decoded::new(projection, e)).collect();
        apply_finding_poison(&mut t, projection, &decoded).await?;
        events += decoded.len() as u64;
        bar.inc(decoded.len() as u64);
    }
    let tables: Vec<&str> = projection.tables().to_vec();
    t.execute("SELECT coursegen_swap_tables($1, $2)", &[&tables, &NEXT])
        .await?;
    t.batch_execute(&projection.create_views_sql()).await?;
    t.execute(
        "INSERT INTO projection_checkpoints (name, transaction_id, global_position, state, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (name) DO UPDATE
         SET transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position,
             state = EXCLUDED.state, error = NULL, failed_transaction_id = NULL,
             failed_position = NULL, updated_at = now()",
        &[
            &projection.name(),
            &position.transaction_id,
            &position.global_position,
            &CheckpointState::Running,
        ],
    )
    .await?;
    t.commit().await?;
    Ok((position, events))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::bench::ScratchDatabase;
    use crate::store::{Metadata, NewEvent};

    #[tokio::test]
    async fn an_empty_list_of_projections_is_refused_before_any_work() {
        // Nothing is connected to: the refusal comes first.
        let store = EventStore::connect("host=/nonexistent/coursegen user=coursegen", 1).unwrap();
        let refused = replay_all(&store, &[], false).await;
        assert!(
            matches!(refused, Err(ProjectionError::NothingToReplay)),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn the_reader_stops_once_an_applier_is_gone() {
        let (db, store) = ScratchDatabase::for_tests().await;
        let events: Vec<NewEvent> = (0..50)
            .map(|n| NewEvent {
                event_type: "TestHappened".into(),
                event_version: 1,
                payload: json!({ "n": n }),
            })
            .collect();
        store
            .append(Uuid::new_v4(), 0, &events, &Metadata::producer("test"))
            .await
            .unwrap();
        // The read horizon is cluster-wide: other databases' transactions
        // may hold it back a moment.
        while store
            .read_all_after(Position::START, 50)
            .await
            .unwrap()
            .len()
            < 50
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // An applier that fails on its first batch: it takes it and is gone.
        let (tx, mut rx) = mpsc::channel::<Batch>(1);
        let applier = tokio::spawn(async move { rx.recv().await.map(|b| b.len()) });
        let (_, read) = read_log(&store, &[tx], 10).await.unwrap();
        assert_eq!(applier.await.unwrap(), Some(10));
        // The batch it took, and at most the one already on its way.
        assert!(read <= 20, "read {read} of 50 events for a failed applier");

        store.pool().close();
        db.drop_database().await.unwrap();
    }
}
