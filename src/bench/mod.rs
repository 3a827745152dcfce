//! `coursegen bench ...`: performance measured against the configured
//! PostgreSQL, always beside a baseline taken in the same run (these
//! machines are shared and noisy: ratios travel, absolute rates do not).
//!
//! Every benchmark works in a scratch database it creates and drops, so the
//! service's own log is never touched. One module per benchmark:
//!
//! - [`append`]: the event store's appends beside plain INSERTs.
//! - [`generate`]: submit to READY with the offline generator.
//! - [`http`]: the read endpoints under load beside their SQL.
//! - [`replay`]: projection replay beside two pure-SQL rebuilds, then live lag.
//! - [`amqp`]: publish to `accepted` reply beside a bare publish-to-consume.
//! - [`sse`]: database transactions per second of idle progress streams.
//! - [`export`]: the file backup and SCORM packages beside raw writes and plain loads.
//! - [`chaos`]: a soak of two serves under random faults, checked, beside a fault-free run.
//!
//! The benchmarks are part of the command line, not of the service: like
//! `cli` and `main` they report failures with `anyhow`.

pub(crate) mod amqp;
pub(crate) mod append;
pub(crate) mod chaos;
mod cpu;
pub(crate) mod export;
pub(crate) mod generate;
pub(crate) mod http;
pub(crate) mod replay;
pub(crate) mod sources;
pub(crate) mod sse;

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use uuid::Uuid;

use crate::config::DatabaseSettings;
use crate::database::{ClusterHold, Database};
use crate::domain::{
    CourseEvent, LessonGenerated, LessonSection, QuizQuestion, SourceRef, TokenUsage,
};
use crate::store::{migrate, EventStore};

/// The baselines' table: `events` without its triggers, so plain INSERTs
/// into it measure what PostgreSQL itself costs.
const CREATE_RAW_EVENTS: &str = "CREATE TABLE bench_raw_events (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)";

/// One event row into the baselines' table.
const INSERT_RAW_EVENT: &str = "INSERT INTO bench_raw_events (stream_id, stream_version, event_type, event_version, payload, metadata)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Appends per second through the event store's `append` at several
    /// concurrencies, beside plain INSERTs of the same rows into a scratch table.
    Append(append::AppendArgs),
    /// Courses per second from submit to READY with the offline generator,
    /// beside the raw ceiling: the same event rows inserted one transaction
    /// per event over 8 connections. With --latency-ms, wall time beside the
    /// ideal courses × (lessons + 1) × latency / LLM concurrency, and peak RSS.
    Generate(generate::GenerateArgs),
    /// HTTP read endpoints (`GET /courses?page=N`, `GET /courses/{id}`)
    /// under concurrent load, beside the same SQL run straight through
    /// tokio-postgres: requests per second and p99 latency.
    Http(http::HttpArgs),
    /// Replay of N courses (by default clones of courses the offline
    /// generator produced) through the projection runners, with the time of
    /// each stage, beside the minimal SQL rebuild and the recount of every
    /// table from the same log; then the commit-to-visible lag of the live
    /// runners under a steady append rate.
    Replay(replay::ReplayArgs),
    /// Requests per second from publishing to the `accepted` reply through
    /// RabbitMQ, beside a bare publish-to-consume of the same messages.
    Amqp(amqp::AmqpBenchArgs),
    /// Database transactions per second with N idle progress streams
    /// (`GET /courses/{id}/progress`) open, beside the service's own with
    /// none open.
    Sse(sse::SseArgs),
    /// The EXPORT_DIR backup rebuilt for N courses, beside writing the same
    /// files atomically; SCORM zips built in memory, beside only loading
    /// the courses.
    Export(export::ExportArgs),
    /// Source library: ingest vs raw COPY, retrieval p50/p99 with prefix filters, recall@5.
    Sources(sources::SourcesBenchArgs),
    /// A soak: N courses over AMQP to two `serve` processes with a fake
    /// model, once fault-free, then with a random fault every 10-20 s
    /// (SIGKILL, PostgreSQL restart, broker loss, SIGSTOP past the lease);
    /// checks READY exactly once, no model call for a recorded step, a
    /// success reply per request, projections equal to their recount, no
    /// process left; prints the fault log, throughput and recovery times.
    /// `scripts/chaos.sh` runs it on a private cluster.
    Chaos(chaos::ChaosArgs),
}

/// Runs a benchmark.
///
/// # Errors
/// Database errors; the scratch database is dropped in any case.
pub(crate) async fn run(
    settings: &DatabaseSettings,
    cluster: &ClusterHold,
    cmd: BenchCommand,
) -> anyhow::Result<ExitCode> {
    // Only the scratch database is migrated: the configured one is left as it is.
    let db = Database::connect(settings, cluster).await?;
    let scratch = ScratchDatabase::create(&db.store).await?;
    let result = match cmd {
        BenchCommand::Append(args) => append::run(&scratch, &args).await,
        BenchCommand::Generate(args) => generate::run(&scratch, &args).await,
        BenchCommand::Http(args) => http::run(&scratch, &args).await,
        BenchCommand::Replay(args) => replay::run(&scratch, &args).await,
        BenchCommand::Amqp(args) => amqp::run(&scratch, &args).await,
        BenchCommand::Sse(args) => sse::run(&scratch, &args).await,
        BenchCommand::Export(args) => export::run(&scratch, &args).await,
        BenchCommand::Sources(args) => sources::run(&scratch, &args).await,
        BenchCommand::Chaos(args) => chaos::run(&scratch, &args).await,
    };
    scratch.drop_database().await?;
    result.map(|()| ExitCode::SUCCESS)
}

/// A database made for one benchmark run.
pub(crate) struct ScratchDatabase {
    admin: EventStore,
    name: String,
    config: tokio_postgres::Config,
}

impl ScratchDatabase {
    /// Creates `coursegen_bench_<random>` beside the service's database and migrates it.
    ///
    /// # Errors
    /// No privilege to create databases, or database errors.
    pub(crate) async fn create(admin: &EventStore) -> anyhow::Result<Self> {
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

    /// A scratch database on the tests' server (`COURSEGEN_TEST_DATABASE_URL`),
    /// for the crate's own tests that need one, and a store on it.
    #[cfg(test)]
    pub(crate) async fn for_tests() -> (Self, EventStore) {
        let url = std::env::var("COURSEGEN_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into());
        let admin = EventStore::connect(&url, 1).expect("a valid COURSEGEN_TEST_DATABASE_URL");
        let db = Self::create(&admin)
            .await
            .expect("PostgreSQL for tests is reachable");
        let store = db.store(4);
        (db, store)
    }

    /// A store on the scratch database with a pool of `connections`.
    pub(crate) fn store(&self, connections: usize) -> EventStore {
        EventStore::from_config(self.config.clone(), connections)
    }

    /// A libpq connection string of the scratch database, for child processes.
    pub(crate) fn conninfo(&self) -> String {
        use tokio_postgres::config::Host;
        let mut parts = Vec::new();
        if let Some(host) = self.config.get_hosts().first() {
            match host {
                Host::Tcp(name) => parts.push(format!("host={name}")),
                Host::Unix(path) => parts.push(format!("host={}", path.display())),
            }
        }
        if let Some(port) = self.config.get_ports().first() {
            parts.push(format!("port={port}"));
        }
        if let Some(user) = self.config.get_user() {
            parts.push(format!("user={user}"));
        }
        if let Some(password) = self.config.get_password() {
            parts.push(format!("password={}", String::from_utf8_lossy(password)));
        }
        parts.push(format!("dbname={}", self.name));
        parts.join(" ")
    }

    /// Drops the scratch database.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn drop_database(self) -> anyhow::Result<()> {
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
            cited: None,
        }],
        model: "bench".into(),
        usage: TokenUsage {
            prompt_tokens: 900,
            completion_tokens: 1300,
            total_tokens: 2200,
            estimated: false,
        },
        ..Default::default()
    }
    .into()
}
