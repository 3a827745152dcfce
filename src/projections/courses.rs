//! The `courses` projector: `courses`, `lessons`, `lesson_bodies` and
//! `lesson_checks` (SQL in `projections/0002_courses.sql`).
//!
//! Every column is a function of the events only (times are the events'
//! `recorded_at`, never `now()`), so a replay rebuilds exactly the same rows.

use serde_json::Value;

use super::{readable, run_ops, ApplyError, Decoded, Op, Param};
use crate::domain::{CourseEvent, SourceRef};

const INSERT_COURSE: usize = 0;
const START: usize = 1;
const OUTLINE: usize = 2;
const PLAN_LESSON: usize = 3;
const LESSON_DONE: usize = 4;
const LESSON_BODY: usize = 5;
const LESSON_CHECKS: usize = 6;
const LESSON_COURSE: usize = 7;
const COMPLETE: usize = 8;
const FAIL: usize = 9;
const RETRY: usize = 10;
const DELETE: usize = 11;
const RESTORE: usize = 12;

/// The statements, `{s}` standing for the table suffix.
const STATEMENTS: [&str; 13] = [
    "INSERT INTO courses{s} (id, user_id, request_id, topic, grade_level, language, source_filter,
                             status, total_lessons, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, 'QUEUED', $8, $9, $9)",
    "UPDATE courses{s} SET status = 'GENERATING', attempt = $2, model = $3, error_message = NULL,
                           updated_at = $4
     WHERE id = $1",
    "UPDATE courses{s} SET title = $2, description = $3, total_lessons = $4,
                           prompt_tokens = prompt_tokens + $5, completion_tokens = completion_tokens + $6,
                           total_tokens = total_tokens + $7, updated_at = $8
     WHERE id = $1",
    "INSERT INTO lessons{s} (course_id, lesson_number, title, concepts, objectives, status)
     VALUES ($1, $2, $3, $4, $5, 'PENDING')
     ON CONFLICT (course_id, lesson_number) DO UPDATE
     SET title = EXCLUDED.title, concepts = EXCLUDED.concepts, objectives = EXCLUDED.objectives",
    "INSERT INTO lessons{s} (course_id, lesson_number, title, status, generated_at)
     VALUES ($1, $2, $3, 'GENERATED', $4)
     ON CONFLICT (course_id, lesson_number) DO UPDATE
     SET title = EXCLUDED.title, status = 'GENERATED', generated_at = EXCLUDED.generated_at",
    "INSERT INTO lesson_bodies{s} (course_id, lesson_number, content_md, content_json, sources, model,
                                   total_tokens, generated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (course_id, lesson_number) DO UPDATE
     SET content_md = EXCLUDED.content_md, content_json = EXCLUDED.content_json,
         sources = EXCLUDED.sources, model = EXCLUDED.model,
         total_tokens = EXCLUDED.total_tokens, generated_at = EXCLUDED.generated_at",
    "INSERT INTO lesson_checks{s} (course_id, lesson_number, question_number, question, options,
                                   answer_index, explanation)
     SELECT $1, $2, q.ord::int, q.question, q.options, q.answer_index, q.explanation
     FROM unnest($3::text[], $4::jsonb[], $5::int[], $6::text[])
          WITH ORDINALITY AS q(question, options, answer_index, explanation, ord)
     ON CONFLICT (course_id, lesson_number, question_number) DO UPDATE
     SET question = EXCLUDED.question, options = EXCLUDED.options,
         answer_index = EXCLUDED.answer_index, explanation = EXCLUDED.explanation",
    "UPDATE courses{s} AS c
     SET lessons_generated = c.lessons_generated + 1,
         prompt_tokens = c.prompt_tokens + $2, completion_tokens = c.completion_tokens + $3,
         total_tokens = c.total_tokens + $4,
         sources = c.sources || coalesce(
             (SELECT jsonb_agg(n.x ORDER BY n.o)
              FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS n(x, o)
              WHERE NOT c.sources @> jsonb_build_array(n.x)), '[]'::jsonb),
         updated_at = $6
     WHERE c.id = $1",
    "UPDATE courses{s} SET status = 'READY', total_lessons = $2, error_message = NULL,
                           generated_at = $3, updated_at = $3
     WHERE id = $1",
    "UPDATE courses{s} SET status = 'FAILED', error_message = $2, updated_at = $3 WHERE id = $1",
    "UPDATE courses{s} SET status = 'QUEUED', error_message = NULL, updated_at = $2 WHERE id = $1",
    "UPDATE courses{s} SET deleted_at = $2, updated_at = $2 WHERE id = $1",
    "UPDATE courses{s} SET deleted_at = NULL, updated_at = $2 WHERE id = $1",
];

fn p<T: tokio_postgres::types::ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A lesson's sources without repeats, first occurrence first.
fn distinct_sources(sources: &[SourceRef]) -> Value {
    let mut seen: Vec<&SourceRef> = Vec::with_capacity(sources.len());
    for s in sources {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    serde_json::to_value(seen).expect("sources serialize")
}

/// Applies `events` to the tables with `suffix`.
pub(crate) async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    events: &[Decoded],
) -> Result<(), ApplyError> {
    let statements: Vec<String> = STATEMENTS
        .iter()
        .map(|s| s.replace("{s}", suffix))
        .collect();
    let mut ops = Vec::with_capacity(events.len() * 3);
    for (d, event) in readable(events)? {
        let id = d.stream_id;
        let at = d.recorded_at;
        let mut op = |statement: usize, params: Vec<Param>| {
            ops.push(Op {
                statement,
                params,
                position: d.position,
            })
        };
        match event {
            CourseEvent::CourseRequested(r) => op(
                INSERT_COURSE,
                vec![
                    p(id),
                    p(r.user_id),
                    p(r.request_id),
                    p(r.topic.clone()),
                    p(r.grade_level.clone()),
                    p(r.language.clone()),
                    p(r.source_filter.clone()),
                    p(i32::from(r.num_lessons)),
                    p(at),
                ],
            ),
            CourseEvent::GenerationStarted(s) => op(
                START,
                vec![p(id), p(int(s.attempt)), p(s.model.clone()), p(at)],
            ),
            CourseEvent::OutlineGenerated(o) => {
                op(
                    OUTLINE,
                    vec![
                        p(id),
                        p(o.title.clone()),
                        p(o.description.clone()),
                        p(i32::try_from(o.lessons.len()).unwrap_or(i32::MAX)),
                        p(big(o.usage.prompt_tokens)),
                        p(big(o.usage.completion_tokens)),
                        p(big(o.usage.total_tokens)),
                        p(at),
                    ],
                );
                for l in &o.lessons {
                    op(
                        PLAN_LESSON,
                        vec![
                            p(id),
                            p(int(l.number)),
                            p(l.title.clone()),
                            p(l.concepts.clone()),
                            p(l.objectives.clone()),
                        ],
                    );
                }
            }
            CourseEvent::LessonGenerated(l) => {
                let number = int(l.number);
                let sources = distinct_sources(&l.sources);
                op(
                    LESSON_DONE,
                    vec![p(id), p(number), p(l.title.clone()), p(at)],
                );
                op(
                    LESSON_BODY,
                    vec![
                        p(id),
                        p(number),
                        p(l.content_md.clone()),
                        p(serde_json::to_value(&l.sections).expect("sections serialize")),
                        p(sources.clone()),
                        p(l.model.clone()),
                        p(big(l.usage.total_tokens)),
                        p(at),
                    ],
                );
                if !l.quiz.is_empty() {
                    op(
                        LESSON_CHECKS,
                        vec![
                            p(id),
                            p(number),
                            p(l.quiz
                                .iter()
                                .map(|q| q.question.clone())
                                .collect::<Vec<_>>()),
                            p(l.quiz
                                .iter()
                                .map(|q| serde_json::to_value(&q.options).expect("options"))
                                .collect::<Vec<_>>()),
                            p(l.quiz
                                .iter()
                                .map(|q| int(q.answer_index))
                                .collect::<Vec<_>>()),
                            p(l.quiz
                                .iter()
                                .map(|q| q.explanation.clone())
                                .collect::<Vec<_>>()),
                        ],
                    );
                }
                op(
                    LESSON_COURSE,
                    vec![
                        p(id),
                        p(big(l.usage.prompt_tokens)),
                        p(big(l.usage.completion_tokens)),
                        p(big(l.usage.total_tokens)),
                        p(sources),
                        p(at),
                    ],
                );
            }
            CourseEvent::CourseCompleted(c) => {
                op(COMPLETE, vec![p(id), p(int(c.total_lessons)), p(at)])
            }
            CourseEvent::CourseFailed(f) => op(
                FAIL,
                vec![p(id), p(format!("{}: {}", f.step, f.error)), p(at)],
            ),
            CourseEvent::GenerationRetried(_) => op(RETRY, vec![p(id), p(at)]),
            CourseEvent::CourseDeleted(_) => op(DELETE, vec![p(id), p(at)]),
            CourseEvent::CourseRestored(_) => op(RESTORE, vec![p(id), p(at)]),
        }
    }
    run_ops(tx, &statements, &ops).await
}
