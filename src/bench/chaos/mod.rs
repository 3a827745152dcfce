//! `coursegen bench chaos`: a soak under faults in random order.
//!
//! Two `serve` processes (this binary) share N course requests published
//! over AMQP, generating with a fake model of fixed latency
//! ([`model`]), on a scratch database of the configured cluster and a
//! virtual host of its own on the broker. The same load runs twice: once
//! without faults (the baseline), then with one fault every 10 to 20 s,
//! drawn from a shuffled bag of the kinds so that each comes up in turn:
//!
//! - SIGKILL of a `serve`, restarted at once;
//! - the PostgreSQL cluster restarted (`--pg-restart`, e.g. `pg_ctl restart -m fast`);
//! - the broker: the run's connections closed (`rabbitmqctl close_connection`),
//!   or with `--broker-fault stop-app` the whole broker app stopped and
//!   started (that one disturbs everyone else on the broker);
//! - a `serve` paused with SIGSTOP for longer than its lease, then SIGCONT.
//!
//! Then [`checks`] judges each load, and the fault log and the figures are
//! printed: throughput beside the baseline's, and recovery per fault kind.
//! The exit code is non-zero when a check failed. `scripts/chaos.sh` makes
//! the private cluster and runs this.

mod checks;
mod model;
mod phase;
mod procs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rand::rngs::StdRng;
use rand::SeedableRng;
use uuid::Uuid;

use self::checks::Verdict;
use self::phase::{FaultPlan, Load, Outcome};
use super::ScratchDatabase;
use crate::ingress::amqp::AmqpSettings;

/// Options of `bench chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// RabbitMQ (a virtual host is made per run; the queue settings are ignored).
    #[command(flatten)]
    pub amqp: AmqpSettings,
    /// The CI mode: 400 courses of 2 lessons, 2 model calls at once per
    /// serve (about 3 minutes in all), unless set otherwise below.
    #[arg(long)]
    pub short: bool,
    /// Courses requested (default 1,000; 200 with --short).
    #[arg(long)]
    pub courses: Option<usize>,
    /// Lessons per course (default 3; 2 with --short).
    #[arg(long)]
    pub lessons: Option<u32>,
    /// LLM_MAX_CONCURRENCY of each serve (default 4; 2 with --short).
    #[arg(long)]
    pub llm_concurrency: Option<usize>,
    /// Latency of every model call.
    #[arg(long, default_value_t = 200)]
    pub latency_ms: u64,
    /// Least seconds between two faults.
    #[arg(long, default_value_t = 10.0)]
    pub fault_min_secs: f64,
    /// Most seconds between two faults.
    #[arg(long, default_value_t = 20.0)]
    pub fault_max_secs: f64,
    /// COURSE_LEASE_SECS of the serves (a pause lasts this plus 3 s). Well
    /// above a cluster restart (up to 4 s here), so that only pauses and
    /// kills let leases expire.
    #[arg(long, default_value_t = 10.0)]
    pub lease_secs: f64,
    /// Shell command restarting the PostgreSQL cluster (e.g. `pg_ctl restart
    /// -m fast -w -D DIR`); without it that fault is left out.
    #[arg(long)]
    pub pg_restart: Option<String>,
    /// How the broker is disturbed.
    #[arg(long, value_enum, default_value_t = BrokerFault::CloseConnections)]
    pub broker_fault: BrokerFault,
    /// Seed of the fault schedule (random when unset; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for the serves' logs (default: a new one under the temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

/// The broker fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BrokerFault {
    /// Close every connection of the run's virtual host (the other users
    /// of the broker are left alone).
    CloseConnections,
    /// `rabbitmqctl stop_app`, 2 s, `start_app`: the whole broker.
    StopApp,
}

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum FaultKind {
    KillServe,
    RestartPostgres,
    Broker,
    PauseServe,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            Self::KillServe => "sigkill-serve",
            Self::RestartPostgres => "restart-postgres",
            Self::Broker => "broker",
            Self::PauseServe => "sigstop-serve",
        }
    }
}

/// Runs the soak, the baseline in `scratch`, the faulted load in a second
/// scratch database.
///
/// # Errors
/// AMQP_URL unset, setup errors, or a failed check.
pub(crate) async fn run(scratch: &ScratchDatabase, args: &ChaosArgs) -> anyhow::Result<()> {
    let base_url = args
        .amqp
        .amqp_url
        .clone()
        .context("bench chaos needs AMQP_URL (or --amqp-url)")?;
    let courses = args.courses.unwrap_or(if args.short { 400 } else { 1000 });
    let lessons = args.lessons.unwrap_or(if args.short { 2 } else { 3 });
    let llm_concurrency = args
        .llm_concurrency
        .unwrap_or(if args.short { 2 } else { 4 });
    anyhow::ensure!(
        args.fault_min_secs > 0.0 && args.fault_min_secs <= args.fault_max_secs,
        "--fault-min-secs must be positive and at most --fault-max-secs"
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    let run_id = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let log_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("coursegen-chaos-{run_id}")));
    std::fs::create_dir_all(&log_dir)?;

    let mut url = reqwest::Url::parse(&base_url).context("AMQP_URL is not a URL")?;
    let user = match url.username() {
        "" => "guest".to_owned(),
        u => u.to_owned(),
    };
    let vhost = procs::Vhost::create(format!("chaos_{run_id}"), &user).await?;
    url.set_path(&format!("/{}", vhost.name));
    let amqp_url = url.to_string();
    let lease = Duration::from_secs_f64(args.lease_secs);
    let pause = lease + Duration::from_secs(3);
    let ideal = courses as f64 * f64::from(lessons + 1) * args.latency_ms as f64
        / 1000.0
        / (2 * llm_concurrency) as f64;
    let mut load = Load {
        phase: "baseline",
        run_id: &run_id,
        courses,
        lessons,
        llm_concurrency,
        latency: Duration::from_millis(args.latency_ms),
        lease_secs: args.lease_secs,
        amqp_url: &amqp_url,
        vhost: &vhost,
        log_dir: &log_dir,
        deadline: Duration::from_secs_f64(ideal * 6.0 + 120.0),
    };
    println!(
        "bench chaos: run {run_id}, seed {seed}, {courses} courses x {lessons} lessons, model {} ms, \
         2 serves x {llm_concurrency} calls, lease {:.1} s, broker fault {:?}{}, logs in {}",
        args.latency_ms,
        args.lease_secs,
        args.broker_fault,
        if args.pg_restart.is_some() { "" } else { ", no PostgreSQL restarts (no --pg-restart)" },
        log_dir.display()
    );

    let result = async {
        let baseline = phase::run(scratch, &load, None).await?;
        let baseline_verdict =
            checks::check(&scratch.store(2), &baseline, lessons, pause, lease).await?;
        let mut kinds = vec![
            FaultKind::KillServe,
            FaultKind::Broker,
            FaultKind::PauseServe,
        ];
        if args.pg_restart.is_some() {
            kinds.push(FaultKind::RestartPostgres);
        }
        let plan = FaultPlan {
            kinds,
            min: Duration::from_secs_f64(args.fault_min_secs),
            max: Duration::from_secs_f64(args.fault_max_secs),
            pause,
            pg_restart: args.pg_restart.clone(),
            broker: args.broker_fault,
            rng: StdRng::seed_from_u64(seed),
        };
        let faulted_db = ScratchDatabase::create(&scratch.admin).await?;
        load.phase = "faults";
        let faulted = phase::run(&faulted_db, &load, Some(plan)).await;
        let verdict = match &faulted {
            Ok(outcome) => {
                checks::check(&faulted_db.store(2), outcome, lessons, pause, lease).await
            }
            Err(_) => Err(anyhow::anyhow!("the faulted load did not run")),
        };
        faulted_db.drop_database().await?;
        let faulted = faulted?;
        let verdict = verdict?;
        report(
            &baseline,
            &baseline_verdict,
            &faulted,
            &verdict,
            args.lease_secs,
        );
        anyhow::ensure!(
            baseline_verdict.passed() && verdict.passed(),
            "bench chaos: a check failed (logs in {})",
            log_dir.display()
        );
        anyhow::Ok(())
    }
    .await;
    vhost.delete().await;
    result
}

fn secs(outcome: &Outcome, at: chrono::DateTime<chrono::Utc>) -> f64 {
    (at - outcome.published).num_milliseconds() as f64 / 1000.0
}

fn report(baseline: &Outcome, base: &Verdict, faulted: &Outcome, verdict: &Verdict, lease: f64) {
    let baseline_rate = base.steps.len() as f64 / base.seconds.max(0.001);
    let recoveries = checks::recovery(faulted, &verdict.steps, baseline_rate);
    let takeovers = checks::takeover(faulted, verdict);
    println!("\nfault log (seconds after the requests were published):");
    println!(
        "  {:>7} {:>7}  {:<16} {:<8} {:>9} {:>9}  detail",
        "at", "over", "fault", "target", "recovery", "takeover"
    );
    let mut by_kind: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    let mut takeover_by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for ((fault, recovery), takeover) in faulted.faults.iter().zip(&recoveries).zip(&takeovers) {
        println!(
            "  {:>7.1} {:>7.1}  {:<16} {:<8} {:>9} {:>9}  {}",
            secs(faulted, fault.injected),
            secs(faulted, fault.ended),
            fault.kind.name(),
            fault.target,
            recovery.map_or_else(|| "none".to_owned(), |r| format!("{r:.1} s")),
            takeover.map_or_else(|| "-".to_owned(), |r| format!("{r:.1} s")),
            fault.detail
        );
        by_kind
            .entry(fault.kind.name())
            .or_default()
            .push(*recovery);
        if let Some(t) = takeover {
            takeover_by_kind
                .entry(fault.kind.name())
                .or_default()
                .push(*t);
        }
    }
    for (name, outcome, v) in [("baseline", baseline, base), ("faults", faulted, verdict)] {
        println!(
            "\nchecks, {name} ({} courses, {} faults):",
            outcome.requested.len(),
            outcome.faults.len()
        );
        for c in &v.checks {
            println!(
                "  [{}] {:<28} {}",
                if c.passed { "ok" } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        for (cause, count) in &v.repeats {
            println!("  repeated model calls, {cause}: {count}");
        }
    }
    println!("\nfigures:");
    println!(
        "  fault-free  {:>8.2} courses/s  ({:.1} s, {} model calls, {:.1} steps/s)",
        base.throughput, base.seconds, base.calls, baseline_rate
    );
    println!(
        "  faulted     {:>8.2} courses/s  ({:.1} s, {} model calls)  {:.2} of fault-free",
        verdict.throughput,
        verdict.seconds,
        verdict.calls,
        verdict.throughput / base.throughput.max(1e-9)
    );
    println!("  recovery (end of the fault to half the fault-free step rate), per fault kind:");
    for (kind, rs) in &by_kind {
        let known: Vec<f64> = rs.iter().flatten().copied().collect();
        let mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
        let max = known.iter().copied().fold(0.0, f64::max);
        println!(
            "    {kind:<16} {} faults, mean {mean:.1} s, max {max:.1} s{}",
            rs.len(),
            if known.len() < rs.len() {
                format!(
                    ", {} not recovered before the load ended",
                    rs.len() - known.len()
                )
            } else {
                String::new()
            }
        );
    }
    for (kind, ts) in &takeover_by_kind {
        println!(
            "    {kind}: the courses it held moved again after mean {:.1} s, max {:.1} s (lease {:.1} s)",
            ts.iter().sum::<f64>() / ts.len() as f64,
            ts.iter().copied().fold(0.0, f64::max),
            lease
        );
    }
    let ingress: Vec<f64> = faulted
        .faults
        .iter()
        .filter_map(|f| f.ingress_back)
        .collect();
    if !ingress.is_empty() {
        println!(
            "    broker: request-queue consumers back after mean {:.1} s, max {:.1} s",
            ingress.iter().sum::<f64>() / ingress.len() as f64,
            ingress.iter().copied().fold(0.0, f64::max)
        );
    }
}
