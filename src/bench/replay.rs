//! `coursegen bench replay`: replay of a generated log through the
//! projection runners beside a pure-SQL rebuild of the same tables, then the
//! live runners' commit-to-visible lag under a steady append rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use uuid::Uuid;

use super::{realistic_lesson, ScratchDatabase};
use crate::domain::{CourseEvent, TokenUsage};
use crate::store::{EventStore, Metadata, NewEvent};

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

/// `bench replay`: fills the log, replays every projection, rebuilds the
/// same tables with plain SQL, then measures live commit-to-visible lag.
pub(super) async fn run(scratch: &ScratchDatabase, args: &ReplayArgs) -> anyhow::Result<()> {
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
        estimated: false,
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
            ..Default::default()
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
            ..Default::default()
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
pub(super) async fn fill_log(store: &EventStore, courses: u32) -> anyhow::Result<u64> {
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
