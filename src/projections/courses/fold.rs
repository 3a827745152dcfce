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
use crate::domain::{CourseEvent, CourseStatus, QuizQuestion, SourceRef};
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
pub(super) struct Quiz<'a> {
    pub questions: &'a [QuizQuestion],
    /// Like [`BodyRow::from_log`]: the server copies the questions from the
    /// event's `quiz` when the payload has the current shape.
    pub from_log: Option<i64>,
    /// The lesson was generated before: questions past the new quiz's
    /// length are dropped.
    pub replaces: bool,
}

/// A row of `lesson_bodies`.
#[derive(Debug, PartialEq)]
pub(super) struct BodyRow {
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

/// What a batch changes.
#[derive(Debug)]
pub(super) struct Changes<'a> {
    /// Every course loaded or requested in the batch, changed or not.
    pub courses: HashMap<Uuid, CourseRecord>,
    /// The courses to write. Their slugs are not numbered yet (a new
    /// course's is empty): that needs the other courses of the base.
    pub dirty_courses: BTreeSet<Uuid>,
    /// Every lesson loaded or planned in the batch.
    pub lessons: HashMap<(Uuid, i32), LessonRow>,
    pub dirty_lessons: BTreeSet<(Uuid, i32)>,
    pub bodies: HashMap<(Uuid, i32), BodyRow>,
    pub checks: HashMap<(Uuid, i32), Quiz<'a>>,
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

/// Folds `events` (in log order) into the loaded `courses` and `lessons`.
///
/// # Errors
/// A course requested twice.
pub(super) fn fold<'a>(
    mut courses: HashMap<Uuid, CourseRecord>,
    mut lessons: HashMap<(Uuid, i32), LessonRow>,
    events: &[(&Decoded, &'a CourseEvent)],
) -> Result<Changes<'a>, ApplyError> {
    let mut dirty_courses: BTreeSet<Uuid> = BTreeSet::new();
    let mut dirty_lessons: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let mut bodies: HashMap<(Uuid, i32), BodyRow> = HashMap::new();
    let mut checks: HashMap<(Uuid, i32), Quiz<'a>> = HashMap::new();

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
                checks.insert(
                    key,
                    Quiz {
                        questions: &l.quiz,
                        from_log: current.then_some(d.position.global_position),
                        replaces,
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
                let base = slug_base(&o.title);
                if base != c.slug_base {
                    c.slug_base = base;
                    c.slug_position = d.position;
                }
            }
            CourseEvent::LessonGenerated(l) => {
                c.lessons_generated += 1;
                c.prompt_tokens += big(l.usage.prompt_tokens);
                c.completion_tokens += big(l.usage.completion_tokens);
                c.total_tokens += big(l.usage.total_tokens);
                for s in distinct_sources(&l.sources) {
                    if !c.sources.contains(&s) {
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
        }
    }
    Ok(Changes {
        courses,
        dirty_courses,
        lessons,
        dirty_lessons,
        bodies,
        checks,
    })
}

#[cfg(test)]
mod tests {
    //! Given these events (and these stored rows), then these row changes.

    use chrono::TimeZone;

    use super::*;
    use crate::domain::{
        CourseCompleted, CourseDeleted, CourseFailed, CourseRequested, CourseRestored,
        GenerationRetried, GenerationStarted, LessonGenerated, LessonPlan, LessonSection,
        OutlineGenerated, TokenUsage,
    };
    use crate::projections::readable;
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
            })
            .collect()
    }

    fn usage(total: u64) -> TokenUsage {
        TokenUsage {
            prompt_tokens: total / 2,
            completion_tokens: total - total / 2,
            total_tokens: total,
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
                })
                .collect(),
            model: "offline".into(),
            usage: usage(100),
        })
    }

    fn fold_new(decoded: &[Decoded]) -> Result<Changes<'_>, ApplyError> {
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
}
