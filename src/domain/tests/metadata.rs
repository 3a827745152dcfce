//! Metadata: the request's, the outline's proposals where the request is
//! silent, edits over both.

use super::*;
use crate::domain::metadata::{CourseMetadata, Difficulty, MetadataChange};

fn requested_with(metadata: CourseMetadata) -> CourseEvent {
    let mut r = request(1).into_event();
    r.metadata = metadata;
    r.into()
}

fn proposing(outline: OutlineGenerated) -> OutlineGenerated {
    OutlineGenerated {
        tags: vec!["proposed".into()],
        difficulty: Some(Difficulty::Beginner),
        learning_outcomes: vec!["outcome".into()],
        ..outline
    }
}

#[test]
fn the_outline_fills_only_what_the_request_left_empty() {
    let given = [
        requested_with(CourseMetadata {
            tags: vec!["mine".into()],
            ..Default::default()
        }),
        started(1),
        proposing(outline(1)).into(),
    ];
    let course = Course::from_events(&given);
    assert_eq!(course.metadata.tags, vec!["mine"]);
    assert_eq!(course.metadata.difficulty, Some(Difficulty::Beginner));
    assert_eq!(course.metadata.learning_outcomes, vec!["outcome"]);
}

#[test]
fn an_edit_records_only_what_changes_and_wins_over_the_outline() {
    let mut given = vec![requested(1), started(1), proposing(outline(1)).into()];
    let change = MetadataChange {
        tags: Some(vec!["proposed".into()]),
        difficulty: Some(Difficulty::Advanced),
        language: Some("en".into()),
        ..Default::default()
    };
    let events = given_when(&given, Command::ChangeMetadata(change)).unwrap();
    assert_eq!(
        events,
        vec![CourseMetadataChanged {
            change: MetadataChange {
                difficulty: Some(Difficulty::Advanced),
                ..Default::default()
            }
        }
        .into()]
    );
    given.extend(events);
    let course = Course::from_events(&given);
    assert_eq!(course.metadata.difficulty, Some(Difficulty::Advanced));
    let again = MetadataChange {
        difficulty: Some(Difficulty::Advanced),
        ..Default::default()
    };
    assert_eq!(
        given_when(&given, Command::ChangeMetadata(again)),
        Ok(vec![])
    );
}

#[test]
fn a_deleted_or_missing_course_is_not_edited() {
    let change = || {
        Command::ChangeMetadata(MetadataChange {
            author: Some("Ada".into()),
            ..Default::default()
        })
    };
    assert_eq!(given_when(&[], change()), Err(DomainError::NotFound));
    let deleted = [requested(1), CourseDeleted { reason: None }.into()];
    assert_eq!(given_when(&deleted, change()), Err(DomainError::Deleted));
}

#[test]
fn an_edited_language_replaces_the_requested_one() {
    let given = [
        requested(1),
        CourseMetadataChanged {
            change: MetadataChange {
                language: Some("fr".into()),
                ..Default::default()
            },
        }
        .into(),
    ];
    assert_eq!(Course::from_events(&given).language, "fr");
}

#[test]
fn a_v2_lesson_payload_reads_as_v3_without_elements() {
    let v2 = serde_json::json!({
        "number": 1, "title": "Intro", "content_md": "# Intro", "model": "m",
        "quiz": [{"question": "?", "options": ["a", "b"], "answer_index": 1, "explanation": ""}]
    });
    let CourseEvent::LessonGenerated(l) =
        CourseEvent::from_stored("LessonGenerated", 2, v2).unwrap()
    else {
        panic!("wrong type")
    };
    assert!(l.elements.is_empty());
    assert_eq!(l.estimated_minutes, 0);
    assert_eq!(CourseEvent::from(l).event_version(), 3);
}

#[test]
fn a_lesson_with_invalid_elements_is_refused() {
    use crate::domain::elements::{ElementBody, InteractiveElement};
    let mut bad = lesson(1);
    let code = InteractiveElement {
        id: "x".into(),
        body: ElementBody::CodeBlock {
            language: "".into(),
            code: "1".into(),
            caption: String::new(),
            expected_output: None,
        },
    };
    bad.elements = vec![code];
    assert!(matches!(
        given_when(&generating(1), Command::RecordLesson(bad)),
        Err(DomainError::InvalidElements { lesson: 1, .. })
    ));
}
