//! Course state (a fold of its events) and the decisions taken against it.

use std::collections::BTreeSet;

use super::events::*;
use super::metadata::{CourseMetadata, MetadataChange};
use super::request::{CourseRequest, Reason};
use super::status::CourseStatus;

/// A course as its events left it. `Course::default()` is "no events yet".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Course {
    /// Number of events folded in; the next event gets this stream version.
    pub version: u32,
    pub status: Option<CourseStatus>,
    pub request: Option<CourseRequested>,
    /// Attempt number of the latest `GenerationStarted` (0 before the first).
    pub attempt: u32,
    pub outline: Option<OutlineGenerated>,
    /// Lesson numbers already generated.
    pub lessons_done: BTreeSet<u32>,
    pub usage: TokenUsage,
    pub failure: Option<CourseFailed>,
    pub deleted: bool,
    /// The metadata in effect: edits over the request over the outline's proposal.
    pub metadata: CourseMetadata,
    /// The language in effect (the request's until an edit changes it).
    pub language: String,
    /// Sum of the generated lessons' estimated minutes.
    pub estimated_minutes: u32,
}

impl Course {
    /// Folds a whole stream (the given/then tests' shorthand).
    #[cfg(test)]
    pub(crate) fn from_events<'a>(events: impl IntoIterator<Item = &'a CourseEvent>) -> Self {
        events.into_iter().fold(Self::default(), evolve)
    }

    /// Lessons the plan asks for (the request's count until an outline exists).
    pub(crate) fn planned_lessons(&self) -> u32 {
        match (&self.outline, &self.request) {
            (Some(o), _) => o.lessons.len() as u32,
            (None, Some(r)) => u32::from(r.num_lessons),
            (None, None) => 0,
        }
    }

    /// Lessons of the plan not generated yet. Counted over the plan, so a
    /// lesson recorded outside it (an upcast old stream may hold one) is
    /// not counted as done.
    pub(crate) fn missing_lessons(&self) -> u32 {
        match &self.outline {
            Some(o) => o
                .lessons
                .iter()
                .filter(|l| !self.lessons_done.contains(&l.number))
                .count() as u32,
            None => self.planned_lessons(),
        }
    }

    /// The first lesson of the plan not generated yet.
    pub(crate) fn next_missing_lesson(&self) -> Option<u32> {
        let outline = self.outline.as_ref()?;
        outline
            .lessons
            .iter()
            .map(|l| l.number)
            .find(|n| !self.lessons_done.contains(n))
    }

    /// The next step generation has to take, if any (for the course actor).
    /// A deleted course takes none: its generation waits, where it stopped,
    /// until it is restored.
    pub(crate) fn next_step(&self) -> NextStep {
        if self.deleted {
            return NextStep::Nothing;
        }
        match self.status {
            None | Some(CourseStatus::Ready) | Some(CourseStatus::Failed) => NextStep::Nothing,
            Some(CourseStatus::Queued) => NextStep::Start,
            Some(CourseStatus::Generating) if self.outline.is_none() => NextStep::Outline,
            Some(CourseStatus::Generating) => match self.next_missing_lesson() {
                Some(n) => NextStep::Lesson(n),
                None => NextStep::Complete,
            },
        }
    }
}

impl Course {
    /// The part of `change` that changes something: fields equal to the
    /// current values are dropped (an edit repeating them records nothing).
    fn effective_change(&self, change: MetadataChange) -> MetadataChange {
        let m = &self.metadata;
        MetadataChange {
            author: change.author.filter(|a| m.author.as_ref() != Some(a)),
            tags: change.tags.filter(|t| *t != m.tags),
            language: change.language.filter(|l| *l != self.language),
            difficulty: change.difficulty.filter(|d| m.difficulty != Some(*d)),
            prerequisites: change.prerequisites.filter(|p| *p != m.prerequisites),
            learning_outcomes: change
                .learning_outcomes
                .filter(|o| *o != m.learning_outcomes),
        }
    }
}

/// What generation of a course needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextStep {
    Start,
    Outline,
    Lesson(u32),
    Complete,
    Nothing,
}

/// Something asked of a course.
#[derive(Debug, Clone)]
pub enum Command {
    Request(CourseRequest),
    StartGeneration { model: String },
    RecordOutline(OutlineGenerated),
    RecordLesson(LessonGenerated),
    Complete,
    Fail(CourseFailed),
    Retry { reason: Option<Reason> },
    Delete { reason: Option<Reason> },
    Restore,
    ChangeMetadata(MetadataChange),
}

/// A command that the course's rules forbid in its current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the course does not exist")]
    NotFound,
    #[error("a different request already created this course")]
    RequestMismatch,
    #[error("cannot {action} a course that is {status}")]
    InvalidTransition {
        action: &'static str,
        status: CourseStatus,
    },
    #[error("the outline is already recorded")]
    OutlineExists,
    #[error("no outline yet: lessons come after the outline")]
    NoOutline,
    #[error("the outline plans {got} lessons, the request asked for {want}")]
    OutlineLessonCount { want: u32, got: u32 },
    #[error("the outline's lessons must be numbered 1..={0} in order")]
    OutlineNumbering(u32),
    #[error("lesson {0} is not in the outline")]
    LessonNotInPlan(u32),
    #[error("lesson {0} is already generated")]
    LessonExists(u32),
    #[error("{0} lessons are still missing")]
    LessonsMissing(u32),
    #[error("quiz question {question} of lesson {lesson} has answer_index {index} outside its {options} options")]
    QuizAnswerOutOfRange {
        lesson: u32,
        question: usize,
        index: u32,
        options: usize,
    },
    #[error("the interactive elements of lesson {lesson} are invalid: {reason}")]
    InvalidElements { lesson: u32, reason: String },
    #[error("the course is deleted")]
    Deleted,
    #[error("the course is not deleted")]
    NotDeleted,
}

/// Decides what a command does to a course.
///
/// Returns the events to append (empty when the command is an idempotent
/// repeat, such as the same request submitted twice).
///
/// A deleted course is not advanced: starting, completing and failing it are
/// refused (a restored course retries the step that failed). The answer of
/// a model call that was already in flight when it was deleted (an outline,
/// a lesson) is still recorded, since its tokens are paid: a restored course
/// then resumes after it instead of asking again.
///
/// # Errors
/// [`DomainError`] when the course's rules forbid the command now.
pub fn decide(course: &Course, command: Command) -> Result<Vec<CourseEvent>, DomainError> {
    use CourseStatus::*;
    let status = match (course.status, &command) {
        (None, Command::Request(_)) => None,
        (None, _) => return Err(DomainError::NotFound),
        (Some(s), _) => Some(s),
    };
    let refuse = |action: &'static str| {
        Err(DomainError::InvalidTransition {
            action,
            status: status.expect("existing course"),
        })
    };
    match command {
        Command::Request(request) => match &course.request {
            None => Ok(vec![request.into_event().into()]),
            Some(existing) if *existing == request.into_event() => Ok(vec![]),
            Some(_) => Err(DomainError::RequestMismatch),
        },
        Command::StartGeneration { model } => match status {
            Some(Queued) => {
                if course.deleted {
                    return Err(DomainError::Deleted);
                }
                Ok(vec![GenerationStarted {
                    attempt: course.attempt + 1,
                    model,
                }
                .into()])
            }
            _ => refuse("start generating"),
        },
        Command::RecordOutline(outline) => {
            if status != Some(Generating) {
                return refuse("record an outline for");
            }
            if course.outline.is_some() {
                return Err(DomainError::OutlineExists);
            }
            let want = course.planned_lessons();
            let got = outline.lessons.len() as u32;
            if got != want {
                return Err(DomainError::OutlineLessonCount { want, got });
            }
            if outline
                .lessons
                .iter()
                .enumerate()
                .any(|(i, l)| l.number != i as u32 + 1)
            {
                return Err(DomainError::OutlineNumbering(want));
            }
            Ok(vec![outline.into()])
        }
        Command::RecordLesson(lesson) => {
            if status != Some(Generating) {
                return refuse("record a lesson for");
            }
            let outline = course.outline.as_ref().ok_or(DomainError::NoOutline)?;
            if !outline.lessons.iter().any(|l| l.number == lesson.number) {
                return Err(DomainError::LessonNotInPlan(lesson.number));
            }
            if course.lessons_done.contains(&lesson.number) {
                return Err(DomainError::LessonExists(lesson.number));
            }
            for (i, q) in lesson.quiz.iter().enumerate() {
                if q.answer_index as usize >= q.options.len() {
                    return Err(DomainError::QuizAnswerOutOfRange {
                        lesson: lesson.number,
                        question: i + 1,
                        index: q.answer_index,
                        options: q.options.len(),
                    });
                }
            }
            super::elements::validate(&lesson.elements).map_err(|reason| {
                DomainError::InvalidElements {
                    lesson: lesson.number,
                    reason,
                }
            })?;
            Ok(vec![lesson.into()])
        }
        Command::Complete => {
            if status != Some(Generating) {
                return refuse("complete");
            }
            if course.outline.is_none() {
                return Err(DomainError::NoOutline);
            }
            if course.deleted {
                return Err(DomainError::Deleted);
            }
            let missing = course.missing_lessons();
            if missing > 0 {
                return Err(DomainError::LessonsMissing(missing));
            }
            Ok(vec![CourseCompleted {
                total_lessons: course.planned_lessons(),
                usage: course.usage,
            }
            .into()])
        }
        Command::Fail(failed) => match status {
            // Restoring retries the step; a failure would stop it instead.
            Some(Queued | Generating) if course.deleted => Err(DomainError::Deleted),
            Some(Queued | Generating) => Ok(vec![failed.into()]),
            _ => refuse("fail"),
        },
        Command::Retry { reason } => match status {
            Some(Failed) => {
                if course.deleted {
                    return Err(DomainError::Deleted);
                }
                Ok(vec![GenerationRetried {
                    reason: reason.map(Reason::into_inner),
                }
                .into()])
            }
            _ => refuse("retry"),
        },
        Command::Delete { reason } => {
            if course.deleted {
                return Err(DomainError::Deleted);
            }
            Ok(vec![CourseDeleted {
                reason: reason.map(Reason::into_inner),
            }
            .into()])
        }
        Command::Restore => {
            if !course.deleted {
                return Err(DomainError::NotDeleted);
            }
            Ok(vec![CourseRestored {}.into()])
        }
        Command::ChangeMetadata(change) => {
            if course.deleted {
                return Err(DomainError::Deleted);
            }
            let change = course.effective_change(change);
            if change.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![CourseMetadataChanged { change }.into()])
        }
    }
}

/// Folds one event into the state. Events in the log are facts: this never
/// fails, it records what happened.
pub fn evolve(mut course: Course, event: &CourseEvent) -> Course {
    course.version += 1;
    match event {
        CourseEvent::CourseRequested(e) => {
            course.request = Some(e.clone());
            course.status = Some(CourseStatus::Queued);
            course.metadata = e.metadata.clone();
            course.language = e.language.clone();
        }
        CourseEvent::GenerationStarted(e) => {
            course.attempt = e.attempt;
            course.status = Some(CourseStatus::Generating);
            course.failure = None;
        }
        CourseEvent::OutlineGenerated(e) => {
            course.usage = course.usage + e.usage;
            course.metadata.fill_from_outline(e);
            course.outline = Some(e.clone());
        }
        CourseEvent::LessonGenerated(e) => {
            course.usage = course.usage + e.usage;
            course.estimated_minutes += e.estimated_minutes;
            course.lessons_done.insert(e.number);
        }
        CourseEvent::CourseCompleted(_) => course.status = Some(CourseStatus::Ready),
        CourseEvent::CourseFailed(e) => {
            course.status = Some(CourseStatus::Failed);
            course.failure = Some(e.clone());
        }
        CourseEvent::GenerationRetried(_) => course.status = Some(CourseStatus::Queued),
        CourseEvent::CourseDeleted(_) => course.deleted = true,
        CourseEvent::CourseRestored(_) => course.deleted = false,
        CourseEvent::CourseMetadataChanged(e) => {
            if let Some(language) = &e.change.language {
                course.language = language.clone();
            }
            course.metadata.apply(&e.change);
        }
    }
    course
}
