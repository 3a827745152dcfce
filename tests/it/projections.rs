//! Projections on real PostgreSQL: runners against a recount of the log,
//! replay, crashes mid-batch, standby takeover, poison events, waiting.

use std::sync::Arc;
use std::time::Duration;

use coursegen::bench::realistic_lesson;
use coursegen::domain::subtitles::Cue;
use coursegen::domain::{
    CourseCompleted, CourseDeleted, CourseEvent, CourseFailed, CourseMetadata,
    CourseMetadataChanged, CourseRequested, CourseRestored, Difficulty, ElementBody,
    GenerationRetried, GenerationStarted, InteractiveElement, LessonPlan, MetadataChange,
    OutlineGenerated, SourceRef, TokenUsage,
};
use coursegen::domain::{SubtitlesGenerated, SubtitlesRequested};
use coursegen::projections::recount::{difference_sql, recounts};
use coursegen::projections::{
    self, replay, start_runners_with, wait_for_position, CheckpointState, Projection,
    ProjectionError, Projections, RunnerOptions, RunnerState,
};
use coursegen::store::subscription::Notifier;
use coursegen::store::{Metadata, NewEvent, Position};
use rand::Rng;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{eventually, TestDb};

const WAIT: Duration = Duration::from_secs(60);

fn options() -> RunnerOptions {
    RunnerOptions {
        batch_size: 50,
        poll_interval: Duration::from_millis(200),
        lock_retry: Duration::from_millis(200),
        idle_check: Duration::from_millis(200),
        stop_timeout: WAIT,
    }
}

async fn start(db: &TestDb, options: RunnerOptions) -> Projections {
    let notifier = Arc::new(Notifier::start(db.config.clone()));
    start_runners_with(db.store.clone(), notifier, options)
        .await
        .expect("runners start")
}

/// A realistic course history: requested, started, outlined, some lessons,
/// then completed, failed (maybe retried) or left in flight; some deleted.
fn course_story(rng: &mut impl Rng, user: Uuid, topic: &str) -> Vec<CourseEvent> {
    let lessons: u32 = rng.gen_range(1..=3);
    let mut events: Vec<CourseEvent> = vec![CourseRequested {
        request_id: Uuid::new_v4(),
        user_id: user,
        topic: topic.to_owned(),
        grade_level: rng.gen_bool(0.5).then(|| "Grade 8".to_owned()),
        num_lessons: lessons as u8,
        language: "en".into(),
        source_filter: None,
        metadata: CourseMetadata {
            author: rng.gen_bool(0.5).then(|| "Ada".to_owned()),
            tags: if rng.gen_bool(0.5) {
                vec!["biology".into(), format!("t{}", rng.gen_range(0..3))]
            } else {
                vec![]
            },
            difficulty: rng.gen_bool(0.3).then_some(Difficulty::Advanced),
            prerequisites: if rng.gen_bool(0.3) {
                vec!["reading".into()]
            } else {
                vec![]
            },
            learning_outcomes: vec![],
        },
        ..Default::default()
    }
    .into()];
    if rng.gen_ratio(1, 5) {
        events.push(edit(rng));
    }
    let usage = TokenUsage {
        prompt_tokens: 10,
        completion_tokens: 20,
        total_tokens: 30,
        estimated: false,
    };
    events.push(
        GenerationStarted {
            attempt: 1,
            model: "offline".into(),
        }
        .into(),
    );
    if rng.gen_ratio(1, 10) {
        events.push(
            CourseFailed {
                step: "outline".into(),
                error: "timeout".into(),
                retryable: true,
            }
            .into(),
        );
        events.push(GenerationRetried { reason: None }.into());
        events.push(
            GenerationStarted {
                attempt: 2,
                model: "offline".into(),
            }
            .into(),
        );
    }
    let title = if rng.gen_bool(0.3) {
        "Cells and energy".to_owned()
    } else {
        format!("{topic} for everyone")
    };
    events.push(
        OutlineGenerated {
            retrieved: Vec::new(),
            title,
            description: format!("A short course about {topic}"),
            lessons: (1..=lessons)
                .map(|n| LessonPlan {
                    number: n,
                    title: format!("Planned lesson {n}"),
                    concepts: vec!["light".into(), format!("concept {n}")],
                    objectives: vec![format!("explain {n}")],
                })
                .collect(),
            model: "offline".into(),
            usage,
            tags: vec!["proposed".into(), "cells".into()],
            difficulty: rng.gen_bool(0.7).then_some(Difficulty::Beginner),
            learning_outcomes: vec![format!("understand {topic}")],
        }
        .into(),
    );
    let done = if rng.gen_ratio(1, 5) {
        rng.gen_range(0..lessons)
    } else {
        lessons
    };
    for n in 1..=done {
        let CourseEvent::LessonGenerated(mut lesson) = realistic_lesson(n) else {
            unreachable!()
        };
        lesson.sources.push(SourceRef {
            title: format!("Source {}", rng.gen_range(0..4)),
            url: Some("https://example.org".into()),
            cited: None,
        });
        lesson.estimated_minutes = rng.gen_range(0..30);
        lesson.elements = (0..rng.gen_range(0..4))
            .map(|i| InteractiveElement {
                id: format!("l{n}-{i}"),
                body: if i % 2 == 0 {
                    ElementBody::CodeBlock {
                        language: "rust".into(),
                        code: format!("fn main() {{ println!(\"{i}\"); }}"),
                        caption: "A program".into(),
                        expected_output: (i == 0).then(|| i.to_string()),
                    }
                } else {
                    ElementBody::MultipleChoice {
                        question: "Which?".into(),
                        options: vec!["a".into(), "b".into(), "c".into()],
                        answer_indexes: vec![0, 2],
                        explanation: String::new(),
                    }
                },
            })
            .collect();
        events.push(lesson.into());
    }
    if rng.gen_ratio(1, 3) {
        events.push(edit(rng));
    }
    // Subtitles of the lessons done, some translated (one twice: the later
    // track wins), some languages asked for.
    for n in 1..=done {
        let cue = |text: &str| Cue {
            start_ms: 0,
            end_ms: 1_500,
            text: text.into(),
        };
        let mut languages = vec!["en"];
        if rng.gen_bool(0.5) {
            languages.push("fr");
        }
        if rng.gen_ratio(1, 5) {
            languages.push("fr");
        }
        for language in languages {
            events.push(
                SubtitlesGenerated {
                    lesson: n,
                    language: language.into(),
                    cues: vec![cue(&format!("Lesson {n} in {language}"))],
                    model: (language != "en").then(|| "offline".into()),
                    usage: if language == "en" {
                        TokenUsage::default()
                    } else {
                        usage
                    },
                }
                .into(),
            );
        }
    }
    if rng.gen_ratio(1, 4) {
        events.push(
            SubtitlesRequested {
                languages: vec!["de".into(), "fr".into()],
            }
            .into(),
        );
    }
    if done == lessons {
        if rng.gen_ratio(4, 5) {
            events.push(
                CourseCompleted {
                    total_lessons: lessons,
                    usage,
                }
                .into(),
            );
        } else {
            events.push(
                CourseFailed {
                    step: "completion".into(),
                    error: "model refused".into(),
                    retryable: false,
                }
                .into(),
            );
        }
    }
    if rng.gen_ratio(1, 6) {
        events.push(CourseDeleted { reason: None }.into());
        if rng.gen_bool(0.5) {
            events.push(CourseRestored {}.into());
        }
    }
    events
}

/// A metadata edit of some of the fields.
fn edit(rng: &mut impl Rng) -> CourseEvent {
    CourseMetadataChanged {
        change: MetadataChange {
            author: rng.gen_bool(0.5).then(|| "Grace".to_owned()),
            tags: rng
                .gen_bool(0.5)
                .then(|| vec!["edited".to_owned(), format!("e{}", rng.gen_range(0..3))]),
            language: rng.gen_bool(0.3).then(|| "fr".to_owned()),
            difficulty: Some(Difficulty::Intermediate),
            prerequisites: rng.gen_bool(0.3).then(|| vec!["algebra".to_owned()]),
            learning_outcomes: rng.gen_bool(0.5).then(|| vec!["do it".to_owned()]),
        },
    }
    .into()
}

/// Appends a course's events one transaction per step, each held open for a
/// random time before it commits (so positions commit out of order).
async fn write_course_slowly(db: &TestDb, events: Vec<CourseEvent>, max_hold_ms: u64) -> Uuid {
    let stream = Uuid::new_v4();
    let mut client = db.store.pool().get().await.unwrap();
    let mut version = 0i32;
    let mut i = 0;
    while i < events.len() {
        let (step, hold) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_range(1..=2usize).min(events.len() - i),
                rng.gen_range(0..=max_hold_ms),
            )
        };
        let tx = client.transaction().await.unwrap();
        for e in &events[i..i + step] {
            let new = NewEvent::from(e);
            tx.execute(
                "INSERT INTO events (stream_id, stream_version, event_type, event_version, payload, metadata)
                 VALUES ($1, $2, $3, $4, $5, '{}')",
                &[&stream, &version, &new.event_type, &new.event_version, &new.payload],
            )
            .await
            .unwrap();
            version += 1;
        }
        tokio::time::sleep(Duration::from_millis(hold)).await;
        tx.commit().await.unwrap();
        i += step;
    }
    stream
}

/// Appends a course's events through the store, all at once.
async fn write_course(db: &TestDb, events: Vec<CourseEvent>) -> (Uuid, Position) {
    let stream = Uuid::new_v4();
    let new: Vec<NewEvent> = events.iter().map(NewEvent::from).collect();
    let appended = db
        .store
        .append(stream, 0, &new, &Metadata::producer("test"))
        .await
        .unwrap();
    (stream, appended.position)
}

async fn write_courses(db: &TestDb, n: usize) -> Position {
    let user = Uuid::new_v4();
    let mut last = Position::START;
    for i in 0..n {
        let events = course_story(&mut rand::thread_rng(), user, &format!("Topic {}", i % 5));
        last = write_course(db, events).await.1;
    }
    last
}

/// The newest committed event. Not `EventStore::head`: its horizon is
/// cluster-wide, so other tests' open transactions may hold it back.
async fn head(db: &TestDb) -> Position {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT transaction_id::text::bigint, global_position FROM events
             ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    Position {
        transaction_id: row.get(0),
        global_position: row.get(1),
    }
}

async fn wait_all(db: &TestDb, position: Position) {
    for p in Projection::ALL {
        wait_for_position(&db.store, p.name(), position, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{p}: {e}"));
    }
}

/// Asserts every projected table equals its recount from the log.
async fn assert_matches_log(db: &TestDb) {
    let client = db.client().await;
    for p in Projection::ALL {
        for r in recounts(p) {
            let diff: i64 = client
                .query_one(&difference_sql(&r, ""), &[])
                .await
                .unwrap_or_else(|e| panic!("{}: {e:?}", r.table))
                .get(0);
            if diff != 0 {
                let sql = difference_sql(&r, "");
                let live = sql.replace(
                    "SELECT (SELECT count(*) FROM (SELECT * FROM live EXCEPT ALL SELECT * FROM recount) a)\n              + (SELECT count(*) FROM (SELECT * FROM recount EXCEPT ALL SELECT * FROM live) b)",
                    "(SELECT 'live', x::text FROM (SELECT * FROM live EXCEPT ALL SELECT * FROM recount) x LIMIT 3)
                     UNION ALL (SELECT 'recount', y::text FROM (SELECT * FROM recount EXCEPT ALL SELECT * FROM live) y LIMIT 3)",
                );
                for row in client.query(&live, &[]).await.unwrap() {
                    eprintln!("{}: {}", row.get::<_, String>(0), row.get::<_, String>(1));
                }
            }
            assert_eq!(
                diff, 0,
                "{} differs from its recount by {diff} rows",
                r.table
            );
        }
    }
    let dup_slugs: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT slug FROM courses GROUP BY slug HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup_slugs, 0);
    let bad_slugs: i64 = client
        .query_one(
            "SELECT count(*) FROM courses
             WHERE slug !~ ('^' || coursegen_slug_base(coalesce(title, topic)) || '(-[0-9]+)?$')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bad_slugs, 0, "slugs derive from the title (or topic)");
}

/// A fingerprint of every row of every projected table.
async fn fingerprint(db: &TestDb) -> Vec<(String, i64, String)> {
    let client = db.client().await;
    let mut out = Vec::new();
    for p in Projection::ALL {
        for table in p.tables() {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')
                         FROM {table} t"
                    ),
                    &[],
                )
                .await
                .unwrap();
            out.push(((*table).to_owned(), row.get(0), row.get(1)));
        }
    }
    out
}

#[actix::test]
async fn projections_equal_a_recount_of_the_log_under_late_concurrent_commits() {
    let db = Arc::new(TestDb::new().await);
    let running = start(&db, options()).await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let db = db.clone();
            tokio::spawn(async move {
                let user = Uuid::new_v4();
                for i in 0..5 {
                    let events = {
                        let mut rng = rand::thread_rng();
                        course_story(&mut rng, user, &format!("Photosynthesis {}", (w + i) % 3))
                    };
                    write_course_slowly(&db, events, 30).await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let head = head(&db).await;
    wait_all(&db, head).await;
    assert_matches_log(&db).await;
    let courses: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM courses", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(courses, 40);
    for s in running.status().await {
        assert_eq!(s.state, RunnerState::Running, "{s:?}");
        assert_eq!(s.lag_events, 0, "{s:?}");
        assert_eq!(s.checkpoint, head);
        assert!(s.error.is_none());
    }
    running.stop().await;
}

#[actix::test]
async fn replay_rebuilds_exactly_the_rows_the_runners_built() {
    let db = TestDb::new().await;
    let running = start(&db, options()).await;
    let last = write_courses(&db, 30).await;
    wait_all(&db, last).await;
    let before = fingerprint(&db).await;
    // Course events only: the source library stays empty (its replay is
    // checked in tests/it/sources.rs).
    assert!(
        before
            .iter()
            .filter(|(table, _, _)| !table.starts_with("source"))
            .all(|(_, rows, _)| *rows > 0),
        "{before:?}"
    );

    let visible: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM v_course_summary", &[])
        .await
        .unwrap()
        .get(0);
    // Queries keep being answered, from the old tables, then the new ones.
    let store = db.store.clone();
    let rebuilding = tokio::spawn(async move {
        let mut reports = Vec::new();
        for p in Projection::ALL {
            reports.push(replay::replay(&store, p, false).await.unwrap());
        }
        reports
    });
    let client = db.client().await;
    let mut queries = 0;
    while !rebuilding.is_finished() {
        let n: i64 = client
            .query_one("SELECT count(*) FROM v_course_summary", &[])
            .await
            .expect("queries work during a replay")
            .get(0);
        assert_eq!(n, visible);
        queries += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(queries > 0);
    for report in rebuilding.await.unwrap() {
        // Up to the read horizon, which other tests' transactions may hold back.
        assert!(report.checkpoint <= last);
    }
    wait_all(&db, last).await;
    assert_eq!(fingerprint(&db).await, before);
    // The views point at the new tables, and the live runners carry on.
    for view in [
        "v_course_summary",
        "v_course_lessons",
        "v_lessons_full",
        "v_course_counts_by_status",
    ] {
        client
            .query_one(&format!("SELECT count(*) FROM {view}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{view}: {e}"));
    }
    let next = write_courses(&db, 5).await;
    wait_all(&db, next).await;
    assert_matches_log(&db).await;
    running.stop().await;
}

#[actix::test]
async fn a_runner_whose_connection_dies_mid_batch_applies_no_event_twice() {
    let db = TestDb::new().await;
    let last = write_courses(&db, 60).await;
    let running = start(
        &db,
        RunnerOptions {
            batch_size: 7,
            ..options()
        },
    )
    .await;
    let client = db.client().await;
    let mut kills = 0;
    for _ in 0..60 {
        let behind = projections::checkpoint(&db.store, "courses")
            .await
            .unwrap()
            .is_none_or(|c| c.position < last);
        if !behind {
            break;
        }
        let sleep_ms = rand::thread_rng().gen_range(5..60);
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        kills += client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name LIKE 'coursegen-projection-%'",
                &[],
            )
            .await
            .unwrap()
            .len();
    }
    assert!(kills > 0);
    wait_all(&db, last).await;
    assert_matches_log(&db).await;
    for s in running.status().await {
        assert!(s.error.is_none(), "{s:?}");
    }
    running.stop().await;
}

/// Takes `courses` exclusively in an open transaction, and waits until the
/// courses runner's batch waits for it inside its own transaction.
async fn hold_up_the_courses_batch<'a>(
    db: &TestDb,
    blocker: &'a mut deadpool_postgres::Object,
) -> deadpool_postgres::Transaction<'a> {
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE courses IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let client = db.client().await;
    eventually("the courses batch to wait for its table", WAIT, || async {
        client
            .query_opt(
                "SELECT 1 FROM pg_stat_activity
                 WHERE datname = current_database()
                   AND application_name = 'coursegen-projection-courses'
                   AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .map(|_| ())
    })
    .await;
    tx
}

#[actix::test]
async fn a_clean_stop_commits_the_batch_in_progress_before_it_ends() {
    let db = TestDb::new().await;
    let last = write_courses(&db, 5).await;
    let mut blocker = db.client().await;
    // One batch holds all five courses' events.
    let running = start(
        &db,
        RunnerOptions {
            batch_size: 500,
            ..options()
        },
    )
    .await;
    let held = hold_up_the_courses_batch(&db, &mut blocker).await;
    let mut stopping = std::pin::pin!(running.stop());
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut stopping)
            .await
            .is_err(),
        "the stop waits for the batch in progress"
    );
    held.rollback().await.unwrap();
    stopping.await;
    for s in running.status().await {
        assert_eq!(s.state, RunnerState::Stopped, "{s:?}");
    }
    let cp = projections::checkpoint(&db.store, "courses")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cp.position, last,
        "the batch begun before the stop is committed"
    );
    // The lock went with the stopped runner: the next one takes over at once
    // and finds nothing left to apply.
    let next = start(&db, options()).await;
    wait_all(&db, last).await;
    assert_matches_log(&db).await;
    next.stop().await;
}

#[actix::test]
async fn a_stop_aborts_a_batch_that_does_not_commit_in_time() {
    let db = TestDb::new().await;
    let last = write_courses(&db, 5).await;
    let mut blocker = db.client().await;
    let running = start(
        &db,
        RunnerOptions {
            stop_timeout: Duration::from_millis(300),
            ..options()
        },
    )
    .await;
    let held = hold_up_the_courses_batch(&db, &mut blocker).await;
    tokio::time::timeout(WAIT, running.stop())
        .await
        .expect("the stop is bounded by its timeout");
    let cp = projections::checkpoint(&db.store, "courses")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cp.position,
        Position::START,
        "the aborted batch rolled back"
    );
    held.rollback().await.unwrap();
    let next = start(&db, options()).await;
    wait_all(&db, last).await;
    assert_matches_log(&db).await;
    next.stop().await;
}

#[actix::test]
async fn a_standby_takes_over_when_the_lock_holder_dies() {
    let db = TestDb::new().await;
    let first = start(&db, RunnerOptions::default()).await;
    let p = write_courses(&db, 3).await;
    wait_all(&db, p).await;
    let second = start(&db, RunnerOptions::default()).await;
    // Each runner of the second set has tried the lock and found it held.
    eventually("the second set to stand by", WAIT, || async {
        second
            .status()
            .await
            .iter()
            .all(|s| s.state == RunnerState::Standby)
            .then_some(())
    })
    .await;
    for s in first.status().await {
        assert_eq!(s.state, RunnerState::Running, "{s:?}");
    }
    first.stop().await;
    let took_over = std::time::Instant::now();
    let p = write_courses(&db, 3).await;
    wait_all(&db, p).await;
    assert!(
        took_over.elapsed() < Duration::from_secs(5),
        "takeover took {:?}",
        took_over.elapsed()
    );
    for s in second.status().await {
        assert_eq!(s.state, RunnerState::Running, "{s:?}");
    }
    assert_matches_log(&db).await;
    second.stop().await;
}

#[actix::test]
async fn a_poison_event_stops_only_its_projection_with_a_visible_error() {
    let db = TestDb::new().await;
    let running = start(&db, options()).await;
    let before = write_courses(&db, 3).await;
    // A course whose lesson payload has the wrong shape.
    let user = Uuid::new_v4();
    let mut story = course_story(&mut rand::thread_rng(), user, "Poison");
    story.truncate(3);
    let (stream, _) = write_course(&db, story).await;
    let poison = db
        .store
        .append(
            stream,
            3,
            &[NewEvent {
                event_type: "LessonGenerated".into(),
                event_version: 2,
                payload: json!({ "number": "three", "title": 7 }),
            }],
            &Metadata::producer("test"),
        )
        .await
        .unwrap()
        .position;
    let after = write_courses(&db, 2).await;

    wait_for_position(&db.store, "course_summary", after, WAIT)
        .await
        .unwrap();
    let err = wait_for_position(&db.store, "courses", after, WAIT)
        .await
        .unwrap_err();
    match err {
        ProjectionError::Failed {
            position, error, ..
        } => {
            assert_eq!(position, poison.global_position);
            assert!(error.contains("LessonGenerated"), "{error}");
        }
        other => panic!("expected Failed, got {other}"),
    }
    let cp = projections::checkpoint(&db.store, "courses")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.state, CheckpointState::Failed);
    assert!(cp.position >= before && cp.position < poison);
    // No hot retry loop, no silent skip: the row stays put, also once more
    // events arrived (a wake-up for every runner) and the failed runner
    // came round its idle check after them.
    let marker = write_courses(&db, 1).await;
    wait_for_position(&db.store, "course_summary", marker, WAIT)
        .await
        .unwrap();
    let client = db.client().await;
    let since: chrono::DateTime<chrono::Utc> = client
        .query_one("SELECT clock_timestamp()", &[])
        .await
        .unwrap()
        .get(0);
    eventually(
        "the failed runner to look at its checkpoint again",
        WAIT,
        || async {
            client
                .query_opt(
                    "SELECT 1 FROM pg_stat_activity
                     WHERE datname = current_database()
                       AND application_name = 'coursegen-projection-courses'
                       AND state = 'idle' AND query_start > $1",
                    &[&since],
                )
                .await
                .unwrap()
                .map(|_| ())
        },
    )
    .await;
    let later = projections::checkpoint(&db.store, "courses")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(later, cp);
    let status = running.status().await;
    let courses = status.iter().find(|s| s.name == "courses").unwrap();
    assert_eq!(courses.state, RunnerState::Failed);
    assert!(courses
        .error
        .as_deref()
        .unwrap_or("")
        .contains("LessonGenerated"));
    assert!(courses.lag_events > 0);
    let summary = status.iter().find(|s| s.name == "course_summary").unwrap();
    assert_eq!(summary.state, RunnerState::Running);
    assert_eq!(summary.lag_events, 0);
    running.stop().await;
}

#[actix::test]
async fn wait_for_position_times_out_until_the_runner_gets_there() {
    let db = TestDb::new().await;
    let last = write_courses(&db, 2).await;
    // The read horizon is cluster-wide: other tests' transactions may hold it back a little.
    eventually(
        "the courses projection to lag",
        Duration::from_secs(5),
        || async {
            (projections::lag(&db.store, "courses").await.unwrap().events > 0).then_some(())
        },
    )
    .await;
    let err = wait_for_position(&db.store, "courses", last, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, ProjectionError::Timeout { .. }), "{err}");
    assert!(matches!(
        wait_for_position(&db.store, "nope", last, Duration::from_millis(10)).await,
        Err(ProjectionError::Unknown(_))
    ));
    let running = start(&db, options()).await;
    wait_for_position(&db.store, "courses", last, WAIT)
        .await
        .unwrap();
    let lag = projections::lag(&db.store, "courses").await.unwrap();
    assert_eq!(lag.events, 0);
    running.stop().await;
}

#[actix::test]
async fn a_v1_lesson_payload_is_projected_as_the_current_type() {
    let db = TestDb::new().await;
    let running = start(&db, options()).await;
    let mut story = course_story(&mut rand::thread_rng(), Uuid::new_v4(), "Old shapes");
    story.truncate(3);
    if !matches!(story[2], CourseEvent::OutlineGenerated(_)) {
        story.truncate(2);
        story.push(
            OutlineGenerated {
                title: "Old".into(),
                description: "d".into(),
                lessons: vec![],
                model: "m".into(),
                usage: TokenUsage::default(),
                ..Default::default()
            }
            .into(),
        );
    }
    let (stream, _) = write_course(&db, story).await;
    let p = db
        .store
        .append(
            stream,
            3,
            &[NewEvent {
                event_type: "LessonGenerated".into(),
                event_version: 1,
                payload: json!({
                    "number": 1,
                    "title": "From the old service",
                    "content": "# Old markdown",
                    "questions": [{"question": "Q?", "options": ["a", "b"], "correct": 1}]
                }),
            }],
            &Metadata::producer("test"),
        )
        .await
        .unwrap()
        .position;
    wait_for_position(&db.store, "courses", p, WAIT)
        .await
        .unwrap();
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT b.content_md, b.model, q.answer_index, q.explanation
             FROM lesson_bodies b JOIN lesson_checks q USING (course_id, lesson_number)
             WHERE b.course_id = $1 AND b.lesson_number = 1",
            &[&stream],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "# Old markdown");
    assert_eq!(row.get::<_, String>(1), "unknown");
    assert_eq!(row.get::<_, i32>(2), 1);
    assert_eq!(row.get::<_, String>(3), "");
    running.stop().await;
}

#[tokio::test]
async fn slug_bases_agree_between_rust_and_sql() {
    let db = TestDb::new().await;
    let client = db.client().await;
    for title in [
        "Photosynthesis",
        "  Cells & Energy: Part 2 ",
        "Physics 101",
        "2024",
        "Été à Paris",
        "日本語",
        "---",
        "A very long title that goes on and on and on and on and on and on and on and on and on and on",
        "x-1-2",
        "Grade 8 — Biology!!",
    ] {
        let sql: String = client
            .query_one("SELECT coursegen_slug_base($1)", &[&title])
            .await
            .unwrap()
            .get(0);
        assert_eq!(coursegen::projections::courses::slug_base(title), sql, "{title:?}");
    }
}

async fn slugs(db: &TestDb, streams: &[Uuid]) -> Vec<String> {
    let client = db.client().await;
    let mut out = Vec::new();
    for id in streams {
        let row = client
            .query_one("SELECT slug FROM courses WHERE id = $1", &[id])
            .await
            .unwrap();
        out.push(row.get::<_, String>(0));
    }
    out
}

/// Slugs are numbered by when a course took its base: when the first course
/// of a base moves to a title of its own, the ones after it move up, in the
/// live tables as in the recount, and a replay numbers them the same.
#[actix::test]
async fn a_course_leaving_a_slug_base_moves_the_later_ones_up() {
    let db = TestDb::new().await;
    let running = start(&db, options()).await;
    let user = Uuid::new_v4();
    let mut streams = Vec::new();
    let mut last = Position::START;
    for _ in 0..3 {
        let requested: CourseEvent = CourseRequested {
            request_id: Uuid::new_v4(),
            user_id: user,
            topic: "Volcanoes".into(),
            grade_level: None,
            num_lessons: 1,
            language: "en".into(),
            source_filter: None,
            ..Default::default()
        }
        .into();
        let (stream, position) = write_course(&db, vec![requested]).await;
        streams.push(stream);
        last = position;
    }
    wait_all(&db, last).await;
    assert_eq!(
        slugs(&db, &streams).await,
        ["volcanoes", "volcanoes-2", "volcanoes-3"]
    );

    // In a batch of its own, so the other two are not in it.
    let outline: CourseEvent = OutlineGenerated {
        title: "Lava and ash".into(),
        description: "Where volcanoes come from.".into(),
        lessons: vec![LessonPlan {
            number: 1,
            title: "Magma".into(),
            concepts: vec![],
            objectives: vec![],
        }],
        model: "offline".into(),
        usage: TokenUsage::default(),
        ..Default::default()
    }
    .into();
    let moved = db
        .store
        .append(
            streams[0],
            1,
            &[NewEvent::from(&outline)],
            &Metadata::producer("test"),
        )
        .await
        .unwrap()
        .position;
    wait_all(&db, moved).await;
    assert_eq!(
        slugs(&db, &streams).await,
        ["lava-and-ash", "volcanoes", "volcanoes-2"]
    );
    assert_matches_log(&db).await;

    for p in Projection::ALL {
        replay::replay(&db.store, p, false).await.unwrap();
    }
    assert_eq!(
        slugs(&db, &streams).await,
        ["lava-and-ash", "volcanoes", "volcanoes-2"]
    );
    assert_matches_log(&db).await;
    running.stop().await;
}

/// A projection stopped by an event it cannot apply (here a stray row an
/// operator left in `courses`) carries on from its checkpoint once the cause
/// is removed and it is resumed, and applies nothing twice.
#[actix::test]
async fn a_failed_projection_resumes_from_its_checkpoint() {
    let db = TestDb::new().await;
    let running = start(&db, options()).await;
    let before = write_courses(&db, 2).await;
    wait_all(&db, before).await;
    let stream = Uuid::new_v4();
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO courses (id, user_id, request_id, slug, slug_base, slug_transaction_id,
                                  slug_position, topic, language, status, total_lessons,
                                  created_at, updated_at)
             VALUES ($1, $1, $1, 'stray', 'stray', 0, 0, 'Stray', 'en', 'QUEUED', 1, now(), now())",
            &[&stream],
        )
        .await
        .unwrap();
    let story = course_story(&mut rand::thread_rng(), Uuid::new_v4(), "Resumed");
    let new: Vec<NewEvent> = story.iter().map(NewEvent::from).collect();
    let stuck = db
        .store
        .append(stream, 0, &new, &Metadata::producer("test"))
        .await
        .unwrap()
        .position;
    let err = wait_for_position(&db.store, "courses", stuck, WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProjectionError::Failed { error, .. } if error.contains("already requested")),
        "{err}"
    );
    // Resuming without removing the cause fails again, at the same event.
    assert!(projections::resume(&db.store, Projection::Courses.name())
        .await
        .unwrap());
    assert!(matches!(
        wait_for_position(&db.store, "courses", stuck, WAIT).await,
        Err(ProjectionError::Failed { .. })
    ));

    client
        .execute("DELETE FROM courses WHERE id = $1", &[&stream])
        .await
        .unwrap();
    assert!(projections::resume(&db.store, Projection::Courses.name())
        .await
        .unwrap());
    let after = write_courses(&db, 2).await;
    wait_all(&db, after).await;
    assert_matches_log(&db).await;
    // Resuming a healthy projection changes nothing.
    assert!(!projections::resume(&db.store, Projection::Courses.name())
        .await
        .unwrap());
    running.stop().await;
}

async fn quiz_questions(db: &TestDb, course: Uuid) -> i64 {
    db.client()
        .await
        .query_one(
            "SELECT count(*) FROM lesson_checks WHERE course_id = $1",
            &[&course],
        )
        .await
        .unwrap()
        .get(0)
}

/// A lesson generated again keeps only its new quiz: questions the new one
/// no longer has are gone, live and after a replay.
#[actix::test]
async fn a_lesson_generated_again_keeps_only_its_new_quiz() {
    let db = TestDb::new().await;
    let running = start(&db, options()).await;
    let mut story = course_story(&mut rand::thread_rng(), Uuid::new_v4(), "Requizzed");
    story.truncate(3);
    story.push(realistic_lesson(1));
    let (stream, first) = write_course(&db, story.clone()).await;
    wait_all(&db, first).await;
    assert_eq!(quiz_questions(&db, stream).await, 4);

    let CourseEvent::LessonGenerated(mut again) = realistic_lesson(1) else {
        unreachable!()
    };
    again.quiz.truncate(2);
    let again: CourseEvent = again.into();
    let second = db
        .store
        .append(
            stream,
            u32::try_from(story.len()).unwrap(),
            &[NewEvent::from(&again)],
            &Metadata::producer("test"),
        )
        .await
        .unwrap()
        .position;
    wait_all(&db, second).await;
    assert_eq!(quiz_questions(&db, stream).await, 2);
    assert_matches_log(&db).await;
    for p in Projection::ALL {
        replay::replay(&db.store, p, false).await.unwrap();
    }
    assert_eq!(quiz_questions(&db, stream).await, 2);
    assert_matches_log(&db).await;
    running.stop().await;
}

/// The runners are woken by the store's notifications, not only by their
/// poll: with an hour between polls, an append is applied within seconds
/// (also when the caller kept no handle on the notifier it passed in).
#[actix::test]
async fn runners_apply_an_append_long_before_their_poll_interval() {
    let db = TestDb::new().await;
    let hourly = RunnerOptions {
        poll_interval: Duration::from_secs(3600),
        ..options()
    };
    let running = start(&db, hourly).await;
    // Both runners have read the empty log and wait for a wake-up.
    eventually("both runners running", WAIT, || async {
        let status = running.status().await;
        status
            .iter()
            .all(|s| s.state == RunnerState::Running)
            .then_some(())
    })
    .await;
    let requested: CourseEvent = CourseRequested {
        request_id: Uuid::new_v4(),
        user_id: Uuid::new_v4(),
        topic: "Tides".into(),
        grade_level: None,
        num_lessons: 1,
        language: "en".into(),
        source_filter: None,
        ..Default::default()
    }
    .into();
    let (_, position) = write_course(&db, vec![requested]).await;
    for p in Projection::ALL {
        wait_for_position(&db.store, p.name(), position, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("{p} was not woken: {e}"));
    }
    running.stop().await;
}

#[actix::test]
async fn a_failed_replay_names_the_event_the_database_refused_not_its_batch() {
    let db = TestDb::new().await;
    write_courses(&db, 3).await;
    // A description whose search vector is over PostgreSQL's 1 MB limit:
    // it decodes, but the database refuses the row it makes.
    let user = Uuid::new_v4();
    let mut story = course_story(&mut rand::thread_rng(), user, "Too long");
    story.truncate(2);
    let (stream, _) = write_course(&db, story).await;
    let description: String = (0..150_000).map(|n| format!("w{n} ")).collect();
    let poison = db
        .store
        .append(
            stream,
            2,
            &[NewEvent::from(&CourseEvent::from(OutlineGenerated {
                title: "Too long".into(),
                description,
                lessons: vec![],
                model: "offline".into(),
                usage: TokenUsage::default(),
                ..Default::default()
            }))],
            &Metadata::producer("test"),
        )
        .await
        .unwrap()
        .position;
    let last = write_courses(&db, 2).await;
    // The read horizon is cluster-wide: other tests' open transactions may
    // hold the log back from the replay's reader a while.
    eventually("the whole log to be readable", WAIT, || async {
        let events = db
            .store
            .read_all_after(Position::START, 10_000)
            .await
            .unwrap();
        events.last().filter(|e| e.position() >= last).map(|_| ())
    })
    .await;

    let err = replay::replay(&db.store, Projection::Courses, false)
        .await
        .unwrap_err();
    match err {
        ProjectionError::ReplayFailed {
            position, error, ..
        } => {
            assert_eq!(position, poison.global_position, "{error}");
            assert!(error.contains("tsvector"), "{error}");
        }
        other => panic!("expected ReplayFailed, got {other}"),
    }
}
