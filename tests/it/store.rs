//! The event store on real PostgreSQL.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coursegen::domain::{CourseRequest, RawCourseRequest};
use coursegen::store::courses::{self, Submitted};
use coursegen::store::subscription::{Notifier, Subscription, SubscriptionOptions};
use coursegen::store::{migrate, Metadata, NewEvent, Position, StoreError};
use rand::Rng;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::TestDb;

fn event(n: u32) -> NewEvent {
    NewEvent {
        event_type: "TestHappened".into(),
        event_version: 1,
        payload: json!({ "n": n }),
    }
}

fn meta() -> Metadata {
    Metadata::producer("test")
}

#[tokio::test]
async fn appended_events_read_back_in_stream_order() {
    let db = TestDb::new().await;
    let stream = Uuid::new_v4();
    let first = db
        .store
        .append(stream, 0, &[event(0), event(1)], &meta())
        .await
        .unwrap();
    assert_eq!(first.next_version, 2);
    let second = db
        .store
        .append(stream, 2, &[event(2)], &meta())
        .await
        .unwrap();
    assert_eq!(second.next_version, 3);
    assert!(second.position > first.position);

    let events = db.store.read_stream(stream).await.unwrap();
    let versions: Vec<i32> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, vec![0, 1, 2]);
    let ns: Vec<u64> = events
        .iter()
        .map(|e| e.payload["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, vec![0, 1, 2]);
    assert_eq!(events[0].metadata().producer.as_deref(), Some("test"));
    assert!(db
        .store
        .read_stream(Uuid::new_v4())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_stale_or_future_expected_version_is_a_conflict_and_writes_nothing() {
    let db = TestDb::new().await;
    let stream = Uuid::new_v4();
    db.store
        .append(stream, 0, &[event(0), event(1)], &meta())
        .await
        .unwrap();
    for expected in [0, 1, 3, 7] {
        let err = db
            .store
            .append(stream, expected, &[event(9), event(10)], &meta())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Conflict { expected: e, .. } if e == expected),
            "{err:?}"
        );
    }
    assert_eq!(db.store.read_stream(stream).await.unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_appends_at_the_same_version_exactly_one_wins() {
    let db = TestDb::new().await;
    let stream = Uuid::new_v4();
    db.store
        .append(stream, 0, &[event(0)], &meta())
        .await
        .unwrap();
    let writers: Vec<_> = (0..24)
        .map(|i| {
            let store = db.store.clone();
            tokio::spawn(async move {
                store
                    .append(stream, 1, &[event(i), event(i + 100)], &meta())
                    .await
            })
        })
        .collect();
    let mut won = 0;
    let mut conflicts = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { .. }) => conflicts += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((won, conflicts), (1, 23));
    assert_eq!(db.store.read_stream(stream).await.unwrap().len(), 3);
}

#[tokio::test]
async fn events_cannot_be_updated_deleted_or_truncated() {
    let db = TestDb::new().await;
    let stream = Uuid::new_v4();
    db.store
        .append(stream, 0, &[event(0)], &meta())
        .await
        .unwrap();
    let client = db.client().await;
    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let err = client.batch_execute(sql).await.expect_err(sql);
        assert!(
            err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
            "{sql}: {err:?}"
        );
    }
    assert_eq!(
        db.store.read_stream(stream).await.unwrap()[0].payload,
        json!({"n": 0})
    );
}

fn request(user: Uuid, request_id: Uuid) -> CourseRequest {
    CourseRequest::parse(RawCourseRequest {
        request_id: Some(request_id.to_string()),
        user_id: Some(user.to_string()),
        topic: Some("Cell biology".into()),
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_repeated_request_creates_one_course() {
    let db = TestDb::new().await;
    let (user, req) = (Uuid::new_v4(), Uuid::new_v4());
    let (id, first) = courses::submit(&db.store, request(user, req), meta())
        .await
        .unwrap();
    assert!(matches!(first, Submitted::Created(_)));
    // Sequential and concurrent repeats.
    let (again, second) = courses::submit(&db.store, request(user, req), meta())
        .await
        .unwrap();
    assert_eq!((again, second), (id, Submitted::Duplicate));
    let repeats: Vec<_> = (0..8)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { courses::submit(&store, request(user, req), meta()).await })
        })
        .collect();
    for r in repeats {
        assert_eq!(r.await.unwrap().unwrap(), (id, Submitted::Duplicate));
    }
    let events = db.store.read_stream(id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "CourseRequested");
    assert_eq!(events[0].metadata().request_id, Some(req));
    assert_eq!(id, coursegen::domain::course_id(user, req));
}

#[tokio::test]
async fn concurrent_first_submissions_of_one_request_create_one_course() {
    let db = TestDb::new().await;
    let (user, req) = (Uuid::new_v4(), Uuid::new_v4());
    let subs: Vec<_> = (0..16)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { courses::submit(&store, request(user, req), meta()).await })
        })
        .collect();
    let mut created = 0;
    for s in subs {
        if let (_, Submitted::Created(_)) = s.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(
        db.store
            .read_stream(
                courses::submit(&db.store, request(user, req), meta())
                    .await
                    .unwrap()
                    .0
            )
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_different_request_under_a_taken_id_is_refused() {
    let db = TestDb::new().await;
    let (user, req) = (Uuid::new_v4(), Uuid::new_v4());
    courses::submit(&db.store, request(user, req), meta())
        .await
        .unwrap();
    let mut other = request(user, req);
    other.topic = "Something else".into();
    let err = courses::submit(&db.store, other, meta()).await.unwrap_err();
    assert!(err.to_string().contains("different request"), "{err}");
}

#[tokio::test]
async fn concurrent_migrations_all_succeed_and_apply_each_file_once() {
    let db = TestDb::empty(16).await;
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { migrate::run(&store).await.map(|v| v.len()) })
        })
        .collect();
    let mut applied = 0;
    for r in runs {
        applied += r.await.unwrap().unwrap();
    }
    assert_eq!(applied, migrate::MIGRATIONS.len());
    assert!(migrate::run(&db.store).await.unwrap().is_empty());
    let rows: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM coursegen_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as usize, migrate::MIGRATIONS.len());
}

#[tokio::test]
async fn a_notification_wakes_a_subscriber_long_before_its_poll_interval() {
    let db = TestDb::new().await;
    let notifier = Notifier::start(db.config.clone());
    listener_pid(&db, None).await;
    assert_an_append_wakes_a_subscriber(&db, &notifier).await;
}

/// Waits for the notifier's LISTEN connection (another than `not`) and
/// returns its backend pid.
async fn listener_pid(db: &TestDb, not: Option<i32>) -> i32 {
    let client = db.client().await;
    crate::helpers::eventually("the LISTEN connection", Duration::from_secs(10), || async {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'
                   AND pid IS DISTINCT FROM $1",
                &[&not],
            )
            .await
            .unwrap()
            .map(|row| row.get(0))
    })
    .await
}

/// Starts a reader whose poll interval is an hour, appends, and checks the
/// reader gets the event within seconds: only a NOTIFY can wake it that fast.
async fn assert_an_append_wakes_a_subscriber(db: &TestDb, notifier: &Notifier) {
    let mut sub = Subscription::new(
        db.store.clone(),
        notifier,
        Position::START,
        SubscriptionOptions {
            poll_interval: Duration::from_secs(3600),
            batch_size: 10,
        },
    );
    let reader = tokio::spawn(async move { sub.next_batch().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.store
        .append(Uuid::new_v4(), 0, &[event(1)], &meta())
        .await
        .unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("woken by NOTIFY, not the hour-long poll")
        .unwrap()
        .unwrap();
    assert_eq!(batch.len(), 1);
}

/// The ordering-gap test: writers hold their transactions open for random
/// times, so positions are taken in one order and committed in another.
/// A reader tailing `read_all_after` must see every committed event exactly
/// once. Without the transaction-id horizon in the query it skips events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_sees_every_committed_event_exactly_once() {
    const WRITERS: usize = 16;
    const PER_WRITER: usize = 25;
    let db = Arc::new(TestDb::with_pool(WRITERS + 4).await);
    let committed = Arc::new(std::sync::Mutex::new(BTreeSet::new()));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let db = db.clone();
            let committed = committed.clone();
            tokio::spawn(async move {
                let mut client = db.store.pool().get().await.unwrap();
                for i in 0..PER_WRITER {
                    let (hold_ms, rollback) = {
                        let mut rng = rand::thread_rng();
                        (rng.gen_range(0..40u64), rng.gen_ratio(1, 10))
                    };
                    let tx = client.transaction().await.unwrap();
                    let row = tx
                        .query_one(
                            "INSERT INTO events (stream_id, stream_version, event_type, payload)
                             VALUES ($1, 0, 'TestHappened', $2) RETURNING global_position",
                            &[&Uuid::new_v4(), &json!({ "writer": w, "i": i })],
                        )
                        .await
                        .unwrap();
                    let position: i64 = row.get(0);
                    tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                    if rollback {
                        tx.rollback().await.unwrap();
                    } else {
                        tx.commit().await.unwrap();
                        committed.lock().unwrap().insert(position);
                    }
                }
            })
        })
        .collect();

    let writers_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (db, committed, writers_done) = (db.clone(), committed.clone(), writers_done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut checkpoint = Position::START;
            // Events become readable only once every older transaction in the
            // cluster ended (other tests' too), so allow time; a skipped event
            // is never seen and ends the wait at the deadline.
            let mut deadline = None;
            loop {
                let batch = db.store.read_all_after(checkpoint, 7).await.unwrap();
                if let Some(last) = batch.last() {
                    checkpoint = last.position();
                }
                let empty = batch.is_empty();
                seen.extend(batch.into_iter().map(|e| e.global_position));
                if empty {
                    if writers_done.load(std::sync::atomic::Ordering::SeqCst) {
                        let deadline = *deadline
                            .get_or_insert_with(|| Instant::now() + Duration::from_secs(20));
                        if seen.len() >= committed.lock().unwrap().len()
                            || Instant::now() > deadline
                        {
                            // One more read: nothing beyond the committed set may appear.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            let extra = db.store.read_all_after(checkpoint, 1000).await.unwrap();
                            seen.extend(extra.into_iter().map(|e| e.global_position));
                            return seen;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    writers_done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let committed = committed.lock().unwrap().clone();

    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an event was delivered twice");
    let missed: Vec<_> = committed.iter().filter(|p| !unique.contains(p)).collect();
    assert!(
        missed.is_empty(),
        "{} committed events were skipped: {missed:?}",
        missed.len()
    );
    assert_eq!(
        unique.len(),
        committed.len(),
        "only committed events are delivered"
    );
    assert!(committed.len() > WRITERS * PER_WRITER / 2);
}

#[tokio::test]
async fn a_subscriber_is_woken_again_after_its_listen_connection_is_killed() {
    let db = TestDb::new().await;
    let notifier = Notifier::start(db.config.clone());
    let killed = listener_pid(&db, None).await;
    let terminated: bool = db
        .client()
        .await
        .query_one("SELECT pg_terminate_backend($1)", &[&killed])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    // The listener reconnects, once: the killed connection left no second listener...
    listener_pid(&db, Some(killed)).await;
    let listeners: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listeners, 1);
    // ... and an append after that still wakes a reader at once.
    assert_an_append_wakes_a_subscriber(&db, &notifier).await;
}

/// The NOTIFYs this test's database gets on the store's channel, as seen by
/// a LISTEN connection of the test's own (closed with the receiver).
async fn notifications(db: &TestDb) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    use futures::StreamExt;
    let (client, mut connection) = db.config.connect(tokio_postgres::NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (listening_tx, listening) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let tokio_postgres::AsyncMessage::Notification(_) = message {
                if tx.send(()).is_err() {
                    return;
                }
            }
        }
    });
    tokio::spawn(async move {
        client
            .batch_execute("LISTEN coursegen_events")
            .await
            .unwrap();
        let _ = listening_tx.send(());
        // The connection lives as long as its client.
        std::future::pending::<()>().await;
    });
    listening.await.unwrap();
    rx
}

/// Appends one event to a new stream on a runtime of its own that ends as
/// soon as the append returns, as an HTTP worker's runtime may. (On a thread
/// of the blocking pool: the caller's runtime goes on driving the pool's
/// connections meanwhile.)
async fn append_on_a_runtime_that_ends(store: &coursegen::store::EventStore) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(store.append(Uuid::new_v4(), 0, &[event(0)], &meta()))
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn appends_notify_again_after_the_runtime_that_appended_first_has_ended() {
    let db = TestDb::new().await;
    let mut notified = notifications(&db).await;
    append_on_a_runtime_that_ends(&db.store).await;
    db.store
        .append(Uuid::new_v4(), 0, &[event(1)], &meta())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), notified.recv())
        .await
        .expect("a NOTIFY for the later append (the sender was restarted)")
        .unwrap();
}

#[actix_web::test]
async fn the_service_notifies_for_an_append_made_on_a_runtime_that_ended_at_once() {
    let mut app = crate::app::TestApp::spawn(crate::app::Overrides::default()).await;
    let mut notified = notifications(&app.db).await;
    // The service runs the sender on its own runtime: the append's NOTIFY
    // goes out although the runtime that appended is gone.
    append_on_a_runtime_that_ends(&app.db.store).await;
    tokio::time::timeout(Duration::from_secs(30), notified.recv())
        .await
        .expect("a NOTIFY sent from the service's runtime")
        .unwrap();
    app.stop().await;
}
