//! Reading the projected library: list, one document with its chunks, and
//! the full-text search that retrieval uses (`websearch_to_tsquery` in each
//! document's language, ranked by `ts_rank_cd`).

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{search, SOURCE_COLUMNS};

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
    /// `ts_rank_cd` of the chunk for the query (with embeddings configured,
    /// its reciprocal rank fusion score, see `sources::semantic`).
    pub score: f64,
}

/// `prefix` as a `LIKE` pattern matching the paths that start with it.
pub(crate) fn like_prefix(prefix: &str) -> String {
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
    live_one(pool, "id = $1 AND user_id = $2", &[&id, &user_id]).await
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
    live_one(pool, "user_id = $1 AND path = $2", &[&user_id, &path]).await
}

/// The one live document matching `condition`, if any.
async fn live_one(
    pool: &Pool,
    condition: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<SourceRow>, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            &format!(
                "SELECT {SOURCE_COLUMNS} FROM sources WHERE {condition} AND deleted_at IS NULL"
            ),
            params,
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
/// `-excluded`), best first by `ts_rank_cd`, in each document's language.
/// A query with no searchable word finds nothing. Of a query matching many
/// chunks, only some are ranked: those having its rarest words, or a sample
/// (see [`super::search`]).
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
    let (rows, _) = search_rows(&client, user_id, query, prefix, limit, false).await?;
    Ok(rows.iter().map(SearchHit::from_row).collect())
}

impl SearchHit {
    /// A hit from a row of (chunk id, source id, version, path, title,
    /// heading path, page, text, score), as search.sql selects them.
    pub(crate) fn from_row(r: &Row) -> Self {
        Self {
            chunk_id: r.get(0),
            source_id: r.get(1),
            version: r.get(2),
            path: r.get(3),
            title: r.get(4),
            heading_path: r.get(5),
            page: r.get(6),
            text: r.get(7),
            score: r.get(8),
        }
    }
}

/// What [`search`] does for these arguments: `EXPLAIN (ANALYZE, BUFFERS)`
/// of its ranking statement, after the candidates it chose (for `coursegen
/// bench sources --explain-slowest`).
///
/// # Errors
/// Database errors.
pub async fn explain_search(
    pool: &Pool,
    user_id: Uuid,
    query: &str,
    prefix: &str,
    limit: i64,
) -> Result<String, deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let (rows, chose) = search_rows(&client, user_id, query, prefix, limit, true).await?;
    let mut out = chose;
    for r in &rows {
        out.push('\n');
        out.push_str(r.get(0));
    }
    Ok(out)
}

/// The rows of [`search`] (with `explain`, the lines of its plan) and
/// which candidates it chose.
async fn search_rows(
    client: &deadpool_postgres::Client,
    user_id: Uuid,
    query: &str,
    prefix: &str,
    limit: i64,
    explain: bool,
) -> Result<(Vec<Row>, String), deadpool_postgres::PoolError> {
    let pattern = like_prefix(prefix);
    let plan_stmt = client
        .prepare_cached(include_str!("sql/search_plan.sql"))
        .await?;
    let (mut cfgs, mut queries, mut cands) = (Vec::new(), Vec::new(), Vec::new());
    let mut sample = 1.0f64;
    for row in client
        .query(&plan_stmt, &[&user_id, &query, &pattern])
        .await?
    {
        let cfg: String = row.get(0);
        let chunks: i64 = row.get(1);
        let tsquery: String = row.get(2);
        let stats = lexeme_stats(client, (row.get(3), row.get(4)), row.get(5)).await?;
        let shape = search::shape(&tsquery);
        let fraction = |lexeme: &str| stats.fraction(lexeme);
        let Some(c) = search::candidates(&tsquery, &shape, chunks as f64, fraction) else {
            continue;
        };
        sample = sample.min(c.sample);
        cfgs.push(cfg);
        queries.push(tsquery);
        cands.push(c.tsquery);
    }
    if cfgs.is_empty() {
        return Ok((Vec::new(), "nothing to search".to_owned()));
    }
    let buckets = search::bucket_keys(&queries.join(" "), sample);
    let folder = match prefix.rfind('/') {
        Some(i) => &prefix[..=i],
        None => "",
    };
    let keys = vec![format!("{user_id}:{folder}")];
    let cap = (search::CANDIDATES * HARD_CAP_FACTOR) as i64;
    let rescored = limit
        .saturating_mul(search::RESCORED_PER_HIT)
        .max(search::RESCORED_MIN);
    let sample_condition = if buckets.is_empty() {
        ""
    } else {
        "AND coursegen_chunk_keys(c.user_id, c.path, c.id) && $10::text[]"
    };
    let mut sql = include_str!("sql/search.sql").replace("{sample}", sample_condition);
    if explain {
        sql = format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
    }
    let stmt = client.prepare_cached(&sql).await?;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
        &user_id, &cfgs, &queries, &cands, &keys, &pattern, &cap, &limit, &rescored,
    ];
    if !buckets.is_empty() {
        params.push(&buckets);
    }
    let rows = client.query(&stmt, &params).await?;
    let chose = format!(
        "candidates {cands:?} in {cfgs:?}, {} of {} sampling buckets",
        if buckets.is_empty() {
            search::BUCKETS as usize
        } else {
            buckets.len()
        },
        search::BUCKETS
    );
    // The candidates come from statistics over every library on the
    // server: words rare there may be missing from this library, where the
    // query's other words still match. Fewer hits than asked from narrowed
    // candidates: the other matches fill in after them.
    let narrowed = cands != queries || !buckets.is_empty();
    if narrowed && !explain && (rows.len() as i64) < limit {
        // Without a sample, the statement above is already this one.
        let stmt = if buckets.is_empty() {
            stmt
        } else {
            client
                .prepare_cached(&include_str!("sql/search.sql").replace("{sample}", ""))
                .await?
        };
        // The first CANDIDATES matches found: what the estimates missed is
        // a library where the query's words are few (else the candidates
        // would have found enough), so this rarely reaches its cap.
        let fill_cap = search::CANDIDATES as i64;
        let more = client
            .query(
                &stmt,
                &[
                    &user_id, &cfgs, &queries, &queries, &keys, &pattern, &fill_cap, &limit,
                    &rescored,
                ],
            )
            .await?;
        // The candidates' hits first, as ranked (they have the rarest words;
        // past the cap, ranking every match may not reach them), then the
        // best of the other matches.
        let mut all = rows;
        let seen: std::collections::HashSet<Uuid> = all.iter().map(|r| r.get(0)).collect();
        all.extend(more.into_iter().filter(|r| !seen.contains(&r.get(0))));
        all.truncate(usize::try_from(limit).unwrap_or(0));
        return Ok((
            all,
            format!("{chose}; then the other matches ({limit} hits not found among those)"),
        ));
    }
    Ok((rows, chose))
}

/// A database and the relation `source_chunks` names in it.
type StatsKey = (String, i64);

/// Statistics of `source_chunks.tsv` as of the analysis they come from.
type AnalyzedStats = (Option<DateTime<Utc>>, std::sync::Arc<search::LexemeStats>);

/// The statistics of `source_chunks.tsv`, kept by the process: they change
/// only when the table is analyzed again, and reading them costs more than
/// a search.
static LEXEME_STATS: std::sync::Mutex<Option<std::collections::HashMap<StatsKey, AnalyzedStats>>> =
    std::sync::Mutex::new(None);

/// The statistics of `key` analyzed at `analyzed`, from the process's copy
/// when it is that analysis's.
async fn lexeme_stats(
    client: &deadpool_postgres::Client,
    key: StatsKey,
    analyzed: Option<DateTime<Utc>>,
) -> Result<std::sync::Arc<search::LexemeStats>, deadpool_postgres::PoolError> {
    if let Some((at, stats)) = LEXEME_STATS
        .lock()
        .expect("lexeme statistics lock")
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        if *at == analyzed {
            return Ok(stats.clone());
        }
    }
    let row = client
        .query_opt(include_str!("sql/lexeme_stats.sql"), &[])
        .await?;
    let stats = std::sync::Arc::new(match row {
        Some(r) => search::LexemeStats::new(
            r.get::<_, Option<Vec<String>>>(0).unwrap_or_default(),
            r.get::<_, Option<Vec<f32>>>(1).unwrap_or_default(),
        ),
        None => search::LexemeStats::default(),
    });
    let mut cache = LEXEME_STATS.lock().expect("lexeme statistics lock");
    let map = cache.get_or_insert_with(Default::default);
    // Tests make a database each: keep the copies few.
    if map.len() >= 16 {
        map.clear();
    }
    map.insert(key, (analyzed, stats.clone()));
    Ok(stats)
}

/// How many times [`search::CANDIDATES`] a search ranks at the very most,
/// whatever the estimates said (beyond, the first found are ranked).
const HARD_CAP_FACTOR: f64 = 3.0;

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

/// A folder of a library: a directory prefix of live documents' paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePrefix {
    /// Ends in `/`, e.g. `microbiology/cells/`: a `source_filter` value.
    pub prefix: String,
    /// The live documents under it (in subfolders too).
    pub documents: i64,
}

/// The folders of `user_id`'s live documents (every directory prefix of
/// their paths: `a/b/c.md` gives `a/` and `a/b/`), by prefix, and how many
/// live documents the library holds in all (folders or not).
///
/// # Errors
/// Database errors.
pub async fn prefixes(
    pool: &Pool,
    user_id: Uuid,
) -> Result<(Vec<SourcePrefix>, i64), deadpool_postgres::PoolError> {
    let client = pool.get().await?;
    let (prefixes, total) = futures::try_join!(
        client.prepare_cached(include_str!("sql/prefixes.sql")),
        client.prepare_cached(
            "SELECT count(*) FROM sources WHERE user_id = $1 AND deleted_at IS NULL"
        )
    )?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&user_id];
    let (rows, total) = futures::try_join!(
        client.query(&prefixes, &params),
        client.query_one(&total, &params)
    )?;
    Ok((
        rows.iter()
            .map(|r| SourcePrefix {
                prefix: r.get(0),
                documents: r.get(1),
            })
            .collect(),
        total.get(0),
    ))
}
