//! The fold, without a database: given these events (and these stored
//! rows), then these row changes.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::fold::{course_ids, fold, lesson_course_ids, Changes, LessonRow};
use super::LessonStatus;
use crate::domain::{
    Citation, CourseCompleted, CourseDeleted, CourseEvent, CourseFailed, CourseRequested,
    CourseRestored, CourseStatus, GenerationRetried, GenerationStarted, LessonGenerated,
    LessonPlan, LessonSection, OutlineGenerated, QuizQuestion, SourceRef, TokenUsage,
};
use crate::projections::{readable, ApplyError, Decoded};
use crate::store::Position;

const COURSE: Uuid = Uuid::from_u128(1);
const USER: Uuid = Uuid::from_u128(2);

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, second).unwrap()
}

/// Events of `COURSE` at log positions 1, 2, ..., one second apart.
fn log(events: Vec<CourseEvent>) -> Vec<Decoded> {
    events
        .into_iter()
        .zip(1..)
        .map(|(event, n)| Decoded {
            position: Position {
                transaction_id: 100 + n,
                global_position: n,
            },
            stream_id: COURSE,
            recorded_at: at(n as u32),
            event_version: event.event_version(),
            event: Ok(Some(event)),
            source: None,
        })
        .collect()
}

fn usage(total: u64) -> TokenUsage {
    TokenUsage {
        prompt_tokens: total / 2,
        completion_tokens: total - total / 2,
        total_tokens: total,
        estimated: false,
    }
}

fn requested() -> CourseEvent {
    CourseEvent::CourseRequested(CourseRequested {
        request_id: Uuid::from_u128(3),
        user_id: USER,
        topic: "Photosynthesis".into(),
        grade_level: Some("Grade 8".into()),
        num_lessons: 2,
        language: "en".into(),
        source_filter: None,
        ..Default::default()
    })
}

fn started(attempt: u32) -> CourseEvent {
    CourseEvent::GenerationStarted(GenerationStarted {
        attempt,
        model: "offline".into(),
    })
}

fn outline(title: &str) -> CourseEvent {
    CourseEvent::OutlineGenerated(OutlineGenerated {
        title: title.into(),
        description: "How plants eat light".into(),
        lessons: (1..=2)
            .map(|number| LessonPlan {
                number,
                title: format!("Lesson {number}"),
                concepts: vec!["light".into()],
                objectives: vec!["explain".into()],
            })
            .collect(),
        model: "offline".into(),
        usage: usage(10),
        ..Default::default()
    })
}

fn lesson(number: u32, questions: usize, sources: &[&str]) -> CourseEvent {
    CourseEvent::LessonGenerated(LessonGenerated {
        number,
        title: format!("Lesson {number}, written"),
        content_md: format!("# Lesson {number}"),
        sections: vec![LessonSection {
            heading: "Intro".into(),
            body: "Light".into(),
        }],
        quiz: (0..questions)
            .map(|i| QuizQuestion {
                question: format!("Q{i}"),
                options: vec!["a".into(), "b".into()],
                answer_index: 1,
                explanation: String::new(),
            })
            .collect(),
        sources: sources
            .iter()
            .map(|t| SourceRef {
                title: (*t).into(),
                url: None,
                cited: None,
            })
            .collect(),
        model: "offline".into(),
        usage: usage(100),
        ..Default::default()
    })
}

fn fold_new(decoded: &[Decoded]) -> Result<Changes, ApplyError> {
    let events = readable(decoded).unwrap();
    fold(HashMap::new(), HashMap::new(), &events)
}

#[test]
fn a_requested_course_is_queued_with_its_topic_as_slug_base() {
    let decoded = log(vec![requested()]);
    let changes = fold_new(&decoded).unwrap();
    assert_eq!(changes.dirty_courses, BTreeSet::from([COURSE]));
    let c = &changes.courses[&COURSE];
    assert_eq!(c.status, CourseStatus::Queued);
    assert_eq!((c.user_id, c.topic.as_str()), (USER, "Photosynthesis"));
    assert_eq!(c.total_lessons, 2);
    assert_eq!(c.slug_base, "photosynthesis");
    assert_eq!(c.slug_position, decoded[0].position);
    assert_eq!(c.slug, "", "numbered later, with the base's other courses");
    assert_eq!((c.created_at, c.updated_at), (at(1), at(1)));
    assert!(changes.lessons.is_empty() && changes.bodies.is_empty());
}

#[test]
fn an_outline_names_the_course_and_plans_pending_lessons() {
    let decoded = log(vec![requested(), started(1), outline("Plants and Light")]);
    let changes = fold_new(&decoded).unwrap();
    let c = &changes.courses[&COURSE];
    assert_eq!(c.status, CourseStatus::Generating);
    assert_eq!((c.attempt, c.model.as_deref()), (1, Some("offline")));
    assert_eq!(c.title.as_deref(), Some("Plants and Light"));
    assert_eq!(c.slug_base, "plants-and-light");
    assert_eq!(
        c.slug_position, decoded[2].position,
        "the outline took the new base"
    );
    assert_eq!(
        (c.prompt_tokens, c.completion_tokens, c.total_tokens),
        (5, 5, 10)
    );
    assert_eq!(c.updated_at, at(3));
    assert_eq!(
        changes.dirty_lessons,
        BTreeSet::from([(COURSE, 1), (COURSE, 2)])
    );
    assert_eq!(
        changes.lessons[&(COURSE, 1)],
        LessonRow {
            title: "Lesson 1".into(),
            concepts: vec!["light".into()],
            objectives: vec!["explain".into()],
            status: LessonStatus::Pending,
            generated_at: None,
        }
    );
}

#[test]
fn an_outline_with_the_same_base_keeps_the_requests_position() {
    let decoded = log(vec![requested(), outline("Photosynthesis!")]);
    let c = &fold_new(&decoded).unwrap().courses[&COURSE];
    assert_eq!(c.slug_position, decoded[0].position);
}

#[test]
fn a_current_lesson_is_copied_from_the_log_and_an_upcast_one_is_carried() {
    let mut decoded = log(vec![
        requested(),
        outline("Plants"),
        lesson(1, 2, &["a"]),
        lesson(2, 1, &[]),
    ]);
    decoded[3].event_version -= 1;
    let changes = fold_new(&decoded).unwrap();
    let current = &changes.bodies[&(COURSE, 1)];
    assert_eq!(
        (current.from_log, current.content_md.as_deref()),
        (Some(3), None)
    );
    assert_eq!(
        current.sources,
        serde_json::json!([{"title": "a", "url": null}])
    );
    assert_eq!((current.total_tokens, current.generated_at), (100, at(3)));
    let upcast = &changes.bodies[&(COURSE, 2)];
    assert_eq!(upcast.from_log, None);
    assert_eq!(upcast.content_md.as_deref(), Some("# Lesson 2"));
    assert_eq!(
        upcast.content_json,
        Some(serde_json::json!([{"heading": "Intro", "body": "Light"}]))
    );
    assert_eq!(changes.checks[&(COURSE, 1)].from_log, Some(3));
    assert_eq!(changes.checks[&(COURSE, 2)].from_log, None);
    assert_eq!(changes.checks[&(COURSE, 2)].questions.len(), 1);
    let row = &changes.lessons[&(COURSE, 1)];
    assert_eq!(row.status, LessonStatus::Generated);
    assert_eq!(row.title, "Lesson 1, written");
    assert_eq!(row.concepts, vec!["light".to_owned()], "the plan stays");
    assert_eq!(changes.courses[&COURSE].lessons_generated, 2);
}

#[test]
fn a_lesson_generated_again_replaces_its_quiz() {
    let decoded = log(vec![requested(), lesson(1, 3, &[]), lesson(1, 1, &[])]);
    let changes = fold_new(&decoded).unwrap();
    let quiz = &changes.checks[&(COURSE, 1)];
    assert!(quiz.replaces);
    assert_eq!((quiz.questions.len(), quiz.from_log), (1, Some(3)));

    let first = fold_new(&decoded[..2]).unwrap();
    assert!(
        !first.checks[&(COURSE, 1)].replaces,
        "a first quiz replaces nothing"
    );
}

#[test]
fn a_lesson_stored_as_generated_is_replaced_by_a_later_batch() {
    let decoded = log(vec![lesson(1, 1, &[])]);
    let events = readable(&decoded).unwrap();
    let stored = HashMap::from([(
        (COURSE, 1),
        LessonRow {
            title: "Lesson 1".into(),
            concepts: vec![],
            objectives: vec![],
            status: LessonStatus::Generated,
            generated_at: Some(at(0)),
        },
    )]);
    let changes = fold(HashMap::new(), stored, &events).unwrap();
    assert!(changes.checks[&(COURSE, 1)].replaces);
}

#[test]
fn sources_are_kept_once_in_first_citation_order() {
    let decoded = log(vec![
        requested(),
        lesson(1, 0, &["b", "a", "b"]),
        lesson(2, 0, &["a", "c"]),
    ]);
    let changes = fold_new(&decoded).unwrap();
    let titles: Vec<&str> = changes.courses[&COURSE]
        .sources
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["b", "a", "c"]);
    assert_eq!(
        changes.bodies[&(COURSE, 1)]
            .sources
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(changes.courses[&COURSE].total_tokens, 200);
}

#[test]
fn a_chunk_cited_by_two_lessons_under_their_own_labels_is_one_course_source() {
    let cite = |label: &str, chunk: u128| SourceRef {
        title: "Cells (bio/cells.md)".into(),
        url: None,
        cited: Some(Citation {
            label: label.into(),
            source_id: Uuid::from_u128(7),
            version: 1,
            chunk_id: Uuid::from_u128(chunk),
            path: "bio/cells.md".into(),
            page: None,
            heading: Some("Cells".into()),
            passage: "Cells divide.".into(),
        }),
    };
    let grounded = |number: u32, sources: Vec<SourceRef>| {
        let CourseEvent::LessonGenerated(mut l) = lesson(number, 0, &[]) else {
            unreachable!()
        };
        l.sources = sources;
        CourseEvent::LessonGenerated(l)
    };
    let decoded = log(vec![
        requested(),
        grounded(1, vec![cite("S1", 10), cite("S2", 11)]),
        grounded(2, vec![cite("S1", 12), cite("S3", 10)]),
    ]);
    let changes = fold_new(&decoded).unwrap();
    let union: Vec<(&str, &str)> = changes.courses[&COURSE]
        .sources
        .iter()
        .map(|s| {
            (
                s["cited"]["chunk_id"].as_str().unwrap(),
                s["cited"]["label"].as_str().unwrap(),
            )
        })
        .collect();
    let chunk = |n: u128| Uuid::from_u128(n).to_string();
    assert_eq!(
        union,
        [
            (chunk(10).as_str(), "S1"),
            (chunk(11).as_str(), "S2"),
            (chunk(12).as_str(), "S1"),
        ]
    );
}

#[test]
fn completion_failure_retry_delete_and_restore_set_status_and_times() {
    let completed = CourseEvent::CourseCompleted(CourseCompleted {
        total_lessons: 2,
        usage: usage(0),
    });
    let decoded = log(vec![requested(), started(1), completed]);
    let c = &fold_new(&decoded).unwrap().courses[&COURSE];
    assert_eq!(c.status, CourseStatus::Ready);
    assert_eq!(c.generated_at, Some(at(3)));

    let failed = CourseEvent::CourseFailed(CourseFailed {
        step: "outline".into(),
        error: "rate limited".into(),
        retryable: true,
    });
    let decoded = log(vec![requested(), started(1), failed.clone()]);
    let c = &fold_new(&decoded).unwrap().courses[&COURSE];
    assert_eq!(c.status, CourseStatus::Failed);
    assert_eq!(c.error_message.as_deref(), Some("outline: rate limited"));

    let retried = CourseEvent::GenerationRetried(GenerationRetried { reason: None });
    let decoded = log(vec![requested(), started(1), failed, retried]);
    let c = &fold_new(&decoded).unwrap().courses[&COURSE];
    assert_eq!(
        (c.status, c.error_message.as_deref()),
        (CourseStatus::Queued, None)
    );

    let deleted = CourseEvent::CourseDeleted(CourseDeleted { reason: None });
    let decoded = log(vec![requested(), deleted.clone()]);
    assert_eq!(
        fold_new(&decoded).unwrap().courses[&COURSE].deleted_at,
        Some(at(2))
    );
    let restored = CourseEvent::CourseRestored(CourseRestored {});
    let decoded = log(vec![requested(), deleted, restored]);
    let c = &fold_new(&decoded).unwrap().courses[&COURSE];
    assert_eq!((c.deleted_at, c.updated_at), (None, at(3)));
}

#[test]
fn a_course_requested_twice_is_refused_at_the_second_request() {
    let decoded = log(vec![requested(), requested()]);
    match fold_new(&decoded) {
        Err(ApplyError::Event { position, error }) => {
            assert_eq!(position, decoded[1].position);
            assert!(error.contains("already requested"), "{error}");
        }
        other => panic!("expected an event error, got {other:?}"),
    }
}

#[test]
fn lessons_of_an_unknown_course_are_kept_without_a_course_row() {
    let decoded = log(vec![outline("Plants"), lesson(1, 1, &[])]);
    let changes = fold_new(&decoded).unwrap();
    assert!(changes.courses.is_empty() && changes.dirty_courses.is_empty());
    assert_eq!(changes.dirty_lessons.len(), 2);
    assert!(changes.bodies.contains_key(&(COURSE, 1)));
}

#[test]
fn the_rows_to_load_are_the_batchs_courses_and_those_with_lesson_events() {
    let decoded = log(vec![requested(), started(1), outline("Plants")]);
    let events = readable(&decoded).unwrap();
    assert_eq!(course_ids(&events), vec![COURSE]);
    assert_eq!(lesson_course_ids(&events[..2]), Vec::<Uuid>::new());
    assert_eq!(lesson_course_ids(&events), vec![COURSE]);
}

#[test]
fn content_shards_hold_each_course_whole_and_every_row_once() {
    // Lessons of several courses in one batch: each course's own stream.
    let mut decoded = Vec::new();
    for c in 10..16u128 {
        let id = Uuid::from_u128(c);
        for (n, mut d) in log(vec![
            requested(),
            outline("T"),
            lesson(1, 2, &["a"]),
            lesson(2, 1, &[]),
        ])
        .into_iter()
        .enumerate()
        {
            d.stream_id = id;
            d.position = Position {
                transaction_id: 1,
                global_position: (c as i64) * 100 + n as i64,
            };
            decoded.push(d);
        }
    }
    let changes = fold_new(&decoded).unwrap();
    let content = super::Content {
        first: decoded[0].position,
        bodies: changes.bodies,
        checks: changes.checks,
        elements: changes.elements,
        subtitles: changes.subtitles,
    };
    let bodies: BTreeSet<(Uuid, i32)> = content.bodies.keys().copied().collect();
    assert_eq!(bodies.len(), 12);
    let shards = content.shards(2);
    assert_eq!(shards.len(), 2);
    let mut seen = BTreeSet::new();
    for (i, shard) in shards.iter().enumerate() {
        assert_eq!(shard.first, decoded[0].position);
        for key in shard.bodies.keys().chain(shard.checks.keys()) {
            assert_eq!(key.0.as_u128() % 2, i as u128, "{key:?} in shard {i}");
        }
        seen.extend(shard.bodies.keys().copied());
        assert_eq!(
            shard.bodies.keys().collect::<BTreeSet<_>>(),
            shard.checks.keys().collect::<BTreeSet<_>>()
        );
    }
    assert_eq!(seen, bodies);
    assert!(shards.iter().all(|s| !s.bodies.is_empty()));
}
