//! Optional semantic retrieval (issue 13, part 4): a client of an
//! OpenAI-compatible `POST {EMBEDDINGS_BASE_URL}/embeddings`, configured by
//! `EMBEDDINGS_MODEL` and `EMBEDDINGS_BASE_URL` (`EMBEDDINGS_API_KEY`, else
//! `OPENAI_API_KEY`, as its bearer token), cosine ranking of chunk vectors,
//! and reciprocal rank fusion (k = 60) of a vector ranking with the
//! full-text one. Where the vectors are kept and how retrieval uses them:
//! [`super::semantic`].

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// The `k` of reciprocal rank fusion: a document ranked r in a list scores
/// 1 / (k + r), r counted from 1 (Cormack et al., 2009).
pub const RRF_K: f64 = 60.0;
/// Texts per request.
const BATCH: usize = 64;

/// Where the embeddings come from.
#[derive(Clone, PartialEq, Eq)]
pub struct EmbeddingsSettings {
    pub model: String,
    /// E.g. `http://127.0.0.1:8000/v1`: `/embeddings` is appended.
    pub base_url: String,
    pub api_key: Option<String>,
}

impl std::fmt::Debug for EmbeddingsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsSettings")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The embeddings flags of `serve` and `sources add|search`: both
/// `EMBEDDINGS_MODEL` and `EMBEDDINGS_BASE_URL` set turns semantic retrieval
/// on; neither leaves full text alone (the default).
#[derive(Clone, Default, clap::Args)]
pub struct EmbeddingsArgs {
    /// Embeddings model of an OpenAI-compatible endpoint (e.g.
    /// text-embedding-3-small, nomic-embed-text). With EMBEDDINGS_BASE_URL:
    /// a vector is stored per chunk at ingest and retrieval fuses vector
    /// hits with the full-text ranks. Unset: full text alone.
    #[arg(long, env = "EMBEDDINGS_MODEL")]
    pub embeddings_model: Option<String>,

    /// Base URL of the embeddings endpoint, e.g. http://127.0.0.1:11434/v1
    /// (`/embeddings` is appended).
    #[arg(long, env = "EMBEDDINGS_BASE_URL")]
    pub embeddings_base_url: Option<String>,

    /// Bearer token of the embeddings endpoint (default: OPENAI_API_KEY).
    #[arg(long, env = "EMBEDDINGS_API_KEY", hide_env_values = true)]
    pub embeddings_api_key: Option<String>,
}

impl std::fmt::Debug for EmbeddingsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsArgs")
            .field("embeddings_model", &self.embeddings_model)
            .field("embeddings_base_url", &self.embeddings_base_url)
            .field(
                "embeddings_api_key",
                &self.embeddings_api_key.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

/// Half of the embeddings configuration.
#[derive(Debug, thiserror::Error)]
#[error("{set} is set but {missing} is not: set both for semantic retrieval, or neither for full text alone")]
pub struct EmbeddingsConfigError {
    set: &'static str,
    missing: &'static str,
}

impl EmbeddingsArgs {
    /// The settings from the environment alone (benchmarks, which take no
    /// embeddings flags).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        Self {
            embeddings_model: var("EMBEDDINGS_MODEL"),
            embeddings_base_url: var("EMBEDDINGS_BASE_URL"),
            embeddings_api_key: var("EMBEDDINGS_API_KEY"),
        }
    }

    /// The settings, `None` when neither the model nor the base URL is set
    /// (blank counts as unset).
    ///
    /// # Errors
    /// [`EmbeddingsConfigError`] when only one of the two is set.
    pub fn settings(&self) -> Result<Option<EmbeddingsSettings>, EmbeddingsConfigError> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        match (
            given(&self.embeddings_model),
            given(&self.embeddings_base_url),
        ) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(EmbeddingsConfigError {
                set: "EMBEDDINGS_MODEL",
                missing: "EMBEDDINGS_BASE_URL",
            }),
            (None, Some(_)) => Err(EmbeddingsConfigError {
                set: "EMBEDDINGS_BASE_URL",
                missing: "EMBEDDINGS_MODEL",
            }),
            (Some(model), Some(base_url)) => Ok(Some(EmbeddingsSettings {
                model,
                base_url,
                api_key: given(&self.embeddings_api_key)
                    .or_else(|| given(&std::env::var("OPENAI_API_KEY").ok())),
            })),
        }
    }

    /// A client of the configured endpoint, or `None` (full text alone).
    ///
    /// # Errors
    /// [`EmbeddingsConfigError`] when only one of model and base URL is set.
    pub fn embedder(&self) -> Result<Option<Embedder>, EmbeddingsConfigError> {
        Ok(self.settings()?.map(Embedder::new))
    }
}

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddingsError {
    #[error("embeddings endpoint unreachable: {0}")]
    Http(#[from] reqwest::Error),
    #[error("embeddings endpoint answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("embeddings endpoint answered {0}")]
    Malformed(String),
}

/// A client of the embeddings endpoint.
#[derive(Debug, Clone)]
pub struct Embedder {
    settings: EmbeddingsSettings,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

impl Embedder {
    /// A client with a 60 s timeout per request.
    ///
    /// # Panics
    /// Never in practice: building a reqwest client without custom TLS roots.
    pub fn new(settings: EmbeddingsSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a reqwest client");
        Self { settings, client }
    }

    /// The model whose vectors these are (the key of stored vectors).
    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// The model's vectors of `texts`, in their order, all of one dimension.
    ///
    /// # Errors
    /// [`EmbeddingsError`]: the endpoint unreachable, a non-2xx answer, or an
    /// answer that is not one vector per text of one dimension.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbeddingsError> {
        let url = format!(
            "{}/embeddings",
            self.settings.base_url.trim_end_matches('/')
        );
        let mut out: Vec<Vec<f32>> = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let mut request = self
                .client
                .post(&url)
                .json(&json!({ "model": self.settings.model, "input": batch }));
            if let Some(key) = &self.settings.api_key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await?;
            let status = response.status();
            if !status.is_success() {
                let body: String = response.text().await.unwrap_or_default();
                return Err(EmbeddingsError::Status {
                    status: status.as_u16(),
                    body: body.chars().take(300).collect(),
                });
            }
            let answer: Answer = response
                .json()
                .await
                .map_err(|e| EmbeddingsError::Malformed(format!("no embeddings list: {e}")))?;
            let mut vectors: Vec<Option<Vec<f32>>> = vec![None; batch.len()];
            for item in answer.data {
                let slot = vectors.get_mut(item.index).ok_or_else(|| {
                    EmbeddingsError::Malformed(format!(
                        "index {} for {} texts",
                        item.index,
                        batch.len()
                    ))
                })?;
                *slot = Some(item.embedding);
            }
            for (i, v) in vectors.into_iter().enumerate() {
                let v = v.ok_or_else(|| {
                    EmbeddingsError::Malformed(format!("no vector for text {i} of the batch"))
                })?;
                if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                    return Err(EmbeddingsError::Malformed(format!(
                        "an empty or non-finite vector for text {i}"
                    )));
                }
                if out.first().is_some_and(|f| f.len() != v.len()) {
                    return Err(EmbeddingsError::Malformed(format!(
                        "vectors of {} and {} dimensions",
                        out[0].len(),
                        v.len()
                    )));
                }
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// The cosine similarity of two vectors (0 when either is zero or their
/// dimensions differ).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// The `n` candidates nearest `query` by cosine, best first (ties by id).
pub fn nearest(query: &[f32], candidates: &[(Uuid, Vec<f32>)], n: usize) -> Vec<Uuid> {
    let mut scored: Vec<(f64, Uuid)> = candidates
        .iter()
        .map(|(id, v)| (cosine(query, v), *id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(n).map(|(_, id)| id).collect()
}

/// Reciprocal rank fusion of rankings (best first): each id scores the sum
/// over the rankings it is in of 1 / (`k` + its rank, from 1); best first,
/// ties in order of first appearance.
pub fn reciprocal_rank_fusion(rankings: &[&[Uuid]], k: f64) -> Vec<(Uuid, f64)> {
    let mut scores: HashMap<Uuid, (f64, usize)> = HashMap::new();
    let mut seen = 0;
    for ranking in rankings {
        for (rank, id) in ranking.iter().enumerate() {
            let entry = scores.entry(*id).or_insert_with(|| {
                seen += 1;
                (0.0, seen)
            });
            entry.0 += 1.0 / (k + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(Uuid, f64, usize)> = scores
        .into_iter()
        .map(|(id, (s, first))| (id, s, first))
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    fused.into_iter().map(|(id, s, _)| (id, s)).collect()
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    use super::*;

    /// A deterministic vector of a text: its counts of a, e, i, o, u.
    fn vowels(text: &str) -> Vec<f32> {
        "aeiou"
            .chars()
            .map(|v| text.chars().filter(|c| *c == v).count() as f32)
            .collect()
    }

    /// An endpoint answering each input with its vowel counts, in reverse
    /// order of the inputs (the `index` says whose each is).
    async fn server() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/embeddings"))
            .and(header("authorization", "Bearer k"))
            .respond_with(|r: &Request| {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(body["model"], "tiny-embed");
                let input = body["input"].as_array().unwrap();
                let mut data: Vec<_> = input
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vowels(t.as_str().unwrap())}))
                    .collect();
                data.reverse();
                ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": data}))
            })
            .mount(&server)
            .await;
        server
    }

    fn embedder(server: &MockServer, model: &str) -> Embedder {
        Embedder::new(EmbeddingsSettings {
            model: model.into(),
            base_url: format!("{}/v1/", server.uri()),
            api_key: Some("k".into()),
        })
    }

    #[actix_rt::test]
    async fn texts_are_embedded_in_batches_and_in_their_order() {
        let server = server().await;
        let texts: Vec<String> = (0..70).map(|i| "a".repeat(i % 7 + 1) + "eo").collect();
        let vectors = embedder(&server, "tiny-embed").embed(&texts).await.unwrap();
        assert_eq!(vectors.len(), 70);
        for (t, v) in texts.iter().zip(&vectors) {
            assert_eq!(v, &vowels(t));
        }
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "64 + 6");
    }

    #[actix_rt::test]
    async fn a_failing_or_malformed_endpoint_is_a_clear_error() {
        let server = MockServer::start().await;
        Mock::given(path("/v1/embeddings"))
            .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
            .mount(&server)
            .await;
        let err = embedder(&server, "m")
            .embed(&["x".into()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("503: overloaded"), "{err}");

        let server = MockServer::start().await;
        Mock::given(path("/v1/embeddings"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                json!({"data": [{"index": 0, "embedding": [1.0, 0.0]}, {"index": 1, "embedding": [1.0]}]}),
            ))
            .mount(&server)
            .await;
        let two = ["a".to_owned(), "b".to_owned()];
        let err = embedder(&server, "m").embed(&two).await.unwrap_err();
        assert!(err.to_string().contains("2 and 1 dimensions"), "{err}");
        let err = embedder(&server, "m")
            .embed(&["a".into()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("index 1 for 1 texts"), "{err}");
    }

    #[actix_rt::test]
    async fn the_vector_nearest_a_query_fuses_with_the_full_text_ranking() {
        let server = server().await;
        let chunks = ["banana papaya", "kiwi bikini", "onion room", "education"];
        let ids: Vec<Uuid> = (1..=4).map(Uuid::from_u128).collect();
        let e = embedder(&server, "tiny-embed");
        let vectors = e
            .embed(&chunks.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>())
            .await
            .unwrap();
        let candidates: Vec<(Uuid, Vec<f32>)> = ids.iter().copied().zip(vectors).collect();
        let query = e.embed(&["mississippi".into()]).await.unwrap().remove(0);
        let by_vector = nearest(&query, &candidates, 2);
        assert_eq!(by_vector, [ids[1], ids[3]], "all i, then the most i");
        // Full text found chunk 4 first and chunk 1 second.
        let by_text = [ids[3], ids[0]];
        let fused = reciprocal_rank_fusion(&[&by_text, &by_vector], RRF_K);
        let order: Vec<Uuid> = fused.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, [ids[3], ids[1], ids[0]]);
        assert!((fused[0].1 - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-12);
        assert!((fused[1].1 - 1.0 / 61.0).abs() < 1e-12);
    }

    #[test]
    fn both_settings_or_neither_and_a_blank_one_is_unset() {
        let args = |model: Option<&str>, url: Option<&str>| EmbeddingsArgs {
            embeddings_model: model.map(str::to_owned),
            embeddings_base_url: url.map(str::to_owned),
            embeddings_api_key: Some("k".into()),
        };
        assert!(args(None, None).settings().unwrap().is_none());
        assert!(args(Some(" "), Some("")).settings().unwrap().is_none());
        let err = args(Some("m"), Some("  ")).settings().unwrap_err();
        assert!(
            err.to_string()
                .starts_with("EMBEDDINGS_MODEL is set but EMBEDDINGS_BASE_URL is not"),
            "{err}"
        );
        let err = args(None, Some("http://x/v1")).settings().unwrap_err();
        assert!(err
            .to_string()
            .starts_with("EMBEDDINGS_BASE_URL is set but EMBEDDINGS_MODEL is not"));
        let s = args(Some(" m "), Some("http://x/v1"))
            .settings()
            .unwrap()
            .unwrap();
        assert_eq!((s.model.as_str(), s.api_key.as_deref()), ("m", Some("k")));
        assert!(
            !format!("{:?}", args(None, None)).contains("\"k\""),
            "the key is hidden"
        );
    }

    #[test]
    fn cosine_and_fusion_edge_cases() {
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert!((cosine(&[1.0, 1.0], &[2.0, 2.0]) - 1.0).abs() < 1e-9);
        assert!(reciprocal_rank_fusion(&[], RRF_K).is_empty());
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let tie = reciprocal_rank_fusion(&[&[a], &[b]], RRF_K);
        assert_eq!(tie.iter().map(|x| x.0).collect::<Vec<_>>(), [a, b]);
    }
}
