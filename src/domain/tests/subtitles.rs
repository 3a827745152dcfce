//! Subtitles: the course's language first, then each asked-for language
//! lesson by lesson; a failed translation stops its language, not the course.

use super::*;

fn track(course: &Course, lesson: u32, language: &str) -> CourseEvent {
    SubtitlesGenerated {
        lesson,
        language: language.into(),
        cues: course.narration[&lesson].clone(),
        ..Default::default()
    }
    .into()
}

fn ready_with_subtitles() -> Vec<CourseEvent> {
    let mut events = generating(2);
    events.extend([lesson(1).into(), lesson(2).into()]);
    for n in 1..=2 {
        let t = track(&Course::from_events(&events), n, "en");
        events.push(t);
    }
    events.push(given_when(&events, Command::Complete).unwrap().remove(0));
    events
}

#[test]
fn asked_for_languages_are_translated_lesson_by_lesson_then_finished() {
    let mut events = ready_with_subtitles();
    assert_eq!(Course::from_events(&events).next_step(), NextStep::Nothing);
    let ask = Command::RequestSubtitles {
        languages: vec!["fr".into(), "en".into()],
    };
    let asked = given_when(&events, ask).unwrap();
    assert_eq!(
        asked,
        vec![SubtitlesRequested {
            languages: vec!["fr".into()]
        }
        .into()]
    );
    events.extend(asked);
    for n in 1..=2 {
        let course = Course::from_events(&events);
        assert_eq!(course.next_step(), NextStep::Translate(n));
        assert_eq!(course.next_translation_language(), Some("fr"));
        events.push(track(&course, n, "fr"));
    }
    let course = Course::from_events(&events);
    assert_eq!(course.next_step(), NextStep::FinishSubtitles);
    events.extend(decide(&course, Command::FinishSubtitles).unwrap());
    assert_eq!(Course::from_events(&events).next_step(), NextStep::Nothing);
    // Recording a track twice is refused.
    let again = SubtitlesGenerated {
        lesson: 1,
        language: "fr".into(),
        cues: course.narration[&1].clone(),
        ..Default::default()
    };
    assert!(matches!(
        given_when(&events, Command::RecordSubtitles(again)),
        Err(DomainError::SubtitlesExist { lesson: 1, .. })
    ));
}

#[test]
fn a_failed_translation_stops_its_language_until_asked_again() {
    let mut events = ready_with_subtitles();
    events.push(
        SubtitlesRequested {
            languages: vec!["de".into()],
        }
        .into(),
    );
    events.push(
        SubtitlesFailed {
            lesson: 1,
            language: "de".into(),
            error: "timeout".into(),
            retryable: true,
        }
        .into(),
    );
    let course = Course::from_events(&events);
    assert_eq!(course.status, Some(CourseStatus::Ready));
    assert_eq!(course.next_step(), NextStep::FinishSubtitles);
    let again = given_when(
        &events,
        Command::RequestSubtitles {
            languages: vec!["de".into()],
        },
    )
    .unwrap();
    assert_eq!(again.len(), 1);
    events.extend(again);
    assert_eq!(
        Course::from_events(&events).next_step(),
        NextStep::Translate(1)
    );
}

#[test]
fn a_failed_course_takes_no_subtitle_requests_and_bad_cues_are_refused() {
    let mut events = generating(1);
    events.push(failed());
    assert!(matches!(
        given_when(
            &events,
            Command::RequestSubtitles {
                languages: vec!["fr".into()]
            }
        ),
        Err(DomainError::InvalidTransition { .. })
    ));
    let mut events = generating(1);
    events.push(lesson(1).into());
    let overlapping = SubtitlesGenerated {
        lesson: 1,
        language: "en".into(),
        cues: vec![
            crate::domain::subtitles::Cue {
                start_ms: 0,
                end_ms: 2_000,
                text: "a".into(),
            },
            crate::domain::subtitles::Cue {
                start_ms: 1_000,
                end_ms: 3_000,
                text: "b".into(),
            },
        ],
        ..Default::default()
    };
    assert!(matches!(
        given_when(&events, Command::RecordSubtitles(overlapping)),
        Err(DomainError::InvalidCues { lesson: 1, .. })
    ));
}
