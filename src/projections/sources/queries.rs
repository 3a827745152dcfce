//! Reading the projected library: list, one document with its chunks, and
//! the full-text search that retrieval uses (`websearch_to_tsquery` in each
//! document's language, ranked by `ts_rank_cd`).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::SOURCE_COLUMNS;

/// A document of a library (its current version).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SourceRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub path: String,
    pub title: String,
    pub media_type: String,
    pub size_bytes: i64,
    pub content_hash: String,
    pub language: String,
    pub version: i32,
    pub chunk_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

impl SourceRow {
    fn from_row(r: &Row) -> Self {
        Self {
            id: r.get(0),
            user_id: r.get(1),
            path: r.get(2),
            title: r.get(3),
            media_type: r.get(4),
            size_bytes: r.get(5),
            content_hash: r.get(6),
            language: r.get(7),
            version: r.get(8),
            chunk_count: r.get(9),
            created_at: r.get(10),
            updated_at: r.get(11),
            deleted_at: r.get(12),
        }
    }
}

/// A passage of a document, with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ChunkRow {
    pub id: Uuid,
    pub ordinal: i32,
    pub heading_path: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<i32>,
    pub text: String,
}

/// What a search found: a chunk, its document and its rank.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub chunk_id: Uuid,
    pub source_id: Uuid,
    pub version: i32,
    pub path: String,
    pub title: String,
    pub heading_path: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<i32>,
    pub text: String,
    /// `ts_rank_cd` of the chunk for the query.
    pub score: f64,
}

/// `prefix` as a `LIKE` pattern matching the paths that start with it.
fn like_prefix(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The live documents of `user_id` whose path starts with `prefix`, by path.
///
/// # Errors
/// Database errors.
pub async fn list(
    pool: &Pool,
    user_id: Uuid,
    prefix: &str,
) -> Result<Vec<SourceRow>, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            &format!(
                "SELECT {SOURCE_COLUMNS} FROM sources
                 WHERE user_id = $1 AND deleted_at IS NULL AND path LIKE $2
                 ORDER BY path"
            ),
            &[&user_id, &like_prefix(prefix)],
        )
        .await?;
    Ok(rows.iter().map(SourceRow::from_row).collect())
}

/// Document `id` if it belongs to `user_id` and is live.
///
/// # Errors
/// Database errors.
pub async fn get(
    pool: &Pool,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<SourceRow>, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {SOURCE_COLUMNS} FROM sources
                 WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL"
            ),
            &[&id, &user_id],
        )
        .await?;
    Ok(row.as_ref().map(SourceRow::from_row))
}

/// The live document of `user_id` at `path`.
///
/// # Errors
/// Database errors.
pub async fn by_path(
    pool: &Pool,
    user_id: Uuid,
    path: &str,
) -> Result<Option<SourceRow>, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {SOURCE_COLUMNS} FROM sources
                 WHERE user_id = $1 AND path = $2 AND deleted_at IS NULL"
            ),
            &[&user_id, &path],
        )
        .await?;
    Ok(row.as_ref().map(SourceRow::from_row))
}

/// The chunks of version `version` of document `id`, in order.
///
/// # Errors
/// Database errors.
pub async fn chunks(
    pool: &Pool,
    id: Uuid,
    version: i32,
) -> Result<Vec<ChunkRow>, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, ordinal, heading_path, page, text FROM source_chunks
             WHERE source_id = $1 AND version = $2 ORDER BY ordinal",
            &[&id, &version],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ChunkRow {
            id: r.get(0),
            ordinal: r.get(1),
            heading_path: r.get(2),
            page: r.get(3),
            text: r.get(4),
        })
        .collect())
}

/// The `limit` current chunks of `user_id`'s live documents under `prefix`
/// that best match `query` (web search syntax: words, `"phrases"`, `or`,
/// `-excluded`), best first. A query with no searchable word finds nothing.
///
/// # Errors
/// Database errors.
pub async fn search(
    pool: &Pool,
    user_id: Uuid,
    query: &str,
    prefix: &str,
    limit: i64,
) -> Result<Vec<SearchHit>, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(include_str!("sql/search.sql"))
        .await?;
    let rows = client
        .query(&stmt, &[&user_id, &query, &like_prefix(prefix), &limit])
        .await?;
    Ok(rows
        .iter()
        .map(|r| SearchHit {
            chunk_id: r.get(0),
            source_id: r.get(1),
            version: r.get(2),
            path: r.get(3),
            title: r.get(4),
            heading_path: r.get(5),
            page: r.get(6),
            text: r.get(7),
            score: r.get(8),
        })
        .collect())
}

/// How many live documents `user_id` has under `prefix`.
///
/// # Errors
/// Database errors.
pub async fn count(
    pool: &Pool,
    user_id: Uuid,
    prefix: &str,
) -> Result<i64, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM sources WHERE user_id = $1 AND deleted_at IS NULL AND path LIKE $2",
            &[&user_id, &like_prefix(prefix)],
        )
        .await?;
    Ok(row.get(0))
}
