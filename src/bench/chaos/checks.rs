//! The soak's verdict on one load, from the log, the model's record of its
//! calls and the replies received:
//!
//! - every course READY exactly once, no step recorded twice;
//! - no model call started for a step already recorded at that moment
//!   (its start against the step event's `recorded_at`), except by a
//!   process that was paused past its lease, counted apart; calls repeated
//!   for a step not yet recorded (a lease taken over from a paused or killed
//!   process, a failed append) are counted by the fault before them;
//! - every request answered `success` at least once, and replies repeated
//!   for one fact share their message id;
//! - the projections equal their recount from the log;
//! - no process of the run left alive.
//!
//! Also the figures: throughput, and recovery after each fault.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::Step;
use super::phase::Outcome;
use super::FaultKind;
use crate::domain::CourseStatus;
use crate::ingress::amqp::wire::ReplyStatus;
use crate::projections::recount::{difference_sql, recounts};
use crate::projections::{wait_for_position, Projection};
use crate::store::{EventStore, Position};

/// One named check and what it found.
pub(super) struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// A load's checks and figures.
pub(super) struct Verdict {
    pub checks: Vec<Check>,
    /// Courses READY per second, publish to last completion.
    pub throughput: f64,
    pub seconds: f64,
    /// Outline and lesson events of the log, in order of `recorded_at`.
    pub steps: Vec<DateTime<Utc>>,
    /// When each step was first recorded, for the takeover figures.
    pub recorded: HashMap<(Uuid, Step), DateTime<Utc>>,
    /// The course of each topic.
    pub stream_of_topic: HashMap<String, Uuid>,
    /// Model calls, and repeated ones by cause.
    pub calls: usize,
    pub repeats: BTreeMap<String, usize>,
}

impl Verdict {
    pub(super) fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Waits for every projection to reach the log's head, then counts the
/// rows on which each table differs from its recount.
pub(super) async fn projections_against_recount(
    store: &EventStore,
) -> Vec<(String, Result<i64, String>)> {
    let mut out = Vec::new();
    let head = match head(store).await {
        Ok(head) => head,
        Err(e) => return vec![("log head".into(), Err(format!("{e:#}")))],
    };
    for p in Projection::ALL {
        if let Err(e) = wait_for_position(store, p.name(), head, Duration::from_secs(90)).await {
            out.push((p.name().to_owned(), Err(e.to_string())));
            continue;
        }
        for r in recounts(p) {
            let differing = async {
                let client = store.pool().get().await?;
                let row = client.query_one(&difference_sql(&r, ""), &[]).await?;
                anyhow::Ok(row.get::<_, i64>(0))
            }
            .await
            .map_err(|e| format!("{e:#}"));
            out.push((r.table.to_owned(), differing));
        }
    }
    out
}

async fn head(store: &EventStore) -> anyhow::Result<Position> {
    let client = store.pool().get().await?;
    let row = client
        .query_one(
            "SELECT coalesce(max(transaction_id::text::bigint), 0), coalesce(max(global_position), 0) FROM events",
            &[],
        )
        .await?;
    Ok(Position {
        transaction_id: row.get(0),
        global_position: row.get(1),
    })
}

/// A step event of the log.
struct Recorded {
    stream: Uuid,
    step: Step,
    at: DateTime<Utc>,
}

/// Checks `outcome` against the log in `store`.
///
/// # Errors
/// The log could not be read.
pub(super) async fn check(
    store: &EventStore,
    outcome: &Outcome,
    lessons: u32,
    pause: Duration,
    lease: Duration,
) -> anyhow::Result<Verdict> {
    let client = store.pool().get().await?;
    let rows = client
        .query(
            "SELECT stream_id, event_type, recorded_at, payload->>'topic', (payload->>'number')::int
             FROM events ORDER BY global_position",
            &[],
        )
        .await?;
    let mut stream_of_topic: HashMap<String, Uuid> = HashMap::new();
    let mut completions: HashMap<Uuid, usize> = HashMap::new();
    let mut failures = Vec::new();
    let mut steps: Vec<Recorded> = Vec::new();
    let mut last_completion = outcome.published;
    for row in &rows {
        let stream: Uuid = row.get(0);
        let at: DateTime<Utc> = row.get(2);
        match row.get::<_, &str>(1) {
            "CourseRequested" => {
                if let Some(topic) = row.get::<_, Option<String>>(3) {
                    stream_of_topic.insert(topic, stream);
                }
            }
            "OutlineGenerated" => steps.push(Recorded {
                stream,
                step: Step::Outline,
                at,
            }),
            "LessonGenerated" => {
                let n = row.get::<_, Option<i32>>(4).unwrap_or_default();
                steps.push(Recorded {
                    stream,
                    step: Step::Lesson(u32::try_from(n).unwrap_or_default()),
                    at,
                });
            }
            "CourseCompleted" => {
                *completions.entry(stream).or_default() += 1;
                last_completion = last_completion.max(at);
            }
            "CourseFailed" => failures.push(stream),
            _ => {}
        }
    }
    let n = outcome.requested.len();
    let mut checks = Vec::new();

    let requested = outcome
        .requested
        .iter()
        .filter(|r| stream_of_topic.contains_key(&r.topic))
        .count();
    checks.push(Check {
        name: "every request recorded",
        passed: requested == n && outcome.finished,
        detail: format!(
            "{requested} of {n} CourseRequested{}",
            if outcome.finished {
                ""
            } else {
                "; the load did NOT finish in time"
            }
        ),
    });

    let once = completions.values().filter(|c| **c == 1).count();
    let twice = completions.values().filter(|c| **c > 1).count();
    let ready: i64 = client
        .query_one(
            "SELECT count(*) FROM courses WHERE status = $1",
            &[&CourseStatus::Ready.as_str()],
        )
        .await?
        .get(0);
    checks.push(Check {
        name: "READY exactly once",
        passed: once == n && twice == 0 && failures.is_empty() && ready == n as i64,
        detail: format!(
            "{once} completed once, {twice} more than once, {} CourseFailed, {ready} READY in courses",
            failures.len()
        ),
    });

    let mut per_step: HashMap<(Uuid, Step), Vec<DateTime<Utc>>> = HashMap::new();
    for s in &steps {
        per_step.entry((s.stream, s.step)).or_default().push(s.at);
    }
    let doubled = per_step.values().filter(|v| v.len() > 1).count();
    let expected_steps = n * (lessons as usize + 1);
    let lesson_rows: i64 = client
        .query_one("SELECT count(*) FROM lessons", &[])
        .await?
        .get(0);
    checks.push(Check {
        name: "no step recorded twice",
        passed: doubled == 0
            && per_step.len() == expected_steps
            && lesson_rows == (n * lessons as usize) as i64,
        detail: format!(
            "{} distinct steps of {expected_steps}, {doubled} recorded twice, {lesson_rows} lesson rows",
            per_step.len()
        ),
    });

    // Model calls against the log.
    let recorded: HashMap<(Uuid, Step), DateTime<Utc>> = per_step
        .iter()
        .map(|(k, v)| (*k, *v.iter().min().expect("one time at least")))
        .collect();
    let paused: Vec<(&str, DateTime<Utc>, DateTime<Utc>)> = outcome
        .faults
        .iter()
        .filter(|f| f.kind == FaultKind::PauseServe)
        .map(|f| (f.target.as_str(), f.injected, f.ended))
        .collect();
    let slack = chrono::Duration::from_std(pause + lease + Duration::from_secs(5))?;
    let was_paused = |caller: &str, at: DateTime<Utc>| {
        paused
            .iter()
            .any(|(tag, from, _)| *tag == caller && *from <= at && at - *from <= slack)
    };
    let mut late = 0;
    let mut late_paused = 0;
    let mut stray = 0;
    let mut repeats: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen: HashSet<(Uuid, Step)> = HashSet::new();
    let mut calls = outcome.calls.clone();
    calls.sort_by_key(|c| c.started);
    for call in &calls {
        let Some(stream) = stream_of_topic.get(&call.topic) else {
            stray += 1;
            continue;
        };
        let key = (*stream, call.step);
        if let Some(at) = recorded.get(&key) {
            if call.started > *at {
                if was_paused(&call.caller, call.started) {
                    late_paused += 1;
                } else {
                    late += 1;
                }
                continue;
            }
        }
        if !seen.insert(key) {
            let cause = if was_paused(&call.caller, call.started)
                || paused
                    .iter()
                    .any(|(_, from, _)| *from <= call.started && call.started - *from <= slack)
            {
                "lease expired under a paused serve".to_owned()
            } else {
                outcome
                    .faults
                    .iter()
                    .rev()
                    .find(|f| f.injected <= call.started)
                    .map_or_else(
                        || "no fault before it".to_owned(),
                        |f| format!("after {}", f.kind.name()),
                    )
            };
            *repeats.entry(cause).or_default() += 1;
        }
    }
    if late_paused > 0 {
        *repeats
            .entry("started after the step was recorded, by a serve paused past its lease".into())
            .or_default() += late_paused;
    }
    checks.push(Check {
        name: "no call for a recorded step",
        passed: late == 0 && stray == 0,
        detail: format!(
            "{} calls; {late} started after their step was recorded (not by a paused serve), {late_paused} by a paused serve, {stray} for no requested course",
            calls.len()
        ),
    });

    // Replies.
    let mut succeeded: HashSet<&str> = HashSet::new();
    let mut message_ids: HashMap<(&str, ReplyStatus), HashSet<Option<&str>>> = HashMap::new();
    let mut errors = 0;
    for r in &outcome.replies {
        if r.status == ReplyStatus::Success {
            succeeded.insert(r.request_id.as_str());
        }
        if r.status == ReplyStatus::Error {
            errors += 1;
        }
        message_ids
            .entry((r.request_id.as_str(), r.status))
            .or_default()
            .insert(r.message_id.as_deref());
    }
    let answered = outcome
        .requested
        .iter()
        .filter(|r| succeeded.contains(r.request_id.to_string().as_str()))
        .count();
    let split = message_ids
        .values()
        .filter(|ids| ids.len() > 1 || ids.contains(&None))
        .count();
    let sent_twice = outcome.replies.len().saturating_sub(message_ids.len());
    checks.push(Check {
        name: "every request answered",
        passed: answered == n && split == 0 && errors == 0,
        detail: format!(
            "{answered} of {n} got success; {} replies, {sent_twice} repeats, {split} facts with differing message ids, {errors} error replies",
            outcome.replies.len()
        ),
    });

    let differing: Vec<String> = outcome
        .projections
        .iter()
        .filter(|(_, r)| r != &Ok(0))
        .map(|(t, r)| match r {
            Ok(d) => format!("{t}: {d} rows differ"),
            Err(e) => format!("{t}: {e}"),
        })
        .collect();
    checks.push(Check {
        name: "projections equal recount",
        passed: differing.is_empty() && !outcome.projections.is_empty(),
        detail: if differing.is_empty() {
            format!("{} tables equal", outcome.projections.len())
        } else {
            differing.join("; ")
        },
    });

    checks.push(Check {
        name: "serves ran and stopped",
        passed: outcome.unexpected_exits.is_empty() && outcome.forced_stops == 0,
        detail: if outcome.unexpected_exits.is_empty() {
            format!(
                "no unexpected exit; {} needed SIGKILL after SIGTERM",
                outcome.forced_stops
            )
        } else {
            outcome.unexpected_exits.join("; ")
        },
    });
    checks.push(Check {
        name: "no process left behind",
        passed: outcome.left_behind.is_empty(),
        detail: format!("{:?} alive", outcome.left_behind),
    });

    let seconds = (last_completion - outcome.published).num_milliseconds() as f64 / 1000.0;
    let mut step_times: Vec<DateTime<Utc>> = steps.iter().map(|s| s.at).collect();
    step_times.sort_unstable();
    Ok(Verdict {
        checks,
        throughput: once as f64 / seconds.max(0.001),
        seconds,
        steps: step_times,
        recorded,
        stream_of_topic,
        calls: calls.len(),
        repeats,
    })
}

/// Seconds from the end of each fault's action (the serve restarted or
/// resumed, the cluster up again, the connections closed) until a 2-second
/// window again recorded at least half the fault-free step rate (None when
/// that did not happen before the load ended).
pub(super) fn recovery(
    outcome: &Outcome,
    steps: &[DateTime<Utc>],
    baseline_rate: f64,
) -> Vec<Option<f64>> {
    let window = chrono::Duration::seconds(2);
    let needed = (baseline_rate * 2.0 * 0.5).ceil().max(1.0) as usize;
    outcome
        .faults
        .iter()
        .map(|f| {
            let first = steps.partition_point(|t| *t < f.ended);
            (first..steps.len()).find_map(|i| {
                let end = steps[i] + window;
                let count = steps[i..].partition_point(|t| *t < end);
                (count >= needed)
                    .then(|| (steps[i] - f.ended).num_milliseconds().max(0) as f64 / 1000.0)
            })
        })
        .collect()
}

/// For each fault on a serve (SIGKILL, SIGSTOP): seconds from its injection
/// until every step that serve had a model call under way for (started in
/// the 2 s before, not yet recorded) was recorded, by whichever serve took
/// the course over; None for the other faults, or when such a step was
/// never recorded.
pub(super) fn takeover(outcome: &Outcome, verdict: &Verdict) -> Vec<Option<f64>> {
    let recent = chrono::Duration::seconds(2);
    outcome
        .faults
        .iter()
        .map(|f| {
            if !matches!(f.kind, FaultKind::KillServe | FaultKind::PauseServe) {
                return None;
            }
            let mut longest: f64 = 0.0;
            for call in outcome.calls.iter().filter(|c| {
                c.caller == f.target && c.started <= f.injected && f.injected - c.started <= recent
            }) {
                let stream = verdict.stream_of_topic.get(&call.topic)?;
                let at = verdict.recorded.get(&(*stream, call.step))?;
                if *at > f.injected {
                    longest = longest.max((*at - f.injected).num_milliseconds() as f64 / 1000.0);
                }
            }
            Some(longest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::chaos::phase::Fault;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn outcome(faults: Vec<Fault>) -> Outcome {
        Outcome {
            requested: Vec::new(),
            published: at(0),
            finished: true,
            calls: Vec::new(),
            replies: Vec::new(),
            faults,
            unexpected_exits: Vec::new(),
            forced_stops: 0,
            left_behind: Vec::new(),
            projections: Vec::new(),
        }
    }

    #[test]
    fn recovery_counts_from_the_end_of_a_fault_to_half_the_fault_free_rate() {
        // 10 steps a second until 10 s, none until 14 s, two (too few) by
        // 14.5 s, then 10 a second again from 16.5 s to 20.4 s.
        let mut steps: Vec<DateTime<Utc>> = (0..100).map(|i| at(i * 100)).collect();
        steps.extend([at(14_000), at(14_500)]);
        steps.extend((0..40).map(|i| at(16_500 + i * 100)));
        let fault = Fault {
            kind: FaultKind::RestartPostgres,
            target: "postgres".into(),
            injected: at(10_000),
            ended: at(12_000),
            ingress_back: None,
            detail: String::new(),
        };
        let late = Fault {
            injected: at(19_000),
            ended: at(25_000),
            ..fault.clone()
        };
        let r = recovery(&outcome(vec![fault, late]), &steps, 10.0);
        assert_eq!(r, vec![Some(4.5), None]);
    }
}
