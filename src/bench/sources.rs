//! `coursegen bench sources`: the source library.
//!
//! 1. Ingest throughput: a synthetic Markdown corpus through the whole path
//!    (extract, chunk, hash, append, projected and searchable), beside a raw
//!    `COPY` of the same text into a scratch table.
//! 2. Retrieval latency: p50 and p99 of queries with prefix filters over the
//!    library's chunks, beside the same number of primary-key lookups, for
//!    three kinds of queries: two required words, a course topic and a
//!    lesson's title, concepts and objectives (any of their words, as
//!    retrieval in generation sends them, `any_word_query`).
//! 3. Retrieval quality: recall@5 on a small labelled set (the test
//!    fixtures, each query's right chunk known) among the synthetic corpus.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::SinkExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::ScratchDatabase;
use crate::domain::LessonPlan;
use crate::projections::sources::queries;
use crate::projections::{start_runners_with, wait_for_position, Projection, RunnerOptions};
use crate::sources::grounding::{any_word_query, lesson_query, LESSON_K, OUTLINE_K};
use crate::sources::{ingest, NewSource};
use crate::store::subscription::Notifier;
use crate::store::{Metadata, Position};

/// Options of `bench sources`.
#[derive(Debug, Args)]
pub struct SourcesBenchArgs {
    /// Synthetic documents to ingest.
    #[arg(long, default_value_t = 2000)]
    pub docs: usize,
    /// Size of each document in KiB (the issue's full size: --docs 10000 --doc-kib 20).
    #[arg(long, default_value_t = 10)]
    pub doc_kib: usize,
    /// Documents ingested concurrently.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Retrieval queries timed, of each kind.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Print the slowest retrieval queries, with their prefixes.
    #[arg(long, default_value_t = 0)]
    pub show_slowest: usize,
    /// Print the plans (`EXPLAIN (ANALYZE, BUFFERS)`) of the slowest
    /// retrieval queries, run again.
    #[arg(long, default_value_t = 0)]
    pub explain_slowest: usize,
}

/// The retrieval queries timed.
#[derive(Debug, Clone, Copy)]
enum QueryKind {
    /// Two words, all required (what a person types into search).
    TwoWords,
    /// A course topic, any of its words (the outline's retrieval).
    Topic,
    /// A lesson's title, concepts and objectives, any of their words (each
    /// lesson's retrieval).
    Lesson,
}

/// Words that lesson titles and objectives are made of besides the subject's.
const GLUE: &[&str] = &[
    "the",
    "and",
    "of",
    "in",
    "how",
    "why",
    "what",
    "role",
    "basics",
    "introduction",
    "explain",
    "describe",
    "compare",
    "identify",
    "apply",
    "understand",
    "between",
    "works",
    "effects",
];

impl QueryKind {
    fn label(self) -> &'static str {
        match self {
            Self::TwoWords => "two-word search",
            Self::Topic => "outline (topic)",
            Self::Lesson => "lesson (title+concepts)",
        }
    }

    /// A query of this kind and how many chunks it asks for.
    fn query(self, rng: &mut StdRng) -> (String, i64) {
        let phrase = |n: usize, rng: &mut StdRng| {
            (0..n)
                .map(|_| {
                    if rng.gen_bool(0.3) {
                        GLUE[rng.gen_range(0..GLUE.len())].to_owned()
                    } else {
                        word(rng)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Self::TwoWords => (format!("{} {}", word(rng), word(rng)), 5),
            Self::Topic => (any_word_query(&phrase(rng.gen_range(3..7), rng)), OUTLINE_K),
            Self::Lesson => {
                let plan = LessonPlan {
                    number: 1,
                    title: phrase(rng.gen_range(3..7), rng),
                    concepts: (0..rng.gen_range(3..6))
                        .map(|_| phrase(rng.gen_range(1..4), rng))
                        .collect(),
                    objectives: (0..rng.gen_range(2..4))
                        .map(|_| phrase(rng.gen_range(5..9), rng))
                        .collect(),
                };
                (any_word_query(&lesson_query(&plan)), LESSON_K)
            }
        }
    }
}

const WORDS: &[&str] = &[
    "cell",
    "membrane",
    "protein",
    "enzyme",
    "energy",
    "light",
    "water",
    "carbon",
    "oxygen",
    "nucleus",
    "gene",
    "acid",
    "sugar",
    "lipid",
    "ion",
    "pump",
    "signal",
    "receptor",
    "tissue",
    "organ",
    "plant",
    "root",
    "leaf",
    "stem",
    "flower",
    "seed",
    "soil",
    "mineral",
    "nitrogen",
    "bacteria",
    "virus",
    "fungus",
    "immune",
    "blood",
    "heart",
    "lung",
    "muscle",
    "bone",
    "nerve",
    "brain",
    "hormone",
    "insulin",
    "glucose",
    "starch",
    "fiber",
    "vitamin",
    "salt",
    "heat",
    "climate",
    "river",
    "ocean",
    "forest",
    "desert",
    "species",
    "habitat",
    "predator",
    "prey",
    "population",
    "evolution",
    "fossil",
    "rock",
    "volcano",
    "planet",
    "orbit",
    "gravity",
    "force",
    "motion",
    "wave",
    "sound",
    "magnet",
    "current",
    "circuit",
    "atom",
    "molecule",
    "bond",
    "reaction",
    "catalyst",
    "solution",
    "crystal",
    "metal",
    "polymer",
    "engine",
    "fuel",
];

/// Ten library folders the synthetic documents are spread over.
const FOLDERS: usize = 10;

/// A word of the synthetic corpus: one of [`WORDS`] three times in ten,
/// else one of 20,000 pseudo-words, lower ranks likelier (roughly Zipf), so
/// that queries are as selective as in real text.
fn word(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.3) {
        return WORDS[rng.gen_range(0..WORDS.len())].to_owned();
    }
    let rank = (20_000f64.powf(rng.gen::<f64>())) as usize;
    pseudo_word(rank)
}

fn pseudo_word(rank: usize) -> String {
    const SYLLABLES: &[&str] = &[
        "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "do", "fu", "ga", "hi", "ju", "pe",
        "qua", "se", "ti", "xe", "yo",
    ];
    let mut n = rank;
    let mut w = String::new();
    loop {
        w.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
        if n == 0 {
            break;
        }
    }
    w.push_str("ne");
    w
}

fn synthetic_doc(rng: &mut StdRng, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 200);
    let mut section = 0;
    while out.len() < bytes {
        if out.len() >= section * 2500 {
            section += 1;
            out.push_str(&format!("\n## {} {}\n\n", word(rng), word(rng)));
        }
        let n = rng.gen_range(8..20);
        for i in 0..n {
            let w = word(rng);
            if i == 0 {
                let mut c = w.chars();
                let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or('X');
                out.push(first);
                out.push_str(c.as_str());
            } else {
                out.push(' ');
                out.push_str(&w);
            }
        }
        out.push_str(". ");
        if rng.gen_bool(0.2) {
            out.push_str("\n\n");
        }
    }
    out
}

/// The labelled set: (query, path of the right document, a phrase of the right chunk).
const LABELLED: &[(&str, &str, &str)] = &[
    (
        "what produces most of the ATP in a cell",
        "labelled/cells.pdf",
        "mitochondrion produces",
    ),
    (
        "where does oxidative phosphorylation happen",
        "labelled/cells.pdf",
        "Oxidative phosphorylation",
    ),
    (
        "which organelle translates messenger RNA into proteins",
        "labelled/cells.pdf",
        "Ribosomes translate",
    ),
    (
        "what keeps the membrane fluid at low temperatures",
        "labelled/membranes.md",
        "Cholesterol",
    ),
    (
        "how does oxygen cross the membrane",
        "labelled/membranes.md",
        "simple diffusion",
    ),
    (
        "sodium potassium pump ATP",
        "labelled/membranes.md",
        "sodium-potassium pump",
    ),
    (
        "what separates the cell interior from its surroundings",
        "labelled/membranes.md",
        "separates the interior",
    ),
    (
        "chlorophyll absorbs light and splits water",
        "labelled/photosynthesis.html",
        "chlorophyll absorbs light",
    ),
    (
        "which enzyme fixes carbon dioxide in the stroma",
        "labelled/photosynthesis.html",
        "RuBisCO",
    ),
    (
        "light energy converted into chemical energy in glucose",
        "labelled/photosynthesis.html",
        "converts light energy",
    ),
    (
        "how do enzymes speed up reactions",
        "labelled/enzymes.txt",
        "activation energy",
    ),
    (
        "active site binds a substrate",
        "labelled/enzymes.txt",
        "active site",
    ),
];

const FIXTURES: &[(&str, &[u8])] = &[
    (
        "labelled/cells.pdf",
        include_bytes!("../../tests/fixtures/sources/cells.pdf"),
    ),
    (
        "labelled/membranes.md",
        include_bytes!("../../tests/fixtures/sources/membranes.md"),
    ),
    (
        "labelled/photosynthesis.html",
        include_bytes!("../../tests/fixtures/sources/photosynthesis.html"),
    ),
    (
        "labelled/enzymes.txt",
        include_bytes!("../../tests/fixtures/sources/enzymes.txt"),
    ),
];

/// Escapes text for `COPY ... FROM STDIN` (text format).
fn copy_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `bench sources`.
pub(super) async fn run(scratch: &ScratchDatabase, args: &SourcesBenchArgs) -> anyhow::Result<()> {
    let store = scratch.store(args.concurrency + 4);
    let user = Uuid::new_v4();
    let mut rng = StdRng::seed_from_u64(13);
    let docs: Arc<Vec<(String, String)>> = Arc::new(
        (0..args.docs)
            .map(|i| {
                (
                    format!("f{}/doc{i:05}.md", i % FOLDERS),
                    synthetic_doc(&mut rng, args.doc_kib * 1024),
                )
            })
            .collect(),
    );
    let total_bytes: usize = docs.iter().map(|(_, t)| t.len()).sum();
    println!(
        "bench sources: {} documents, {:.1} MB of Markdown, {} at a time",
        docs.len(),
        total_bytes as f64 / 1e6,
        args.concurrency
    );

    // Baseline: the same text COPYed into a plain table.
    let client = store.pool().get().await?;
    client
        .batch_execute("CREATE TABLE bench_raw_sources (path text, body text)")
        .await?;
    let started = Instant::now();
    let sink = client
        .copy_in("COPY bench_raw_sources (path, body) FROM STDIN")
        .await?;
    futures::pin_mut!(sink);
    let mut buf = String::new();
    for (path, text) in docs.iter() {
        copy_escape(path, &mut buf);
        buf.push('\t');
        copy_escape(text, &mut buf);
        buf.push('\n');
        if buf.len() > 1 << 20 {
            sink.send(bytes::Bytes::from(std::mem::take(&mut buf)))
                .await?;
        }
    }
    sink.send(bytes::Bytes::from(buf)).await?;
    sink.as_mut().finish().await?;
    let raw = started.elapsed();
    drop(client);

    // The library: every document ingested, projected and searchable (the
    // projection runs alongside, as in `serve`).
    let notifier = Arc::new(Notifier::start(store.config().clone()));
    let running = start_runners_with(store.clone(), notifier, RunnerOptions::default()).await?;
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bar = indicatif::ProgressBar::new(docs.len() as u64);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (store, docs, next, bar) = (store.clone(), docs.clone(), next.clone(), bar.clone());
        workers.push(tokio::spawn(async move {
            let metadata = Metadata::producer("bench");
            let mut last = Position::START;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((path, text)) = docs.get(i) else {
                    return anyhow::Ok(last);
                };
                let outcome = ingest(
                    &store,
                    &NewSource {
                        user_id: user,
                        path,
                        bytes: text.as_bytes(),
                        media_type: None,
                        language: Some("en"),
                        title: None,
                    },
                    &metadata,
                )
                .await?;
                if let Some(a) = outcome.appended() {
                    last = last.max(a.position);
                }
                bar.inc(1);
            }
        }));
    }
    let mut last = Position::START;
    for w in workers {
        last = last.max(w.await??);
    }
    bar.finish_and_clear();
    let appended = started.elapsed();
    wait_for_position(
        &store,
        Projection::Sources.name(),
        last,
        Duration::from_secs(3600),
    )
    .await?;
    let ingested = started.elapsed();
    let (chunks, log_bytes): (i64, i64) = {
        let row = store
            .pool()
            .get()
            .await?
            .query_one(
                "SELECT (SELECT count(*) FROM source_chunks WHERE current),
                        pg_total_relation_size('events')",
                &[],
            )
            .await?;
        (row.get(0), row.get(1))
    };
    let mb = total_bytes as f64 / 1e6;
    println!(
        "ingest: {:.1} MB/s ({:.0} docs/s, {chunks} chunks; appended in {:.1} s, searchable after {:.1} s; log {:.1} MB on disk)",
        mb / ingested.as_secs_f64(),
        docs.len() as f64 / ingested.as_secs_f64(),
        appended.as_secs_f64(),
        ingested.as_secs_f64(),
        log_bytes as f64 / 1e6
    );
    println!(
        "raw COPY: {:.1} MB/s; ratio ingest/raw {:.3} until searchable ({:.3} until stored: \
         appended to the log with its search vectors, not yet in the full-text index)",
        mb / raw.as_secs_f64(),
        raw.as_secs_f64() / ingested.as_secs_f64(),
        raw.as_secs_f64() / appended.as_secs_f64()
    );

    // Retrieval latency, with prefix filters, beside primary-key lookups.
    store
        .pool()
        .get()
        .await?
        .batch_execute("ANALYZE sources; ANALYZE source_chunks")
        .await?;
    let ids: Vec<Uuid> = store
        .pool()
        .get()
        .await?
        .query("SELECT id FROM source_chunks LIMIT 1000", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut lookup_times = Vec::with_capacity(args.queries);
    let client = store.pool().get().await?;
    for i in 0..args.queries {
        if let Some(id) = ids.get(i % ids.len().max(1)) {
            let t = Instant::now();
            client
                .query_opt("SELECT text FROM source_chunks WHERE id = $1", &[id])
                .await?;
            lookup_times.push(t.elapsed());
        }
    }
    drop(client);
    lookup_times.sort();
    println!(
        "retrieval over {chunks} chunks, {} queries of each kind (1/3 each: whole library, a folder, a path prefix):",
        args.queries
    );
    println!(
        "  primary-key lookup      p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&lookup_times, 0.5)),
        ms(percentile(&lookup_times, 0.99)),
    );
    let mut worst = Vec::new();
    for kind in [QueryKind::TwoWords, QueryKind::Topic, QueryKind::Lesson] {
        let mut times = Vec::with_capacity(args.queries);
        let (mut found, mut words) = (0usize, 0usize);
        for i in 0..args.queries {
            let (q, k) = kind.query(&mut rng);
            words += q.split_whitespace().filter(|w| *w != "or").count();
            let prefix = match i % 3 {
                0 => String::new(),
                1 => format!("f{}/", rng.gen_range(0..FOLDERS)),
                _ => format!("f{}/doc0", rng.gen_range(0..FOLDERS)),
            };
            let t = Instant::now();
            let hits = queries::search(store.pool(), user, &q, &prefix, k).await?;
            let took = t.elapsed();
            times.push(took);
            worst.push((took, q, prefix, k));
            found += usize::from(!hits.is_empty());
        }
        times.sort();
        println!(
            "  {:<23} p50 {:.2} ms, p99 {:.2} ms ({:.1} words a query, {found} with hits)",
            kind.label(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99)),
            words as f64 / args.queries.max(1) as f64,
        );
    }
    worst.sort_by_key(|w| std::cmp::Reverse(w.0));
    for (i, (took, q, prefix, k)) in worst
        .iter()
        .take(args.show_slowest.max(args.explain_slowest))
        .enumerate()
    {
        println!("    slow: {:.1} ms, prefix {prefix:?}: {q}", ms(*took));
        if i < args.explain_slowest {
            let plan = queries::explain_search(store.pool(), user, q, prefix, *k).await?;
            println!("{plan}");
        }
    }

    // Recall@5 on the labelled set, among the synthetic corpus.
    let metadata = Metadata::producer("bench");
    let mut last = Position::START;
    for (path, bytes) in FIXTURES {
        let o = ingest(
            &store,
            &NewSource {
                user_id: user,
                path,
                bytes,
                media_type: None,
                language: None,
                title: None,
            },
            &metadata,
        )
        .await?;
        if let Some(a) = o.appended() {
            last = last.max(a.position);
        }
    }
    wait_for_position(
        &store,
        Projection::Sources.name(),
        last,
        Duration::from_secs(60),
    )
    .await?;
    running.stop().await;
    let mut hits_at_5 = 0;
    for (query, path, phrase) in LABELLED {
        let hits = queries::search(store.pool(), user, &any_word_query(query), "", 5).await?;
        if hits
            .iter()
            .any(|h| h.path == *path && h.text.contains(phrase))
        {
            hits_at_5 += 1;
        } else {
            println!("  missed: {query:?}");
        }
    }
    println!(
        "recall@5 (full text, {} labelled queries): {:.2}",
        LABELLED.len(),
        hits_at_5 as f64 / LABELLED.len() as f64
    );
    fused_recall(&store, user).await?;
    store.pool().close();
    Ok(())
}

/// With EMBEDDINGS_MODEL and EMBEDDINGS_BASE_URL set: recall@5 of the
/// fusion of full text and vectors on the labelled set, after embedding
/// every current chunk of the library (the synthetic corpus too, so that
/// the vectors compete with as many chunks as full text does).
async fn fused_recall(store: &crate::store::EventStore, user: Uuid) -> anyhow::Result<()> {
    use crate::sources::embeddings::EmbeddingsArgs;
    use crate::sources::semantic;
    let Some(embedder) = EmbeddingsArgs::from_env().embedder()? else {
        println!(
            "recall@5 of the fusion: set EMBEDDINGS_MODEL and EMBEDDINGS_BASE_URL to measure it"
        );
        return Ok(());
    };
    let texts: Vec<String> = store
        .pool()
        .get()
        .await?
        .query(
            "SELECT text FROM source_chunks WHERE current AND user_id = $1",
            &[&user],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let t = Instant::now();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embedded = semantic::store_vectors(store.pool(), &embedder, &refs).await?;
    println!(
        "embedded {embedded} of {} chunks with {} in {:.1} s",
        texts.len(),
        embedder.model(),
        t.elapsed().as_secs_f64()
    );
    let mut hits_at_5 = 0;
    for (query, path, phrase) in LABELLED {
        let hits = semantic::search(
            store.pool(),
            Some(&embedder),
            user,
            query,
            &any_word_query(query),
            "",
            5,
        )
        .await?;
        if hits
            .iter()
            .any(|h| h.path == *path && h.text.contains(phrase))
        {
            hits_at_5 += 1;
        } else {
            println!("  missed (fusion): {query:?}");
        }
    }
    println!(
        "recall@5 (full text + {} vectors, reciprocal rank fusion k=60, {} labelled queries): {:.2}",
        embedder.model(),
        LABELLED.len(),
        hits_at_5 as f64 / LABELLED.len() as f64
    );
    Ok(())
}
