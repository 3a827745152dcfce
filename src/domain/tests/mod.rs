//! Given/when/then tests of the course rules, without a database.

use uuid::Uuid;

use super::*;

mod deletion;
mod metadata;
mod subtitles;

pub(super) fn request(lessons: u8) -> CourseRequest {
    CourseRequest::parse(RawCourseRequest {
        request_id: Some(Uuid::from_u128(1).to_string()),
        user_id: Some(Uuid::from_u128(2).to_string()),
        topic: Some("Cell biology".into()),
        num_lessons: Some(i64::from(lessons)),
        ..Default::default()
    })
    .unwrap()
}

pub(super) fn requested(lessons: u8) -> CourseEvent {
    request(lessons).into_event().into()
}

pub(super) fn started(attempt: u32) -> CourseEvent {
    GenerationStarted {
        attempt,
        model: "offline".into(),
    }
    .into()
}

pub(super) fn outline(lessons: u32) -> OutlineGenerated {
    OutlineGenerated {
        title: "Cells".into(),
        description: "All about cells".into(),
        lessons: (1..=lessons)
            .map(|number| LessonPlan {
                number,
                title: format!("Lesson {number}"),
                concepts: vec!["membrane".into()],
                objectives: vec!["explain".into()],
            })
            .collect(),
        model: "offline".into(),
        usage: TokenUsage {
            prompt_tokens: 10,
            completion_tokens: 20,
            total_tokens: 30,
            estimated: false,
        },
        ..Default::default()
    }
}

pub(super) fn lesson(number: u32) -> LessonGenerated {
    LessonGenerated {
        number,
        title: format!("Lesson {number}"),
        content_md: "# Lesson".into(),
        sections: vec![],
        quiz: vec![QuizQuestion {
            question: "?".into(),
            options: vec!["a".into(), "b".into()],
            answer_index: 1,
            explanation: "b".into(),
        }],
        sources: vec![],
        model: "offline".into(),
        usage: TokenUsage {
            prompt_tokens: 1,
            completion_tokens: 2,
            total_tokens: 3,
            estimated: false,
        },
        ..Default::default()
    }
}

pub(super) fn failed() -> CourseEvent {
    CourseFailed {
        step: "lesson 1".into(),
        error: "boom".into(),
        retryable: true,
    }
    .into()
}

/// Given these events, when this command: the decision.
pub(super) fn given_when(
    given: &[CourseEvent],
    when: Command,
) -> Result<Vec<CourseEvent>, DomainError> {
    decide(&Course::from_events(given), when)
}

pub(super) fn generating(lessons: u32) -> Vec<CourseEvent> {
    vec![
        requested(lessons as u8),
        started(1),
        outline(lessons).into(),
    ]
}

pub(super) fn complete_course(lessons: u32) -> Vec<CourseEvent> {
    let mut events = generating(lessons);
    events.extend((1..=lessons).map(|n| lesson(n).into()));
    events.push(given_when(&events, Command::Complete).unwrap().remove(0));
    events
}

fn transition_error(result: Result<Vec<CourseEvent>, DomainError>) -> CourseStatus {
    match result {
        Err(DomainError::InvalidTransition { status, .. }) => status,
        other => panic!("expected an invalid transition, got {other:?}"),
    }
}

#[test]
fn a_request_on_an_empty_stream_records_course_requested() {
    let events = given_when(&[], Command::Request(request(4))).unwrap();
    assert_eq!(events, vec![requested(4)]);
    let course = Course::from_events(&events);
    assert_eq!(course.status, Some(CourseStatus::Queued));
    assert_eq!(course.version, 1);
}

#[test]
fn the_same_request_twice_records_nothing() {
    assert_eq!(
        given_when(&[requested(4)], Command::Request(request(4))),
        Ok(vec![])
    );
}

#[test]
fn a_different_request_on_the_same_stream_is_refused() {
    assert_eq!(
        given_when(&[requested(4)], Command::Request(request(5))),
        Err(DomainError::RequestMismatch)
    );
}

#[test]
fn commands_on_a_course_that_does_not_exist_are_refused() {
    for cmd in [
        Command::StartGeneration { model: "m".into() },
        Command::Complete,
        Command::Retry { reason: None },
        Command::Restore,
    ] {
        assert_eq!(given_when(&[], cmd), Err(DomainError::NotFound));
    }
}

#[test]
fn starting_a_queued_course_makes_it_generating_with_attempt_one() {
    let events = given_when(
        &[requested(4)],
        Command::StartGeneration {
            model: "offline".into(),
        },
    )
    .unwrap();
    assert_eq!(events, vec![started(1)]);
    assert_eq!(
        Course::from_events(&[requested(4), started(1)]).status,
        Some(CourseStatus::Generating)
    );
}

#[test]
fn starting_twice_is_refused() {
    let status = transition_error(given_when(
        &[requested(4), started(1)],
        Command::StartGeneration { model: "m".into() },
    ));
    assert_eq!(status, CourseStatus::Generating);
}

#[test]
fn an_outline_is_recorded_while_generating() {
    let given = [requested(3), started(1)];
    let events = given_when(&given, Command::RecordOutline(outline(3))).unwrap();
    assert_eq!(events, vec![outline(3).into()]);
}

#[test]
fn an_outline_before_generation_started_is_refused() {
    let status = transition_error(given_when(
        &[requested(3)],
        Command::RecordOutline(outline(3)),
    ));
    assert_eq!(status, CourseStatus::Queued);
}

#[test]
fn a_second_outline_is_refused() {
    assert_eq!(
        given_when(&generating(3), Command::RecordOutline(outline(3))),
        Err(DomainError::OutlineExists)
    );
}

#[test]
fn an_outline_with_the_wrong_lesson_count_is_refused() {
    assert_eq!(
        given_when(
            &[requested(3), started(1)],
            Command::RecordOutline(outline(4))
        ),
        Err(DomainError::OutlineLessonCount { want: 3, got: 4 })
    );
}

#[test]
fn an_outline_numbered_out_of_order_is_refused() {
    let mut bad = outline(3);
    bad.lessons.swap(0, 2);
    assert_eq!(
        given_when(&[requested(3), started(1)], Command::RecordOutline(bad)),
        Err(DomainError::OutlineNumbering(3))
    );
}

#[test]
fn a_lesson_in_the_plan_is_recorded() {
    let events = given_when(&generating(3), Command::RecordLesson(lesson(2))).unwrap();
    assert_eq!(events, vec![lesson(2).into()]);
}

#[test]
fn a_lesson_before_the_outline_is_refused() {
    assert_eq!(
        given_when(
            &[requested(3), started(1)],
            Command::RecordLesson(lesson(1))
        ),
        Err(DomainError::NoOutline)
    );
}

#[test]
fn a_lesson_number_outside_the_plan_is_refused() {
    for n in [0, 4, 99] {
        assert_eq!(
            given_when(&generating(3), Command::RecordLesson(lesson(n))),
            Err(DomainError::LessonNotInPlan(n))
        );
    }
}

#[test]
fn the_same_lesson_twice_is_refused() {
    let mut given = generating(3);
    given.push(lesson(1).into());
    assert_eq!(
        given_when(&given, Command::RecordLesson(lesson(1))),
        Err(DomainError::LessonExists(1))
    );
}

#[test]
fn a_quiz_answer_outside_its_options_is_refused() {
    let mut bad = lesson(1);
    bad.quiz[0].answer_index = 2;
    assert!(matches!(
        given_when(&generating(3), Command::RecordLesson(bad)),
        Err(DomainError::QuizAnswerOutOfRange {
            index: 2,
            options: 2,
            ..
        })
    ));
}

#[test]
fn a_lesson_on_a_queued_course_is_refused() {
    let status = transition_error(given_when(
        &[requested(3)],
        Command::RecordLesson(lesson(1)),
    ));
    assert_eq!(status, CourseStatus::Queued);
}

#[test]
fn completion_with_every_lesson_sums_the_tokens_and_makes_it_ready() {
    let mut given = generating(2);
    given.extend([lesson(1).into(), lesson(2).into()]);
    let events = given_when(&given, Command::Complete).unwrap();
    assert_eq!(
        events,
        vec![CourseCompleted {
            total_lessons: 2,
            usage: TokenUsage {
                prompt_tokens: 12,
                completion_tokens: 24,
                total_tokens: 36,
                estimated: false,
            }
        }
        .into()]
    );
    given.extend(events);
    assert_eq!(
        Course::from_events(&given).status,
        Some(CourseStatus::Ready)
    );
}

#[test]
fn completion_with_missing_lessons_is_refused() {
    let mut given = generating(3);
    given.push(lesson(1).into());
    assert_eq!(
        given_when(&given, Command::Complete),
        Err(DomainError::LessonsMissing(2))
    );
}

#[test]
fn completion_before_the_outline_is_refused() {
    assert_eq!(
        given_when(&[requested(3), started(1)], Command::Complete),
        Err(DomainError::NoOutline)
    );
}

#[test]
fn a_second_completion_is_refused() {
    assert_eq!(
        transition_error(given_when(&complete_course(2), Command::Complete)),
        CourseStatus::Ready
    );
}

#[test]
fn nothing_changes_a_ready_course_but_delete() {
    let ready = complete_course(2);
    for cmd in [
        Command::StartGeneration { model: "m".into() },
        Command::RecordOutline(outline(2)),
        Command::RecordLesson(lesson(1)),
        Command::Fail(CourseFailed {
            step: "x".into(),
            error: "y".into(),
            retryable: false,
        }),
        Command::Retry { reason: None },
    ] {
        assert_eq!(
            transition_error(given_when(&ready, cmd)),
            CourseStatus::Ready
        );
    }
    assert!(given_when(&ready, Command::Delete { reason: None }).is_ok());
}

#[test]
fn a_failure_while_generating_makes_the_course_failed() {
    let given = [requested(3), started(1)];
    let events = given_when(
        &given,
        Command::Fail(CourseFailed {
            step: "lesson 1".into(),
            error: "boom".into(),
            retryable: true,
        }),
    )
    .unwrap();
    assert_eq!(events, vec![failed()]);
    let course = Course::from_events(given.iter().chain(&events));
    assert_eq!(course.status, Some(CourseStatus::Failed));
    assert_eq!(course.failure.unwrap().error, "boom");
}

#[test]
fn anything_after_failed_except_a_retry_is_refused() {
    let mut given = generating(2);
    given.push(failed());
    for cmd in [
        Command::StartGeneration { model: "m".into() },
        Command::RecordLesson(lesson(1)),
        Command::Complete,
        Command::Fail(CourseFailed {
            step: "x".into(),
            error: "y".into(),
            retryable: false,
        }),
    ] {
        assert_eq!(
            transition_error(given_when(&given, cmd)),
            CourseStatus::Failed
        );
    }
    assert_eq!(
        given_when(
            &given,
            Command::Retry {
                reason: Reason::parse(Some("flaky".into())).unwrap()
            }
        ),
        Ok(vec![GenerationRetried {
            reason: Some("flaky".into())
        }
        .into()])
    );
}

#[test]
fn a_retry_requeues_and_keeps_the_steps_already_done() {
    let mut given = generating(3);
    given.extend([
        lesson(1).into(),
        failed(),
        GenerationRetried { reason: None }.into(),
    ]);
    let course = Course::from_events(&given);
    assert_eq!(course.status, Some(CourseStatus::Queued));
    assert_eq!(course.next_step(), NextStep::Start);
    let events = decide(
        &course,
        Command::StartGeneration {
            model: "offline".into(),
        },
    )
    .unwrap();
    assert_eq!(events, vec![started(2)]);
    given.extend(events);
    assert_eq!(Course::from_events(&given).next_step(), NextStep::Lesson(2));
}

#[test]
fn a_retry_of_a_course_that_did_not_fail_is_refused() {
    assert_eq!(
        transition_error(given_when(&generating(2), Command::Retry { reason: None })),
        CourseStatus::Generating
    );
}

#[test]
fn next_step_walks_outline_then_each_lesson_then_completion() {
    let mut events = vec![requested(2)];
    assert_eq!(Course::from_events(&events).next_step(), NextStep::Start);
    events.push(started(1));
    assert_eq!(Course::from_events(&events).next_step(), NextStep::Outline);
    events.push(outline(2).into());
    assert_eq!(
        Course::from_events(&events).next_step(),
        NextStep::Lesson(1)
    );
    events.push(lesson(1).into());
    assert_eq!(
        Course::from_events(&events).next_step(),
        NextStep::Lesson(2)
    );
    events.push(lesson(2).into());
    for n in 1..=2 {
        let course = Course::from_events(&events);
        assert_eq!(course.next_step(), NextStep::Subtitles(n));
        let track = SubtitlesGenerated {
            lesson: n,
            language: "en".into(),
            cues: course.narration[&n].clone(),
            ..Default::default()
        };
        events.extend(decide(&course, Command::RecordSubtitles(track)).unwrap());
    }
    assert_eq!(Course::from_events(&events).next_step(), NextStep::Complete);
    assert_eq!(
        Course::from_events(&complete_course(2)).next_step(),
        NextStep::Nothing
    );
}

#[test]
fn delete_and_restore_toggle_without_changing_status() {
    let mut given = generating(2);
    let deleted = given_when(&given, Command::Delete { reason: None }).unwrap();
    given.extend(deleted);
    let course = Course::from_events(&given);
    assert!(course.deleted);
    assert_eq!(course.status, Some(CourseStatus::Generating));
    assert_eq!(
        given_when(&given, Command::Delete { reason: None }),
        Err(DomainError::Deleted)
    );
    given.extend(given_when(&given, Command::Restore).unwrap());
    assert!(!Course::from_events(&given).deleted);
    assert_eq!(
        given_when(&given, Command::Restore),
        Err(DomainError::NotDeleted)
    );
}

#[test]
fn a_deleted_failed_course_cannot_be_retried() {
    let mut given = generating(2);
    given.extend([failed(), CourseDeleted { reason: None }.into()]);
    assert_eq!(
        given_when(&given, Command::Retry { reason: None }),
        Err(DomainError::Deleted)
    );
}

#[test]
fn every_event_round_trips_through_its_stored_form() {
    let mut all = complete_course(2);
    all.extend([
        failed(),
        GenerationRetried { reason: None }.into(),
        CourseDeleted {
            reason: Some("spam".into()),
        }
        .into(),
        CourseRestored {}.into(),
    ]);
    for event in all {
        let back =
            CourseEvent::from_stored(event.event_type(), event.event_version(), event.payload())
                .unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn a_v1_lesson_payload_is_upcast_to_the_current_shape() {
    let v1 = serde_json::json!({
        "number": 1, "title": "Intro", "content": "# Intro",
        "questions": [{"question": "?", "options": ["a", "b"], "correct": 1}]
    });
    let CourseEvent::LessonGenerated(l) =
        CourseEvent::from_stored("LessonGenerated", 1, v1).unwrap()
    else {
        panic!("wrong type")
    };
    assert_eq!(l.content_md, "# Intro");
    assert_eq!(l.quiz[0].answer_index, 1);
    assert_eq!(l.model, "unknown");
}

#[test]
fn unknown_and_future_events_are_errors_not_panics() {
    assert!(matches!(
        CourseEvent::from_stored("Nope", 1, serde_json::json!({})),
        Err(UpcastError::UnknownType(_))
    ));
    assert!(matches!(
        CourseEvent::from_stored("CourseRequested", 9, serde_json::json!({})),
        Err(UpcastError::FutureVersion { .. })
    ));
    assert!(matches!(
        CourseEvent::from_stored("CourseRequested", 1, serde_json::json!([1])),
        Err(UpcastError::Payload { .. })
    ));
}

#[test]
fn course_ids_are_deterministic_per_user_and_request() {
    let (u, r) = (Uuid::from_u128(7), Uuid::from_u128(8));
    assert_eq!(course_id(u, r), course_id(u, r));
    assert_ne!(course_id(u, r), course_id(r, u));
    assert_eq!(course_id(u, r).get_version_num(), 5);
}

fn raw() -> RawCourseRequest {
    RawCourseRequest {
        request_id: Some(Uuid::from_u128(1).to_string()),
        user_id: Some(Uuid::from_u128(2).to_string()),
        topic: Some("  Photosynthesis  ".into()),
        ..Default::default()
    }
}

#[test]
fn a_valid_request_is_trimmed_and_defaulted() {
    let r = CourseRequest::parse(raw()).unwrap();
    assert_eq!(r.topic, "Photosynthesis");
    assert_eq!(r.num_lessons, DEFAULT_NUM_LESSONS);
    assert_eq!(r.language, "en");
    let r = CourseRequest::parse(RawCourseRequest {
        language: Some("pt-br".into()),
        source_filter: Some("microbiology/".into()),
        grade_level: Some("Grade 8".into()),
        ..raw()
    })
    .unwrap();
    assert_eq!(r.language, "pt-BR");
    assert_eq!(r.source_filter.as_deref(), Some("microbiology/"));
}

#[test]
fn invalid_requests_are_refused_with_the_reason() {
    let cases: Vec<(RawCourseRequest, &str)> = vec![
        (
            RawCourseRequest {
                user_id: None,
                ..raw()
            },
            "user_id is required",
        ),
        (
            RawCourseRequest {
                request_id: Some("x".into()),
                ..raw()
            },
            "request_id must be a UUID",
        ),
        (
            RawCourseRequest {
                topic: Some("   ".into()),
                ..raw()
            },
            "topic must be 1 to 200",
        ),
        (
            RawCourseRequest {
                topic: Some("é".repeat(201)),
                ..raw()
            },
            "topic must be 1 to 200",
        ),
        (
            RawCourseRequest {
                num_lessons: Some(0),
                ..raw()
            },
            "num_lessons",
        ),
        (
            RawCourseRequest {
                num_lessons: Some(21),
                ..raw()
            },
            "num_lessons",
        ),
        (
            RawCourseRequest {
                grade_level: Some("g".repeat(51)),
                ..raw()
            },
            "grade_level",
        ),
        (
            RawCourseRequest {
                language: Some("english please".into()),
                ..raw()
            },
            "BCP-47",
        ),
        (
            RawCourseRequest {
                source_filter: Some("/etc".into()),
                ..raw()
            },
            "absolute",
        ),
        (
            RawCourseRequest {
                source_filter: Some("a/../../b".into()),
                ..raw()
            },
            "..",
        ),
        (
            RawCourseRequest {
                source_filter: Some("a".repeat(201)),
                ..raw()
            },
            "too long",
        ),
        (
            RawCourseRequest {
                topic: Some("a\u{0}b".into()),
                ..raw()
            },
            "control",
        ),
        // At either end too, where trimming would have hidden them.
        (
            RawCourseRequest {
                topic: Some("\tTides".into()),
                ..raw()
            },
            "control",
        ),
        (
            RawCourseRequest {
                grade_level: Some("adults\n".into()),
                ..raw()
            },
            "control",
        ),
        (
            RawCourseRequest {
                source_filter: Some("\u{c}bio/".into()),
                ..raw()
            },
            "control",
        ),
        (
            RawCourseRequest {
                language: Some("en\r".into()),
                ..raw()
            },
            "control",
        ),
        (
            RawCourseRequest {
                author: Some("\u{b}Ada".into()),
                ..raw()
            },
            "control",
        ),
        (
            RawCourseRequest {
                difficulty: Some("beginner\t".into()),
                ..raw()
            },
            "control",
        ),
        (
            RawCourseRequest {
                prerequisites: Some(vec!["algebra\n".into()]),
                ..raw()
            },
            "control",
        ),
    ];
    for (input, want) in cases {
        let err = CourseRequest::parse(input.clone()).expect_err(&format!("{input:?} should fail"));
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want}"
        );
    }
    let ok = CourseRequest::parse(RawCourseRequest {
        topic: Some("é".repeat(200)),
        num_lessons: Some(20),
        ..raw()
    });
    assert!(ok.is_ok());
}
