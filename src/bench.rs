//! `coursegen bench ...`: performance measured against the configured
//! PostgreSQL, always beside a baseline taken in the same run (these
//! machines are shared and noisy: ratios travel, absolute rates do not).
//!
//! Every benchmark works in a scratch database it creates and drops, so the
//! service's own log is never touched.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::config::DatabaseSettings;
use crate::database::Database;
use crate::domain::{
    CourseEvent, LessonGenerated, LessonSection, QuizQuestion, SourceRef, TokenUsage,
};
use crate::store::{migrate, EventStore, Metadata, NewEvent};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Appends per second through the event store's `append` at several
    /// concurrencies, beside plain INSERTs of the same rows into a scratch table.
    Append(AppendArgs),
    /// Requests per second from publishing to the `accepted` reply through
    /// RabbitMQ, beside a bare publish-to-consume of the same messages.
    Amqp(crate::ingress::amqp::bench::AmqpBenchArgs),
}

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

/// Runs a benchmark.
///
/// # Errors
/// Database errors; the scratch database is dropped in any case.
pub async fn run(settings: &DatabaseSettings, cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let db = Database::open(settings).await?;
    let scratch = ScratchDatabase::create(&db.store).await?;
    let result = match cmd {
        BenchCommand::Append(args) => append(&scratch, &args).await,
        BenchCommand::Amqp(args) => crate::ingress::amqp::bench::run(&scratch, &args).await,
    };
    scratch.drop_database().await?;
    result.map(|()| ExitCode::SUCCESS)
}

/// A database made for one benchmark run.
pub struct ScratchDatabase {
    admin: EventStore,
    name: String,
    config: tokio_postgres::Config,
}

impl ScratchDatabase {
    /// Creates `coursegen_bench_<random>` beside the service's database and migrates it.
    ///
    /// # Errors
    /// No privilege to create databases, or database errors.
    pub async fn create(admin: &EventStore) -> anyhow::Result<Self> {
        let name = format!("coursegen_bench_{}", Uuid::new_v4().simple());
        let client = admin.pool().get().await?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .context("creating a scratch database for the benchmark")?;
        let mut config = admin.config().clone();
        config.dbname(&name);
        let scratch = Self {
            admin: admin.clone(),
            name,
            config,
        };
        let store = scratch.store(2);
        migrate::run(&store).await?;
        store.pool().close();
        Ok(scratch)
    }

    /// A store on the scratch database with a pool of `connections`.
    pub fn store(&self, connections: usize) -> EventStore {
        EventStore::from_config(self.config.clone(), connections)
    }

    /// Drops the scratch database.
    ///
    /// # Errors
    /// Database errors.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let client = self.admin.pool().get().await?;
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }
}

/// A `LessonGenerated` of about 5 KB, as a real lesson would be.
pub fn realistic_lesson(number: u32) -> CourseEvent {
    let paragraph = "Photosynthesis turns light into chemical energy. Chlorophyll in the \
        thylakoid membranes absorbs red and blue light; the light reactions split water, \
        release oxygen and charge ATP and NADPH, which the Calvin cycle spends to fix carbon \
        dioxide into sugars. ";
    let sections: Vec<LessonSection> = [
        "Overview",
        "Key ideas",
        "Worked example",
        "Exercise",
        "Summary",
    ]
    .iter()
    .map(|h| LessonSection {
        heading: (*h).to_owned(),
        body: paragraph.repeat(2),
    })
    .collect();
    let content_md = sections
        .iter()
        .map(|s| format!("## {}\n\n{}\n", s.heading, s.body))
        .collect::<String>();
    LessonGenerated {
        number,
        title: format!("Lesson {number}: light and sugar"),
        content_md,
        sections,
        quiz: (0..4)
            .map(|i| QuizQuestion {
                question: format!("Question {i}: where do the light reactions happen?"),
                options: vec![
                    "Stroma".into(),
                    "Thylakoid membrane".into(),
                    "Nucleus".into(),
                    "Cell wall".into(),
                ],
                answer_index: 1,
                explanation: "Chlorophyll sits in the thylakoid membranes.".into(),
            })
            .collect(),
        sources: vec![SourceRef {
            title: "Campbell Biology, ch. 10".into(),
            url: None,
        }],
        model: "bench".into(),
        usage: TokenUsage {
            prompt_tokens: 900,
            completion_tokens: 1300,
            total_tokens: 2200,
        },
    }
    .into()
}

async fn append(scratch: &ScratchDatabase, args: &AppendArgs) -> anyhow::Result<()> {
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
        client
            .batch_execute(
                "CREATE TABLE bench_raw_events (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)",
            )
            .await?;
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
pub fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// What a benchmark worker gets: a shared counter and when to stop.
pub struct Worker {
    pub done: Arc<AtomicU64>,
    pub until: Instant,
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
    let stmt = client
        .prepare(
            "INSERT INTO bench_raw_events (stream_id, stream_version, event_type, event_version, payload, metadata)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
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
