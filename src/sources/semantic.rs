//! Semantic retrieval, when an embeddings endpoint is configured
//! ([`super::embeddings::EmbeddingsArgs`]); full text alone otherwise.
//!
//! - Vectors live in `chunk_embeddings` (`schema/0006_chunk_embeddings.sql`),
//!   keyed by model and the SHA-256 of a chunk's text. [`store_vectors`]
//!   writes the missing ones at ingest, before the document's event is
//!   appended: a replay never calls the endpoint, and an unchanged document
//!   ingested again gets the vectors it lacks (how a library ingested before
//!   embeddings were configured, or under another model, is filled in).
//! - [`search`] ranks the user's current chunks under the prefix by the
//!   cosine of their vectors to the query's, takes the best
//!   [`CANDIDATES`], and fuses them with the full-text best as many by
//!   reciprocal rank fusion (k = 60). A hit's score is then its fused score.
//!
//! Every candidate's vector is read and compared per search (no vector
//! index): meant for a user's library, not for millions of chunks.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::{Pool, PoolError};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::embeddings::{nearest, reciprocal_rank_fusion, Embedder, EmbeddingsError, RRF_K};
use crate::projections::sources::queries::{self, like_prefix, SearchHit};

/// How many chunks each ranking (full text, vectors) gives the fusion, at least.
pub const CANDIDATES: i64 = 50;

/// Why semantic retrieval or the storing of vectors failed.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    #[error(transparent)]
    Embeddings(#[from] EmbeddingsError),
    #[error("database error: {0}")]
    Database(#[from] PoolError),
}

impl From<tokio_postgres::Error> for SemanticError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Database(e.into())
    }
}

/// The key of a chunk's vector: the SHA-256 of its text's UTF-8 bytes (what
/// `sha256(convert_to(text, 'UTF8'))` gives in SQL).
pub fn text_hash(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

/// Makes sure every one of `texts` has a vector of `embedder`'s model:
/// embeds those that have none (each distinct text once) and stores them.
/// Returns how many were embedded.
///
/// # Errors
/// [`SemanticError::Embeddings`] when the endpoint fails (nothing is stored
/// then), database errors.
pub async fn store_vectors(
    pool: &Pool,
    embedder: &Embedder,
    texts: &[&str],
) -> Result<usize, SemanticError> {
    let mut wanted: HashMap<Vec<u8>, &str> = HashMap::new();
    for t in texts {
        wanted.entry(text_hash(t)).or_insert(t);
    }
    if wanted.is_empty() {
        return Ok(0);
    }
    let client = pool.get().await?;
    let hashes: Vec<&Vec<u8>> = wanted.keys().collect();
    let have: HashSet<Vec<u8>> = client
        .query(
            "SELECT text_hash FROM chunk_embeddings WHERE model = $1 AND text_hash = ANY($2)",
            &[&embedder.model(), &hashes],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut missing: Vec<(Vec<u8>, String)> = wanted
        .into_iter()
        .filter(|(h, _)| !have.contains(h))
        .map(|(h, t)| (h, t.to_owned()))
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    missing.sort();
    let inputs: Vec<String> = missing.iter().map(|(_, t)| t.clone()).collect();
    // The endpoint may take minutes over a big document: no connection of
    // the pool (which queries and course actors share) waits on it.
    drop(client);
    let vectors = embedder.embed(&inputs).await?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO chunk_embeddings (model, text_hash, vector) VALUES ($1, $2, $3)
             ON CONFLICT (model, text_hash) DO NOTHING",
        )
        .await?;
    for ((hash, _), vector) in missing.iter().zip(&vectors) {
        tx.execute(&insert, &[&embedder.model(), hash, vector])
            .await?;
    }
    tx.commit().await?;
    Ok(missing.len())
}

/// The `k` chunks of `user_id`'s current library under `prefix` that best
/// match: `fulltext_query` (web search syntax, see [`queries::search`]) by
/// full text and, with an `embedder`, `text` by the cosine of vectors, the
/// two rankings fused. Without an `embedder` this is [`queries::search`]
/// (nothing when `fulltext_query` is blank).
///
/// # Errors
/// [`SemanticError::Embeddings`] when the query cannot be embedded (the
/// search fails rather than quietly falling back to full text), database
/// errors.
pub async fn search(
    pool: &Pool,
    embedder: Option<&Embedder>,
    user_id: Uuid,
    text: &str,
    fulltext_query: &str,
    prefix: &str,
    k: i64,
) -> Result<Vec<SearchHit>, SemanticError> {
    let full_text = |limit| async move {
        if fulltext_query.trim().is_empty() {
            Ok(Vec::new())
        } else {
            queries::search(pool, user_id, fulltext_query, prefix, limit).await
        }
    };
    let Some(embedder) = embedder else {
        return Ok(full_text(k).await?);
    };
    let n = CANDIDATES.max(k);
    let by_text = full_text(n).await?;
    let by_vector = if text.trim().is_empty() {
        Vec::new()
    } else {
        let query = embedder
            .embed(&[text.to_owned()])
            .await?
            .pop()
            .unwrap_or_default();
        let client = pool.get().await?;
        let stmt = client
            .prepare_cached(include_str!("sql/vector_candidates.sql"))
            .await?;
        let candidates: Vec<(Uuid, Vec<f32>)> = client
            .query(&stmt, &[&user_id, &like_prefix(prefix), &embedder.model()])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        nearest(&query, &candidates, usize::try_from(n).unwrap_or(0))
    };
    let text_ids: Vec<Uuid> = by_text.iter().map(|h| h.chunk_id).collect();
    let fused = reciprocal_rank_fusion(&[&text_ids, &by_vector], RRF_K);
    let top: Vec<(Uuid, f64)> = fused
        .into_iter()
        .take(usize::try_from(k).unwrap_or(0))
        .collect();
    let mut known: HashMap<Uuid, SearchHit> =
        by_text.into_iter().map(|h| (h.chunk_id, h)).collect();
    let unknown: Vec<Uuid> = top
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !known.contains_key(id))
        .collect();
    if !unknown.is_empty() {
        let client = pool.get().await?;
        let stmt = client
            .prepare_cached(include_str!("sql/hits_by_id.sql"))
            .await?;
        for r in client.query(&stmt, &[&user_id, &unknown]).await? {
            let hit = SearchHit::from_row(&r);
            known.insert(hit.chunk_id, hit);
        }
    }
    // A chunk gone between the two reads (a new version) is left out.
    Ok(top
        .into_iter()
        .filter_map(|(id, score)| {
            known.remove(&id).map(|mut h| {
                h.score = score;
                h
            })
        })
        .collect())
}
