//! Local checks of every answer, before it becomes an event.
//!
//! A model that ignores part of its instructions is common; a course with
//! three lessons when five were asked for, or a quiz whose answer points
//! past its options, must never reach the log. The messages are written to
//! the model: the OpenAI client sends them back in its re-ask.

use crate::domain::{CourseRequested, LessonGenerated, OutlineGenerated};

/// Fewest quiz questions a lesson may have.
pub(crate) const MIN_QUIZ_QUESTIONS: usize = 3;
/// Most quiz questions a lesson may have.
pub(crate) const MAX_QUIZ_QUESTIONS: usize = 5;

/// What is wrong with an answer, phrased as an instruction the model can follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidAnswer(pub String);

fn invalid(message: impl Into<String>) -> Result<(), InvalidAnswer> {
    Err(InvalidAnswer(message.into()))
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// Checks an outline against its request: exactly `num_lessons` lessons
/// numbered 1..=N in order, and no empty title.
///
/// # Errors
/// The first problem found.
pub fn outline(course: &CourseRequested, outline: &OutlineGenerated) -> Result<(), InvalidAnswer> {
    let want = usize::from(course.num_lessons);
    if blank(&outline.title) {
        return invalid("the course title is empty");
    }
    if outline.lessons.len() != want {
        return invalid(format!(
            "the outline must have exactly {want} lessons, it has {}",
            outline.lessons.len()
        ));
    }
    for (i, lesson) in outline.lessons.iter().enumerate() {
        let expected = i as u32 + 1;
        if lesson.number != expected {
            return invalid(format!(
                "lessons must be numbered 1 to {want} in order: lesson {expected} has number {}",
                lesson.number
            ));
        }
        if blank(&lesson.title) {
            return invalid(format!("lesson {expected} has an empty title"));
        }
    }
    Ok(())
}

/// Checks lesson `number` of `outline`: the right number, a title, content,
/// and 3 to 5 quiz questions, each with at least two options and an
/// `answer_index` among them.
///
/// # Errors
/// The first problem found.
pub fn lesson(
    outline: &OutlineGenerated,
    number: u32,
    lesson: &LessonGenerated,
) -> Result<(), InvalidAnswer> {
    if !outline.lessons.iter().any(|l| l.number == number) {
        return invalid(format!("lesson {number} is not in the outline"));
    }
    if lesson.number != number {
        return invalid(format!(
            "this is lesson {number}, the answer has number {}",
            lesson.number
        ));
    }
    if blank(&lesson.title) {
        return invalid("the lesson title is empty");
    }
    if blank(&lesson.content_md) {
        return invalid("content_md is empty: it must hold the whole lesson in markdown");
    }
    let n = lesson.quiz.len();
    if !(MIN_QUIZ_QUESTIONS..=MAX_QUIZ_QUESTIONS).contains(&n) {
        return invalid(format!(
            "the quiz must have {MIN_QUIZ_QUESTIONS} to {MAX_QUIZ_QUESTIONS} questions, it has {n}"
        ));
    }
    crate::domain::elements::validate(&lesson.elements).map_err(InvalidAnswer)?;
    for (i, q) in lesson.quiz.iter().enumerate() {
        let i = i + 1;
        if blank(&q.question) {
            return invalid(format!("quiz question {i} is empty"));
        }
        if q.options.len() < 2 {
            return invalid(format!(
                "quiz question {i} must have at least 2 options, it has {}",
                q.options.len()
            ));
        }
        if q.options.iter().any(|o| blank(o)) {
            return invalid(format!("quiz question {i} has an empty option"));
        }
        if q.answer_index as usize >= q.options.len() {
            return invalid(format!(
                "quiz question {i} has answer_index {} but only {} options (indexes start at 0)",
                q.answer_index,
                q.options.len()
            ));
        }
    }
    Ok(())
}
