//! The pure part of the `courses` projector: a batch of events folded, in
//! log order, into the rows they change. No I/O: the rows the batch touches
//! come in loaded, the changes go out to the writer.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::queries::CourseRecord;
use super::slugs::slug_base;
use super::LessonStatus;
use crate::domain::{CourseEvent, CourseStatus, InteractiveElement, QuizQuestion, SourceRef};
use crate::projections::{ApplyError, Decoded};

/// A row of `lessons` (keyed by course and lesson number).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LessonRow {
    pub title: String,
    pub concepts: Vec<String>,
    pub objectives: Vec<String>,
    pub status: LessonStatus,
    pub generated_at: Option<DateTime<Utc>>,
}

/// A lesson's quiz, as its latest `LessonGenerated` in the batch has it.
#[derive(Debug, PartialEq)]
pub(crate) struct Quiz {
    pub questions: Vec<QuizQuestion>,
    /// Like [`BodyRow::from_log`]: the server copies the questions from the
    /// event's `quiz` when the payload has the current shape.
    pub from_log: Option<i64>,
    /// The lesson was generated before: its old questions and elements are
    /// dropped before the new ones are written (only such a lesson has any).
    pub replaces: bool,
}

/// A row of `lesson_bodies`.
#[derive(Debug, PartialEq)]
pub(crate) struct BodyRow {
    /// The event's global position when its payload already has the current
    /// shape: the server then copies the content straight from the log
    /// (`payload->>'content_md'`, `payload->'sections'`), the same values the
    /// decoded event holds, without shipping them back and forth.
    pub from_log: Option<i64>,
    /// The content, for upcast payloads only.
    pub content_md: Option<String>,
    pub content_json: Option<Value>,
    pub sources: Value,
    pub model: String,
    pub total_tokens: i64,
    pub generated_at: DateTime<Utc>,
}

/// A row of `subtitles`.
#[derive(Debug, PartialEq)]
pub(crate) struct SubtitleRow {
    /// Like [`BodyRow::from_log`]: the server copies the cues from the
    /// event's `cues` when the payload has the current shape.
    pub from_log: Option<i64>,
    /// The cues, for upcast payloads only.
    pub cues: Option<Value>,
    pub model: Option<String>,
    pub total_tokens: i64,
    pub generated_at: DateTime<Utc>,
}

/// What a batch changes.
#[derive(Debug)]
pub(super) struct Changes {
    /// Every course loaded or requested in the batch, changed or not.
    pub courses: HashMap<Uuid, CourseRecord>,
    /// The courses to write. Their slugs are not numbered yet (a new
    /// course's is empty): that needs the other courses of the base.
    pub dirty_courses: BTreeSet<Uuid>,
    /// Every lesson loaded or planned in the batch.
    pub lessons: HashMap<(Uuid, i32), LessonRow>,
    pub dirty_lessons: BTreeSet<(Uuid, i32)>,
    pub bodies: HashMap<(Uuid, i32), BodyRow>,
    pub checks: HashMap<(Uuid, i32), Quiz>,
    /// Each lesson's elements, as its latest `LessonGenerated` in the batch
    /// has them; written from here only for upcast payloads (the server
    /// copies the others from the log, like [`BodyRow::from_log`], and a
    /// rebuild reads the current shape without them).
    pub elements: HashMap<(Uuid, i32), Vec<InteractiveElement>>,
    /// Each (lesson, language)'s latest track in the batch.
    pub subtitles: HashMap<(Uuid, i32, String), SubtitleRow>,
}

/// The courses a batch touches: the `courses` rows to load.
pub(super) fn course_ids(events: &[(&Decoded, &CourseEvent)]) -> Vec<Uuid> {
    events
        .iter()
        .map(|(d, _)| d.stream_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The courses whose lessons a batch touches: the `lessons` rows to load.
pub(super) fn lesson_course_ids(events: &[(&Decoded, &CourseEvent)]) -> Vec<Uuid> {
    events
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                CourseEvent::OutlineGenerated(_) | CourseEvent::LessonGenerated(_)
            )
        })
        .map(|(d, _)| d.stream_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// A count or number as `int4`, saturated.
pub(super) fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A lesson's sources without repeats, first occurrence first.
fn distinct_sources(sources: &[SourceRef]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(sources.len());
    for s in sources {
        let v = serde_json::to_value(s).expect("sources serialize");
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// What makes a source one entry of a course's union: the chunk it cites
/// (its label `[Sn]` is the lesson's own), else the whole reference.
fn union_key(source: &Value) -> &Value {
    source.pointer("/cited/chunk_id").unwrap_or(source)
}

/// Distinct and sorted (as the recount's SQL orders them).
fn sorted<'s>(items: impl Iterator<Item = &'s String>) -> Vec<String> {
    items
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Folds `events` (in log order) into the loaded `courses` and `lessons`.
///
/// # Errors
/// A course requested twice.
pub(super) fn fold(
    mut courses: HashMap<Uuid, CourseRecord>,
    mut lessons: HashMap<(Uuid, i32), LessonRow>,
    events: &[(&Decoded, &CourseEvent)],
) -> Result<Changes, ApplyError> {
    let mut dirty_courses: BTreeSet<Uuid> = BTreeSet::new();
    let mut dirty_lessons: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let mut bodies: HashMap<(Uuid, i32), BodyRow> = HashMap::new();
    let mut checks: HashMap<(Uuid, i32), Quiz> = HashMap::new();
    let mut elements: HashMap<(Uuid, i32), Vec<InteractiveElement>> = HashMap::new();
    let mut subtitles: HashMap<(Uuid, i32, String), SubtitleRow> = HashMap::new();

    for &(d, event) in events {
        let id = d.stream_id;
        let at = d.recorded_at;
        if let CourseEvent::CourseRequested(r) = event {
            if courses.contains_key(&id) {
                return Err(ApplyError::Event {
                    position: d.position,
                    error: format!("course {id} was already requested"),
                });
            }
            courses.insert(
                id,
                CourseRecord {
                    id,
                    user_id: r.user_id,
                    request_id: r.request_id,
                    title: None,
                    description: None,
                    slug: String::new(),
                    slug_base: slug_base(&r.topic),
                    slug_position: d.position,
                    topic: r.topic.clone(),
                    grade_level: r.grade_level.clone(),
                    language: r.language.clone(),
                    source_filter: r.source_filter.clone(),
                    status: CourseStatus::Queued,
                    error_message: None,
                    total_lessons: i32::from(r.num_lessons),
                    lessons_generated: 0,
                    sources: Vec::new(),
                    prompt_tokens: 0,
                    completion_tokens: 0,
                    total_tokens: 0,
                    attempt: 0,
                    model: None,
                    created_at: at,
                    updated_at: at,
                    generated_at: None,
                    deleted_at: None,
                    author: r.metadata.author.clone(),
                    tags: r.metadata.tags.clone(),
                    difficulty: r.metadata.difficulty,
                    prerequisites: r.metadata.prerequisites.clone(),
                    learning_outcomes: r.metadata.learning_outcomes.clone(),
                    estimated_minutes: 0,
                    subtitle_languages: sorted(r.subtitle_languages.iter()),
                    subtitles_generated: 0,
                },
            );
            dirty_courses.insert(id);
            continue;
        }
        // Lessons, bodies and checks are kept even for an unknown course.
        match event {
            CourseEvent::OutlineGenerated(o) => {
                for l in &o.lessons {
                    let key = (id, int(l.number));
                    lessons
                        .entry(key)
                        .and_modify(|row| {
                            row.title = l.title.clone();
                            row.concepts = l.concepts.clone();
                            row.objectives = l.objectives.clone();
                        })
                        .or_insert_with(|| LessonRow {
                            title: l.title.clone(),
                            concepts: l.concepts.clone(),
                            objectives: l.objectives.clone(),
                            status: LessonStatus::Pending,
                            generated_at: None,
                        });
                    dirty_lessons.insert(key);
                }
            }
            CourseEvent::LessonGenerated(l) => {
                let key = (id, int(l.number));
                let replaces = lessons
                    .get(&key)
                    .is_some_and(|row| row.status == LessonStatus::Generated);
                lessons
                    .entry(key)
                    .and_modify(|row| {
                        row.title = l.title.clone();
                        row.status = LessonStatus::Generated;
                        row.generated_at = Some(at);
                    })
                    .or_insert_with(|| LessonRow {
                        title: l.title.clone(),
                        concepts: Vec::new(),
                        objectives: Vec::new(),
                        status: LessonStatus::Generated,
                        generated_at: Some(at),
                    });
                dirty_lessons.insert(key);
                let current = d.event_version == event.event_version();
                bodies.insert(
                    key,
                    if current {
                        BodyRow {
                            from_log: Some(d.position.global_position),
                            content_md: None,
                            content_json: None,
                            sources: Value::Array(distinct_sources(&l.sources)),
                            model: l.model.clone(),
                            total_tokens: big(l.usage.total_tokens),
                            generated_at: at,
                        }
                    } else {
                        BodyRow {
                            from_log: None,
                            content_md: Some(l.content_md.clone()),
                            content_json: Some(
                                serde_json::to_value(&l.sections).expect("sections"),
                            ),
                            sources: Value::Array(distinct_sources(&l.sources)),
                            model: l.model.clone(),
                            total_tokens: big(l.usage.total_tokens),
                            generated_at: at,
                        }
                    },
                );
                elements.insert(key, l.elements.clone());
                checks.insert(
                    key,
                    Quiz {
                        questions: l.quiz.clone(),
                        from_log: current.then_some(d.position.global_position),
                        replaces,
                    },
                );
            }
            CourseEvent::SubtitlesGenerated(t) => {
                let current = d.event_version == event.event_version();
                subtitles.insert(
                    (id, int(t.lesson), t.language.clone()),
                    SubtitleRow {
                        from_log: current.then_some(d.position.global_position),
                        cues: (!current)
                            .then(|| serde_json::to_value(&t.cues).expect("cues serialize")),
                        model: t.model.clone(),
                        total_tokens: big(t.usage.total_tokens),
                        generated_at: at,
                    },
                );
            }
            _ => {}
        }
        let Some(c) = courses.get_mut(&id) else {
            continue;
        };
        dirty_courses.insert(id);
        c.updated_at = at;
        match event {
            CourseEvent::CourseRequested(_) => unreachable!("handled above"),
            CourseEvent::GenerationStarted(s) => {
                c.status = CourseStatus::Generating;
                c.attempt = int(s.attempt);
                c.model = Some(s.model.clone());
                c.error_message = None;
            }
            CourseEvent::OutlineGenerated(o) => {
                c.title = Some(o.title.clone());
                c.description = Some(o.description.clone());
                c.total_lessons = i32::try_from(o.lessons.len()).unwrap_or(i32::MAX);
                c.prompt_tokens += big(o.usage.prompt_tokens);
                c.completion_tokens += big(o.usage.completion_tokens);
                c.total_tokens += big(o.usage.total_tokens);
                // The outline's proposals fill what the request left empty.
                if c.tags.is_empty() {
                    c.tags = o.tags.clone();
                }
                if c.difficulty.is_none() {
                    c.difficulty = o.difficulty;
                }
                if c.learning_outcomes.is_empty() {
                    c.learning_outcomes = o.learning_outcomes.clone();
                }
                let base = slug_base(&o.title);
                if base != c.slug_base {
                    c.slug_base = base;
                    c.slug_position = d.position;
                }
            }
            CourseEvent::LessonGenerated(l) => {
                c.lessons_generated += 1;
                c.estimated_minutes = c.estimated_minutes.saturating_add(int(l.estimated_minutes));
                c.prompt_tokens += big(l.usage.prompt_tokens);
                c.completion_tokens += big(l.usage.completion_tokens);
                c.total_tokens += big(l.usage.total_tokens);
                for s in distinct_sources(&l.sources) {
                    if !c.sources.iter().any(|o| union_key(o) == union_key(&s)) {
                        c.sources.push(s);
                    }
                }
            }
            CourseEvent::CourseCompleted(done) => {
                c.status = CourseStatus::Ready;
                c.total_lessons = int(done.total_lessons);
                c.error_message = None;
                c.generated_at = Some(at);
            }
            CourseEvent::CourseFailed(f) => {
                c.status = CourseStatus::Failed;
                c.error_message = Some(format!("{}: {}", f.step, f.error));
            }
            CourseEvent::GenerationRetried(_) => {
                c.status = CourseStatus::Queued;
                c.error_message = None;
            }
            CourseEvent::CourseDeleted(_) => c.deleted_at = Some(at),
            CourseEvent::CourseRestored(_) => c.deleted_at = None,
            CourseEvent::SubtitlesGenerated(t) => {
                c.subtitles_generated += 1;
                c.prompt_tokens += big(t.usage.prompt_tokens);
                c.completion_tokens += big(t.usage.completion_tokens);
                c.total_tokens += big(t.usage.total_tokens);
            }
            CourseEvent::SubtitlesRequested(r) => {
                c.subtitle_languages = sorted(c.subtitle_languages.iter().chain(&r.languages));
            }
            CourseEvent::SubtitlesFailed(_) | CourseEvent::SubtitlesCompleted(_) => {}
            CourseEvent::CourseMetadataChanged(m) => {
                let m = &m.change;
                if let Some(a) = &m.author {
                    c.author = Some(a.clone());
                }
                if let Some(t) = &m.tags {
                    c.tags = t.clone();
                }
                if let Some(l) = &m.language {
                    c.language = l.clone();
                }
                if let Some(d) = m.difficulty {
                    c.difficulty = Some(d);
                }
                if let Some(p) = &m.prerequisites {
                    c.prerequisites = p.clone();
                }
                if let Some(o) = &m.learning_outcomes {
                    c.learning_outcomes = o.clone();
                }
            }
        }
    }
    Ok(Changes {
        courses,
        dirty_courses,
        lessons,
        dirty_lessons,
        bodies,
        checks,
        elements,
        subtitles,
    })
}
