//! `GET /courses/{id}/progress` (Server-Sent Events): every step of a
//! course in order, and what idle streams cost the database.

use std::time::Duration;

use coursegen::bench::realistic_lesson;
use coursegen::domain::{CourseCompleted, CourseEvent, LessonPlan, OutlineGenerated, TokenUsage};
use coursegen::store::{Metadata, NewEvent};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp, JWT_SECRET};
use crate::fake_llm::Script;
use crate::helpers::TestDb;

/// A service whose model does not answer within the test: the course's
/// actor starts it (GENERATING) and then waits, so the test writes the
/// later steps itself, when it wants.
async fn service_with_a_silent_model() -> TestApp {
    TestApp::spawn(
        Overrides::default()
            .fake_llm(Script {
                delay: Duration::from_secs(3600),
                ..Script::default()
            })
            .set("--llm-timeout-secs", 7200)
            .set("--shutdown-grace-secs", 0),
    )
    .await
}

fn token(user: Uuid) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": user, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Requests a course of two lessons; its id.
async fn request_course(app: &TestApp, token: &str) -> Uuid {
    let r = app
        .post("/api/v1/courses/generate", token)
        .json(&json!({"request_id": Uuid::new_v4(), "topic": "Tides", "num_lessons": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: Value = r.json().await.unwrap();
    body["course_id"].as_str().unwrap().parse().unwrap()
}

/// The `progress` events of one open stream, one at a time.
struct ProgressStream {
    response: reqwest::Response,
    buffer: String,
}

impl ProgressStream {
    async fn open(app: &TestApp, id: Uuid, token: &str) -> Self {
        let response = app
            .get(&format!("/api/v1/courses/{id}/progress"), token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next progress message; `None` once the stream has ended.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                if message.starts_with(':') {
                    continue; // a keep-alive
                }
                let data = message
                    .strip_prefix("event: progress\ndata: ")
                    .unwrap_or_else(|| panic!("a progress event, not {message:?}"));
                return Some(serde_json::from_str(data.trim_end()).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.response.chunk())
                .await
                .expect("the stream to say something within 30 s")
                .unwrap();
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => {
                    assert!(self.buffer.is_empty(), "a cut message: {:?}", self.buffer);
                    return None;
                }
            }
        }
    }
}

fn progress(id: Uuid, status: &str, done: u32, total: u32) -> Value {
    json!({
        "course_id": id, "status": status, "lessons_generated": done,
        "total_lessons": total, "error": null,
    })
}

/// Reads the stream of a just requested course until it shows GENERATING
/// (the actor started it and is waiting for the model).
async fn until_generating(stream: &mut ProgressStream, id: Uuid) {
    let first = stream.next().await.unwrap();
    if first == progress(id, "QUEUED", 0, 2) {
        assert_eq!(stream.next().await, Some(progress(id, "GENERATING", 0, 2)));
    } else {
        assert_eq!(first, progress(id, "GENERATING", 0, 2));
    }
}

#[actix_rt::test]
async fn a_progress_stream_shows_every_step_in_order_and_ends_at_ready() {
    let mut app = service_with_a_silent_model().await;
    let token = token(Uuid::new_v4());
    let id = request_course(&app, &token).await;
    let mut stream = ProgressStream::open(&app, id, &token).await;
    until_generating(&mut stream, id).await;

    // Each step is appended only once the stream showed the one before:
    // none can be merged with the next, so each must be shown.
    let outline: CourseEvent = OutlineGenerated {
        title: "Tides".into(),
        description: "Why the sea comes and goes".into(),
        lessons: (1..=3)
            .map(|number| LessonPlan {
                number,
                title: format!("Lesson {number}"),
                concepts: vec![],
                objectives: vec![],
            })
            .collect(),
        model: "test".into(),
        usage: TokenUsage::default(),
        ..Default::default()
    }
    .into();
    let completed: CourseEvent = CourseCompleted {
        total_lessons: 3,
        usage: TokenUsage::default(),
    }
    .into();
    let steps = [
        (outline, progress(id, "GENERATING", 0, 3)),
        (realistic_lesson(1), progress(id, "GENERATING", 1, 3)),
        (realistic_lesson(2), progress(id, "GENERATING", 2, 3)),
        (realistic_lesson(3), progress(id, "GENERATING", 3, 3)),
        (completed, progress(id, "READY", 3, 3)),
    ];
    // CourseRequested and GenerationStarted are versions 0 and 1.
    for (version, (event, shown)) in (2u32..).zip(steps) {
        app.db
            .store
            .append(
                id,
                version,
                &[NewEvent::from(&event)],
                &Metadata::producer("test"),
            )
            .await
            .unwrap();
        assert_eq!(stream.next().await, Some(shown));
    }
    assert_eq!(stream.next().await, None, "the stream ends after READY");
    app.stop().await;
}

/// Transactions the database counted (every statement outside a
/// transaction is one) over `window`, plus the second or so PostgreSQL
/// takes to publish what its backends counted. It first waits that long
/// too, so that what was done just before (opening the streams) is
/// published before the window starts instead of inside it.
async fn transactions_over(db: &TestDb, window: Duration) -> i64 {
    let publish = Duration::from_millis(1500);
    tokio::time::sleep(publish).await;
    let client = db.client().await;
    let count = || async {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        client
            .query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database
                 WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = count().await;
    tokio::time::sleep(window + publish).await;
    count().await - before
}

#[actix_rt::test]
async fn idle_progress_streams_cost_the_database_nothing() {
    let mut app = service_with_a_silent_model().await;
    let token = token(Uuid::new_v4());
    let id = request_course(&app, &token).await;
    let mut first = ProgressStream::open(&app, id, &token).await;
    until_generating(&mut first, id).await;
    const STREAMS: usize = 100;
    let window = Duration::from_secs(3);

    // The service's own polling (projections, scheduler, leases).
    let baseline = transactions_over(&app.db, window).await;
    let mut streams = vec![first];
    for _ in 1..STREAMS {
        let mut stream = ProgressStream::open(&app, id, &token).await;
        assert_eq!(stream.next().await, Some(progress(id, "GENERATING", 0, 2)));
        streams.push(stream);
    }
    let open = transactions_over(&app.db, window).await;
    // A stream polling on its own would cost several a second: hundreds
    // each window for all of them.
    assert!(
        open < baseline + STREAMS as i64,
        "{STREAMS} idle streams: {open} transactions in a window, {baseline} without them"
    );
    drop(streams);
    app.stop().await;
}
