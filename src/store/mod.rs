//! The PostgreSQL event store.
//!
//! - [`EventStore::append`]: one or many events of one stream, atomically,
//!   guarded by the expected stream version (a stale one is [`StoreError::Conflict`]).
//! - [`reads`]: one course's history ([`EventStore::read_stream`], or its
//!   events from a version on), how far streams go, and the global log in
//!   commit-safe order ([`EventStore::read_all_after`]).
//! - [`notify`]: the NOTIFY sent after appends, from the application's runtime.
//! - [`subscription`]: wake-ups by LISTEN/NOTIFY with polling as the fallback.
//! - [`migrate`]: the SQL of `schema/` and `projections/`, applied once.
//! - [`courses`]: the domain's view: load a course, decide a command, append.
//! - [`work`]: the generation work queue and its leases.

pub mod courses;
pub mod migrate;
mod notify;
mod reads;
pub mod subscription;
pub(crate) mod work;

pub(crate) use reads::read_all_after_as;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

/// The channel appends NOTIFY on.
pub(crate) const NOTIFY_CHANNEL: &str = "coursegen_events";

/// Errors of the event store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the expected version: someone else appended first.
    /// Reload the stream and decide again.
    #[error("stream {stream_id} is no longer at version {expected}")]
    Conflict { stream_id: Uuid, expected: u32 },
    #[error("database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored payload this build cannot read (unknown type, newer version,
    /// bad shape). The message names the cause too: it is stored as the
    /// reason a projection stopped.
    #[error("event {position} cannot be read: {source}")]
    Corrupt {
        position: i64,
        #[source]
        source: crate::domain::UpcastError,
    },
    /// `DATABASE_URL` is not a PostgreSQL connection string.
    #[error("invalid DATABASE_URL")]
    InvalidUrl(#[source] tokio_postgres::Error),
}

/// Who and what caused an event; stored beside the payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// The component that wrote the event (`cli`, `http`, `amqp`, `course-actor`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
    /// Where an AMQP request wants its replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

impl Metadata {
    /// Metadata naming only its producer.
    pub fn producer(name: &str) -> Self {
        Self {
            producer: Some(name.to_owned()),
            ..Self::default()
        }
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: i16,
    pub payload: Value,
}

impl From<&crate::domain::CourseEvent> for NewEvent {
    fn from(e: &crate::domain::CourseEvent) -> Self {
        Self {
            event_type: e.event_type().to_owned(),
            event_version: e.event_version(),
            payload: e.payload(),
        }
    }
}

impl From<&crate::domain::sources::SourceEvent> for NewEvent {
    fn from(e: &crate::domain::sources::SourceEvent) -> Self {
        Self {
            event_type: e.event_type().to_owned(),
            event_version: e.event_version(),
            payload: e.payload(),
        }
    }
}

/// A place in the global log: the writing transaction, then the position.
/// Readers keep the last one they processed as their checkpoint.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl Position {
    /// Before the first event.
    pub const START: Self = Self {
        transaction_id: 0,
        global_position: 0,
    };
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub global_position: i64,
    pub transaction_id: i64,
    pub stream_id: Uuid,
    pub stream_version: i32,
    pub event_type: String,
    pub event_version: i16,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// Where this event sits in the global order.
    pub fn position(&self) -> Position {
        Position {
            transaction_id: self.transaction_id,
            global_position: self.global_position,
        }
    }

    /// The metadata as its typed form (unknown keys ignored).
    pub fn metadata(&self) -> Metadata {
        serde_json::from_value(self.metadata.clone()).unwrap_or_default()
    }

    /// The payload as a domain event, upcast from older versions.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the payload is not a known course event.
    pub fn to_course_event(&self) -> Result<crate::domain::CourseEvent, StoreError> {
        crate::domain::CourseEvent::from_stored(
            &self.event_type,
            self.event_version,
            self.payload.clone(),
        )
        .map_err(|source| StoreError::Corrupt {
            position: self.global_position,
            source,
        })
    }

    fn from_row(row: &Row) -> Self {
        Self {
            global_position: row.get(0),
            transaction_id: row.get(1),
            stream_id: row.get(2),
            stream_version: row.get(3),
            event_type: row.get(4),
            event_version: row.get(5),
            payload: row.get(6),
            metadata: row.get(7),
            recorded_at: row.get(8),
        }
    }
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The stream's version after the append (number of events in it).
    pub next_version: u32,
    /// Position of the last event written: wait for a projection to pass it
    /// to read your own write.
    pub position: Position,
}

const COLUMNS: &str = "global_position, transaction_id::text::bigint, stream_id, stream_version, \
                       event_type, event_version, payload, metadata, recorded_at";

/// What [`EventStore::append_and`] writes beside the events, in their
/// statement: `prepare`, a query over `new_events` (the events to append:
/// their `event_type` and `payload`), computed before anything is written;
/// `write`, a data-modifying statement over `prepared` (its rows) and
/// `appended` (the events written), which is empty when nothing is.
pub(crate) struct AlsoWrite {
    pub prepare: &'static str,
    pub write: &'static str,
}

/// The event store over a connection pool.
#[derive(Clone)]
pub struct EventStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// This store's NOTIFY task (see [`notify`]).
    notify: Arc<notify::NotifySender>,
}

impl EventStore {
    /// Connects a pool of `max_connections` to `database_url`.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for a malformed connection string.
    /// Connections are opened lazily.
    pub(crate) fn connect(database_url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config =
            database_url.parse().map_err(StoreError::InvalidUrl)?;
        Ok(Self::from_config(config, max_connections))
    }

    /// A pool of `max_connections` on an already parsed configuration.
    pub fn from_config(config: tokio_postgres::Config, max_connections: usize) -> Self {
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections)
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .expect("a runtime and a manager are set");
        Self {
            pool,
            notify: Arc::new(notify::NotifySender::new(config.clone())),
            config,
        }
    }

    /// The pool, for projections and queries that live beside the log.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connection settings, for dedicated (non-pooled) connections.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Appends `events` to a stream that holds exactly `expected_version`
    /// events, all in one statement (so one transaction), with one metadata.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the stream is not at `expected_version`
    /// (including two writers racing for the same version: one wins).
    pub async fn append(
        &self,
        stream_id: Uuid,
        expected_version: u32,
        events: &[NewEvent],
        metadata: &Metadata,
    ) -> Result<Appended, StoreError> {
        self.append_and(stream_id, expected_version, events, metadata, None)
            .await
    }

    /// [`Self::append`], and `also`'s write, in the same statement, so in
    /// the same transaction: what it writes is there exactly when the
    /// events are.
    ///
    /// # Errors
    /// As [`Self::append`]; a failing `also` appends nothing.
    pub(crate) async fn append_and(
        &self,
        stream_id: Uuid,
        expected_version: u32,
        events: &[NewEvent],
        metadata: &Metadata,
        also: Option<&AlsoWrite>,
    ) -> Result<Appended, StoreError> {
        assert!(!events.is_empty(), "append needs at least one event");
        let client = self.pool.get().await?;
        // One statement, so one transaction. The unique stream key rejects a
        // version already taken (a stale writer, or the loser of a race); the
        // guard rejects a version beyond the stream's end (no gaps).
        let (from, row) = if events.len() == 1 {
            (
                "",
                "$1, $2, ($3::text[])[1], ($4::int2[])[1], ($5::jsonb[])[1], $6",
            )
        } else {
            (
                "FROM unnest($3::text[], $4::int2[], $5::jsonb[])
                      WITH ORDINALITY AS e(event_type, event_version, payload, ord)",
                "$1, $2 + e.ord::int - 1, e.event_type, e.event_version, e.payload, $6",
            )
        };
        let guard = "($2 = 0 OR EXISTS (SELECT 1 FROM events WHERE stream_id = $1 AND stream_version = $2 - 1))";
        let insert = |prepared: &str, transaction_id: &str| {
            format!(
                "INSERT INTO events (stream_id, stream_version, event_type, event_version, payload, metadata)
                 SELECT {row} {from} WHERE {guard}{prepared}
                 RETURNING global_position, {transaction_id}"
            )
        };
        let sql = match also {
            None => insert("", "transaction_id::text::bigint"),
            // `prepared` is computed whole (the count, a condition of the
            // insert evaluated once before its first row) before anything is
            // written, so before the transaction takes its id: the readers'
            // horizon (`read_all_after`) is held back only while the rows are
            // written, not while they are computed. A data-modifying WITH
            // runs once, whether or not the outer query reads it.
            Some(also) => format!(
                "WITH new_events AS (
                     SELECT * FROM unnest($3::text[], $5::jsonb[]) AS n(event_type, payload)
                 ),
                 prepared AS MATERIALIZED ({prepare}),
                 appended AS ({insert}),
                 also AS ({write})
                 SELECT global_position, transaction_id::text::bigint FROM appended",
                prepare = also.prepare,
                insert = insert(
                    " AND (SELECT count(*) FROM prepared) >= 0",
                    "transaction_id"
                ),
                write = also.write,
            ),
        };
        let stmt = client.prepare_cached(&sql).await?;
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<i16> = events.iter().map(|e| e.event_version).collect();
        let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
        let metadata = serde_json::to_value(metadata).expect("metadata serializes");
        let version = i32::try_from(expected_version).expect("stream version fits in int");
        let conflict = || StoreError::Conflict {
            stream_id,
            expected: expected_version,
        };
        let rows = client
            .query(
                &stmt,
                &[
                    &stream_id, &version, &types, &versions, &payloads, &metadata,
                ],
            )
            .await
            .map_err(|e| {
                let on_stream_key = e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    && e.as_db_error().and_then(|d| d.constraint())
                        == Some("events_stream_version_key");
                if on_stream_key {
                    conflict()
                } else {
                    StoreError::Database(e)
                }
            })?;
        drop(client);
        if !rows.is_empty() {
            self.wake_readers();
            metrics::counter!("coursegen_events_appended_total").increment(rows.len() as u64);
        }
        let last = rows
            .iter()
            .max_by_key(|r| r.get::<_, i64>(0))
            .ok_or_else(conflict)?;
        Ok(Appended {
            next_version: expected_version + events.len() as u32,
            position: Position {
                global_position: last.get(0),
                transaction_id: last.get(1),
            },
        })
    }

    /// Tells subscribers (in every process) that events were appended.
    ///
    /// Sent after the append committed, from a task of this store's, and
    /// coalesced: however many appends happen while one NOTIFY is in flight,
    /// one more follows. A NOTIFY inside the appending transaction would hold
    /// PostgreSQL's cluster-wide notify lock through the commit's WAL flush,
    /// serializing every append (measured: half the throughput at 8 writers).
    /// A lost wake-up only delays readers: they poll as well.
    fn wake_readers(&self) {
        self.notify.signal();
    }

    /// Runs this store's NOTIFY task on `runtime` (the application's own),
    /// not on whichever runtime appends first: that one may end (an HTTP
    /// worker's) while the service goes on. A task found gone is restarted
    /// either way.
    pub fn send_notifications_on(&self, runtime: tokio::runtime::Handle) {
        self.notify.run_on(runtime);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::bench::ScratchDatabase;

    #[tokio::test]
    async fn what_append_and_writes_beside_the_events_is_computed_first_and_there_exactly_when_they_are(
    ) {
        let (db, store) = ScratchDatabase::for_tests().await;
        let client = store.pool().get().await.unwrap();
        client
            .batch_execute(
                "CREATE TABLE beside (n int, written_by xid8 DEFAULT pg_current_xact_id(),
                                      computed_with xid8)",
            )
            .await
            .unwrap();
        let also = AlsoWrite {
            prepare: "SELECT (payload->>'n')::int AS n,
                             pg_current_xact_id_if_assigned() AS computed_with
                      FROM new_events",
            write: "INSERT INTO beside (n, computed_with)
                    SELECT n, computed_with FROM prepared WHERE EXISTS (SELECT FROM appended)",
        };
        let stream = Uuid::new_v4();
        let event = |n: i32| NewEvent {
            event_type: "TestHappened".into(),
            event_version: 1,
            payload: json!({ "n": n }),
        };
        let metadata = Metadata::producer("test");
        store
            .append_and(stream, 0, &[event(1)], &metadata, Some(&also))
            .await
            .unwrap();
        store
            .append_and(stream, 1, &[event(2), event(3)], &metadata, Some(&also))
            .await
            .unwrap();
        // A version taken, and one beyond the stream's end: nothing is
        // appended, and nothing written beside.
        for (version, n) in [(1, 4), (9, 5)] {
            let refused = store
                .append_and(stream, version, &[event(n)], &metadata, Some(&also))
                .await;
            assert!(
                matches!(refused, Err(StoreError::Conflict { .. })),
                "{refused:?}"
            );
        }
        let rows: Vec<(i32, bool, bool)> = client
            .query(
                "SELECT b.n, b.computed_with IS NULL, b.written_by = e.transaction_id
                 FROM beside b JOIN events e ON (e.payload->>'n')::int = b.n
                 ORDER BY b.n",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        // Each row written by its event's transaction, computed before that
        // transaction had an id.
        assert_eq!(rows, [(1, true, true), (2, true, true), (3, true, true)]);
        let beside: i64 = client
            .query_one("SELECT count(*) FROM beside", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(beside, 3);
        drop(client);
        store.pool().close();
        db.drop_database().await.unwrap();
    }
}
