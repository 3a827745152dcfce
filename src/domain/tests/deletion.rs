//! Deleting a course pauses its generation; restoring resumes it where it
//! stopped. And the lesson arithmetic of streams an upcast left odd.

use super::*;

fn deleted() -> CourseEvent {
    CourseDeleted {
        reason: Some("spam".into()),
    }
    .into()
}

#[test]
fn a_deleted_course_has_no_next_step_whatever_its_status() {
    let queued = vec![requested(2), deleted()];
    let mut midway = generating(2);
    midway.extend([lesson(1).into(), deleted()]);
    let mut all_done = generating(2);
    all_done.extend([lesson(1).into(), lesson(2).into(), deleted()]);
    for given in [queued, midway, all_done] {
        assert_eq!(Course::from_events(&given).next_step(), NextStep::Nothing);
    }
}

#[test]
fn a_deleted_course_is_neither_started_nor_completed() {
    assert_eq!(
        given_when(
            &[requested(2), deleted()],
            Command::StartGeneration {
                model: "offline".into()
            }
        ),
        Err(DomainError::Deleted)
    );
    let mut given = generating(1);
    given.extend([lesson(1).into(), deleted()]);
    assert_eq!(
        given_when(&given, Command::Complete),
        Err(DomainError::Deleted)
    );
}

#[test]
fn a_failure_in_flight_when_the_course_was_deleted_is_not_recorded() {
    let mut given = generating(2);
    given.push(deleted());
    let CourseEvent::CourseFailed(failure) = failed() else {
        unreachable!()
    };
    assert_eq!(
        given_when(&given, Command::Fail(failure)),
        Err(DomainError::Deleted)
    );
}

#[test]
fn an_answer_in_flight_when_the_course_was_deleted_is_still_recorded() {
    let mut given = generating(2);
    given.push(deleted());
    assert_eq!(
        given_when(&given, Command::RecordLesson(lesson(1))),
        Ok(vec![lesson(1).into()])
    );
}

#[test]
fn restore_resumes_at_the_step_where_generation_stopped() {
    let mut given = generating(3);
    given.extend([lesson(1).into(), deleted()]);
    given.extend(given_when(&given, Command::Restore).unwrap());
    assert_eq!(Course::from_events(&given).next_step(), NextStep::Lesson(2));

    let mut queued = vec![requested(2), deleted()];
    queued.extend(given_when(&queued, Command::Restore).unwrap());
    assert_eq!(Course::from_events(&queued).next_step(), NextStep::Start);
}

#[test]
fn delete_and_retry_reasons_enter_the_history_as_given() {
    let reason = Reason::parse(Some(" duplicate ".into())).unwrap();
    let events = given_when(&generating(1), Command::Delete { reason }).unwrap();
    assert_eq!(
        events,
        vec![CourseDeleted {
            reason: Some("duplicate".into())
        }
        .into()]
    );
}

/// A stream whose upcast left a lesson outside its plan: lesson 3 of a
/// two-lesson plan (an old producer numbered them from 2, say).
fn with_a_lesson_outside_the_plan(done: &[u32]) -> Vec<CourseEvent> {
    let mut events = generating(2);
    events.extend(done.iter().map(|&n| lesson(n).into()));
    events
}

#[test]
fn a_lesson_outside_the_plan_neither_underflows_nor_counts_as_done() {
    // Three lessons recorded against a plan of two: the old subtraction
    // (planned - done) underflowed here.
    let given = with_a_lesson_outside_the_plan(&[1, 2, 3]);
    let course = Course::from_events(&given);
    assert_eq!(course.missing_lessons(), 0);
    assert!(given_when(&given, Command::Complete).is_ok());

    // Lesson 2 missing, lesson 3 outside the plan: as many recorded as
    // planned, yet not complete.
    let given = with_a_lesson_outside_the_plan(&[1, 3]);
    assert_eq!(Course::from_events(&given).missing_lessons(), 1);
    assert_eq!(
        given_when(&given, Command::Complete),
        Err(DomainError::LessonsMissing(1))
    );
    assert_eq!(Course::from_events(&given).next_step(), NextStep::Lesson(2));
}
