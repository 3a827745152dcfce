//! Generation end to end: the real scheduler, course actors and OpenAI
//! client against a fake LLM server, on real PostgreSQL.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use coursegen::domain::{
    Command, Course, CourseEvent, CourseRequest, CourseStatus, RawCourseRequest,
};
use coursegen::store::courses::{self, Submitted};
use coursegen::store::{EventStore, Metadata};
use uuid::Uuid;

use crate::app::{Overrides, TestApp};
use crate::fake_llm::{error, Asked, Script};
use crate::helpers::eventually;

pub(crate) async fn submit(store: &EventStore, topic: &str, lessons: i64) -> Uuid {
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
pub(crate) async fn finished(store: &EventStore, id: Uuid, timeout: Duration) -> Course {
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

/// The work queue's rows (a course being generated, or waiting to be).
async fn work_left(store: &EventStore) -> i64 {
    store
        .pool()
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM course_work", &[])
        .await
        .unwrap()
        .get(0)
}

#[actix_rt::test]
async fn a_four_lesson_course_takes_one_outline_call_and_four_lesson_calls() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script::default())).await;
    let store = app.db.store.clone();
    let id = submit(&store, "Cell biology", 4).await;

    let course = finished(&store, id, Duration::from_secs(30)).await;
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Ready));
    assert_eq!(
        event_types(&store, id).await,
        [
            "CourseRequested",
            "GenerationStarted",
            "OutlineGenerated",
            "LessonGenerated",
            "LessonGenerated",
            "LessonGenerated",
            "LessonGenerated",
            "SubtitlesGenerated",
            "SubtitlesGenerated",
            "SubtitlesGenerated",
            "SubtitlesGenerated",
            "CourseCompleted"
        ]
    );
    let counts = app.llm().counts();
    assert_eq!(counts.get(&outline("Cell biology")), Some(&1));
    for n in 1..=4 {
        assert_eq!(
            counts.get(&lesson("Cell biology", n)),
            Some(&1),
            "lesson {n}"
        );
    }
    assert_eq!(app.llm().requests(), 5);
    // Token usage is recorded per step and summed on completion.
    let events = store.read_stream(id).await.unwrap();
    let CourseEvent::CourseCompleted(done) = events.last().unwrap().to_course_event().unwrap()
    else {
        panic!("last event is not CourseCompleted")
    };
    assert_eq!(done.usage.total_tokens, 5 * 150);
    // The work queue is empty again.
    assert_eq!(work_left(&store).await, 0);
}

#[actix_rt::test]
async fn a_rate_limited_call_is_retried_after_retry_after() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script {
        first: vec![error(429, "rate_limit_exceeded").insert_header("Retry-After", "1")],
        ..Script::default()
    }))
    .await;
    let id = submit(&app.db.store, "Rates", 2).await;
    let course = finished(&app.db.store, id, Duration::from_secs(30)).await;
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Ready));
    let arrivals = app.llm().arrivals();
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_millis(950),
        "{:?}",
        arrivals[1] - arrivals[0]
    );
    assert_eq!(app.llm().counts().get(&outline("Rates")), Some(&2));
}

#[actix_rt::test]
async fn server_errors_then_success_complete_the_course() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script {
        first: vec![
            error(500, "server_error"),
            error(502, "bad_gateway"),
            error(503, "overloaded"),
        ],
        ..Script::default()
    }))
    .await;
    let id = submit(&app.db.store, "Flaky", 1).await;
    let course = finished(&app.db.store, id, Duration::from_secs(60)).await;
    app.stop().await;
    assert_eq!(course.status, Some(CourseStatus::Ready));
    assert_eq!(app.llm().counts().get(&outline("Flaky")), Some(&4));
}

#[actix_rt::test]
async fn a_rejected_api_key_fails_the_course_without_retrying() {
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script {
        always: Some(error(401, "invalid_api_key")),
        ..Script::default()
    }))
    .await;
    let id = submit(&app.db.store, "Locked out", 2).await;
    let course = finished(&app.db.store, id, Duration::from_secs(30)).await;
    // The scheduler has let go of the course: nothing will drive it again.
    eventually(
        "the course to leave the work queue",
        Duration::from_secs(30),
        || async { (work_left(&app.db.store).await == 0).then_some(()) },
    )
    .await;
    // Once stopped, nothing can call the LLM any more: what it saw is final.
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Failed));
    let failure = course.failure.unwrap();
    assert_eq!(failure.step, "outline");
    assert!(!failure.retryable);
    assert!(failure.error.contains("401"), "{}", failure.error);
    assert_eq!(app.llm().requests(), 1);
    assert_eq!(
        load(&app.db.store, id).await.status,
        Some(CourseStatus::Failed),
        "nothing ran after the failure"
    );
}

#[actix_rt::test]
async fn a_retried_course_resumes_at_the_first_missing_step() {
    let mut failing_lessons = HashMap::new();
    failing_lessons.insert(2, error(400, "invalid_request_error"));
    let mut app = TestApp::spawn(Overrides::default().fake_llm(Script {
        failing_lessons,
        ..Script::default()
    }))
    .await;
    let id = submit(&app.db.store, "Second chance", 3).await;
    let course = finished(&app.db.store, id, Duration::from_secs(30)).await;
    app.stop().await;
    assert_eq!(course.status, Some(CourseStatus::Failed));
    assert_eq!(course.failure.as_ref().unwrap().step, "lesson 2");

    // The model is fixed; the user retries.
    app.replace_llm(Script::default()).await;
    app.start().await;
    courses::execute(
        &app.db.store,
        id,
        Command::Retry { reason: None },
        &Metadata::producer("test"),
    )
    .await
    .unwrap();
    let course = finished(&app.db.store, id, Duration::from_secs(30)).await;
    app.stop().await;

    assert_eq!(course.status, Some(CourseStatus::Ready));
    assert_eq!(course.attempt, 2);
    let counts = app.llm().counts();
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
    let mut app = TestApp::spawn(
        Overrides::default()
            .fake_llm(Script {
                delay: DELAY,
                ..Script::default()
            })
            .set("--llm-max-concurrency", CAP),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(submit(&app.db.store, &format!("Capped {i}"), 2).await);
    }
    for id in ids {
        assert_eq!(
            finished(&app.db.store, id, Duration::from_secs(60))
                .await
                .status,
            Some(CourseStatus::Ready)
        );
    }
    app.stop().await;

    // Every answer takes DELAY, so the requests in flight when one arrives
    // are those that arrived less than DELAY before it.
    let arrivals = app.llm().arrivals();
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

#[actix_rt::test]
async fn a_killed_server_resumes_without_redoing_recorded_lessons() {
    let mut slow_lessons = HashMap::new();
    slow_lessons.insert(3, Duration::from_secs(2));
    let mut app = TestApp::new(
        Overrides::default()
            .fake_llm(Script {
                slow_lessons,
                ..Script::default()
            })
            .set("--course-lease-secs", 2),
    )
    .await;
    let store = app.db.store.clone();
    let id = submit(&store, "Crash course", 4).await;
    app.start_process();
    eventually(
        "lesson 2 to be recorded",
        Duration::from_secs(60),
        || async {
            load(&store, id)
                .await
                .lessons_done
                .contains(&2)
                .then_some(())
        },
    )
    .await;
    app.kill(); // SIGKILL, mid-way through lesson 3
    assert!(!load(&store, id).await.lessons_done.contains(&3));

    app.start_process();
    let course = finished(&store, id, Duration::from_secs(60)).await;
    assert_eq!(course.status, Some(CourseStatus::Ready));
    let counts = app.llm().counts();
    assert_eq!(counts.get(&outline("Crash course")), Some(&1));
    assert_eq!(counts.get(&lesson("Crash course", 1)), Some(&1));
    assert_eq!(counts.get(&lesson("Crash course", 2)), Some(&1));
    assert!(counts.contains_key(&lesson("Crash course", 3)));
    assert_eq!(counts.get(&lesson("Crash course", 4)), Some(&1));
    let lessons = event_types(&store, id)
        .await
        .iter()
        .filter(|t| *t == "LessonGenerated")
        .count();
    assert_eq!(lessons, 4);
}

#[actix_rt::test]
async fn two_servers_on_one_database_request_every_step_exactly_once() {
    const COURSES: usize = 50;
    let mut app = TestApp::new(
        Overrides::default()
            .fake_llm(Script {
                delay: Duration::from_millis(10),
                ..Script::default()
            })
            .set("--course-lease-secs", 30),
    )
    .await;
    app.start_process();
    app.start_process();
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..COURSES {
        ids.push(submit(&app.db.store, &format!("Shared {i}"), 2).await);
    }
    for id in &ids {
        let left = Duration::from_secs(120).saturating_sub(started.elapsed());
        assert_eq!(
            finished(&app.db.store, *id, left).await.status,
            Some(CourseStatus::Ready)
        );
    }
    let counts = app.llm().counts();
    assert_eq!(counts.len(), COURSES * 3);
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "asked more than once: {repeated:?}");
}
