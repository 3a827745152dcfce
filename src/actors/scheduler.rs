//! `Scheduler`: the registry of course actors in this process.
//!
//! It claims courses from the `course_work` queue (rows the event store's
//! trigger keeps for every QUEUED or GENERATING course) with `FOR UPDATE
//! SKIP LOCKED` and a lease, starts a [`CourseActor`] for each, renews the
//! leases while the actors work, and stops an actor whose lease was lost.
//! Several `coursegen serve` processes on one database thus share the work
//! and never drive one course at the same time; the stream's expected
//! version fences off a process that stalled past its lease. A course left
//! by a crashed process is taken over once its lease expires.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use clap::Args;
use tokio::sync::watch;
use uuid::Uuid;

use super::course::{CourseActor, CourseFinished, StopAfterStep};
use crate::llm::LlmClient;
use crate::sources::embeddings::Embedder;
use crate::store::work::WorkQueue;
use crate::store::EventStore;

/// How a scheduler shares work.
#[derive(Debug, Clone, Args)]
pub struct SchedulerSettings {
    /// Courses this process drives at once (default: twice LLM_MAX_CONCURRENCY,
    /// so the LLM stays busy while other courses record their steps).
    #[arg(long, env = "MAX_ACTIVE_COURSES")]
    pub max_active_courses: Option<usize>,

    /// Seconds a claimed course stays ours without renewal; after a crash,
    /// another process takes the course over this long after the last renewal.
    #[arg(long, env = "COURSE_LEASE_SECS", default_value_t = 30.0)]
    pub course_lease_secs: f64,

    /// Seconds between looks at the work queue when no event wakes us.
    #[arg(long, env = "SCHEDULER_POLL_SECS", default_value_t = 1.0)]
    pub scheduler_poll_secs: f64,
}

/// Look for claimable courses now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct ClaimWork;

/// Extend the leases of the courses being driven.
#[derive(Message)]
#[rtype(result = "()")]
struct RenewLeases;

/// Stop claiming and ask every course actor to stop after its current step.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct BeginShutdown;

/// How many course actors are running.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct ActiveCourses;

/// The registry of this process's course actors.
pub(crate) struct Scheduler {
    queue: WorkQueue,
    store: EventStore,
    llm: Arc<dyn LlmClient>,
    /// Semantic retrieval's endpoint for the course actors, when configured.
    embedder: Option<Embedder>,
    wakeups: Option<watch::Receiver<u64>>,
    max_active: usize,
    lease: Duration,
    poll: Duration,
    active: HashMap<Uuid, Addr<CourseActor>>,
    claiming: bool,
    shutting_down: bool,
}

impl Scheduler {
    /// A scheduler for `store`, generating with `llm`, woken by `wakeups`
    /// (appended events) besides its poll.
    pub(crate) fn new(
        store: EventStore,
        llm: Arc<dyn LlmClient>,
        wakeups: Option<watch::Receiver<u64>>,
        settings: &SchedulerSettings,
        default_max_active: usize,
    ) -> Self {
        let lease = Duration::from_secs_f64(settings.course_lease_secs.max(0.5));
        Self {
            queue: WorkQueue::new(store.clone(), Uuid::new_v4(), lease),
            store,
            llm,
            embedder: None,
            wakeups,
            max_active: settings
                .max_active_courses
                .unwrap_or(default_max_active)
                .max(1),
            lease,
            poll: Duration::from_secs_f64(settings.scheduler_poll_secs.max(0.05)),
            active: HashMap::new(),
            claiming: false,
            shutting_down: false,
        }
    }

    /// Retrieval fuses vector hits of `embedder` with the full-text ones
    /// (full text alone when `None`, the default).
    pub(crate) fn with_embedder(mut self, embedder: Option<Embedder>) -> Self {
        self.embedder = embedder;
        self
    }

    /// The work queue handle (its owner id is this scheduler's).
    pub(crate) fn queue(&self) -> WorkQueue {
        self.queue.clone()
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(owner = %self.queue.owner(), max_active = self.max_active, "scheduler started");
        ctx.run_interval(self.poll, |_, ctx| ctx.notify(ClaimWork));
        ctx.run_interval(self.lease / 3, |_, ctx| ctx.notify(RenewLeases));
        if let Some(mut wakeups) = self.wakeups.take() {
            let me = ctx.address();
            actix::spawn(async move {
                while wakeups.changed().await.is_ok() {
                    if me.try_send(ClaimWork).is_err() && !me.connected() {
                        return;
                    }
                }
            });
        }
        ctx.notify(ClaimWork);
    }
}

impl Handler<ClaimWork> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: ClaimWork, ctx: &mut Self::Context) {
        let free = self.max_active.saturating_sub(self.active.len());
        if self.claiming || self.shutting_down || free == 0 {
            return;
        }
        self.claiming = true;
        let queue = self.queue.clone();
        ctx.spawn(
            async move { queue.claim(free as i64).await }
                .into_actor(self)
                .map(move |claimed, act, ctx| {
                    act.claiming = false;
                    let ids = match claimed {
                        Ok(ids) => ids,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not claim work");
                            return;
                        }
                    };
                    let full_batch = ids.len() == free;
                    for id in ids {
                        if act.shutting_down || act.active.contains_key(&id) {
                            continue;
                        }
                        tracing::debug!(course_id = %id, "driving course");
                        let actor = CourseActor::new(
                            id,
                            act.store.clone(),
                            act.llm.clone(),
                            act.embedder.clone(),
                            ctx.address().recipient(),
                        )
                        .start();
                        act.active.insert(id, actor);
                    }
                    if full_batch {
                        ctx.notify(ClaimWork);
                    }
                }),
        );
    }
}

impl Handler<CourseFinished> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: CourseFinished, ctx: &mut Self::Context) {
        self.active.remove(&msg.course_id);
        if self.shutting_down {
            return;
        }
        // Leave the queue row to the trigger (READY/FAILED remove it); a
        // course stopped for another reason is released for anyone to take.
        let queue = self.queue.clone();
        ctx.spawn(
            async move {
                if let Err(e) = queue.release(Some(&[msg.course_id])).await {
                    tracing::debug!(error = %e, "could not release a lease; it will expire");
                }
            }
            .into_actor(self),
        );
        ctx.notify(ClaimWork);
    }
}

impl Handler<RenewLeases> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: RenewLeases, ctx: &mut Self::Context) {
        let held: Vec<Uuid> = self.active.keys().copied().collect();
        if held.is_empty() {
            return;
        }
        let queue = self.queue.clone();
        ctx.spawn(
            async move { queue.renew(&held).await.map(|kept| (held, kept)) }
                .into_actor(self)
                .map(|renewed, act, _| match renewed {
                    Ok((held, kept)) => {
                        for id in held.iter().filter(|id| !kept.contains(id)) {
                            // Finished (row gone) or taken over after our lease lapsed.
                            if let Some(actor) = act.active.get(id) {
                                actor.do_send(StopAfterStep);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not renew leases"),
                }),
        );
    }
}

impl Handler<BeginShutdown> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: BeginShutdown, _: &mut Self::Context) {
        self.shutting_down = true;
        for actor in self.active.values() {
            actor.do_send(StopAfterStep);
        }
    }
}

impl Handler<ActiveCourses> for Scheduler {
    type Result = usize;

    fn handle(&mut self, _: ActiveCourses, _: &mut Self::Context) -> usize {
        self.active.len()
    }
}

/// Stops a scheduler: no new claims, each actor finishes the step it is on
/// (for at most `grace`), then every lease of this process is released so
/// other processes resume the courses at once.
pub(crate) async fn shutdown(scheduler: &Addr<Scheduler>, queue: &WorkQueue, grace: Duration) {
    let _ = scheduler.send(BeginShutdown).await;
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        match scheduler.send(ActiveCourses).await {
            Ok(0) | Err(_) => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    match queue.release(None).await {
        Ok(n) if n > 0 => tracing::info!(released = n, "released course leases"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not release leases; they will expire"),
    }
}
