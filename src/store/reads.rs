//! Reading the log: one stream (whole, or from a version on), how far
//! streams go, and the global log in commit-safe order.

use std::collections::HashMap;

use uuid::Uuid;

use super::{EventStore, Position, RecordedEvent, StoreError, COLUMNS};

impl EventStore {
    /// Every event of one stream, in stream order.
    ///
    /// # Errors
    /// Database errors only; an unknown stream is empty.
    pub async fn read_stream(&self, stream_id: Uuid) -> Result<Vec<RecordedEvent>, StoreError> {
        self.read_stream_from(stream_id, 0).await
    }

    /// The events of one stream from `version` on, in stream order: what a
    /// reader that folded the first `version` events has not seen yet.
    ///
    /// # Errors
    /// Database errors only.
    pub async fn read_stream_from(
        &self,
        stream_id: Uuid,
        version: u32,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version >= $2
                 ORDER BY stream_version"
            ))
            .await?;
        let version = i32::try_from(version).unwrap_or(i32::MAX);
        let rows = client.query(&stmt, &[&stream_id, &version]).await?;
        Ok(rows.iter().map(RecordedEvent::from_row).collect())
    }

    /// Where the last event of one stream stands in the global order (none
    /// for an unknown stream): what a reader waits for to have seen it all.
    ///
    /// # Errors
    /// Database errors only.
    pub async fn stream_head(&self, stream_id: Uuid) -> Result<Option<Position>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT transaction_id::text::bigint, global_position FROM events WHERE stream_id = $1
                 ORDER BY stream_version DESC LIMIT 1",
            )
            .await?;
        Ok(client
            .query_opt(&stmt, &[&stream_id])
            .await?
            .map(|r| Position {
                transaction_id: r.get(0),
                global_position: r.get(1),
            }))
    }

    /// How many events each of `streams` holds (its next version), in one
    /// query; streams without events are left out. A stream's versions
    /// commit in order (an append needs the version before it), so this is
    /// also how far a reader of it can read.
    ///
    /// # Errors
    /// Database errors only.
    pub async fn stream_versions(
        &self,
        streams: &[Uuid],
    ) -> Result<HashMap<Uuid, u32>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT stream_id, max(stream_version) + 1 FROM events
                 WHERE stream_id = ANY($1) GROUP BY stream_id",
            )
            .await?;
        let rows = client.query(&stmt, &[&streams]).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), u32::try_from(r.get::<_, i32>(1)).unwrap_or(0)))
            .collect())
    }

    /// Up to `limit` events after `checkpoint` in the global order
    /// `(transaction_id, global_position)`.
    ///
    /// Only events of transactions older than every transaction still running
    /// are returned (`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`).
    /// A transaction that took a lower `global_position` but commits later than
    /// its neighbours is thus never overtaken: until it ends, nothing at or
    /// after it is handed out, so a reader that advances its checkpoint past
    /// what it saw can never skip it.
    ///
    /// # Errors
    /// Database errors only.
    pub async fn read_all_after(
        &self,
        checkpoint: Position,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.pool.get().await?;
        read_all_after_with(&client, checkpoint, limit).await
    }
}

/// [`EventStore::read_all_after`] on a given client.
///
/// # Errors
/// Database errors only.
async fn read_all_after_with(
    client: &impl deadpool_postgres::GenericClient,
    checkpoint: Position,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    read_all_after_as(client, checkpoint, limit, "payload").await
}

/// [`read_all_after_with`] with each payload as the SQL expression
/// `payload` (over the `events` row) makes it: a rebuild leaves out, server
/// side, what it will copy from the log without reading it.
///
/// # Errors
/// Database errors only.
pub(crate) async fn read_all_after_as(
    client: &impl deadpool_postgres::GenericClient,
    checkpoint: Position,
    limit: i64,
    payload: &str,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let columns = COLUMNS.replacen("payload", &format!("{payload} AS payload"), 1);
    // ORDER BY names `events.` columns: a bare `transaction_id` would mean the
    // output column of that name (the bigint cast in COLUMNS), which no index
    // serves: every read would sort the rest of the log.
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {columns} FROM events
             WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
               AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY events.transaction_id, events.global_position
             LIMIT $3"
        ))
        .await?;
    let tx = checkpoint.transaction_id.to_string();
    let rows = client
        .query(&stmt, &[&tx, &checkpoint.global_position, &limit])
        .await?;
    Ok(rows.iter().map(RecordedEvent::from_row).collect())
}
