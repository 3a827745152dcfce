//! `coursegen bench generate`: courses per second from submit to READY with
//! the offline generator, beside the raw ceiling of the same event rows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use uuid::Uuid;

use super::ScratchDatabase;
use crate::store::Metadata;

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

/// `bench generate`: submit to READY with the offline generator, beside
/// the same event rows inserted one transaction per event.
pub(super) async fn run(scratch: &ScratchDatabase, args: &GenerateArgs) -> anyhow::Result<()> {
    let store = scratch.store(32);
    println!(
        "bench generate: {} courses of {} lessons, offline latency {} ms, LLM concurrency {}",
        args.courses, args.lessons, args.latency_ms, args.llm_concurrency
    );
    let elapsed = generate(
        &store,
        args.courses,
        args.lessons,
        args.latency_ms,
        args.llm_concurrency,
    )
    .await?;
    let client = store.pool().get().await?;
    let peak_rss_mb = peak_rss_kb().map(|kb| kb as f64 / 1024.0);
    let rate = args.courses as f64 / elapsed.as_secs_f64();

    // The raw ceiling: the very rows just generated, one transaction per event.
    client.batch_execute(super::CREATE_RAW_EVENTS).await?;
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
                let stmt = client.prepare(super::INSERT_RAW_EVENT).await?;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(r) = rows.get(i) else { break };
                    let tx = client.transaction().await?;
                    tx.execute(&stmt, &[&r.0, &r.1, &r.2, &r.3, &r.4, &r.5])
                        .await?;
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
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A progress bar on stderr for long benchmark phases.
pub(super) fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

/// Generates `courses` courses with the offline generator through the
/// service (submitted from 8 tasks, as concurrent clients would), the
/// default latency and concurrency; returns once all are READY.
///
/// # Errors
/// A course failed, or database errors.
pub(super) async fn generate_offline(
    store: &crate::store::EventStore,
    courses: usize,
    lessons: i64,
) -> anyhow::Result<Duration> {
    generate(store, courses, lessons, 0, 16).await
}

/// Submit to READY of `courses` courses with the offline generator; the
/// time it took.
async fn generate(
    store: &crate::store::EventStore,
    courses: usize,
    lessons: i64,
    latency_ms: u64,
    llm_concurrency: usize,
) -> anyhow::Result<Duration> {
    use crate::actors::SchedulerSettings;
    use crate::domain::{CourseRequest, RawCourseRequest};
    use crate::llm::{LlmSettings, Provider};

    let llm = crate::llm::client_from_settings(&LlmSettings {
        llm_provider: Some(Provider::Offline),
        openai_base_url: String::new(),
        openai_api_key: None,
        llm_model: None,
        llm_max_concurrency: llm_concurrency,
        llm_timeout_secs: 120,
        llm_max_retries: 0,
        llm_structured_output: Default::default(),
        llm_max_tokens: 16384,
        offline_latency_ms: latency_ms,
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
        llm_concurrency.saturating_mul(2),
        Duration::from_secs(5),
    );
    let bar = progress_bar(courses as u64, "courses READY");
    let started = Instant::now();
    let per_task = courses.div_ceil(8);
    let submitters: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let n = per_task.min(courses.saturating_sub(t * per_task));
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
        if ready as usize >= courses {
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
    Ok(elapsed)
}
