//! Deleting a course stops its generation, and restoring it resumes at the
//! step where it stopped: no model call after the delete beyond the one in
//! flight, no step done twice.

use std::time::Duration;

use coursegen::domain::{CourseEvent, CourseStatus};
use coursegen::store::courses;
use coursegen::store::EventStore;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{Overrides, TestApp, JWT_SECRET};
use crate::fake_llm::{Asked, Gate, Script};
use crate::helpers::eventually;

fn token(user: Uuid) -> String {
    let claims = json!({"sub": user, "exp": chrono::Utc::now().timestamp() + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

impl TestApp {
    /// Requests a course over HTTP; returns its id.
    async fn request_course(&self, token: &str, topic: &str, lessons: u8) -> Uuid {
        let r = self
            .post("/api/v1/courses/generate", token)
            .json(&json!({"topic": topic, "num_lessons": lessons}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: Value = r.json().await.unwrap();
        body["course_id"].as_str().unwrap().parse().unwrap()
    }

    /// `DELETE /courses/{id}` or `POST /courses/{id}/restore`, expecting 200.
    async fn delete_or_restore(&self, token: &str, id: Uuid, restore: bool) {
        let r = if restore {
            self.post(&format!("/api/v1/courses/{id}/restore"), token)
        } else {
            self.client
                .delete(self.url(&format!("/api/v1/courses/{id}?reason=changed+my+mind")))
                .bearer_auth(token)
        }
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
}

async fn events(store: &EventStore, id: Uuid) -> Vec<CourseEvent> {
    store
        .read_stream(id)
        .await
        .unwrap()
        .iter()
        .map(|e| e.to_course_event().unwrap())
        .collect()
}

fn lessons_recorded(events: &[CourseEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            CourseEvent::LessonGenerated(l) => Some(l.number),
            _ => None,
        })
        .collect()
}

async fn work_rows(store: &EventStore, id: Uuid) -> i64 {
    store
        .pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM course_work WHERE course_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

async fn status(store: &EventStore, id: Uuid) -> Option<CourseStatus> {
    courses::load(store, id).await.unwrap().0.status
}

#[actix_rt::test]
async fn deleting_a_generating_course_stops_its_model_calls_and_restore_resumes_it() {
    let gate = Gate::on_lesson(2);
    let mut app = TestApp::spawn(
        Overrides::default()
            .fake_llm(Script {
                gate: Some(gate.clone()),
                ..Script::default()
            })
            // The held call must not time out and be retried meanwhile.
            .set("--llm-timeout-secs", 300),
    )
    .await;
    let store = app.db.store.clone();
    let owner = token(Uuid::new_v4());
    let id = app.request_course(&owner, "Tides", 4).await;

    // Lesson 2 is being written (its call is held in flight): delete now.
    eventually("lesson 2 in flight", Duration::from_secs(60), || async {
        gate.held().then_some(())
    })
    .await;
    app.delete_or_restore(&owner, id, false).await;
    let asked_before_the_delete = app.llm().requests();
    assert_eq!(asked_before_the_delete, 3, "outline, lessons 1 and 2");
    assert_eq!(
        work_rows(&store, id).await,
        0,
        "a deleted course is no work"
    );
    gate.open();

    // The answer in flight is recorded (it is paid for), then the actor stops.
    eventually("the actor to stop", Duration::from_secs(60), || async {
        let recorded = lessons_recorded(&events(&store, id).await);
        (recorded.contains(&2) && app.application().active_courses().await == 0).then_some(())
    })
    .await;
    assert_eq!(lessons_recorded(&events(&store, id).await), [1, 2]);
    assert_eq!(
        app.llm().requests(),
        asked_before_the_delete,
        "no model call after the delete"
    );
    let history = events(&store, id).await;
    assert!(
        !history
            .iter()
            .any(|e| matches!(e, CourseEvent::CourseFailed(_))),
        "{history:?}"
    );
    assert_eq!(status(&store, id).await, Some(CourseStatus::Generating));

    // Restored, it resumes at lesson 3 and asks for nothing twice.
    app.delete_or_restore(&owner, id, true).await;
    eventually(
        "the course to be READY",
        Duration::from_secs(60),
        || async { (status(&store, id).await == Some(CourseStatus::Ready)).then_some(()) },
    )
    .await;
    app.stop().await;

    let history = events(&store, id).await;
    assert_eq!(lessons_recorded(&history), [1, 2, 3, 4]);
    let started = history
        .iter()
        .filter(|e| matches!(e, CourseEvent::GenerationStarted(_)))
        .count();
    assert_eq!(started, 1);
    let counts = app.llm().counts();
    assert_eq!(app.llm().requests(), 5, "{counts:?}");
    assert_eq!(
        counts.get(&Asked::Outline {
            topic: "Tides".into()
        }),
        Some(&1)
    );
    for number in 1..=4 {
        let asked = Asked::Lesson {
            topic: "Tides".into(),
            number,
        };
        assert_eq!(counts.get(&asked), Some(&1), "lesson {number}");
    }
}

#[actix_rt::test]
async fn a_course_deleted_while_queued_is_never_claimed_until_restored() {
    let mut app = TestApp::new(Overrides::default().fake_llm(Script::default())).await;
    let store = app.db.store.clone();
    let user = Uuid::new_v4();
    // Requested and deleted before any scheduler runs.
    let deleted = submit_and_delete(&store, user, "Deleted while queued").await;
    assert_eq!(work_rows(&store, deleted).await, 0);

    app.start().await;
    let owner = token(user);
    let other = app.request_course(&owner, "Kept", 1).await;
    eventually("the other course", Duration::from_secs(60), || async {
        (status(&store, other).await == Some(CourseStatus::Ready)).then_some(())
    })
    .await;
    let history: Vec<String> = store
        .read_stream(deleted)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(history, ["CourseRequested", "CourseDeleted"]);
    assert_eq!(app.llm().requests(), 2, "only the kept course's calls");

    app.delete_or_restore(&owner, deleted, true).await;
    eventually("the restored course", Duration::from_secs(60), || async {
        (status(&store, deleted).await == Some(CourseStatus::Ready)).then_some(())
    })
    .await;
    app.stop().await;
    assert_eq!(app.llm().requests(), 4);
}

async fn submit_and_delete(store: &EventStore, user: Uuid, topic: &str) -> Uuid {
    use coursegen::domain::{Command, CourseRequest, RawCourseRequest, Reason};
    use coursegen::store::Metadata;
    let request = CourseRequest::parse(RawCourseRequest {
        request_id: Some(Uuid::new_v4().to_string()),
        user_id: Some(user.to_string()),
        topic: Some(topic.into()),
        num_lessons: Some(1),
        ..Default::default()
    })
    .unwrap();
    let (id, _) = courses::submit(store, request, Metadata::producer("test"))
        .await
        .unwrap();
    courses::execute(
        store,
        id,
        Command::Delete {
            reason: Reason::parse(Some("oops".into())).unwrap(),
        },
        &Metadata::producer("test"),
    )
    .await
    .unwrap();
    id
}

#[actix_rt::test]
async fn a_reason_too_long_or_with_control_characters_is_refused_everywhere() {
    let mut app = TestApp::spawn(Overrides::default()).await;
    let store = app.db.store.clone();
    let owner = token(Uuid::new_v4());
    let id = app.request_course(&owner, "Reasons", 1).await;
    for (reason, want) in [
        ("r".repeat(501), "at most 500 characters"),
        // A NUL is refused at the edge, before any rule.
        ("a\u{0}b".to_owned(), "NUL character"),
        ("two\nlines".to_owned(), "control characters"),
        ("esc\u{1b}[31m".to_owned(), "control characters"),
    ] {
        for retry in [false, true] {
            let path = if retry {
                format!("/api/v1/courses/{id}/retry")
            } else {
                format!("/api/v1/courses/{id}")
            };
            let request = if retry {
                app.client.post(app.url(&path))
            } else {
                app.client.delete(app.url(&path))
            };
            let r = request
                .query(&[("reason", &reason)])
                .bearer_auth(&owner)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
            let body: Value = r.json().await.unwrap();
            assert!(body["message"].as_str().unwrap().contains(want), "{body}");
        }
        if reason.contains('\0') {
            continue; // no argv holds a NUL
        }
        let cli = app.cli(&["retry", &id.to_string(), "--reason", &reason]);
        assert!(!cli.status.success());
        let stderr = String::from_utf8_lossy(&cli.stderr);
        assert!(stderr.contains(want), "{stderr}");
    }
    // Nothing was recorded for any of them.
    let kinds: Vec<String> = store
        .read_stream(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .filter(|t| t == "CourseDeleted" || t == "GenerationRetried")
        .collect();
    assert!(kinds.is_empty(), "{kinds:?}");
    app.stop().await;
}

#[actix_rt::test]
async fn the_migration_takes_courses_deleted_before_it_off_the_work_queue() {
    let app = TestApp::new(Overrides::default()).await;
    let store = app.db.store.clone();
    let deleted = submit_and_delete(&store, Uuid::new_v4(), "Deleted long ago").await;
    let restored = submit_and_delete(&store, Uuid::new_v4(), "Deleted, then restored").await;
    courses::execute(
        &store,
        restored,
        coursegen::domain::Command::Restore,
        &coursegen::store::Metadata::producer("test"),
    )
    .await
    .unwrap();
    // As an older trigger left them: both still queued.
    let client = app.db.client().await;
    client
        .execute(
            "INSERT INTO course_work (course_id) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&deleted],
        )
        .await
        .unwrap();
    assert_eq!(work_rows(&store, restored).await, 1);

    client
        .batch_execute(include_str!("../../schema/0004_course_work_deleted.sql"))
        .await
        .unwrap();
    assert_eq!(work_rows(&store, deleted).await, 0);
    assert_eq!(work_rows(&store, restored).await, 1);
}

#[actix_rt::test]
async fn a_course_deleted_between_two_steps_makes_no_further_model_call() {
    let app = TestApp::new(Overrides::default().fake_llm(Script::default())).await;
    let store = app.db.store.clone();
    // The delete lands in the very transaction that records lesson 1: after
    // that step, before the next model call, whatever the timing.
    app.db
        .client()
        .await
        .batch_execute(
            r#"CREATE FUNCTION test_delete_after_lesson_1() RETURNS trigger
               LANGUAGE plpgsql AS $$
               BEGIN
                   INSERT INTO events (stream_id, stream_version, event_type, event_version, payload, metadata)
                   VALUES (NEW.stream_id, NEW.stream_version + 1, 'CourseDeleted', 1,
                           '{"reason": "between steps"}', '{"producer": "test"}');
                   RETURN NULL;
               END
               $$;
               CREATE TRIGGER test_delete_after_lesson_1 AFTER INSERT ON events
                   FOR EACH ROW
                   WHEN (NEW.event_type = 'LessonGenerated' AND NEW.payload->>'number' = '1')
                   EXECUTE FUNCTION test_delete_after_lesson_1();"#,
        )
        .await
        .unwrap();
    let mut app = app;
    app.start().await;
    let owner = token(Uuid::new_v4());
    let id = app.request_course(&owner, "Between steps", 3).await;

    eventually("the actor to stop", Duration::from_secs(60), || async {
        let deleted = store
            .read_stream(id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.event_type == "CourseDeleted");
        (deleted && app.application().active_courses().await == 0).then_some(())
    })
    .await;
    app.stop().await;
    assert_eq!(lessons_recorded(&events(&store, id).await), [1]);
    assert_eq!(app.llm().requests(), 2, "the outline and lesson 1 only");
}

#[actix_rt::test]
async fn a_call_failing_after_the_delete_does_not_fail_the_course_and_restore_retries_it() {
    let gate = Gate::on_lesson(2);
    let mut failing_lessons = std::collections::HashMap::new();
    failing_lessons.insert(2, crate::fake_llm::error(400, "invalid_request_error"));
    let mut app = TestApp::spawn(
        Overrides::default()
            .fake_llm(Script {
                gate: Some(gate.clone()),
                failing_lessons,
                ..Script::default()
            })
            .set("--llm-timeout-secs", 300),
    )
    .await;
    let store = app.db.store.clone();
    let owner = token(Uuid::new_v4());
    let id = app.request_course(&owner, "Failing late", 2).await;
    eventually("lesson 2 in flight", Duration::from_secs(60), || async {
        gate.held().then_some(())
    })
    .await;
    app.delete_or_restore(&owner, id, false).await;
    gate.open();
    eventually("the actor to stop", Duration::from_secs(60), || async {
        (app.application().active_courses().await == 0).then_some(())
    })
    .await;
    assert_eq!(status(&store, id).await, Some(CourseStatus::Generating));

    // Restored, the step is taken again (and fails again, for real now).
    app.delete_or_restore(&owner, id, true).await;
    eventually("the course to fail", Duration::from_secs(60), || async {
        (status(&store, id).await == Some(CourseStatus::Failed)).then_some(())
    })
    .await;
    app.stop().await;
    let lesson_2 = Asked::Lesson {
        topic: "Failing late".into(),
        number: 2,
    };
    assert_eq!(app.llm().counts().get(&lesson_2), Some(&2));
}
