//! The runner on real PostgreSQL (a scratch database of the test's own),
//! with appliers of the tests' own.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::bench::ScratchDatabase;
use crate::projections::{checkpoint, CheckpointState};
use crate::store::{Metadata, NewEvent};

/// Every batch meets a parameter tokio-postgres cannot convert (text where
/// the statement takes an int4): an error without a SQLSTATE that is the
/// event's fault, not the connection's.
struct Unconvertible {
    lost: Arc<AtomicUsize>,
}

#[async_trait]
impl BatchApplier for Unconvertible {
    fn name(&self) -> &'static str {
        "test_unconvertible"
    }

    fn lock_key(&self) -> i64 {
        0x7e57_0001
    }

    async fn apply(
        &mut self,
        tx: &Transaction<'_>,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ApplierError> {
        let position = events[0].position();
        tx.execute("SELECT $1::int4", &[&"three"])
            .await
            .map_err(|e| ApplyError::from_db(position, e))?;
        Ok(())
    }

    fn connection_lost(&mut self, _error: &str) {
        self.lost.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `check` until it answers `Some`, failing after 30 s with `what`.
async fn eventually<T, Fut: Future<Output = Option<T>>>(
    what: impl Fn() -> String,
    mut check: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix::test]
async fn an_error_without_a_sqlstate_stops_the_projection_rather_than_reconnecting() {
    let (db, store) = ScratchDatabase::for_tests().await;
    let poison = store
        .append(
            Uuid::new_v4(),
            0,
            &[NewEvent {
                event_type: "TestHappened".into(),
                event_version: 1,
                payload: json!({}),
            }],
            &Metadata::producer("test"),
        )
        .await
        .unwrap()
        .position;
    let lost = Arc::new(AtomicUsize::new(0));
    let (_wake, wakeups) = watch::channel(0);
    let options = RunnerOptions {
        poll_interval: Duration::from_millis(50),
        lock_retry: Duration::from_millis(50),
        idle_check: Duration::from_millis(50),
        ..RunnerOptions::default()
    };
    let applier = Unconvertible { lost: lost.clone() };
    let runner = ProjectionRunner::new(Box::new(applier), store.clone(), wakeups, options).start();

    let stopped = eventually(
        || format!("a poison event (connections lost meanwhile: {lost:?})"),
        || async {
            checkpoint(&store, "test_unconvertible")
                .await
                .unwrap()
                .filter(|cp| cp.state == CheckpointState::Failed)
        },
    )
    .await;
    assert_eq!(stopped.failed_position, Some(poison.global_position));
    let error = stopped.error.unwrap_or_default();
    assert!(error.contains("serializing parameter"), "{error}");
    eventually(
        || "the runner to say it failed".into(),
        || async {
            (runner.send(GetRunnerState).await.unwrap() == RunnerState::Failed).then_some(())
        },
    )
    .await;
    assert_eq!(lost.load(Ordering::SeqCst), 0, "no reconnects");

    runner.send(StopRunner).await.unwrap();
    store.pool().close();
    db.drop_database().await.unwrap();
}

/// Keeps the payloads of the events it is given, by event type.
struct Recorder {
    seen: Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

#[async_trait]
impl BatchApplier for Recorder {
    fn name(&self) -> &'static str {
        "test_recorder"
    }

    fn lock_key(&self) -> i64 {
        0x7e57_0002
    }

    fn payload_sql(&self) -> String {
        payload_of_types(&["TestWanted"], true)
    }

    async fn apply(
        &mut self,
        _tx: &Transaction<'_>,
        events: Vec<RecordedEvent>,
    ) -> Result<(), ApplierError> {
        let mut seen = self.seen.lock().unwrap();
        seen.extend(events.into_iter().map(|e| (e.event_type, e.payload)));
        Ok(())
    }
}

#[actix::test]
async fn an_applier_is_given_no_payload_of_the_types_it_ignores_but_passes_them() {
    let (db, store) = ScratchDatabase::for_tests().await;
    let event = |event_type: &str, n: i64| NewEvent {
        event_type: event_type.into(),
        event_version: 1,
        payload: json!({ "text": "x".repeat(4096), "n": n }),
    };
    let last = store
        .append(
            Uuid::new_v4(),
            0,
            &[
                event("TestWanted", 1),
                event("TestIgnored", 2),
                event("TestWanted", 3),
            ],
            &Metadata::producer("test"),
        )
        .await
        .unwrap()
        .position;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (_wake, wakeups) = watch::channel(0);
    let options = RunnerOptions {
        poll_interval: Duration::from_millis(50),
        ..RunnerOptions::default()
    };
    let applier = Recorder { seen: seen.clone() };
    let runner = ProjectionRunner::new(Box::new(applier), store.clone(), wakeups, options).start();
    eventually(
        || "the recorder to pass the last event".into(),
        || async {
            checkpoint(&store, "test_recorder")
                .await
                .unwrap()
                .filter(|cp| cp.position >= last)
        },
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    let n = |i: usize| seen[i].1.get("n").and_then(serde_json::Value::as_i64);
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!((seen[0].0.as_str(), n(0)), ("TestWanted", Some(1)));
    assert_eq!(seen[1], ("TestIgnored".to_owned(), serde_json::Value::Null));
    assert_eq!((seen[2].0.as_str(), n(2)), ("TestWanted", Some(3)));

    runner.send(StopRunner).await.unwrap();
    store.pool().close();
    db.drop_database().await.unwrap();
}
