//! `coursegen bench append`: appends per second through the event store at
//! several concurrencies, beside plain INSERTs of the same rows into a
//! scratch table without the store's guard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use uuid::Uuid;

use super::{realistic_lesson, ScratchDatabase};
use crate::store::{EventStore, Metadata, NewEvent};

/// Options of `bench append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Concurrent writers to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Events per stream before a writer starts a new stream.
    #[arg(long, default_value_t = 20)]
    pub stream_length: u32,
    /// Alternating rounds of (raw, append) per concurrency; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// `bench append`: the event store's appends beside plain INSERTs of the
/// same rows, alternated over several rounds.
pub(super) async fn run(scratch: &ScratchDatabase, args: &AppendArgs) -> anyhow::Result<()> {
    let event = NewEvent::from(&realistic_lesson(1));
    let metadata = Metadata {
        producer: Some("bench".into()),
        correlation_id: Some(Uuid::new_v4().to_string()),
        ..Metadata::default()
    };
    let payload_bytes = event.payload.to_string().len();
    {
        let store = scratch.store(1);
        let client = store.pool().get().await?;
        client.batch_execute(super::CREATE_RAW_EVENTS).await?;
        drop(client);
        store.pool().close();
    }
    let duration = Duration::from_secs_f64(args.seconds);
    println!(
        "bench append: {payload_bytes}-byte LessonGenerated payloads, {:.1} s per measurement",
        args.seconds
    );
    println!(
        "{:>11} {:>12} {:>12} {:>7}",
        "concurrency", "append/s", "raw insert/s", "ratio"
    );
    for &concurrency in &args.concurrency {
        let store = scratch.store(concurrency);
        // Alternate the two, several rounds, and keep the medians: the
        // machine's background load then weighs on both alike.
        let (mut raw_rates, mut append_rates) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            raw_rates.push(
                measure(concurrency, duration, |worker| {
                    let store = store.clone();
                    let event = event.clone();
                    let metadata = serde_json::to_value(&metadata).expect("json");
                    async move { raw_insert_loop(store, event, metadata, worker).await }
                })
                .await?,
            );
            append_rates.push(
                measure(concurrency, duration, |worker| {
                    let store = store.clone();
                    let event = event.clone();
                    let metadata = metadata.clone();
                    let stream_length = args.stream_length;
                    async move { append_loop(store, event, metadata, stream_length, worker).await }
                })
                .await?,
            );
        }
        store.pool().close();
        let (appended, raw) = (median(append_rates), median(raw_rates));
        println!(
            "{concurrency:>11} {appended:>12.0} {raw:>12.0} {:>7.2}",
            appended / raw
        );
    }
    Ok(())
}

/// The median of some rates.
fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// What a benchmark worker gets: a shared counter and when to stop.
struct Worker {
    done: Arc<AtomicU64>,
    until: Instant,
}

/// Runs `concurrency` workers until `duration` passes; operations per second.
async fn measure<F, Fut>(concurrency: usize, duration: Duration, make: F) -> anyhow::Result<f64>
where
    F: Fn(Worker) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let until = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(make(Worker {
                done: done.clone(),
                until,
            }))
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn append_loop(
    store: EventStore,
    event: NewEvent,
    metadata: Metadata,
    stream_length: u32,
    worker: Worker,
) -> anyhow::Result<()> {
    let events = [event];
    let mut stream = Uuid::new_v4();
    let mut version = 0;
    while Instant::now() < worker.until {
        store.append(stream, version, &events, &metadata).await?;
        worker.done.fetch_add(1, Ordering::Relaxed);
        version += 1;
        if version == stream_length {
            stream = Uuid::new_v4();
            version = 0;
        }
    }
    Ok(())
}

async fn raw_insert_loop(
    store: EventStore,
    event: NewEvent,
    metadata: serde_json::Value,
    worker: Worker,
) -> anyhow::Result<()> {
    let client = store.pool().get().await?;
    let stmt = client.prepare(super::INSERT_RAW_EVENT).await?;
    let mut version = 0i32;
    let mut stream = Uuid::new_v4();
    while Instant::now() < worker.until {
        client
            .execute(
                &stmt,
                &[
                    &stream,
                    &version,
                    &event.event_type,
                    &event.event_version,
                    &event.payload,
                    &metadata,
                ],
            )
            .await?;
        worker.done.fetch_add(1, Ordering::Relaxed);
        version += 1;
        if version == 20 {
            stream = Uuid::new_v4();
            version = 0;
        }
    }
    Ok(())
}
