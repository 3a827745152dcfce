//! `coursegen bench sse`: what idle progress streams cost the database.
//!
//! The service runs as `serve` runs it (scheduler, projection runners, HTTP
//! API) on courses that stay GENERATING: the offline generator answers
//! after an hour, so nothing is appended while measuring. The database's
//! transactions per second (`xact_commit + xact_rollback` of the scratch
//! database, every statement outside a transaction being one) are measured
//! first with no stream open (the service's own polling: the baseline),
//! then with `--streams` progress streams open over `--courses` courses.

use std::time::{Duration, Instant};

use clap::Args;
use uuid::Uuid;

use super::ScratchDatabase;
use crate::actors::SchedulerSettings;
use crate::domain::{CourseRequest, RawCourseRequest};
use crate::ingress::http::{HttpSettings, LOCAL_USER};
use crate::llm::{LlmSettings, Provider};
use crate::store::{EventStore, Metadata};

/// Options of `bench sse`.
#[derive(Debug, Args)]
pub struct SseArgs {
    /// Progress streams held open.
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Courses the streams follow (spread evenly).
    #[arg(long, default_value_t = 100)]
    pub courses: usize,
    /// Seconds each measurement runs (the database's statistics are
    /// flushed about once a second: longer is more precise).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Connections of the service's pool.
    #[arg(long, default_value_t = 16)]
    pub pool: usize,
}

/// Transactions the scratch database has counted so far.
async fn transactions(store: &EventStore) -> anyhow::Result<i64> {
    let client = store.pool().get().await?;
    // A snapshot of the statistics is kept per transaction: clear it first.
    client
        .batch_execute("SELECT pg_stat_clear_snapshot()")
        .await?;
    Ok(client
        .query_one(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
             WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0))
}

/// Transactions per second over `seconds`, not counting the two reads of
/// the counter itself.
async fn rate(store: &EventStore, seconds: f64) -> anyhow::Result<f64> {
    let before = transactions(store).await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    // Whatever each backend counted until now is in the shared statistics
    // within about a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = transactions(store).await?;
    let elapsed = started.elapsed().as_secs_f64() - 1.5;
    Ok((after - before - 2).max(0) as f64 / elapsed.max(1e-9))
}

/// Runs the benchmark in `scratch`.
///
/// # Errors
/// Database errors, an address that cannot be bound, streams that do not open.
pub(crate) async fn run(scratch: &ScratchDatabase, args: &SseArgs) -> anyhow::Result<()> {
    let store = scratch.store(args.pool);
    let probe = scratch.store(1);
    let llm = crate::llm::client_from_settings(&LlmSettings {
        llm_provider: Some(Provider::Offline),
        openai_base_url: String::new(),
        openai_api_key: None,
        llm_model: None,
        llm_max_concurrency: 16,
        llm_timeout_secs: 7200,
        llm_max_retries: 0,
        llm_structured_output: Default::default(),
        llm_max_tokens: 16384,
        // Every course stays GENERATING (or QUEUED) while measuring.
        offline_latency_ms: 3_600_000,
    })?;
    let settings = SchedulerSettings {
        max_active_courses: None,
        course_lease_secs: 30.0,
        scheduler_poll_secs: 1.0,
    };
    let mut app =
        crate::app::Application::with_llm(store.clone(), llm, &settings, 32, Duration::ZERO);
    let http = HttpSettings {
        http_addr: "127.0.0.1:0".parse().expect("valid address"),
        ..HttpSettings::default()
    };
    let addr = app.start_http(&http).await?;
    let mut courses = Vec::new();
    let mut last = crate::store::Position::START;
    for i in 0..args.courses.max(1) {
        let request = CourseRequest::parse(RawCourseRequest {
            request_id: Some(Uuid::new_v4().to_string()),
            user_id: Some(LOCAL_USER.to_string()),
            topic: Some(format!("Idle course {i}")),
            ..RawCourseRequest::default()
        })?;
        let (id, submitted) =
            crate::store::courses::submit(&store, request, Metadata::producer("bench")).await?;
        if let crate::store::courses::Submitted::Created(appended) = submitted {
            last = last.max(appended.position);
        }
        courses.push(id);
    }
    println!(
        "bench sse: {} streams over {} courses, pool {}, {:.1} s per measurement",
        args.streams,
        courses.len(),
        args.pool,
        args.seconds
    );
    // Let the projections catch up and the scheduler start what it starts
    // (its courses then wait for the model).
    crate::projections::wait_for_position(&store, "courses", last, Duration::from_secs(120))
        .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let baseline = rate(&probe, args.seconds).await?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let mut streams = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let course = courses[i % courses.len()];
        let url = format!("http://{addr}/api/v1/courses/{course}/progress");
        let mut response = client.get(url).send().await?.error_for_status()?;
        // The first progress event: the stream is open and followed.
        anyhow::ensure!(
            response.chunk().await?.is_some(),
            "progress stream {i} ended at once"
        );
        streams.push(tokio::spawn(async move {
            while let Ok(Some(_)) = response.chunk().await {}
        }));
    }
    // Opening them ran queries (each stream's access check, each course's
    // first read): let their statistics reach the shared counters first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let open = rate(&probe, args.seconds).await?;
    let ended = streams.iter().filter(|s| s.is_finished()).count();
    for s in &streams {
        s.abort();
    }

    println!("{:<28} {:>12}", "", "database tx/s");
    println!("{:<28} {:>12.1}", "no stream open (baseline)", baseline);
    println!(
        "{:<28} {:>12.1}",
        format!("{} streams open", args.streams),
        open
    );
    println!(
        "{:<28} {:>12.3}",
        "per stream (minus baseline)",
        (open - baseline) / args.streams.max(1) as f64
    );
    if ended > 0 {
        println!("  {ended} streams ended while measuring");
    }
    app.stop().await;
    store.pool().close();
    probe.pool().close();
    Ok(())
}
