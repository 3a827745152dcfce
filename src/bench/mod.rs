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

pub mod amqp;
pub mod http;

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
    /// Courses per second from submit to READY with the offline generator,
    /// beside the raw ceiling: the same event rows inserted one transaction
    /// per event over 8 connections. With --latency-ms, wall time beside the
    /// ideal courses × (lessons + 1) × latency / LLM concurrency, and peak RSS.
    Generate(GenerateArgs),
    /// HTTP read endpoints (`GET /courses?page=N`, `GET /courses/{id}`)
    /// under concurrent load, beside the same SQL run straight through
    /// tokio-postgres: requests per second and p99 latency.
    Http(http::HttpArgs),
    /// Replay of N generated courses through the projection runners beside a
    /// pure-SQL rebuild of the same tables from the same log; then the
    /// commit-to-visible lag of the live runners under a steady append rate.
    Replay(ReplayArgs),
    /// Requests per second from publishing to the `accepted` reply through
    /// RabbitMQ, beside a bare publish-to-consume of the same messages.
    Amqp(amqp::AmqpBenchArgs),
}

/// Options of `bench replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Courses in the log, 7 events each (3 lessons of about 5 KB).
    #[arg(long, default_value_t = 50_000)]
    pub courses: u32,
    /// Seconds of steady appends for the lag measurement (0 skips it).
    #[arg(long, default_value_t = 20.0)]
    pub lag_seconds: f64,
    /// Appends per second during the lag measurement.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
}

/// Options of `bench generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Courses to generate.
    #[arg(long, default_value_t = 1000)]
    pub courses: usize,
    /// Lessons per course.
    #[arg(long, default_value_t = 4)]
    pub lessons: i64,
    /// Simulated latency of each offline LLM call (OFFLINE_LATENCY_MS).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// LLM calls in flight (LLM_MAX_CONCURRENCY).
    #[arg(long, default_value_t = 16)]
    pub llm_concurrency: usize,
    /// Connections of the raw baseline.
    #[arg(long, default_value_t = 8)]
    pub raw_connections: usize,
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
    // Only the scratch database is migrated: the configured one is left as it is.
    let db = Database::connect(settings).await?;
    let scratch = ScratchDatabase::create(&db.store).await?;
    let result = match cmd {
        BenchCommand::Append(args) => append(&scratch, &args).await,
        BenchCommand::Generate(args) => generate(&scratch, &args).await,
        BenchCommand::Http(args) => http::run(&scratch, &args).await,
        BenchCommand::Replay(args) => replay_bench(&scratch, &args).await,
        BenchCommand::Amqp(args) => amqp::run(&scratch, &args).await,
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

async fn generate(scratch: &ScratchDatabase, args: &GenerateArgs) -> anyhow::Result<()> {
    use crate::actors::SchedulerSettings;
    use crate::domain::{CourseRequest, RawCourseRequest};
    use crate::llm::{LlmSettings, Provider};

    let store = scratch.store(32);
    let llm = crate::llm::client_from_settings(&LlmSettings {
        llm_provider: Some(Provider::Offline),
        openai_base_url: String::new(),
        openai_api_key: None,
        llm_model: None,
        llm_max_concurrency: args.llm_concurrency,
        llm_timeout_secs: 120,
        llm_max_retries: 0,
        offline_latency_ms: args.latency_ms,
    })?;
    let settings = SchedulerSettings {
        max_active_courses: None,
        course_lease_secs: 30.0,
        scheduler_poll_secs: 1.0,
    };
    let app = crate::app::Application::with_llm(
        store.clone(),
        llm,
        &settings,
        args.llm_concurrency.saturating_mul(2),
        Duration::from_secs(5),
    );
    println!(
        "bench generate: {} courses of {} lessons, offline latency {} ms, LLM concurrency {}",
        args.courses, args.lessons, args.latency_ms, args.llm_concurrency
    );
    let bar = progress_bar(args.courses as u64, "courses READY");
    let started = Instant::now();
    // Submit from 8 tasks, as concurrent clients would.
    let per_task = args.courses.div_ceil(8);
    let submitters: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let n = per_task.min(args.courses.saturating_sub(t * per_task));
            let lessons = args.lessons;
            tokio::spawn(async move {
                for i in 0..n {
                    let request = CourseRequest::parse(RawCourseRequest {
                        request_id: Some(Uuid::new_v4().to_string()),
                        user_id: Some(Uuid::new_v4().to_string()),
                        topic: Some(format!("Photosynthesis {t}-{i}")),
                        grade_level: Some("Grade 8".into()),
                        num_lessons: Some(lessons),
                        ..RawCourseRequest::default()
                    })?;
                    crate::store::courses::submit(&store, request, Metadata::producer("bench"))
                        .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for s in submitters {
        s.await??;
    }
    let client = store.pool().get().await?;
    loop {
        let ready: i64 = client
            .query_one(
                "SELECT count(*) FROM events WHERE event_type = 'CourseCompleted'",
                &[],
            )
            .await?
            .get(0);
        bar.set_position(ready as u64);
        if ready as usize >= args.courses {
            break;
        }
        let failed: i64 = client
            .query_one(
                "SELECT count(*) FROM events WHERE event_type = 'CourseFailed'",
                &[],
            )
            .await?
            .get(0);
        anyhow::ensure!(failed == 0, "{failed} courses failed during the benchmark");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    app.stop().await;
    let peak_rss_mb = peak_rss_kb().map(|kb| kb as f64 / 1024.0);
    let rate = args.courses as f64 / elapsed.as_secs_f64();

    // The raw ceiling: the very rows just generated, one transaction per event.
    client
        .batch_execute(
            "CREATE TABLE bench_raw_events (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)",
        )
        .await?;
    let rows: Vec<(Uuid, i32, String, i16, serde_json::Value, serde_json::Value)> = client
        .query(
            "SELECT stream_id, stream_version, event_type, event_version, payload, metadata FROM events ORDER BY global_position",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    drop(client);
    let event_count = rows.len();
    let rows = Arc::new(rows);
    let next = Arc::new(AtomicU64::new(0));
    let raw_started = Instant::now();
    let writers: Vec<_> = (0..args.raw_connections)
        .map(|_| {
            let (store, rows, next) = (store.clone(), rows.clone(), next.clone());
            tokio::spawn(async move {
                let mut client = store.pool().get().await?;
                let stmt = client
                    .prepare(
                        "INSERT INTO bench_raw_events (stream_id, stream_version, event_type, event_version, payload, metadata)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(r) = rows.get(i) else { break };
                    let tx = client.transaction().await?;
                    tx.execute(&stmt, &[&r.0, &r.1, &r.2, &r.3, &r.4, &r.5]).await?;
                    tx.commit().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let raw_rate = args.courses as f64 / raw_started.elapsed().as_secs_f64();
    store.pool().close();

    println!(
        "{:<38} {:>10.2} s",
        "submit to last READY",
        elapsed.as_secs_f64()
    );
    println!("{:<38} {:>10.1} courses/s", "generation throughput", rate);
    println!(
        "{:<38} {:>10.1} courses/s ({event_count} events, {} connections)",
        "raw ceiling (same rows, 1 tx per event)", raw_rate, args.raw_connections
    );
    println!("{:<38} {:>10.2}", "ratio to raw", rate / raw_rate);
    if args.latency_ms > 0 {
        let calls = args.courses as f64 * (args.lessons as f64 + 1.0);
        let ideal = calls * args.latency_ms as f64 / 1000.0 / args.llm_concurrency as f64;
        println!(
            "{:<38} {:>10.2} s",
            "ideal (calls x latency / concurrency)", ideal
        );
        println!(
            "{:<38} {:>10.2}",
            "wall time / ideal",
            elapsed.as_secs_f64() / ideal
        );
    }
    if let Some(mb) = peak_rss_mb {
        println!("{:<38} {:>10.1} MB", "peak RSS of this process", mb);
    }
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), in KiB.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A progress bar on stderr for long benchmark phases.
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

/// `bench replay`: fills the log, replays every projection, rebuilds the
/// same tables with plain SQL, then measures live commit-to-visible lag.
async fn replay_bench(scratch: &ScratchDatabase, args: &ReplayArgs) -> anyhow::Result<()> {
    use crate::projections::recount::recounts;
    use crate::projections::{replay, Projection};

    let store = scratch.store(8);
    let started = Instant::now();
    let events = fill_log(&store, args.courses).await?;
    println!(
        "bench replay: {} courses, {events} events ({:.0} MB of payload) written in {:.1} s",
        args.courses,
        payload_megabytes(&store).await?,
        started.elapsed().as_secs_f64()
    );
    {
        let client = store.pool().get().await?;
        client.batch_execute("VACUUM ANALYZE events").await?;
    }

    let replay_started = Instant::now();
    for report in replay::replay_all(&store, &Projection::ALL, true).await? {
        println!(
            "  replay {:<15} {:>8} events, swapped in after {:>7.2} s",
            report.projection.name(),
            report.events,
            report.elapsed.as_secs_f64(),
        );
    }
    let replay_time = replay_started.elapsed();
    println!(
        "  replay (all, one pass)  {:>7.2} s ({:.0} events/s)",
        replay_time.as_secs_f64(),
        events as f64 / replay_time.as_secs_f64()
    );

    let mut sql_time = Duration::ZERO;
    let client = store.pool().get().await?;
    for p in Projection::ALL {
        let t = Instant::now();
        for r in recounts(p) {
            client
                .batch_execute(&format!(
                    "DROP TABLE IF EXISTS {t}_sqlbench;
                     CREATE TABLE {t}_sqlbench (LIKE {t} INCLUDING ALL);
                     INSERT INTO {t}_sqlbench ({cols}) SELECT * FROM ({select}) AS q({cols});",
                    t = r.table,
                    cols = r.columns,
                    select = r.select
                ))
                .await
                .with_context(|| format!("SQL rebuild of {}", r.table))?;
        }
        let elapsed = t.elapsed();
        println!(
            "  SQL    {:<15} rebuilt in {:>7.2} s",
            p.name(),
            elapsed.as_secs_f64()
        );
        sql_time += elapsed;
    }
    drop(client);
    println!(
        "replay {:.2} s, pure SQL {:.2} s, ratio {:.2} (target <= 1.5)",
        replay_time.as_secs_f64(),
        sql_time.as_secs_f64(),
        replay_time.as_secs_f64() / sql_time.as_secs_f64()
    );

    if args.lag_seconds > 0.0 {
        lag_bench(&store, args).await?;
    }
    Ok(())
}

async fn payload_megabytes(store: &EventStore) -> anyhow::Result<f64> {
    let client = store.pool().get().await?;
    let bytes: i64 = client
        .query_one(
            "SELECT coalesce(sum(pg_column_size(payload)), 0)::bigint FROM events",
            &[],
        )
        .await?
        .get(0);
    Ok(bytes as f64 / 1e6)
}

/// The JSON payloads of one generated course, in stream order.
fn course_templates() -> Vec<(String, i16, serde_json::Value)> {
    use crate::domain::{
        CourseCompleted, CourseRequested, GenerationStarted, LessonPlan, OutlineGenerated,
    };
    let usage = TokenUsage {
        prompt_tokens: 300,
        completion_tokens: 500,
        total_tokens: 800,
    };
    let events: Vec<CourseEvent> = vec![
        CourseRequested {
            request_id: Uuid::nil(),
            user_id: Uuid::nil(),
            topic: "Photosynthesis".into(),
            grade_level: Some("Grade 8".into()),
            num_lessons: 3,
            language: "en".into(),
            source_filter: None,
        }
        .into(),
        GenerationStarted {
            attempt: 1,
            model: "bench".into(),
        }
        .into(),
        OutlineGenerated {
            title: "Light and sugar".into(),
            description: "How plants turn light into food.".into(),
            lessons: (1..=3)
                .map(|n| LessonPlan {
                    number: n,
                    title: format!("Lesson {n}"),
                    concepts: vec!["chlorophyll".into(), "ATP".into()],
                    objectives: vec!["explain the light reactions".into()],
                })
                .collect(),
            model: "bench".into(),
            usage,
        }
        .into(),
        realistic_lesson(1),
        realistic_lesson(2),
        realistic_lesson(3),
        CourseCompleted {
            total_lessons: 3,
            usage: usage + usage + usage + usage,
        }
        .into(),
    ];
    events
        .iter()
        .map(|e| (e.event_type().to_owned(), e.event_version(), e.payload()))
        .collect()
}

/// Writes `courses` courses of 7 events server-side, 1,000 courses per
/// transaction; returns the number of events.
async fn fill_log(store: &EventStore, courses: u32) -> anyhow::Result<u64> {
    let t = course_templates();
    let client = store.pool().get().await?;
    let stmt = client
        .prepare(
            "INSERT INTO events (stream_id, stream_version, event_type, event_version, payload, metadata)
             SELECT md5('course' || i)::uuid, v.version, v.event_type, v.event_version, v.payload,
                    '{\"producer\": \"bench\"}'::jsonb
             FROM generate_series($1::int, $2::int) AS i
             CROSS JOIN LATERAL (VALUES
                 (0, $3::text, $10::int2, $17::jsonb || jsonb_build_object(
                     'request_id', md5('request' || i)::uuid, 'user_id', md5('user' || (i % 1000))::uuid,
                     'topic', 'Photosynthesis ' || i)),
                 (1, $4, $11, $18::jsonb),
                 (2, $5, $12, $19::jsonb || jsonb_build_object('title', 'Light and sugar ' || i)),
                 (3, $6, $13, $20::jsonb),
                 (4, $7, $14, $21::jsonb),
                 (5, $8, $15, $22::jsonb),
                 (6, $9, $16, $23::jsonb)
             ) AS v(version, event_type, event_version, payload)
             ORDER BY i, v.version",
        )
        .await?;
    let mut params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = Vec::new();
    params.push(Box::new(0i32));
    params.push(Box::new(0i32));
    for (ty, _, _) in &t {
        params.push(Box::new(ty.clone()));
    }
    for (_, v, _) in &t {
        params.push(Box::new(*v));
    }
    for (_, _, p) in &t {
        params.push(Box::new(p.clone()));
    }
    let bar = indicatif::ProgressBar::new(u64::from(courses));
    let mut written = 0u64;
    let mut from = 1i32;
    let last = i32::try_from(courses).context("too many courses")?;
    while from <= last {
        let to = (from + 999).min(last);
        params[0] = Box::new(from);
        params[1] = Box::new(to);
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        written += client.execute(&stmt, &refs).await?;
        bar.inc((to - from + 1) as u64);
        from = to + 1;
    }
    bar.finish_and_clear();
    Ok(written)
}

/// Live runners under a steady append rate: time from an append's commit
/// until each projection's checkpoint has passed it.
async fn lag_bench(store: &EventStore, args: &ReplayArgs) -> anyhow::Result<()> {
    use crate::projections::{start_runners, Projection};
    use crate::store::subscription::Notifier;

    let notifier = Arc::new(Notifier::start(store.config().clone()));
    let running = start_runners(store.clone(), notifier).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let templates = course_templates();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(crate::store::Position, Instant)>();
    let appender = {
        let store = store.clone();
        let seconds = args.lag_seconds;
        let rate = args.rate;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            let mut stream = Uuid::new_v4();
            let mut version = 0u32;
            let mut n = 0u64;
            while Instant::now() < until {
                tick.tick().await;
                let (ty, v, payload) = &templates[version as usize];
                let mut payload = payload.clone();
                if version == 0 {
                    payload["request_id"] = serde_json::json!(Uuid::new_v4());
                    payload["user_id"] = serde_json::json!(Uuid::new_v4());
                }
                let event = NewEvent {
                    event_type: ty.clone(),
                    event_version: *v,
                    payload,
                };
                let appended = store
                    .append(stream, version, &[event], &Metadata::producer("bench"))
                    .await?;
                let _ = tx.send((appended.position, Instant::now()));
                n += 1;
                version += 1;
                if version as usize == templates.len() {
                    stream = Uuid::new_v4();
                    version = 0;
                }
            }
            anyhow::Ok(n)
        })
    };
    // Poll both checkpoints on one connection; a pending append is visible
    // once a projection's checkpoint is at or past its position.
    let client = store.pool().get().await?;
    let stmt = client
        .prepare(
            "SELECT name, transaction_id, global_position FROM projection_checkpoints
             WHERE name = ANY($1)",
        )
        .await?;
    let names: Vec<&str> = Projection::ALL.iter().map(|p| p.name()).collect();
    let mut pending: std::collections::VecDeque<(crate::store::Position, Instant)> =
        Default::default();
    let mut lags: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut next: Vec<usize> = vec![0; names.len()];
    let mut closed = false;
    loop {
        loop {
            match rx.try_recv() {
                Ok(item) => pending.push_back(item),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let rows = client.query(&stmt, &[&names]).await?;
        let now = Instant::now();
        for row in rows {
            let name: String = row.get(0);
            let idx = names.iter().position(|n| *n == name).expect("asked for");
            let cp = crate::store::Position {
                transaction_id: row.get(1),
                global_position: row.get(2),
            };
            while let Some((pos, at)) = pending.get(next[idx]) {
                if *pos > cp {
                    break;
                }
                lags[idx].push(now.duration_since(*at).as_secs_f64() * 1000.0);
                next[idx] += 1;
            }
        }
        if closed && next.iter().all(|n| *n == pending.len()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let appended = appender.await??;
    running.stop().await;
    println!(
        "lag under {:.0} appends/s for {:.0} s ({appended} events, 5 KB lessons):",
        args.rate, args.lag_seconds
    );
    for (name, mut l) in names.iter().zip(lags) {
        l.sort_by(f64::total_cmp);
        let q = |f: f64| l[((l.len() as f64 - 1.0) * f).round() as usize];
        println!(
            "  {name:<15} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms (target p99 <= 100 ms)",
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
    Ok(())
}
