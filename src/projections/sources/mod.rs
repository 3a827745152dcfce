//! The `sources` projector: `sources` (one row per document, its current
//! version) and `source_chunks` (every version's chunks, the current ones
//! searchable), from the document streams. Its SQL is in `sql/` and
//! `projections/0010_sources.sql`; its queries in [`queries`].

pub mod queries;

use super::recount::Recount;
use super::{ApplyError, Decoded};
use crate::domain::sources::{SourceContent, SourceEvent};

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

/// Applies the document events of `events`, in order, to the tables with `suffix`.
pub(crate) async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    events: &[Decoded],
) -> Result<(), ApplyError> {
    for (d, e) in readable(events)? {
        let err = |e| ApplyError::from_db(d.position, e);
        match e.content() {
            Some((version, content)) => {
                write_version(tx, suffix, d, version, content)
                    .await
                    .map_err(err)?;
            }
            None => {
                let stmt = tx
                    .prepare_cached(&format!(
                        "UPDATE sources{suffix} SET deleted_at = $2, updated_at = $2 WHERE id = $1"
                    ))
                    .await
                    .map_err(err)?;
                tx.execute(&stmt, &[&d.stream_id, &d.recorded_at])
                    .await
                    .map_err(err)?;
                retire_chunks(tx, suffix, d).await.map_err(err)?;
            }
        }
    }
    Ok(())
}

async fn retire_chunks(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    d: &Decoded,
) -> Result<(), tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE source_chunks{suffix} SET current = false WHERE source_id = $1 AND current"
        ))
        .await?;
    tx.execute(&stmt, &[&d.stream_id]).await?;
    Ok(())
}

async fn write_version(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    d: &Decoded,
    version: u32,
    c: &SourceContent,
) -> Result<(), tokio_postgres::Error> {
    let version = i32::try_from(version).unwrap_or(i32::MAX);
    let size = i64::try_from(c.size).unwrap_or(i64::MAX);
    let chunk_count = i32::try_from(c.chunks.len()).unwrap_or(i32::MAX);
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO sources{suffix} ({SOURCE_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, NULL)
             ON CONFLICT (id) DO UPDATE SET
                 title = EXCLUDED.title, media_type = EXCLUDED.media_type,
                 size_bytes = EXCLUDED.size_bytes, content_hash = EXCLUDED.content_hash,
                 language = EXCLUDED.language, version = EXCLUDED.version,
                 chunk_count = EXCLUDED.chunk_count, updated_at = EXCLUDED.updated_at,
                 deleted_at = NULL"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[
            &d.stream_id,
            &c.user_id,
            &c.path,
            &c.title,
            &c.media_type,
            &size,
            &c.content_hash,
            &c.language,
            &version,
            &chunk_count,
            &d.recorded_at,
        ],
    )
    .await?;
    retire_chunks(tx, suffix, d).await?;
    let chunks = serde_json::to_value(&c.chunks).expect("chunks serialize");
    let stmt = tx
        .prepare_cached(
            &include_str!("sql/insert_chunks.sql")
                .replace("{suffix}", suffix)
                .replace("{columns}", CHUNK_COLUMNS),
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &d.stream_id,
            &version,
            &c.user_id,
            &c.path,
            &c.language,
            &c.title,
            &chunks,
        ],
    )
    .await?;
    Ok(())
}
