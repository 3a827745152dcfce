//! Generation end to end: the real scheduler, course actors and OpenAI
//! client against a fake LLM server, on real PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coursegen::actors::SchedulerSettings;
use coursegen::app::{Application, ServeArgs};
use coursegen::domain::{
    Command, Course, CourseEvent, CourseRequest, CourseStatus, RawCourseRequest,
};
use coursegen::llm::{LlmSettings, Provider};
use coursegen::store::courses::{self, Submitted};
use coursegen::store::{EventStore, Metadata};
use uuid::Uuid;

use crate::fake_llm::{error, Asked, FakeLlm, Script};
use crate::helpers::{eventually, ServeProcess, TestDb};

fn serve_args(llm: &FakeLlm, max_concurrency: usize) -> ServeArgs {
    ServeArgs {
        llm: LlmSettings {
            llm_provider: Some(Provider::Openai),
            openai_base_url: llm.base_url(),
            openai_api_key: Some("sk-test".into()),
            llm_model: Some("gpt-test".into()),
            llm_max_concurrency: max_concurrency,
            llm_timeout_secs: 5,
            llm_max_retries: 3,
            offline_latency_ms: 0,
        },
        scheduler: SchedulerSettings {
            max_active_courses: None,
            course_lease_secs: 5.0,
            scheduler_poll_secs: 0.2,
        },
        shutdown_grace_secs: 5.0,
        http: Default::default(),
        amqp: Default::default(),
    }
}

async fn submit(store: &EventStore, topic: &str, lessons: i64) -> Uuid {
    let request = CourseRequest::parse(RawCourseRequest {
        request_id: Some(Uuid::new_v4().to_string()),
        user_id: Some(Uuid::new_v4().to_string()),
        topic: Some(topic.into()),
        num_lessons: Some(lessons),
        ..Default::default()
    })
    .unwrap();
    let (id, outcome) = courses::submit(store, request, Metadata::producer("test"))
        .await
        .unwrap();
    assert!(matches!(outcome, Submitted::Created(_)));
    id
}

async fn load(store: &EventStore, id: Uuid) -> Course {
    courses::load(store, id).await.unwrap().0
}

/// Waits until the course is READY or FAILED.
async fn finished(store: &EventStore, id: Uuid, timeout: Duration) -> Course {
    eventually("the course to finish", timeout, || async {
        let course = load(store, id).await;
        matches!(
            course.status,
            Some(CourseStatus::Ready | CourseStatus::Failed)
        )
        .then_some(course)
    })
    .await
}

async fn event_types(store: &EventStore, id: Uuid) -> Vec<String> {
    store
        .read_stream(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

fn outline(topic: &str) -> Asked {
    Asked::Outline {
        topic: topic.into(),
    }
}

fn lesson(topic: &str, number: u32) -> Asked {
    Asked::Lesson {
        topic: topic.into(),
        number,
    }
}

#[actix_rt::test]
async fn a_four_lesson_course_takes_one_outline_call_and_four_lesson_calls() {
    let db = TestDb::new().await;
    let llm = FakeLlm::start(Script::default()).await;
    let app = Application::build(db.store.clone(), &serve_args(&llm, 4)).unwrap();
    let id = submit(&db.store, "Cell biology", 4).await;

    let course = finished(&db.store, id, Duration::from_secs(30)).await;
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Ready));
    assert_eq!(
        event_types(&db.store, id).await,
        [
            "CourseRequested",
            "GenerationStarted",
            "OutlineGenerated",
            "LessonGenerated",
            "LessonGenerated",
            "LessonGenerated",
            "LessonGenerated",
            "CourseCompleted"
        ]
    );
    let counts = llm.counts();
    assert_eq!(counts.get(&outline("Cell biology")), Some(&1));
    for n in 1..=4 {
        assert_eq!(
            counts.get(&lesson("Cell biology", n)),
            Some(&1),
            "lesson {n}"
        );
    }
    assert_eq!(llm.requests(), 5);
    // Token usage is recorded per step and summed on completion.
    let events = db.store.read_stream(id).await.unwrap();
    let CourseEvent::CourseCompleted(done) = events.last().unwrap().to_course_event().unwrap()
    else {
        panic!("last event is not CourseCompleted")
    };
    assert_eq!(done.usage.total_tokens, 5 * 150);
    // The work queue is empty again.
    let left: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM course_work", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[actix_rt::test]
async fn a_rate_limited_call_is_retried_after_retry_after() {
    let db = TestDb::new().await;
    let llm = FakeLlm::start(Script {
        first: vec![error(429, "rate_limit_exceeded").insert_header("Retry-After", "1")],
        ..Script::default()
    })
    .await;
    let app = Application::build(db.store.clone(), &serve_args(&llm, 4)).unwrap();
    let id = submit(&db.store, "Rates", 2).await;
    let course = finished(&db.store, id, Duration::from_secs(30)).await;
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Ready));
    let arrivals = llm.arrivals();
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_millis(950),
        "{:?}",
        arrivals[1] - arrivals[0]
    );
    assert_eq!(llm.counts().get(&outline("Rates")), Some(&2));
}

#[actix_rt::test]
async fn server_errors_then_success_complete_the_course() {
    let db = TestDb::new().await;
    let llm = FakeLlm::start(Script {
        first: vec![
            error(500, "server_error"),
            error(502, "bad_gateway"),
            error(503, "overloaded"),
        ],
        ..Script::default()
    })
    .await;
    let app = Application::build(db.store.clone(), &serve_args(&llm, 4)).unwrap();
    let id = submit(&db.store, "Flaky", 1).await;
    let course = finished(&db.store, id, Duration::from_secs(60)).await;
    app.stop().await;
    assert_eq!(course.status, Some(CourseStatus::Ready));
    assert_eq!(llm.counts().get(&outline("Flaky")), Some(&4));
}

#[actix_rt::test]
async fn a_rejected_api_key_fails_the_course_without_retrying() {
    let db = TestDb::new().await;
    let llm = FakeLlm::start(Script {
        always: Some(error(401, "invalid_api_key")),
        ..Script::default()
    })
    .await;
    let app = Application::build(db.store.clone(), &serve_args(&llm, 4)).unwrap();
    let id = submit(&db.store, "Locked out", 2).await;
    let course = finished(&db.store, id, Duration::from_secs(30)).await;
    // Give a wrongly retrying client the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Failed));
    let failure = course.failure.unwrap();
    assert_eq!(failure.step, "outline");
    assert!(!failure.retryable);
    assert!(failure.error.contains("401"), "{}", failure.error);
    assert_eq!(llm.requests(), 1);
}

#[actix_rt::test]
async fn a_retried_course_resumes_at_the_first_missing_step() {
    let db = TestDb::new().await;
    let mut failing_lessons = HashMap::new();
    failing_lessons.insert(2, error(400, "invalid_request_error"));
    let broken = FakeLlm::start(Script {
        failing_lessons,
        ..Script::default()
    })
    .await;
    let app = Application::build(db.store.clone(), &serve_args(&broken, 4)).unwrap();
    let id = submit(&db.store, "Second chance", 3).await;
    let course = finished(&db.store, id, Duration::from_secs(30)).await;
    app.stop().await;
    assert_eq!(course.status, Some(CourseStatus::Failed));
    assert_eq!(course.failure.as_ref().unwrap().step, "lesson 2");

    // The model is fixed; the user retries.
    let fixed = FakeLlm::start(Script::default()).await;
    let app = Application::build(db.store.clone(), &serve_args(&fixed, 4)).unwrap();
    courses::execute(
        &db.store,
        id,
        Command::Retry { reason: None },
        &Metadata::producer("test"),
    )
    .await
    .unwrap();
    let course = finished(&db.store, id, Duration::from_secs(30)).await;
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Ready));
    assert_eq!(course.attempt, 2);
    let counts = fixed.counts();
    assert_eq!(
        counts.get(&outline("Second chance")),
        None,
        "outline redone"
    );
    assert_eq!(
        counts.get(&lesson("Second chance", 1)),
        None,
        "lesson 1 redone"
    );
    assert_eq!(counts.get(&lesson("Second chance", 2)), Some(&1));
    assert_eq!(counts.get(&lesson("Second chance", 3)), Some(&1));
}

#[actix_rt::test]
async fn llm_calls_in_flight_never_exceed_the_cap() {
    const CAP: usize = 3;
    const DELAY: Duration = Duration::from_millis(300);
    let db = TestDb::new().await;
    let llm = FakeLlm::start(Script {
        delay: DELAY,
        ..Script::default()
    })
    .await;
    let app = Application::build(db.store.clone(), &serve_args(&llm, CAP)).unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(submit(&db.store, &format!("Capped {i}"), 2).await);
    }
    for id in ids {
        assert_eq!(
            finished(&db.store, id, Duration::from_secs(60))
                .await
                .status,
            Some(CourseStatus::Ready)
        );
    }
    app.stop().await;

    // Every answer takes DELAY, so the requests in flight when one arrives
    // are those that arrived less than DELAY before it.
    let arrivals = llm.arrivals();
    let window = DELAY - Duration::from_millis(30);
    let peak = arrivals
        .iter()
        .map(|t| {
            arrivals
                .iter()
                .filter(|u| *u <= t && *t - **u < window)
                .count()
        })
        .max()
        .unwrap();
    assert_eq!(arrivals.len(), 8 * 3);
    assert_eq!(peak, CAP, "peak of LLM calls in flight");
}

/// A `coursegen serve` subprocess generating with the fake LLM.
fn serve(db: &TestDb, llm: &FakeLlm, lease_secs: &str) -> ServeProcess {
    ServeProcess::start(
        db,
        &[
            ("LLM_PROVIDER", "openai".into()),
            ("OPENAI_BASE_URL", llm.base_url()),
            ("OPENAI_API_KEY", "sk-test".into()),
            ("LLM_MODEL", "gpt-test".into()),
            ("LLM_MAX_CONCURRENCY", "4".into()),
            ("COURSE_LEASE_SECS", lease_secs.into()),
        ],
    )
}

#[actix_rt::test]
async fn a_killed_server_resumes_without_redoing_recorded_lessons() {
    let db = TestDb::new().await;
    let mut slow_lessons = HashMap::new();
    slow_lessons.insert(3, Duration::from_secs(2));
    let llm = FakeLlm::start(Script {
        slow_lessons,
        ..Script::default()
    })
    .await;
    let id = submit(&db.store, "Crash course", 4).await;
    let mut first = serve(&db, &llm, "2");
    eventually(
        "lesson 2 to be recorded",
        Duration::from_secs(60),
        || async {
            load(&db.store, id)
                .await
                .lessons_done
                .contains(&2)
                .then_some(())
        },
    )
    .await;
    first.kill(); // SIGKILL, mid-way through lesson 3
    assert!(!load(&db.store, id).await.lessons_done.contains(&3));

    let _second = serve(&db, &llm, "2");
    let course = finished(&db.store, id, Duration::from_secs(60)).await;
    assert_eq!(course.status, Some(CourseStatus::Ready));
    let counts = llm.counts();
    assert_eq!(counts.get(&outline("Crash course")), Some(&1));
    assert_eq!(counts.get(&lesson("Crash course", 1)), Some(&1));
    assert_eq!(counts.get(&lesson("Crash course", 2)), Some(&1));
    assert!(counts.contains_key(&lesson("Crash course", 3)));
    assert_eq!(counts.get(&lesson("Crash course", 4)), Some(&1));
    let lessons = event_types(&db.store, id)
        .await
        .iter()
        .filter(|t| *t == "LessonGenerated")
        .count();
    assert_eq!(lessons, 4);
}

#[actix_rt::test]
async fn two_servers_on_one_database_request_every_step_exactly_once() {
    const COURSES: usize = 50;
    let db = TestDb::new().await;
    let llm = FakeLlm::start(Script {
        delay: Duration::from_millis(10),
        ..Script::default()
    })
    .await;
    let _a = serve(&db, &llm, "30");
    let _b = serve(&db, &llm, "30");
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..COURSES {
        ids.push(submit(&db.store, &format!("Shared {i}"), 2).await);
    }
    for id in &ids {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        assert_eq!(
            finished(&db.store, *id, left).await.status,
            Some(CourseStatus::Ready)
        );
    }
    let counts = llm.counts();
    assert_eq!(counts.len(), COURSES * 3);
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "asked more than once: {repeated:?}");
}
