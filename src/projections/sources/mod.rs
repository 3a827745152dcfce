//! The `sources` projector: `sources` (one row per document, its current
//! version) and `source_chunks` (every version's chunks, the current ones
//! searchable), from the document streams. Its SQL is in `sql/` and
//! `projections/0010_sources.sql`, `0013_sources_search.sql` and
//! `0014_sources_chunk_keys.sql`; its queries
//! in [`queries`], how a search picks what it ranks in [`search`].

pub mod queries;
pub mod search;

use std::collections::HashSet;

use uuid::Uuid;

use super::recount::Recount;
use super::{ApplyError, Decoded};

use crate::domain::sources::SourceEvent;
use crate::store::Position;

/// The columns of `sources`.
pub(crate) const SOURCE_COLUMNS: &str = "id, user_id, path, title, media_type, size_bytes, \
     content_hash, language, version, chunk_count, created_at, updated_at, deleted_at";

/// The columns of `source_chunks`.
pub(crate) const CHUNK_COLUMNS: &str =
    "id, source_id, version, ordinal, user_id, path, heading_path, page, text, ts_config, tsv, current";

/// The recounts of the read model's tables from the log.
pub fn recounts() -> Vec<Recount> {
    vec![
        Recount {
            table: "sources",
            columns: SOURCE_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_sources.sql"),
        },
        Recount {
            table: "source_chunks",
            columns: CHUNK_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_chunks.sql"),
        },
    ]
}

/// The document events of a batch, or the first that cannot be read.
fn readable(events: &[Decoded]) -> Result<Vec<(&Decoded, &SourceEvent)>, ApplyError> {
    let mut out = Vec::new();
    for d in events {
        if let Err(error) = &d.event {
            return Err(ApplyError::Event {
                position: d.position,
                error: error.clone(),
            });
        }
        if let Some(e) = &d.source {
            out.push((d, e));
        }
    }
    Ok(out)
}

/// The payload the projector reads (its [`super::BatchApplier::payload_sql`],
/// and a replay's for document events): a document version's without its
/// chunks, which [`apply`] copies from the log server-side (the chunk text
/// never travels to this process and back); a removal's whole; a JSON
/// `null` for every other event.
pub(crate) const PAYLOAD_SQL: &str = "CASE WHEN event_type IN ('SourceAdded', 'SourceUpdated') \
     THEN payload || '{\"chunks\": []}'::jsonb \
     WHEN event_type = 'SourceRemoved' THEN payload ELSE 'null'::jsonb END";

/// Applies the document events of `events`, in order, to the tables with
/// `suffix`. The new versions of the batch's documents are written together
/// (their rows and chunks by one statement reading each payload from the
/// log once), each version's before a later event of its document.
pub(crate) async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    events: &[Decoded],
) -> Result<(), ApplyError> {
    let mut pending = Versions::default();
    for (d, e) in readable(events)? {
        if pending.has(d.stream_id) {
            pending.flush(tx, suffix).await?;
        }
        if e.content().is_some() {
            pending.push(d);
        } else {
            let err = |e| ApplyError::from_db(d.position, e);
            let stmt = tx
                .prepare_cached(&format!(
                    "UPDATE sources{suffix} SET deleted_at = $2, updated_at = $2 WHERE id = $1"
                ))
                .await
                .map_err(err)?;
            tx.execute(&stmt, &[&d.stream_id, &d.recorded_at])
                .await
                .map_err(err)?;
            retire_chunks(tx, suffix, &[d.stream_id])
                .await
                .map_err(err)?;
        }
    }
    pending.flush(tx, suffix).await
}

/// New versions to write, by their events' positions: their `sources` rows
/// and chunks are read from the log by the statement writing them
/// (`sql/write_versions.sql`).
#[derive(Default)]
struct Versions {
    /// The last event whose version is here (a failing statement names it;
    /// the runner then applies the batch event by event to find the culprit).
    last: Option<Position>,
    documents: HashSet<Uuid>,
    ids: Vec<Uuid>,
    positions: Vec<i64>,
}

impl Versions {
    fn has(&self, source_id: Uuid) -> bool {
        self.documents.contains(&source_id)
    }

    fn push(&mut self, d: &Decoded) {
        self.last = Some(d.position);
        self.documents.insert(d.stream_id);
        self.ids.push(d.stream_id);
        self.positions.push(d.position.global_position);
    }

    /// Retires the older chunks of the documents here, writes their rows
    /// and inserts their new chunks.
    async fn flush(
        &mut self,
        tx: &deadpool_postgres::Transaction<'_>,
        suffix: &str,
    ) -> Result<(), ApplyError> {
        let Some(position) = self.last else {
            return Ok(());
        };
        let Versions { ids, positions, .. } = std::mem::take(self);
        let err = |e| ApplyError::from_db(position, e);
        retire_chunks(tx, suffix, &ids).await.map_err(err)?;
        let stmt = tx
            .prepare_cached(
                &include_str!("sql/write_versions.sql")
                    .replace("{suffix}", suffix)
                    .replace("{source_columns}", SOURCE_COLUMNS)
                    .replace("{chunk_columns}", CHUNK_COLUMNS),
            )
            .await
            .map_err(err)?;
        tx.execute(&stmt, &[&positions]).await.map_err(err)?;
        Ok(())
    }
}

/// Takes the current chunks of the documents `source_ids` out of search.
async fn retire_chunks(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    source_ids: &[Uuid],
) -> Result<(), tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE source_chunks{suffix} SET current = false
             WHERE source_id = ANY($1::uuid[]) AND current"
        ))
        .await?;
    tx.execute(&stmt, &[&source_ids]).await?;
    Ok(())
}
