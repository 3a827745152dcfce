//! `coursegen bench sources`: the source library.
//!
//! 1. Ingest throughput: a synthetic Markdown corpus through the whole path
//!    (extract, chunk, hash, append, projected and searchable), beside a raw
//!    `COPY` of the same text into a scratch table.
//! 2. Retrieval latency: p50 and p99 of queries with prefix filters over the
//!    library's chunks, beside the same number of primary-key lookups.
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
use crate::projections::sources::queries;
use crate::projections::{start_runners_with, wait_for_position, Projection, RunnerOptions};
use crate::sources::grounding::any_word_query;
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
    /// Retrieval queries timed.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
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
    let chunks: i64 = store
        .pool()
        .get()
        .await?
        .query_one("SELECT count(*) FROM source_chunks WHERE current", &[])
        .await?
        .get(0);
    let mb = total_bytes as f64 / 1e6;
    println!(
        "ingest: {:.1} MB/s ({:.0} docs/s, {chunks} chunks; appended in {:.1} s, searchable after {:.1} s)",
        mb / ingested.as_secs_f64(),
        docs.len() as f64 / ingested.as_secs_f64(),
        appended.as_secs_f64(),
        ingested.as_secs_f64()
    );
    println!(
        "raw COPY: {:.1} MB/s; ratio ingest/raw {:.3}",
        mb / raw.as_secs_f64(),
        raw.as_secs_f64() / ingested.as_secs_f64()
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
    let mut search_times = Vec::with_capacity(args.queries);
    let mut lookup_times = Vec::with_capacity(args.queries);
    let mut found = 0usize;
    let client = store.pool().get().await?;
    for i in 0..args.queries {
        let q = format!("{} {}", word(&mut rng), word(&mut rng));
        let prefix = match i % 3 {
            0 => String::new(),
            1 => format!("f{}/", rng.gen_range(0..FOLDERS)),
            _ => format!("f{}/doc0", rng.gen_range(0..FOLDERS)),
        };
        let t = Instant::now();
        let hits = queries::search(store.pool(), user, &q, &prefix, 5).await?;
        search_times.push(t.elapsed());
        found += usize::from(!hits.is_empty());
        if let Some(id) = ids.get(i % ids.len().max(1)) {
            let t = Instant::now();
            client
                .query_opt("SELECT text FROM source_chunks WHERE id = $1", &[id])
                .await?;
            lookup_times.push(t.elapsed());
        }
    }
    search_times.sort();
    lookup_times.sort();
    println!(
        "retrieval over {chunks} chunks, {} queries (1/3 each: whole library, a folder, a path prefix), {found} with hits:",
        args.queries
    );
    println!(
        "  search p50 {:.2} ms, p99 {:.2} ms; primary-key lookup p50 {:.2} ms, p99 {:.2} ms",
        ms(percentile(&search_times, 0.5)),
        ms(percentile(&search_times, 0.99)),
        ms(percentile(&lookup_times, 0.5)),
        ms(percentile(&lookup_times, 0.99)),
    );

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
    store.pool().close();
    Ok(())
}
