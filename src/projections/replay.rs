//! Rebuilding a projection from the whole log, blue-green.
//!
//! 1. Take the projection's replay lock (one replay at a time) and create
//!    fresh tables `<table>_next`.
//! 2. Read the log from the start (a reader task, so reading and decoding
//!    overlap with applying) and apply it to the fresh tables, batch by
//!    batch. `courses` writes its content tables (lesson bodies, quizzes,
//!    subtitles) on connections of their own, beside its rows. The live
//!    runner keeps the old tables current meanwhile, and queries keep
//!    reading them.
//! 3. Once caught up, in one transaction: take the pause lock exclusively
//!    (the live runner waits), apply the last events, drop the old tables,
//!    rename the fresh ones, recreate the views and write the checkpoint.
//!    The live runner resumes from that checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Transaction;
use futures::future::BoxFuture;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use super::courses::{self, Content, ContentPart};
use super::runner::dedicated_connection;
use super::stages;
use super::{ApplyError, CheckpointState, Decoded, Projection, ProjectionError};
use crate::domain::{CourseEvent, LessonGenerated, SubtitlesGenerated};
use crate::store::{read_all_after_as, EventStore, Position, RecordedEvent};

/// Suffix of the tables a replay builds.
const NEXT: &str = "_next";
/// Events per read and per transaction while rebuilding.
const BATCH: i64 = 2000;
/// Events applied before the fresh tables are first analyzed (then again
/// each time they have doubled).
const ANALYZE_FIRST: usize = 2000;

/// The payload a rebuild reads: a `LessonGenerated` of the current shape
/// without its content (`content_md` emptied; `sections`, `quiz`,
/// `elements` and `retrieved` left out) and a `SubtitlesGenerated` without its cues, which
/// the courses writer copies from the log server-side (`from_log` in its
/// fold) and no projection reads from the decoded event; a document
/// version without its chunks, which the `sources` projector copies from
/// the log server-side too (the courses projectors ignore document events);
/// everything else whole (upcast payloads too, whose content is written from
/// the decoded event). The live runner reads payloads whole, but for
/// `sources` ([`super::sources::PAYLOAD_SQL`]).
fn slim_payload_sql() -> String {
    let lesson = CourseEvent::from(LessonGenerated::default()).event_version();
    let subtitles = CourseEvent::from(SubtitlesGenerated::default()).event_version();
    format!(
        "CASE WHEN event_type = 'LessonGenerated' AND event_version = {lesson}
              THEN (payload - '{{sections,quiz,elements,retrieved}}'::text[])
                   || '{{\"content_md\": \"\"}}'::jsonb
              WHEN event_type = 'SubtitlesGenerated' AND event_version = {subtitles}
              THEN payload - 'cues' || '{{\"cues\": []}}'::jsonb
              WHEN event_type IN ('SourceAdded', 'SourceUpdated')
              THEN payload || '{{\"chunks\": []}}'::jsonb
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

/// A connection of its own for loading fresh tables in bulk.
async fn bulk_connection(
    store: &EventStore,
    projection: Projection,
    name: &str,
) -> Result<deadpool_postgres::ClientWrapper, ProjectionError> {
    let conn = dedicated_connection(store, name).await?;
    if looks_up_by_index(projection) {
        conn.batch_execute("SET enable_seqscan = off").await?;
    }
    // The fresh tables are only swapped in by the final (durable) commit:
    // a crash before it loses nothing a new replay would not redo, so the
    // bulk batches need not wait for their WAL flush.
    conn.batch_execute("SET synchronous_commit = off").await?;
    // Content copied into the fresh tables is compressed with LZ4 where
    // the server has it (several times faster than the default pglz),
    // as `lesson_bodies` always is; the values are the same.
    if conn
        .batch_execute("SET default_toast_compression = lz4")
        .await
        .is_err()
    {
        tracing::debug!("no LZ4 on this server: the fresh tables use its default compression");
    }
    // Bulk statements that the planner may cost high enough to compile:
    // JIT compiles per execution, longer than the statement runs.
    conn.batch_execute("SET jit = off").await?;
    // A batch's lesson payloads, detoasted once and held for the three
    // inserts of their content, stay in memory.
    conn.batch_execute("SET work_mem = '64MB'").await?;
    Ok(conn)
}

/// One projection being rebuilt: its own connection (holding its replay lock).
struct Target {
    projection: Projection,
    conn: deadpool_postgres::ClientWrapper,
    /// The indexes built once the fresh tables are loaded.
    deferred_indexes: Vec<String>,
    /// For `courses`: [`CONTENT_WRITERS`] connections, which write the
    /// content tables while `conn` writes the rows of the next batches.
    writers: Vec<ContentWriter>,
}

/// Connections loading `courses`' content tables, each one shard of every
/// batch's content ([`Content::shards`]: by course), all of its tables.
/// Two, as the cores of the machines measured: the content is most of a
/// rebuild's work, and shards of equal size keep both busy to the end of
/// the load. (By table, one connection per [`ContentPart`], the lessons'
/// was left working alone at the end; and reading a lesson's payload on
/// two connections, one per table, read it twice.)
const CONTENT_WRITERS: usize = 2;

/// A connection loading one shard of the `courses` content tables.
struct ContentWriter {
    shard: usize,
    conn: deadpool_postgres::ClientWrapper,
}

/// The tables content writer `shard` analyzes once the load is done: its
/// share of [`analyzed_by_writers`].
fn analyzed_by_shard(shard: usize) -> Vec<&'static str> {
    analyzed_by_writers()
        .into_iter()
        .skip(shard)
        .step_by(CONTENT_WRITERS)
        .collect()
}

/// The `courses` tables its content writers analyze once the load is done
/// (the rows' connection analyzes `courses`, whose statistics take the
/// longest): those of every [`ContentPart`], and `lessons`.
fn analyzed_by_writers() -> Vec<&'static str> {
    ContentPart::ALL
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .chain(["lessons"])
        .collect()
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
        let conn =
            bulk_connection(store, projection, &format!("coursegen-replay-{projection}")).await?;
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
        let mut writers = Vec::new();
        if projection == Projection::Courses {
            for shard in 0..CONTENT_WRITERS {
                let conn = bulk_connection(
                    store,
                    projection,
                    &format!("coursegen-replay-{projection}-content-{shard}"),
                )
                .await?;
                writers.push(ContentWriter { shard, conn });
            }
        }
        targets.push(Target {
            projection,
            conn,
            deferred_indexes,
            writers,
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
            // Once loaded, each connection builds its share of the deferred
            // indexes and analyzes the tables it loaded (statistics before
            // the tables go live, outside the swap's pause), side by side.
            let own: Vec<&str> = t
                .projection
                .tables()
                .iter()
                .copied()
                .filter(|table| t.writers.is_empty() || !analyzed_by_writers().contains(table))
                .collect();
            let connections: Vec<(&deadpool_postgres::ClientWrapper, Vec<&str>)> =
                std::iter::once((&t.conn, own))
                    .chain(
                        t.writers
                            .iter()
                            .map(|w| (&w.conn, analyzed_by_shard(w.shard))),
                    )
                    .collect();
            let n = connections.len();
            let deferred = &t.deferred_indexes;
            let projection = t.projection;
            let finished = futures::future::try_join_all(connections.into_iter().enumerate().map(
                |(i, (conn, tables))| async move {
                    stages::timed("index builds", async {
                        conn.batch_execute("SET maintenance_work_mem = '256MB'")
                            .await?;
                        for definition in deferred.iter().skip(i).step_by(n) {
                            conn.batch_execute(definition).await?;
                        }
                        Ok::<(), tokio_postgres::Error>(())
                    })
                    .await?;
                    stages::timed(
                        "ANALYZE before the swap",
                        analyze_loaded(conn, projection, tables),
                    )
                    .await
                },
            ))
            .await;
            if let Err(e) = finished {
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

/// Columns of text that no query filters, joins or sorts on (lesson
/// content, quiz text): like every `jsonb` column, they get no statistics
/// before the swap, whose `ANALYZE` would otherwise spend most of its time
/// comparing their large values.
const CONTENT_COLUMNS: [&str; 3] = ["content_md", "question", "explanation"];

/// `ANALYZE` of the fresh `tables` of `projection` once loaded, of the
/// columns queries use (all but [`CONTENT_COLUMNS`] and `jsonb` ones);
/// those queries read only by key from a small sample
/// ([`Projection::tables_read_by_key`]: most of a full `ANALYZE` of them is
/// reading its 30,000-row sample's pages, for statistics that their lookups
/// by a unique index hardly use).
async fn analyze_loaded(
    conn: &deadpool_postgres::ClientWrapper,
    projection: Projection,
    tables: Vec<&str>,
) -> Result<(), tokio_postgres::Error> {
    let tables: Vec<String> = tables
        .iter()
        .map(|table| format!("{table}{NEXT}"))
        .collect();
    let rows = conn
        .query(
            "SELECT c.relname, string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
             FROM pg_class c
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE c.relname = ANY($1) AND c.relnamespace = current_schema()::regnamespace
               AND a.atttypid <> 'jsonb'::regtype AND a.attname <> ALL($2)
             GROUP BY c.relname",
            &[&tables, &CONTENT_COLUMNS.as_slice()],
        )
        .await?;
    let by_key: Vec<String> = projection
        .tables_read_by_key()
        .iter()
        .map(|table| format!("{table}{NEXT}"))
        .collect();
    let (mut full, mut sampled) = (Vec::new(), Vec::new());
    for r in &rows {
        let table: String = r.get(0);
        let analyzed = format!("{table} ({})", r.get::<_, String>(1));
        if by_key.contains(&table) {
            sampled.push(analyzed);
        } else {
            full.push(analyzed);
        }
    }
    if !full.is_empty() {
        conn.batch_execute(&format!("ANALYZE {}", full.join(", ")))
            .await?;
    }
    if !sampled.is_empty() {
        conn.batch_execute(&format!(
            "SET default_statistics_target = 10; ANALYZE {}; RESET default_statistics_target",
            sampled.join(", ")
        ))
        .await?;
    }
    Ok(())
}

/// Whether every statement `projection` runs while its fresh tables load
/// reads them by a key that an index serves (`courses` and `lessons` by
/// id, courses by slug base, old questions and elements by lesson, cells by
/// course) and joins the log by position. Their connections then plan
/// without sequential scans (`enable_seqscan = off`) rather than analyze
/// the tables as they grow: planned from their size alone, without
/// statistics, a lookup `x = ANY($1)` may scan the whole table. The results
/// are the same either way; only the plans differ.
fn looks_up_by_index(projection: Projection) -> bool {
    matches!(projection, Projection::Courses | Projection::CourseSummary)
}

/// The `ANALYZE` while the fresh tables load (unless the projection
/// [`looks_up_by_index`]): only those a batch looks rows
/// up in (the others are only inserted into, by their unique keys), and
/// from a small sample (the planner needs their size and rough
/// distributions, to look rows up by index rather than scan); the full
/// statistics come once the load is done ([`analyze_loaded`]).
fn analyze_while_loading_sql(projection: Projection) -> Option<String> {
    if looks_up_by_index(projection) {
        return None;
    }
    let tables: Vec<String> = projection
        .tables_looked_up_while_loading()
        .iter()
        .map(|table| format!("{table}{NEXT}"))
        .collect();
    (!tables.is_empty()).then(|| {
        format!(
            "SET default_statistics_target = 10; ANALYZE {}; RESET default_statistics_target",
            tables.join(", ")
        )
    })
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

/// How a batch is written to a transaction, and what it leaves to be
/// written elsewhere (the content of `courses`' rows, [`courses::apply_rows`]).
trait ApplyBatch<T>:
    for<'a> Fn(&'a Transaction<'a>, &'a [Decoded]) -> BoxFuture<'a, Result<Option<T>, ApplyError>>
{
}

impl<T, F> ApplyBatch<T> for F where
    F: for<'a> Fn(
        &'a Transaction<'a>,
        &'a [Decoded],
    ) -> BoxFuture<'a, Result<Option<T>, ApplyError>>
{
}

/// The whole of `projection`'s apply, leaving nothing to write elsewhere.
fn whole(projection: Projection) -> impl ApplyBatch<()> {
    move |t, decoded| Box::pin(async move { projection.apply(t, NEXT, decoded).await.map(Some) })
}

/// The rows of `courses`' apply; their content is written elsewhere.
fn courses_rows() -> impl ApplyBatch<Content> {
    |t, decoded| Box::pin(courses::apply_rows(t, NEXT, decoded))
}

/// Applies `decoded` to the fresh tables inside `t` with `apply`, and
/// returns what is left to write elsewhere, in log order. When an event of
/// the batch cannot be applied, the batch is applied again one event at a
/// time (after rolling back to a savepoint), as the live runner does: a
/// batch is written set-wise, so a refused statement names only the batch,
/// and the error must name the event that caused it.
///
/// # Errors
/// [`ProjectionError::ReplayFailed`] naming the event; database errors.
async fn apply_finding_poison<T>(
    t: &mut Transaction<'_>,
    projection: Projection,
    decoded: &[Decoded],
    apply: impl ApplyBatch<T>,
) -> Result<Vec<T>, ProjectionError> {
    if decoded.len() > 1 {
        let whole = t.savepoint("coursegen_replay_batch").await?;
        match apply(&whole, decoded).await {
            Ok(left) => {
                whole.commit().await?;
                return Ok(left.into_iter().collect());
            }
            Err(ApplyError::Event { .. }) => whole.rollback().await?,
            Err(e) => return Err(failed(projection, e)),
        }
    }
    let mut left = Vec::new();
    for event in decoded {
        left.extend(
            apply(t, std::slice::from_ref(event))
                .await
                .map_err(|e| failed(projection, e))?,
        );
    }
    Ok(left)
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
    // `courses`' content goes to its writers, which load their tables
    // while this connection loads the rows of the next batches.
    let analyze = analyze_while_loading_sql(projection);
    let mut content_txs = Vec::new();
    let mut writers = Vec::new();
    for w in std::mem::take(&mut target.writers) {
        let (tx, rx) = mpsc::channel::<ContentBatch>(2);
        content_txs.push(tx);
        writers.push(tokio::spawn(write_content(w, rx)));
    }
    let mut applied = 0usize;
    let mut next_analyze = ANALYZE_FIRST;
    let mut result = async {
        while let Some(decoded) = decoded_rx.recv().await {
            let started = Instant::now();
            let events = decoded.len();
            let mut t = target.conn.transaction().await?;
            let content = if content_txs.is_empty() {
                apply_finding_poison(&mut t, projection, &decoded, whole(projection)).await?;
                None
            } else {
                Some(apply_finding_poison(&mut t, projection, &decoded, courses_rows()).await?)
            };
            stages::timed("commit", t.commit()).await?;
            stages::add(apply_stage(projection), started.elapsed());
            if let Some(content) = content {
                let mut shards: Vec<ContentBatch> =
                    content_txs.iter().map(|_| Vec::new()).collect();
                for c in content {
                    for (shard, part) in shards.iter_mut().zip(c.shards(content_txs.len())) {
                        shard.push(part);
                    }
                }
                for (tx, shard) in content_txs.iter().zip(shards) {
                    if tx.send(shard).await.is_err() {
                        // That writer failed: it reports why.
                        return Ok(());
                    }
                }
            }
            applied += events;
            if let Some(analyze) = analyze.as_deref().filter(|_| applied >= next_analyze) {
                // Fresh tables have no statistics: without them the planner
                // takes `x = ANY($1)` for most of the table and scans it all.
                stages::timed(
                    "ANALYZE during the load",
                    target.conn.batch_execute(analyze),
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
    // The writers finish what they were given (all of it, unless this
    // applier failed) before the tables are indexed and swapped.
    drop(content_txs);
    for w in writers {
        let (writer, written) = w.await.expect("content writer does not panic");
        if let (Err(e), Ok(())) = (written, &result) {
            result = Err(e);
        }
        target.writers.push(writer);
    }
    (target, result)
}

/// The content a batch left to write (in log order), of one shard.
type ContentBatch = Vec<Content>;

/// Writes its shard of each batch's content, each batch in its own
/// transaction, in the order the batches were applied. A refused
/// statement names the first event of its batch (content rows are built
/// from events that decoded, so only the database's own limits refuse them).
async fn write_content(
    mut writer: ContentWriter,
    mut rx: mpsc::Receiver<ContentBatch>,
) -> (ContentWriter, Result<(), ProjectionError>) {
    // (No ANALYZE while loading: `courses` plans its lookups without
    // sequential scans, [`looks_up_by_index`].)
    let result = async {
        while let Some(contents) = rx.recv().await {
            if ContentPart::ALL
                .iter()
                .all(|&part| contents.iter().all(|c| c.is_empty(part)))
            {
                continue;
            }
            let t = writer.conn.transaction().await?;
            for part in ContentPart::ALL {
                let started = Instant::now();
                for c in contents.iter().filter(|c| !c.is_empty(part)) {
                    c.write(&t, NEXT, part)
                        .await
                        .map_err(|e| failed(Projection::Courses, e))?;
                }
                stages::add(part.stage(), started.elapsed());
            }
            stages::timed("commit", t.commit()).await?;
        }
        Ok::<(), ProjectionError>(())
    }
    .await;
    (writer, result)
}

/// The stage a projection's batches are timed under (transaction and
/// commit included).
fn apply_stage(projection: Projection) -> &'static str {
    match projection {
        Projection::Courses => "apply courses (courses, lessons)",
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
        apply_finding_poison(&mut t, projection, &decoded, whole(projection)).await?;
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

    #[test]
    fn every_courses_table_is_analyzed_by_one_connection() {
        let writers: Vec<Vec<&str>> = (0..CONTENT_WRITERS).map(analyzed_by_shard).collect();
        for table in Projection::Courses.tables() {
            let by = writers.iter().filter(|w| w.contains(table)).count();
            let by_rows = usize::from(!analyzed_by_writers().contains(table));
            assert_eq!(by + by_rows, 1, "{table}");
        }
        assert!(!analyzed_by_writers().contains(&"courses"));
    }

    #[test]
    fn the_tables_analyzed_from_a_small_sample_are_the_projections_own() {
        for p in Projection::ALL {
            for table in p.tables_read_by_key() {
                assert!(p.tables().contains(table), "{p}: {table}");
            }
        }
        // The tables the lists and the search read are analyzed in full.
        let by_key = Projection::Courses.tables_read_by_key();
        assert!(!by_key.contains(&"courses") && !by_key.contains(&"lessons"));
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
