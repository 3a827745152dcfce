//! One load of the soak: two `serve` processes on a scratch database and
//! the run's virtual host, N course requests published at once, the
//! completions watched in the log and the replies collected, with faults
//! injected meanwhile when a [`FaultPlan`] is given.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::watch;
use uuid::Uuid;

use super::model::{Call, FakeModel};
use super::procs::{self, Serve, ServeConfig, Vhost};
use super::{BrokerFault, FaultKind};
use crate::bench::amqp::publish_all;
use crate::bench::ScratchDatabase;
use crate::domain::{CourseRequest, RawCourseRequest};
use crate::ingress::amqp::client::request_body;
use crate::ingress::amqp::wire::{Reply, ReplyStatus};
use crate::ingress::amqp::{
    connect, declare_request_topology, declare_response_queue, AmqpSettings,
};
use crate::store::EventStore;

/// What a load is made of.
pub(super) struct Load<'a> {
    pub phase: &'static str,
    pub run_id: &'a str,
    pub courses: usize,
    pub lessons: u32,
    pub llm_concurrency: usize,
    pub latency: Duration,
    pub lease_secs: f64,
    pub amqp_url: &'a str,
    pub vhost: &'a Vhost,
    pub log_dir: &'a std::path::Path,
    /// How long the load may take before it is given up.
    pub deadline: Duration,
}

/// The faults to inject.
pub(super) struct FaultPlan {
    pub kinds: Vec<FaultKind>,
    pub min: Duration,
    pub max: Duration,
    pub pause: Duration,
    pub pg_restart: Option<String>,
    pub broker: BrokerFault,
    pub rng: StdRng,
}

/// One course request of the load.
#[derive(Debug, Clone)]
pub(super) struct Requested {
    pub request_id: Uuid,
    pub topic: String,
}

/// A reply as the soak's client received it.
#[derive(Debug, Clone)]
pub(super) struct SeenReply {
    pub request_id: String,
    pub status: ReplyStatus,
    pub message_id: Option<String>,
}

/// A fault injected, with its times.
#[derive(Debug, Clone)]
pub(super) struct Fault {
    pub kind: FaultKind,
    pub target: String,
    pub injected: DateTime<Utc>,
    /// When its action was over (restarted, resumed, connections closed or broker app started).
    pub ended: DateTime<Utc>,
    /// For broker faults: seconds from `ended` until the request queue had its consumers back.
    pub ingress_back: Option<f64>,
    pub detail: String,
}

/// What a load left to check.
pub(super) struct Outcome {
    pub requested: Vec<Requested>,
    pub published: DateTime<Utc>,
    pub finished: bool,
    pub calls: Vec<Call>,
    pub replies: Vec<SeenReply>,
    pub faults: Vec<Fault>,
    /// Serves that exited without being told to, with their status.
    pub unexpected_exits: Vec<String>,
    /// Serves that needed SIGKILL after SIGTERM at the end.
    pub forced_stops: usize,
    /// Processes of the run alive after everything was stopped.
    pub left_behind: Vec<i32>,
    /// Projection catch-up and recount results (name, differing rows or error).
    pub projections: Vec<(String, Result<i64, String>)>,
}

/// Runs `load` in `db`, injecting `faults` if any.
///
/// # Errors
/// The broker or the database could not be set up; failures of the load
/// itself are reported in the [`Outcome`].
pub(super) async fn run(
    db: &ScratchDatabase,
    load: &Load<'_>,
    mut faults: Option<FaultPlan>,
) -> anyhow::Result<Outcome> {
    let prefix = format!("chaos_{}_{}", load.run_id, load.phase);
    let settings = AmqpSettings {
        amqp_url: Some(load.amqp_url.to_owned()),
        amqp_request_queue: format!("{prefix}_requests"),
        amqp_response_queue: format!("{prefix}_responses"),
        amqp_prefetch: 64,
        amqp_test_pause_before_ack_ms: 0,
    };
    let model = FakeModel::start(load.latency)?;
    let config = ServeConfig {
        run_id: load.run_id.to_owned(),
        database_url: db.conninfo(),
        amqp_url: load.amqp_url.to_owned(),
        request_queue: settings.amqp_request_queue.clone(),
        response_queue: settings.amqp_response_queue.clone(),
        llm_concurrency: load.llm_concurrency,
        lease_secs: load.lease_secs,
        log_dir: load.log_dir.to_owned(),
    };
    let store = db.store(2);

    // The queues first, so the reply collector and the serves find them.
    let admin = connect(load.amqp_url, "coursegen chaos").await?;
    declare_request_topology(&admin, &settings).await?;
    let channel = admin.create_channel().await?;
    declare_response_queue(&channel, &settings.amqp_response_queue).await?;
    let replies = Arc::new(Mutex::new(Vec::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let collector = tokio::spawn(collect_replies(
        load.amqp_url.to_owned(),
        settings.amqp_response_queue.clone(),
        replies.clone(),
        stop_rx,
    ));

    let url = |tag: &str| model.base_url(tag);
    let mut serves = vec![
        Serve::spawn("a", &config, url)?,
        Serve::spawn("b", &config, url)?,
    ];
    let requested: Vec<Requested> = (0..load.courses)
        .map(|i| Requested {
            request_id: Uuid::new_v4(),
            topic: format!("Chaos {} {} course {i}", load.run_id, load.phase),
        })
        .collect();
    let user = Uuid::new_v4();
    let bodies: Vec<Vec<u8>> = requested
        .iter()
        .map(|r| request_body(&request(r, user, load.lessons)))
        .collect();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let published = Utc::now();
    let started = Instant::now();
    publish_all(&channel, &settings.amqp_request_queue, &bodies).await?;
    let _ = admin.close(200, "published").await;

    let mut log = Vec::new();
    let mut unexpected_exits = Vec::new();
    let mut next_fault = faults.as_mut().map(|f| started + between(f));
    let mut bag: Vec<FaultKind> = Vec::new();
    let mut finished = false;
    while started.elapsed() < load.deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for serve in &mut serves {
            if let Some(status) = serve.exited() {
                unexpected_exits.push(format!("{} exited by itself: {status}", serve.tag()));
                serve.kill_and_restart(&config, url).await?;
            }
        }
        // Done when every course is READY or FAILED and answered so (a
        // failure is the checks' to report, not a reason to go on).
        let done = finished_courses(&store).await.unwrap_or(0);
        let answered = answered(&replies);
        if done >= load.courses && answered >= load.courses {
            finished = true;
            break;
        }
        let (Some(plan), Some(at)) = (faults.as_mut(), next_fault) else {
            continue;
        };
        if Instant::now() < at {
            continue;
        }
        if bag.is_empty() {
            bag = plan.kinds.clone();
            bag.shuffle(&mut plan.rng);
        }
        let kind = bag.pop().expect("a fault kind");
        let fault = inject(kind, plan, &mut serves, &config, url, load, &settings).await;
        eprintln!(
            "chaos: t={:>6.1}s {:<16} {:<4} {}",
            (fault.injected - published).num_milliseconds() as f64 / 1000.0,
            kind.name(),
            fault.target,
            fault.detail
        );
        // Every 10 to 20 s from one injection to the next, and never before
        // the last fault's action is over.
        let gap = between(plan);
        let since = (Utc::now() - fault.injected).to_std().unwrap_or_default();
        next_fault = Some(Instant::now() + gap.saturating_sub(since).max(Duration::from_secs(1)));
        log.push(fault);
    }

    // The projectors run in the serves: compare while they are up.
    let projections = super::checks::projections_against_recount(&store).await;
    let mut forced_stops = 0;
    for serve in &mut serves {
        forced_stops += usize::from(serve.stop(Duration::from_secs(15)).await);
    }
    let _ = stop_tx.send(true);
    let _ = collector.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left_behind = procs::marked_processes(load.run_id);
    let calls = model.calls();
    model.stop().await;
    store.pool().close();
    let replies = replies.lock().expect("replies lock").clone();
    Ok(Outcome {
        requested,
        published,
        finished,
        calls,
        replies,
        faults: log,
        unexpected_exits,
        forced_stops,
        left_behind,
        projections,
    })
}

fn request(r: &Requested, user: Uuid, lessons: u32) -> CourseRequest {
    CourseRequest::parse(RawCourseRequest {
        request_id: Some(r.request_id.to_string()),
        user_id: Some(user.to_string()),
        topic: Some(r.topic.clone()),
        num_lessons: Some(i64::from(lessons)),
        ..RawCourseRequest::default()
    })
    .expect("a valid request")
}

fn between(plan: &mut FaultPlan) -> Duration {
    plan.rng.gen_range(plan.min..=plan.max)
}

/// Courses with a `CourseCompleted` or a `CourseFailed` in the log.
async fn finished_courses(store: &EventStore) -> anyhow::Result<usize> {
    let client = store.pool().get().await?;
    let row = client
        .query_one(
            "SELECT count(DISTINCT stream_id) FROM events
             WHERE event_type IN ('CourseCompleted', 'CourseFailed')",
            &[],
        )
        .await?;
    Ok(usize::try_from(row.get::<_, i64>(0))?)
}

/// Requests with a `success` or an `error` reply.
fn answered(replies: &Mutex<Vec<SeenReply>>) -> usize {
    let replies = replies.lock().expect("replies lock");
    let mut ids: Vec<&str> = replies
        .iter()
        .filter(|r| matches!(r.status, ReplyStatus::Success | ReplyStatus::Error))
        .map(|r| r.request_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.len()
}

/// Consumes the response queue until told to stop, reconnecting whenever
/// the broker drops the connection; acks each reply once recorded.
async fn collect_replies(
    url: String,
    queue: String,
    replies: Arc<Mutex<Vec<SeenReply>>>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let session = async {
            let connection = connect(&url, "coursegen chaos replies").await?;
            let channel = connection.create_channel().await?;
            channel.basic_qos(500, BasicQosOptions::default()).await?;
            let mut consumer = channel
                .basic_consume(
                    &queue,
                    "chaos-replies",
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                if let Ok(reply) = serde_json::from_slice::<Reply>(&delivery.data) {
                    replies.lock().expect("replies lock").push(SeenReply {
                        request_id: reply.request_id.unwrap_or_default(),
                        status: reply.status,
                        message_id: delivery
                            .properties
                            .message_id()
                            .as_ref()
                            .map(|m| m.as_str().to_owned()),
                    });
                }
                delivery.ack(BasicAckOptions::default()).await?;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            _ = session => tokio::time::sleep(Duration::from_millis(500)).await,
            _ = stop.changed() => {}
        }
    }
}

/// Injects one fault of `kind` and waits until its action is over.
async fn inject(
    kind: FaultKind,
    plan: &mut FaultPlan,
    serves: &mut [Serve],
    config: &ServeConfig,
    url: impl Fn(&str) -> String + Copy,
    load: &Load<'_>,
    settings: &AmqpSettings,
) -> Fault {
    let injected = Utc::now();
    let mut ingress_back = None;
    let mut broker_back = None;
    let pick = plan.rng.gen_range(0..serves.len());
    let (target, detail) = match kind {
        FaultKind::KillServe => {
            let serve = &mut serves[pick];
            let old = serve.tag();
            match serve.kill_and_restart(config, url).await {
                Ok(()) => (old, format!("SIGKILL, restarted as {}", serve.tag())),
                Err(e) => (old, format!("SIGKILL, restart FAILED: {e:#}")),
            }
        }
        FaultKind::PauseServe => {
            let serve = &serves[pick];
            let result = serve.signal(libc::SIGSTOP);
            tokio::time::sleep(plan.pause).await;
            let resumed = serve.signal(libc::SIGCONT);
            let detail = match (result, resumed) {
                (Ok(()), Ok(())) => format!(
                    "SIGSTOP for {:.1} s (lease {:.1} s), then SIGCONT",
                    plan.pause.as_secs_f64(),
                    load.lease_secs
                ),
                (a, b) => format!("SIGSTOP/SIGCONT failed: {a:?} {b:?}"),
            };
            (serve.tag(), detail)
        }
        FaultKind::RestartPostgres => {
            let command = plan.pg_restart.clone().unwrap_or_default();
            let log = load.log_dir.join("pg_ctl.log");
            match procs::shell(&command, &log).await {
                Ok(took) => (
                    "postgres".to_owned(),
                    format!("pg_ctl restart -m fast, {:.1} s", took.as_secs_f64()),
                ),
                Err(e) => ("postgres".to_owned(), format!("restart FAILED: {e:#}")),
            }
        }
        FaultKind::Broker => {
            let queue = &settings.amqp_request_queue;
            let before = load.vhost.consumers(queue).await.unwrap_or(0);
            let detail = match plan.broker {
                BrokerFault::CloseConnections => match load.vhost.close_connections().await {
                    Ok(n) => format!("closed the run's {n} connections"),
                    Err(e) => format!("closing connections FAILED: {e:#}"),
                },
                BrokerFault::StopApp => {
                    let stopped = procs::rabbitmqctl(&["-q", "stop_app"]).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let started = procs::rabbitmqctl(&["-q", "start_app"]).await;
                    match (stopped, started) {
                        (Ok(_), Ok(_)) => "rabbitmqctl stop_app, 2 s, start_app".to_owned(),
                        (a, b) => format!("stop_app/start_app FAILED: {a:?} {b:?}"),
                    }
                }
            };
            broker_back = Some(Utc::now());
            let reopened = Instant::now();
            while reopened.elapsed() < Duration::from_secs(60) {
                if load.vhost.consumers(queue).await.unwrap_or(0) >= before.max(1) {
                    ingress_back = Some(reopened.elapsed().as_secs_f64());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let back = ingress_back.map_or_else(
                || "consumers NOT back within 60 s".to_owned(),
                |s| format!("{before} request-queue consumer(s) back after {s:.1} s"),
            );
            ("broker".to_owned(), format!("{detail}; {back}"))
        }
    };
    Fault {
        kind,
        target,
        injected,
        ended: broker_back.unwrap_or_else(Utc::now),
        ingress_back,
        detail,
    }
}
