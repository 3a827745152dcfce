//! Course state (a fold of its events) and the decisions taken against it.

use std::collections::{BTreeMap, BTreeSet};

use super::events::*;
use super::metadata::{CourseMetadata, MetadataChange};
use super::request::{CourseRequest, Reason};
use super::status::CourseStatus;
use super::subtitles::{self, Cue};

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
    /// Each generated lesson's cues in the course's language, from its
    /// narration script (what the subtitles step records).
    pub narration: BTreeMap<u32, Vec<Cue>>,
    /// Recorded subtitles: (lesson, language) and their cues.
    pub subtitles: BTreeMap<(u32, String), Vec<Cue>>,
    /// Languages to translate into, in the order asked.
    pub subtitle_languages: Vec<String>,
    /// Languages whose translation failed (until asked for again).
    pub failed_languages: BTreeSet<String>,
    /// Subtitles were asked for and the work is not marked done yet.
    pub subtitles_open: bool,
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
            Some(CourseStatus::Ready) if self.subtitles_open => self
                .next_subtitle_step()
                .unwrap_or(NextStep::FinishSubtitles),
            None | Some(CourseStatus::Ready) | Some(CourseStatus::Failed) => NextStep::Nothing,
            Some(CourseStatus::Queued) => NextStep::Start,
            Some(CourseStatus::Generating) if self.outline.is_none() => NextStep::Outline,
            Some(CourseStatus::Generating) => match self.next_missing_lesson() {
                Some(n) => NextStep::Lesson(n),
                None => self.next_subtitle_step().unwrap_or(NextStep::Complete),
            },
        }
    }

    /// The language the lessons are written in (subtitles are made in it
    /// first, then translated).
    pub(crate) fn source_language(&self) -> &str {
        self.request.as_ref().map_or("en", |r| r.language.as_str())
    }

    /// The next subtitle step: the course language's track of a lesson that
    /// has none, then each asked-for language lesson by lesson.
    fn next_subtitle_step(&self) -> Option<NextStep> {
        let outline = self.outline.as_ref()?;
        let source = self.source_language();
        let lessons = || {
            outline
                .lessons
                .iter()
                .map(|l| l.number)
                .filter(|n| self.lessons_done.contains(n))
        };
        let has = |n: u32, lang: &str| self.subtitles.contains_key(&(n, lang.to_owned()));
        if let Some(n) = lessons().find(|n| !has(*n, source) && self.narration.contains_key(n)) {
            return Some(NextStep::Subtitles(n));
        }
        for lang in &self.subtitle_languages {
            if self.failed_languages.contains(lang) {
                continue;
            }
            if let Some(n) = lessons().find(|n| has(*n, source) && !has(*n, lang)) {
                return Some(NextStep::Translate(n));
            }
        }
        None
    }

    /// The language [`NextStep::Translate`] translates into.
    pub(crate) fn next_translation_language(&self) -> Option<&str> {
        let source = self.source_language();
        self.subtitle_languages
            .iter()
            .filter(|l| !self.failed_languages.contains(*l))
            .find(|l| {
                self.lessons_done.iter().any(|n| {
                    self.subtitles.contains_key(&(*n, source.to_owned()))
                        && !self.subtitles.contains_key(&(*n, (*l).clone()))
                })
            })
            .map(String::as_str)
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
    /// Record lesson n's subtitles in the course's language.
    Subtitles(u32),
    /// Translate lesson n's subtitles (into `next_translation_language`).
    Translate(u32),
    /// Mark the subtitles asked for after READY as done.
    FinishSubtitles,
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
    RecordSubtitles(SubtitlesGenerated),
    RequestSubtitles { languages: Vec<String> },
    FailSubtitles(SubtitlesFailed),
    FinishSubtitles,
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
    #[error("lesson {0} is not generated yet")]
    LessonMissing(u32),
    #[error("lesson {lesson} already has subtitles in {language}")]
    SubtitlesExist { lesson: u32, language: String },
    #[error("the subtitles of lesson {lesson} are invalid: {reason}")]
    InvalidCues { lesson: u32, reason: String },
    #[error("subtitles are still missing")]
    SubtitlesMissing,
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
        Command::RecordSubtitles(track) => {
            if !matches!(status, Some(Generating | Ready)) {
                return refuse("record subtitles for");
            }
            if !course.lessons_done.contains(&track.lesson) {
                return Err(DomainError::LessonMissing(track.lesson));
            }
            if course
                .subtitles
                .contains_key(&(track.lesson, track.language.clone()))
            {
                return Err(DomainError::SubtitlesExist {
                    lesson: track.lesson,
                    language: track.language,
                });
            }
            subtitles::validate(&track.cues).map_err(|reason| DomainError::InvalidCues {
                lesson: track.lesson,
                reason,
            })?;
            Ok(vec![track.into()])
        }
        Command::RequestSubtitles { languages } => {
            if status == Some(Failed) {
                return refuse("add subtitles to");
            }
            if course.deleted {
                return Err(DomainError::Deleted);
            }
            let mut new: Vec<String> = Vec::new();
            for l in languages {
                let pending =
                    course.subtitle_languages.contains(&l) && !course.failed_languages.contains(&l);
                if l != course.source_language() && !pending && !new.contains(&l) {
                    new.push(l);
                }
            }
            if new.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![SubtitlesRequested { languages: new }.into()])
        }
        Command::FailSubtitles(failed) => match status {
            Some(Generating | Ready) => Ok(vec![failed.into()]),
            _ => refuse("fail subtitles of"),
        },
        Command::FinishSubtitles => {
            if status != Some(Ready) || !course.subtitles_open {
                return refuse("finish subtitles of");
            }
            if course.next_subtitle_step().is_some() {
                return Err(DomainError::SubtitlesMissing);
            }
            Ok(vec![SubtitlesCompleted {
                languages: course
                    .subtitle_languages
                    .iter()
                    .filter(|l| !course.failed_languages.contains(*l))
                    .cloned()
                    .collect(),
            }
            .into()])
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
            course.subtitle_languages = e.subtitle_languages.clone();
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
            let script = subtitles::narration_script(&e.title, &e.content_md);
            course.narration.insert(e.number, subtitles::cues(&script));
        }
        CourseEvent::CourseCompleted(_) => {
            course.status = Some(CourseStatus::Ready);
            course.subtitles_open = false;
        }
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
        CourseEvent::SubtitlesGenerated(e) => {
            course.usage = course.usage + e.usage;
            course
                .subtitles
                .insert((e.lesson, e.language.clone()), e.cues.clone());
        }
        CourseEvent::SubtitlesRequested(e) => {
            for l in &e.languages {
                course.failed_languages.remove(l);
                if !course.subtitle_languages.contains(l) {
                    course.subtitle_languages.push(l.clone());
                }
            }
            course.subtitles_open = true;
        }
        CourseEvent::SubtitlesFailed(e) => {
            course.failed_languages.insert(e.language.clone());
        }
        CourseEvent::SubtitlesCompleted(_) => course.subtitles_open = false,
    }
    course
}
