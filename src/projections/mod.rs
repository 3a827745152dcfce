//! Read models built from the event log.
//!
//! - [`Projection`]: the projections there are, their tables and how they apply events.
//! - [`runner`]: one [`runner::ProjectionRunner`] actor per projection: checkpoint
//!   advanced in the transaction that applied the batch, one active instance
//!   across processes (session advisory lock), poison events stop it visibly.
//!   The same runner drives the AMQP reply publisher, a projection without
//!   tables (never replayed).
//! - [`checkpoints`]: each projection's checkpoint row, its state and lag.
//! - [`replay`]: rebuild from the whole log into fresh tables, swapped in atomically.
//! - [`recount`]: the same read models computed by plain SQL over `events`
//!   (the oracle of the tests and the baseline of `coursegen bench replay`).
//! - [`courses`], [`course_summary`], [`sources`]: the projectors, named like their SQL files.
//! - `text_sql`: the text conversions of the enums the tables store.
//!
//! Services call [`start_runners`] inside an actix System, read
//! [`Projections::status`] for health and metrics, and use
//! [`wait_for_position`] to read their own writes.

pub(crate) mod checkpoints;
pub(crate) mod course_summary;
pub mod courses;
pub mod recount;
pub mod replay;
pub(crate) mod runner;
pub mod sources;
pub mod stages;
mod text_sql;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Addr;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::domain::sources::SourceEvent;
use crate::domain::CourseEvent;
use crate::retry::Backoff;
use crate::store::subscription::Notifier;
use crate::store::{EventStore, Position, RecordedEvent, StoreError};

pub use checkpoints::{
    checkpoint, lag, resume, Checkpoint, CheckpointState, Lag, UnknownCheckpointState,
};
pub(crate) use runner::{payload_of_types, ApplierError, BatchApplier};
pub use runner::{ProjectionRunner, RunnerOptions, RunnerState};

/// Errors of the projection layer.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A statement of the projection layer failed.
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// No pooled connection could be had.
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// No projection has this name.
    #[error("unknown projection {0:?} (known: courses, course_summary, sources)")]
    Unknown(String),
    /// The projection stopped on a poison event before reaching the position waited for.
    #[error("projection {name} failed at event {position}: {error}")]
    Failed {
        name: String,
        position: i64,
        error: String,
    },
    /// The projection did not reach the position in time.
    #[error("projection {name} did not reach {target:?} within {timeout:?} (at {reached:?})")]
    Timeout {
        name: String,
        target: Position,
        reached: Position,
        timeout: Duration,
    },
    /// Another replay of the same projection holds its replay lock.
    #[error("a replay of {0} is already running")]
    ReplayRunning(String),
    /// A replay was asked for with no projection to rebuild.
    #[error("nothing to replay: name a projection (courses, course_summary, sources) or replay them all")]
    NothingToReplay,
    /// An event could not be applied during a replay.
    #[error("replay of {name} stopped at event {position}: {error}")]
    ReplayFailed {
        name: String,
        position: i64,
        error: String,
    },
}

/// A read model built from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Projection {
    /// `courses`, `lessons`, `lesson_bodies`, `lesson_checks`,
    /// `interactive_elements` and their views.
    Courses,
    /// `course_summary`: counts by status, user and day.
    CourseSummary,
    /// `sources`, `source_chunks`: each user's source library, searchable.
    Sources,
}

impl Projection {
    /// Every projection, in the order they are started and replayed.
    pub const ALL: [Projection; 3] = [
        Projection::Courses,
        Projection::CourseSummary,
        Projection::Sources,
    ];

    /// The name of its checkpoint row, locks and CLI flag.
    pub fn name(self) -> &'static str {
        match self {
            Self::Courses => "courses",
            Self::CourseSummary => "course_summary",
            Self::Sources => "sources",
        }
    }

    /// The projection called `name`.
    ///
    /// # Errors
    /// [`ProjectionError::Unknown`].
    pub(crate) fn parse(name: &str) -> Result<Self, ProjectionError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| ProjectionError::Unknown(name.to_owned()))
    }

    /// The tables it writes (swapped together by a replay).
    pub fn tables(self) -> &'static [&'static str] {
        match self {
            Self::Courses => &[
                "courses",
                "lessons",
                "lesson_bodies",
                "lesson_checks",
                "interactive_elements",
                "subtitles",
            ],
            Self::CourseSummary => &["course_summary", "course_summary_courses"],
            Self::Sources => &["sources", "source_chunks"],
        }
    }

    /// SQL creating its tables with a name suffix (`""` live, `"_next"` for a replay).
    fn create_tables_sql(self, suffix: &str) -> String {
        format!("SELECT coursegen_create_{}_tables('{suffix}')", self.name())
    }

    /// Indexes (of its live tables) that applying a batch reads, beyond the
    /// unique ones: a replay keeps them on its fresh tables while loading,
    /// and builds the others after the load.
    /// As (table, index name after the table's name and `_`); `None`: all
    /// of them (not studied yet, so nothing is deferred).
    fn indexes_read_while_loading(self) -> Option<&'static [(&'static str, &'static str)]> {
        match self {
            // The slug numbering looks courses up by their slug base.
            Self::Courses => Some(&[("courses", "slug_base_idx")]),
            Self::CourseSummary => Some(&[]),
            // Retiring a document's chunks finds them by document; the
            // search index is built once the load is done.
            Self::Sources => Some(&[("source_chunks", "source_idx")]),
        }
    }

    /// Its tables that applying a batch looks rows up in (by a key, or a
    /// join), beyond the inserts by their unique keys: a replay keeps their
    /// statistics current while it loads them, unless it plans the lookups
    /// without sequential scans (`replay::looks_up_by_index`).
    fn tables_looked_up_while_loading(self) -> &'static [&'static str] {
        match self {
            // Courses and lessons are loaded by id; old questions and
            // elements are deleted by lesson.
            Self::Courses => &[
                "courses",
                "lessons",
                "lesson_checks",
                "interactive_elements",
            ],
            Self::CourseSummary => &["course_summary_courses"],
            // Not studied yet: all of them.
            Self::Sources => self.tables(),
        }
    }

    /// Its tables that queries read only by (a prefix of) their primary
    /// key: one course's lessons, elements or tracks. A replay analyzes
    /// them from a small sample: their statistics only tell the planner
    /// their size, and each lookup is by a unique index anyway.
    fn tables_read_by_key(self) -> &'static [&'static str] {
        match self {
            Self::Courses => &[
                "lesson_bodies",
                "lesson_checks",
                "interactive_elements",
                "subtitles",
            ],
            Self::CourseSummary | Self::Sources => &[],
        }
    }

    /// SQL (re)creating its views over the live tables.
    fn create_views_sql(self) -> String {
        format!("SELECT coursegen_create_{}_views()", self.name())
    }

    /// How the runner reads each event's payload ([`BatchApplier::payload_sql`]):
    /// those of the types [`Self::decode`] (or, for `sources`, [`Decoded::new`])
    /// ignores are left out, and `sources` reads a version's without its
    /// chunks ([`sources::PAYLOAD_SQL`]).
    pub(crate) fn payload_sql(self) -> String {
        match self {
            Self::Courses => payload_of_types(&SourceEvent::TYPES, false),
            Self::CourseSummary => payload_of_types(&course_summary::WANTED, true),
            Self::Sources => sources::PAYLOAD_SQL.to_owned(),
        }
    }

    /// Reads an event as this projection needs it: `Ok(None)` for event types
    /// it ignores (not even decoded), the upcast domain event otherwise.
    ///
    /// # Errors
    /// A payload that is not a valid event of its type and version.
    pub(crate) fn decode(self, event: &RecordedEvent) -> Result<Option<CourseEvent>, StoreError> {
        let wanted = match self {
            Self::Courses => !SourceEvent::is_source_type(&event.event_type),
            Self::CourseSummary => course_summary::wants(&event.event_type),
            Self::Sources => false,
        };
        if wanted {
            event.to_course_event().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Applies decoded events, in order, to the tables with `suffix`, inside `tx`.
    pub(crate) async fn apply(
        self,
        tx: &deadpool_postgres::Transaction<'_>,
        suffix: &str,
        events: &[Decoded],
    ) -> Result<(), ApplyError> {
        match self {
            Self::Courses => courses::apply(tx, suffix, events).await,
            Self::CourseSummary => course_summary::apply(tx, suffix, events).await,
            Self::Sources => sources::apply(tx, suffix, events).await,
        }
    }

    /// Key of the session advisory lock held by the active runner.
    pub(crate) fn runner_lock_key(self) -> i64 {
        lock_key("runner", self.name())
    }

    /// Key of the lock a replay takes exclusively to pause the runner (which
    /// takes it shared, per batch transaction).
    pub(crate) fn pause_lock_key(self) -> i64 {
        lock_key("pause", self.name())
    }

    /// Key of the lock that keeps two replays of one projection apart.
    pub(crate) fn replay_lock_key(self) -> i64 {
        lock_key("replay", self.name())
    }
}

impl std::fmt::Display for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A [`Projection`]'s tables as the runner applies them: written in the
/// batch transaction, so they and the checkpoint move together.
pub(crate) struct Tables(pub(crate) Projection);

#[async_trait]
impl BatchApplier for Tables {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn lock_key(&self) -> i64 {
        self.0.runner_lock_key()
    }

    fn pause_lock_key(&self) -> Option<i64> {
        Some(self.0.pause_lock_key())
    }

    fn payload_sql(&self) -> String {
        self.0.payload_sql()
    }

    async fn apply(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ApplierError> {
        let decoded: Vec<Decoded> = events.iter().map(|e| Decoded::new(self.0, e)).collect();
        // The raw payloads (lesson bodies among them) are not needed once
        // decoded: a batch is held once, not twice, while it is applied.
        drop(events);
        Ok(self.0.apply(tx, "", &decoded).await?)
    }
}

/// The key of a lock of `kind` for the projector `name`.
pub(crate) fn lock_key(kind: &str, name: &str) -> i64 {
    let digest = Sha256::digest(format!("coursegen:projection:{kind}:{name}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// An event read from the log and decoded for one projection.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub position: Position,
    pub stream_id: Uuid,
    pub recorded_at: DateTime<Utc>,
    /// The payload's stored schema version (before upcasting).
    pub event_version: i16,
    /// `Ok(None)`: a type the projection ignores. `Err`: why it cannot be read.
    pub event: Result<Option<CourseEvent>, String>,
    /// A document event, for the `sources` projection (which reads no
    /// course events; its undecodable ones are `event`'s `Err`).
    pub source: Option<SourceEvent>,
}

impl Decoded {
    /// Decodes `event` for `projection`.
    pub(crate) fn new(projection: Projection, event: &RecordedEvent) -> Self {
        let (event_result, source) = if projection == Projection::Sources {
            if SourceEvent::is_source_type(&event.event_type) {
                match SourceEvent::from_stored(
                    &event.event_type,
                    event.event_version,
                    event.payload.clone(),
                ) {
                    Ok(e) => (Ok(None), Some(e)),
                    Err(e) => (
                        Err(format!(
                            "event {} cannot be read: {e}",
                            event.global_position
                        )),
                        None,
                    ),
                }
            } else {
                (Ok(None), None)
            }
        } else {
            (projection.decode(event).map_err(|e| e.to_string()), None)
        };
        Self {
            position: event.position(),
            stream_id: event.stream_id,
            recorded_at: event.recorded_at,
            event_version: event.event_version,
            event: event_result,
            source,
        }
    }
}

/// Why a batch was not applied to a projection's tables (what a sink
/// outside the database may fail with besides is the runner's
/// [`ApplierError`]).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event at `position` cannot be applied (undecodable payload, or the
    /// database refused what it implies): retrying will not help.
    #[error("event {position:?} cannot be applied: {error}")]
    Event { position: Position, error: String },
    /// The connection or server failed (terminated, shut down, out of
    /// resources): retry on a new connection.
    #[error("database connection: {0}")]
    Connection(#[source] tokio_postgres::Error),
}

impl ApplyError {
    /// Classifies a database error met while applying the event at `position`.
    pub(crate) fn from_db(position: Position, e: tokio_postgres::Error) -> Self {
        if is_connection_error(&e) {
            Self::Connection(e)
        } else {
            let error = match e.as_db_error() {
                Some(db) => format!("{}: {}", db.code().code(), db.message()),
                None => e.to_string(),
            };
            Self::Event { position, error }
        }
    }
}

/// Whether an error is the connection's or the server's fault rather than
/// the statement's: closed connection, a failed read or write on the socket,
/// SQLSTATE classes 08 (connection), 53 (resources), 57 (operator
/// intervention, e.g. pg_terminate_backend), 40 (serialization) and 58
/// (system). Any other error without a SQLSTATE (a parameter or column that
/// does not convert, say) is the event's: retrying it on a new connection
/// would fail the same way, for ever.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
        Some(code) => {
            let c = code.code();
            ["08", "53", "57", "40", "58"]
                .iter()
                .any(|class| c.starts_with(class))
                || *code == SqlState::QUERY_CANCELED
        }
    }
}

/// Waits until projection `projection` has applied every event up to
/// `position` (for read-your-writes after an append, and tests).
///
/// # Errors
/// [`ProjectionError::Timeout`] after `timeout`; [`ProjectionError::Failed`]
/// at once when the projection stopped on a poison event before `position`.
pub async fn wait_for_position(
    store: &EventStore,
    projection: &str,
    position: Position,
    timeout: Duration,
) -> Result<(), ProjectionError> {
    Projection::parse(projection)?;
    let deadline = Instant::now() + timeout;
    let mut pause = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
    loop {
        let reached = match checkpoint(store, projection).await? {
            Some(cp) if cp.position >= position => return Ok(()),
            Some(cp) if cp.state == CheckpointState::Failed => {
                return Err(ProjectionError::Failed {
                    name: projection.to_owned(),
                    position: cp.failed_position.unwrap_or_default(),
                    error: cp.error.unwrap_or_default(),
                })
            }
            Some(cp) => cp.position,
            None => Position::START,
        };
        if Instant::now() >= deadline {
            return Err(ProjectionError::Timeout {
                name: projection.to_owned(),
                target: position,
                reached,
                timeout,
            });
        }
        tokio::time::sleep(
            pause
                .next_delay()
                .min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

/// What [`Projections::status`] reports for one projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    /// This process's runner: active, standing by, paused by a replay, failed...
    pub state: RunnerState,
    /// The last applied event (shared by all processes).
    pub checkpoint: Position,
    pub lag_events: i64,
    pub lag_seconds: f64,
    /// The poison event's error when failed.
    pub error: Option<String>,
}

/// The running projection runners of this process.
pub struct Projections {
    store: EventStore,
    /// Each runner with the name of its checkpoint row.
    runners: Vec<(&'static str, Addr<ProjectionRunner>)>,
    /// The LISTEN connection whose wake-ups the runners wait on: a runner
    /// holds only a receiver, and dropping the last `Notifier` stops the
    /// listener, which would leave the runners polling.
    _notifier: Arc<Notifier>,
}

/// Starts one runner actor per projection (each active or standing by,
/// depending on who holds its lock) with the default [`RunnerOptions`].
/// Must be called inside an actix System.
///
/// # Errors
/// Database errors while registering the checkpoints.
pub(crate) async fn start_runners(
    store: EventStore,
    notifier: Arc<Notifier>,
) -> Result<Projections, ProjectionError> {
    start_runners_with(store, notifier, RunnerOptions::default()).await
}

/// [`start_runners`] with explicit options (tests, benchmarks).
///
/// # Errors
/// Database errors while registering the checkpoints.
pub async fn start_runners_with(
    store: EventStore,
    notifier: Arc<Notifier>,
    options: RunnerOptions,
) -> Result<Projections, ProjectionError> {
    use actix::Actor;
    let client = store.pool().get().await?;
    for p in Projection::ALL {
        client
            .execute(
                "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&p.name()],
            )
            .await?;
    }
    drop(client);
    let runners = Projection::ALL
        .into_iter()
        .map(|p| {
            let runner = ProjectionRunner::new(
                Box::new(Tables(p)),
                store.clone(),
                notifier.wakeups(),
                options,
            );
            (p.name(), runner.start())
        })
        .collect();
    Ok(Projections {
        store,
        runners,
        _notifier: notifier,
    })
}

impl Projections {
    /// Adds a runner started elsewhere (the AMQP reply publisher's), so that
    /// its state and lag are reported and it is stopped with the others.
    pub(crate) fn add(&mut self, name: &'static str, runner: Addr<ProjectionRunner>) {
        self.runners.push((name, runner));
    }

    /// State, checkpoint and lag of every projection.
    pub async fn status(&self) -> Vec<ProjectionStatus> {
        let mut out = Vec::with_capacity(self.runners.len());
        for (name, addr) in &self.runners {
            let state = addr
                .send(runner::GetRunnerState)
                .await
                .unwrap_or(RunnerState::Stopped);
            let cp = checkpoint(&self.store, name).await.ok().flatten();
            let lag = lag(&self.store, name).await.unwrap_or_default();
            let failed = cp
                .as_ref()
                .is_some_and(|c| c.state == CheckpointState::Failed);
            out.push(ProjectionStatus {
                name: (*name).to_owned(),
                state: if failed { RunnerState::Failed } else { state },
                checkpoint: cp.as_ref().map(|c| c.position).unwrap_or_default(),
                lag_events: lag.events,
                lag_seconds: lag.seconds,
                error: cp.and_then(|c| c.error),
            });
        }
        out
    }

    /// Stops every runner of this process, all at once: each commits the
    /// batch it is applying (within its [`RunnerOptions::stop_timeout`]),
    /// releases its lock (so standbys elsewhere take over) and ends. Returns
    /// once they all have.
    pub async fn stop(&self) {
        futures::future::join_all(
            self.runners
                .iter()
                .map(|(_, addr)| addr.send(runner::StopRunner)),
        )
        .await;
    }
}

/// The decoded events to apply, or the first one that cannot be read.
pub(crate) fn readable(events: &[Decoded]) -> Result<Vec<(&Decoded, &CourseEvent)>, ApplyError> {
    let mut out = Vec::with_capacity(events.len());
    for d in events {
        match &d.event {
            Ok(Some(e)) => out.push((d, e)),
            Ok(None) => {}
            Err(error) => {
                return Err(ApplyError::Event {
                    position: d.position,
                    error: error.clone(),
                })
            }
        }
    }
    Ok(out)
}

/// Brings one projection up to `position` from a short-lived command: runs
/// its runner in this process until the checkpoint passes `position` (or,
/// when a `serve` holds the runner's lock, waits for that one to get
/// there), then stops it. Must be called inside an actix System.
///
/// # Errors
/// As [`wait_for_position`].
pub async fn catch_up(
    store: &EventStore,
    projection: Projection,
    position: Position,
    timeout: Duration,
) -> Result<(), ProjectionError> {
    use actix::Actor;
    let client = store.pool().get().await?;
    client
        .execute(
            "INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
            &[&projection.name()],
        )
        .await?;
    drop(client);
    let notifier = crate::store::subscription::Notifier::start(store.config().clone());
    let runner = ProjectionRunner::new(
        Box::new(Tables(projection)),
        store.clone(),
        notifier.wakeups(),
        RunnerOptions::default(),
    )
    .start();
    let reached = wait_for_position(store, projection.name(), position, timeout).await;
    let _ = runner.send(runner::StopRunner).await;
    reached
}
