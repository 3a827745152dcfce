//! The `course_summary` projector: counts of courses by (user, day, status,
//! deleted), rolled up by the views of `projections/0003_course_summary.sql`.
//!
//! It reads only the events that change a course's cell, and never decodes
//! the large outline and lesson payloads.

use super::{readable, run_ops, ApplyError, Decoded, Op, Param};
use crate::domain::CourseEvent;

/// Whether the projection needs events of this type at all.
pub fn wants(event_type: &str) -> bool {
    matches!(
        event_type,
        "CourseRequested"
            | "GenerationStarted"
            | "CourseCompleted"
            | "CourseFailed"
            | "GenerationRetried"
            | "CourseDeleted"
            | "CourseRestored"
    )
}

const INSERT_COURSE: usize = 0;
const LEAVE_CELL: usize = 1;
const MOVE: usize = 2;
const ENTER_CELL: usize = 3;

const STATEMENTS: [&str; 4] = [
    "INSERT INTO course_summary_courses{s} (course_id, user_id, day, status)
     VALUES ($1, $2, ($3::timestamptz AT TIME ZONE 'UTC')::date, 'QUEUED')",
    "UPDATE course_summary{s} AS s SET courses = s.courses - 1
     FROM course_summary_courses{s} AS c
     WHERE c.course_id = $1 AND s.user_id = c.user_id AND s.day = c.day
       AND s.status = c.status AND s.deleted = c.deleted",
    "UPDATE course_summary_courses{s}
     SET status = coalesce($2, status), deleted = coalesce($3, deleted)
     WHERE course_id = $1",
    "INSERT INTO course_summary{s} AS s (user_id, day, status, deleted, courses)
     SELECT user_id, day, status, deleted, 1 FROM course_summary_courses{s} WHERE course_id = $1
     ON CONFLICT (user_id, day, status, deleted) DO UPDATE SET courses = s.courses + 1",
];

fn p<T: tokio_postgres::types::ToSql + Sync + Send + 'static>(v: T) -> Param {
    Box::new(v)
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
    let mut ops = Vec::new();
    for (d, event) in readable(events)? {
        let id = d.stream_id;
        let mut op = |statement: usize, params: Vec<Param>| {
            ops.push(Op {
                statement,
                params,
                position: d.position,
            })
        };
        let (status, deleted): (Option<&str>, Option<bool>) = match event {
            CourseEvent::CourseRequested(r) => {
                op(INSERT_COURSE, vec![p(id), p(r.user_id), p(d.recorded_at)]);
                op(ENTER_CELL, vec![p(id)]);
                continue;
            }
            CourseEvent::GenerationStarted(_) => (Some("GENERATING"), None),
            CourseEvent::CourseCompleted(_) => (Some("READY"), None),
            CourseEvent::CourseFailed(_) => (Some("FAILED"), None),
            CourseEvent::GenerationRetried(_) => (Some("QUEUED"), None),
            CourseEvent::CourseDeleted(_) => (None, Some(true)),
            CourseEvent::CourseRestored(_) => (None, Some(false)),
            CourseEvent::OutlineGenerated(_) | CourseEvent::LessonGenerated(_) => continue,
        };
        op(LEAVE_CELL, vec![p(id)]);
        op(MOVE, vec![p(id), p(status.map(str::to_owned)), p(deleted)]);
        op(ENTER_CELL, vec![p(id)]);
    }
    run_ops(tx, &statements, &ops).await
}
