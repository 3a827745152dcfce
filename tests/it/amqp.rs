//! The RabbitMQ ingress end to end: the real broker (COURSEGEN_TEST_AMQP_URL,
//! default guest on 127.0.0.1:5672), the real `Application` with the offline
//! generator, real PostgreSQL. Each test has its own queues
//! (`test_<random>_...`), deleted at the end, also on panic.
//!
//! Every test here holds [`BROKER`]: shared by the ordinary tests, taken
//! exclusively by the one that restarts the broker, so none of them sees
//! RabbitMQ vanish under it.

use std::collections::{HashMap, HashSet};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use coursegen::domain::{course_id, CourseEvent};
use coursegen::ingress::amqp::status::AmqpState;
use coursegen::ingress::amqp::wire::{Reply, ReplyStatus};
use coursegen::ingress::amqp::ERROR_HEADER;
use coursegen::store::EventStore;
use futures::StreamExt;
use lapin::message::BasicGetMessage;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Consumer};
use serde_json::json;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::app::{Overrides, TestApp};
use crate::fake_llm::{error, Script};
use crate::helpers::eventually;

/// Taken shared by every AMQP test, exclusively by the broker restart test.
pub(crate) static BROKER: RwLock<()> = RwLock::const_new(());

fn request(user: Uuid, request_id: Uuid, topic: &str, lessons: u8) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "request_id": request_id,
        "user_id": user,
        "topic": topic,
        "num_lessons": lessons,
        "grade_level": "Grade 8",
    }))
    .unwrap()
}

pub(crate) async fn next_reply(consumer: &mut Consumer) -> (Reply, BasicProperties) {
    let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
        .await
        .expect("a reply within 60 s")
        .expect("reply consumer open")
        .expect("a delivery");
    let reply = serde_json::from_slice(&delivery.data).expect("a reply in the wire format");
    (reply, delivery.properties)
}

pub(crate) async fn count_events(store: &EventStore, event_type: &str) -> i64 {
    store
        .pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = $1",
            &[&event_type],
        )
        .await
        .unwrap()
        .get(0)
}

async fn wait_for_events(store: &EventStore, event_type: &str, n: i64, timeout: Duration) {
    eventually(&format!("{n} {event_type} events"), timeout, || async {
        (count_events(store, event_type).await >= n).then_some(())
    })
    .await;
}

fn replies_in(messages: &[BasicGetMessage]) -> Vec<Reply> {
    messages
        .iter()
        .map(|m| serde_json::from_slice(&m.delivery.data).expect("a reply in the wire format"))
        .collect()
}

#[actix_rt::test]
async fn an_amqp_request_is_answered_accepted_then_success() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp()).await;
    let (reply_to, mut replies) = app.queues().reply_queue().await;
    let (user, request_id) = (Uuid::new_v4(), Uuid::new_v4());

    app.queues()
        .publish(
            &request(user, request_id, "Volcanoes", 3),
            Some(&reply_to),
            Some("corr-42"),
        )
        .await;
    let (accepted, accepted_props) = next_reply(&mut replies).await;
    let (success, success_props) = next_reply(&mut replies).await;
    let status = app.application().amqp_status().unwrap().snapshot();
    app.stop().await;

    let id = course_id(user, request_id);
    let events = app.db.store.read_stream(id).await.unwrap();
    let outline_title = events
        .iter()
        .find_map(|e| match e.to_course_event().unwrap() {
            CourseEvent::OutlineGenerated(outline) => Some(outline.title),
            _ => None,
        })
        .expect("an outline in the log");
    assert_eq!(accepted.status, ReplyStatus::Accepted);
    assert_eq!(accepted.request_id, Some(request_id.to_string()));
    assert_eq!(accepted.course_id, Some(id));
    assert_eq!(success.status, ReplyStatus::Success);
    assert_eq!(success.request_id, Some(request_id.to_string()));
    assert_eq!(success.course_id, Some(id));
    assert_eq!(success.total_lessons, Some(3));
    assert_eq!(success.course_title, Some(outline_title));
    assert_eq!(success.error, None);
    assert!(chrono::DateTime::parse_from_rfc3339(&success.timestamp).is_ok());
    for props in [&accepted_props, &success_props] {
        assert_eq!(
            props.correlation_id().as_ref().map(|c| c.as_str()),
            Some("corr-42")
        );
        assert_eq!(props.delivery_mode(), &Some(2));
    }
    assert!(status.healthy(), "{status:?}");
    // The request's reply address is kept with the event.
    let metadata = events[0].metadata();
    assert_eq!(metadata.reply_to.as_deref(), Some(reply_to.as_str()));
    assert_eq!(metadata.correlation_id.as_deref(), Some("corr-42"));
    assert_eq!(metadata.producer.as_deref(), Some("amqp"));
    assert_eq!(app.queues().count(app.queues().requests()).await, 0);
}

#[actix_rt::test]
async fn a_failed_generation_is_answered_with_an_error_reply() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp().fake_llm(Script {
        always: Some(error(401, "invalid_api_key")),
        ..Script::default()
    }))
    .await;
    let (reply_to, mut replies) = app.queues().reply_queue().await;
    let (user, request_id) = (Uuid::new_v4(), Uuid::new_v4());
    app.queues()
        .publish(
            &request(user, request_id, "Locked out", 2),
            Some(&reply_to),
            Some("corr-fail"),
        )
        .await;
    let (accepted, _) = next_reply(&mut replies).await;
    let (failed, props) = next_reply(&mut replies).await;
    app.stop().await;

    assert_eq!(accepted.status, ReplyStatus::Accepted);
    assert_eq!(failed.status, ReplyStatus::Error);
    assert_eq!(failed.request_id, Some(request_id.to_string()));
    assert_eq!(failed.course_id, Some(course_id(user, request_id)));
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("outline")),
        "{failed:?}"
    );
    assert_eq!(
        props.correlation_id().as_ref().map(|c| c.as_str()),
        Some("corr-fail")
    );
}

#[actix_rt::test]
async fn a_request_delivered_three_times_makes_one_course_and_one_success() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::new(Overrides::default().amqp()).await;
    let (reply_to, mut replies) = app.queues().reply_queue().await;
    let body = request(Uuid::new_v4(), Uuid::new_v4(), "Tides", 2);
    for _ in 0..3 {
        app.queues().publish(&body, Some(&reply_to), None).await;
    }
    app.start().await;

    let mut seen = Vec::new();
    while !seen.contains(&ReplyStatus::Success) {
        seen.push(next_reply(&mut replies).await.0.status);
    }
    // Stopped, the service has acked (or handed back) every delivery and
    // published every reply it was going to: nothing more can come from it.
    app.stop().await;
    // The broker keeps a queue's order: whatever the service sent is
    // delivered before this marker.
    let marker = b"end of the replies";
    app.queues()
        .publish_to(&reply_to, marker, BasicProperties::default())
        .await;
    loop {
        let delivery = tokio::time::timeout(Duration::from_secs(30), replies.next())
            .await
            .expect("the marker within 30 s")
            .expect("reply consumer open")
            .expect("a delivery");
        if delivery.data == marker {
            break;
        }
        seen.push(
            serde_json::from_slice::<Reply>(&delivery.data)
                .unwrap()
                .status,
        );
    }

    assert_eq!(seen, [ReplyStatus::Accepted, ReplyStatus::Success]);
    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 1);
    assert_eq!(count_events(&app.db.store, "CourseCompleted").await, 1);
    let queues = app.queues();
    assert_eq!(
        queues.count(queues.requests()).await,
        0,
        "every delivery was acked, none handed back"
    );
    assert_eq!(queues.count(&queues.dead()).await, 0);
}

#[actix_rt::test]
async fn two_servers_share_the_requests_and_send_each_reply_once() {
    const N: usize = 20;
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp()).await;
    app.start().await;
    let mut ids = HashSet::new();
    for i in 0..N {
        let request_id = Uuid::new_v4();
        ids.insert(request_id.to_string());
        app.queues()
            .publish(
                &request(Uuid::new_v4(), request_id, &format!("Shared {i}"), 1),
                None,
                None,
            )
            .await;
    }
    wait_for_events(
        &app.db.store,
        "CourseCompleted",
        N as i64,
        Duration::from_secs(60),
    )
    .await;
    let queues = app.queues();
    eventually("every reply", Duration::from_secs(30), || async {
        (queues.count(queues.responses()).await >= 2 * N as u32).then_some(())
    })
    .await;
    let mut publishers: Vec<_> = app
        .applications()
        .map(|server| server.amqp_status().unwrap().snapshot().publisher.state)
        .collect();
    // Stopped, both servers have published every reply they were going to,
    // each confirmed by the broker: the queue holds them all.
    app.stop().await;

    let queues = app.queues();
    let replies = replies_in(&queues.drain(queues.responses()).await);
    assert_eq!(replies.len(), 2 * N, "one accepted and one success each");
    for status in [ReplyStatus::Accepted, ReplyStatus::Success] {
        let of: HashSet<_> = replies
            .iter()
            .filter(|r| r.status == status)
            .filter_map(|r| r.request_id.clone())
            .collect();
        assert_eq!(of, ids);
    }
    publishers.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(publishers, [AmqpState::Connected, AmqpState::Standby]);
}

/// Twenty ways to send something that is not a course request.
fn malformed() -> Vec<(Vec<u8>, Option<String>)> {
    let id = || Uuid::new_v4().to_string();
    let user = Uuid::new_v4().to_string();
    let deep = "[".repeat(20_000) + &"]".repeat(20_000);
    let mut bodies: Vec<(Vec<u8>, Option<String>)> = vec![
        (vec![], None),
        (vec![0xff, 0xfe, 0xfd, 0x00, 0x80], None),
        (vec![b'{'; 3 * 1024 * 1024], None),
        (deep.into_bytes(), None),
        (b"[1, 2, 3]".to_vec(), None),
        (b"null".to_vec(), None),
        (b"\"a string\"".to_vec(), None),
        (b"{\"request_id\": 12, \"user_id\": 13}".to_vec(), None),
        (b"{not json".to_vec(), None),
    ];
    let with_id = |f: &dyn Fn(&str) -> serde_json::Value| {
        let rid = id();
        (serde_json::to_vec(&f(&rid)).unwrap(), Some(rid))
    };
    bodies.push(with_id(&|r| json!({"request_id": r, "topic": "No user"})));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": "not-a-uuid", "topic": "Bad user"}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": "Zero", "num_lessons": 0}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": "Many", "num_lessons": 21}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": "Typed", "num_lessons": "four"}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": "   "}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": "x".repeat(201)}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": 7}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": "Lang", "language": "not a language!"}),
    ));
    bodies.push(with_id(
        &|r| json!({"request_id": r, "user_id": user, "topic": "Path", "source_filter": "../etc"}),
    ));
    bodies.push(with_id(&|r| json!({"request_id": r, "user_id": user})));
    assert_eq!(bodies.len(), 20);
    bodies
}

#[actix_rt::test]
async fn malformed_messages_are_dead_lettered_with_a_reason_and_valid_ones_complete() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::spawn(Overrides::default().amqp()).await;
    let queues = app.queues();
    let bad = malformed();
    let mut valid_ids = HashSet::new();
    let error_ids: HashSet<String> = bad.iter().filter_map(|(_, id)| id.clone()).collect();
    for (i, (body, _)) in bad.iter().enumerate() {
        let request_id = Uuid::new_v4();
        valid_ids.insert(request_id.to_string());
        queues
            .publish(
                &request(Uuid::new_v4(), request_id, &format!("Valid {i}"), 1),
                None,
                None,
            )
            .await;
        queues.publish(body, None, None).await;
    }

    wait_for_events(
        &app.db.store,
        "CourseCompleted",
        20,
        Duration::from_secs(120),
    )
    .await;
    eventually("20 dead letters", Duration::from_secs(30), || async {
        (queues.count(&queues.dead()).await >= 20).then_some(())
    })
    .await;
    // Every reply has gone out: 20 accepted, 20 success, one error per readable id.
    let expected_replies = 40 + error_ids.len() as u32;
    eventually("every reply", Duration::from_secs(30), || async {
        (queues.count(queues.responses()).await >= expected_replies).then_some(())
    })
    .await;
    let status = app.application().amqp_status().unwrap().snapshot();
    app.stop().await;
    let queues = app.queues();

    assert!(status.healthy(), "the consumer carried on: {status:?}");
    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 20);
    assert_eq!(count_events(&app.db.store, "CourseCompleted").await, 20);
    let dead = queues.drain(&queues.dead()).await;
    assert_eq!(dead.len(), 20);
    let mut dead_bodies = Vec::new();
    for letter in &dead {
        let headers = letter.delivery.properties.headers().clone().unwrap();
        let reason = match headers.inner().get(ERROR_HEADER) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("no {ERROR_HEADER} header: {other:?}"),
        };
        assert!(!reason.is_empty());
        dead_bodies.push((letter.delivery.data.clone(), reason));
    }
    // Each dead letter is one of the malformed messages, unchanged.
    for (body, _) in &bad {
        assert!(dead_bodies.iter().any(|(b, _)| b == body));
    }
    let reason_of = |body: &[u8]| {
        dead_bodies
            .iter()
            .find(|(b, _)| b == body)
            .map(|(_, r)| r.clone())
            .unwrap()
    };
    assert!(reason_of(&bad[0].0).contains("empty"));
    assert!(reason_of(&bad[1].0).contains("UTF-8"));
    assert!(reason_of(&bad[2].0).contains("bytes"));
    assert!(reason_of(&bad[4].0).contains("array"));
    assert!(reason_of(&bad[9].0).contains("user_id is required"));

    let replies = replies_in(&queues.drain(queues.responses()).await);
    let by_status = |s: ReplyStatus| -> HashSet<String> {
        replies
            .iter()
            .filter(|r| r.status == s)
            .filter_map(|r| r.request_id.clone())
            .collect()
    };
    assert_eq!(by_status(ReplyStatus::Accepted), valid_ids);
    assert_eq!(by_status(ReplyStatus::Success), valid_ids);
    assert_eq!(by_status(ReplyStatus::Error), error_ids);
    assert!(replies
        .iter()
        .filter(|r| r.status == ReplyStatus::Error)
        .all(|r| r.error.as_deref().is_some_and(|e| !e.is_empty())));
}

/// Restarts RabbitMQ's application when dropped, so a failing test never
/// leaves the broker down for the others.
struct BrokerStopped;

impl BrokerStopped {
    fn stop_app() -> Self {
        rabbitmqctl("stop_app");
        Self
    }
}

impl Drop for BrokerStopped {
    fn drop(&mut self) {
        rabbitmqctl("start_app");
    }
}

fn rabbitmqctl(command: &str) {
    let status = Process::new("rabbitmqctl")
        .arg(command)
        .stdout(Stdio::null())
        .status()
        .expect("rabbitmqctl runs (the tests need root on the broker's machine)");
    assert!(status.success(), "rabbitmqctl {command}");
}

#[actix_rt::test]
async fn a_broker_restart_mid_stream_loses_no_request_and_duplicates_none() {
    let _alone = BROKER.write().await;
    const N: usize = 40;
    // Acks held back a while, so that the restart catches requests that are
    // recorded but not yet acked: the broker redelivers them.
    let mut app = TestApp::spawn(
        Overrides::default()
            .amqp()
            .set("--amqp-test-pause-before-ack-ms", 300),
    )
    .await;
    let status = app.application().amqp_status().unwrap();
    let mut ids = HashSet::new();
    let mut publish = |i: usize| {
        let request_id = Uuid::new_v4();
        ids.insert(request_id.to_string());
        request(Uuid::new_v4(), request_id, &format!("Restart {i}"), 2)
    };
    let first: Vec<_> = (0..N / 2).map(&mut publish).collect();
    let second: Vec<_> = (N / 2..N).map(&mut publish).collect();
    for body in &first {
        app.queues().publish(body, None, None).await;
    }
    wait_for_events(&app.db.store, "CourseRequested", 5, Duration::from_secs(30)).await;

    {
        let _stopped = tokio::task::spawn_blocking(BrokerStopped::stop_app)
            .await
            .unwrap();
        eventually(
            "the consumer to notice",
            Duration::from_secs(30),
            || async {
                (status.snapshot().consumer.state == AmqpState::Reconnecting).then_some(())
            },
        )
        .await;
        // The broker stays down a while.
        tokio::time::sleep(Duration::from_secs(1)).await;
        // `_stopped` starts the broker again here.
    }
    app.queues_mut().reopen().await;
    let queues = app.queues();
    for body in &second {
        queues.publish(body, None, None).await;
    }

    wait_for_events(
        &app.db.store,
        "CourseCompleted",
        N as i64,
        Duration::from_secs(180),
    )
    .await;
    let mut successes = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while successes.len() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "a success reply for every request"
        );
        for reply in replies_in(&queues.drain(queues.responses()).await) {
            if reply.status == ReplyStatus::Success {
                successes.insert(reply.request_id.unwrap());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snapshot = status.snapshot();
    app.stop().await;

    assert_eq!(successes, ids);
    assert_eq!(
        count_events(&app.db.store, "CourseRequested").await,
        N as i64
    );
    assert_eq!(
        count_events(&app.db.store, "CourseCompleted").await,
        N as i64
    );
    assert_eq!(snapshot.consumer.state, AmqpState::Connected);
    assert!(snapshot.consumer.last_error.is_some());
    let queues = app.queues();
    assert_eq!(queues.count(&queues.dead()).await, 0);
}

#[actix_rt::test]
async fn a_server_killed_before_acking_gets_the_request_redelivered_and_makes_one_course() {
    let _shared = BROKER.read().await;
    let mut app = TestApp::new(
        Overrides::default()
            .amqp()
            .set("--amqp-test-pause-before-ack-ms", 600_000)
            .set("--course-lease-secs", 2),
    )
    .await;
    let (user, request_id) = (Uuid::new_v4(), Uuid::new_v4());
    app.start_process();
    app.queues()
        .publish(&request(user, request_id, "Crash landing", 2), None, None)
        .await;
    // Committed, but the ack waits (the test pause): kill it now.
    wait_for_events(&app.db.store, "CourseRequested", 1, Duration::from_secs(60)).await;
    app.kill();

    app.set("--amqp-test-pause-before-ack-ms", 0);
    app.start_process();
    wait_for_events(&app.db.store, "CourseCompleted", 1, Duration::from_secs(60)).await;
    let mut statuses: HashMap<ReplyStatus, usize> = HashMap::new();
    let count = |statuses: &mut HashMap<ReplyStatus, usize>, messages: Vec<BasicGetMessage>| {
        for reply in replies_in(&messages) {
            assert_eq!(reply.request_id, Some(request_id.to_string()));
            *statuses.entry(reply.status).or_default() += 1;
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let queues = app.queues();
        count(&mut statuses, queues.drain(queues.responses()).await);
        if statuses.contains_key(&ReplyStatus::Success) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the success reply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A clean stop (SIGTERM): a message still unacked would go back to the
    // queue, and every reply sent is in the response queue.
    app.stop().await;
    let queues = app.queues();
    count(&mut statuses, queues.drain(queues.responses()).await);

    assert_eq!(count_events(&app.db.store, "CourseRequested").await, 1);
    assert_eq!(count_events(&app.db.store, "CourseCompleted").await, 1);
    let events = app
        .db
        .store
        .read_stream(course_id(user, request_id))
        .await
        .unwrap();
    assert_eq!(events.last().unwrap().event_type, "CourseCompleted");
    assert_eq!(
        queues.count(queues.requests()).await,
        0,
        "the redelivered request was acked"
    );
    assert_eq!(queues.count(&queues.dead()).await, 0);
    // The first process may have sent replies and died before checkpointing
    // them: replies are at-least-once, courses exactly once.
    assert!(statuses.get(&ReplyStatus::Success) >= Some(&1));
    assert!(!statuses.contains_key(&ReplyStatus::Error));
}
