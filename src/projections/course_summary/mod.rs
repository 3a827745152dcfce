//! The `course_summary` projector: counts of courses by (user, day, status,
//! deleted), rolled up by the views of `projections/0003_course_summary.sql`.
//!
//! It reads only the events that change a course's cell, and never decodes
//! the large outline and lesson payloads. Its tables' recount from the log
//! is in `sql/`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use uuid::Uuid;

use super::recount::Recount;
use super::{readable, ApplyError, Decoded};
use crate::domain::{CourseEvent, CourseStatus};

/// The columns of `course_summary_courses`.
const CELL_COLUMNS: &str = "course_id, user_id, day, status, deleted";

/// The columns of `course_summary`.
const COUNT_COLUMNS: &str = "user_id, day, status, deleted, courses";

/// The recounts of the read model's tables from the log.
pub fn recounts() -> Vec<Recount> {
    vec![
        Recount {
            table: "course_summary_courses",
            columns: CELL_COLUMNS,
            live_filter: "",
            select: include_str!("sql/recount_cells.sql"),
        },
        Recount {
            table: "course_summary",
            columns: COUNT_COLUMNS,
            live_filter: "WHERE courses > 0",
            select: concat!(
                "SELECT user_id, day, status, deleted, count(*)::bigint FROM (",
                include_str!("sql/recount_cells.sql"),
                ") c GROUP BY user_id, day, status, deleted"
            ),
        },
    ]
}

/// The event types the projection needs (it reads no other payload).
pub(crate) const WANTED: [&str; 7] = [
    "CourseRequested",
    "GenerationStarted",
    "CourseCompleted",
    "CourseFailed",
    "GenerationRetried",
    "CourseDeleted",
    "CourseRestored",
];

/// Whether the projection needs events of this type at all.
pub(crate) fn wants(event_type: &str) -> bool {
    WANTED.contains(&event_type)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Cell {
    user_id: Uuid,
    day: NaiveDate,
    status: CourseStatus,
    deleted: bool,
}

/// Applies `events` to the tables with `suffix`: loads the touched courses'
/// cells, folds the events in, writes the cells and the count deltas (every
/// cell entered gets a row, even when its count returns to 0, exactly as
/// one event at a time would).
pub(crate) async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    events: &[Decoded],
) -> Result<(), ApplyError> {
    let events = readable(events)?;
    let Some(first) = events.first().map(|(d, _)| d.position) else {
        return Ok(());
    };
    let err = |e| ApplyError::from_db(first, e);
    let ids: Vec<Uuid> = events
        .iter()
        .map(|(d, _)| d.stream_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {CELL_COLUMNS} FROM course_summary_courses{suffix} WHERE course_id = ANY($1)"
        ))
        .await
        .map_err(err)?;
    let mut courses: HashMap<Uuid, Cell> = tx
        .query(&stmt, &[&ids])
        .await
        .map_err(err)?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Cell {
                    user_id: r.try_get(1)?,
                    day: r.try_get(2)?,
                    status: r.try_get(3)?,
                    deleted: r.try_get(4)?,
                },
            ))
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(err)?;
    let mut dirty: BTreeSet<Uuid> = BTreeSet::new();
    let mut deltas: BTreeMap<Cell, i64> = BTreeMap::new();
    for (d, event) in &events {
        let id = d.stream_id;
        if let CourseEvent::CourseRequested(r) = event {
            if courses.contains_key(&id) {
                return Err(ApplyError::Event {
                    position: d.position,
                    error: format!("course {id} was already requested"),
                });
            }
            let cell = Cell {
                user_id: r.user_id,
                day: d.recorded_at.date_naive(),
                status: CourseStatus::Queued,
                deleted: false,
            };
            *deltas.entry(cell.clone()).or_default() += 1;
            courses.insert(id, cell);
            dirty.insert(id);
            continue;
        }
        let Some(cell) = courses.get_mut(&id) else {
            continue;
        };
        *deltas.entry(cell.clone()).or_default() -= 1;
        match event {
            CourseEvent::GenerationStarted(_) => cell.status = CourseStatus::Generating,
            CourseEvent::CourseCompleted(_) => cell.status = CourseStatus::Ready,
            CourseEvent::CourseFailed(_) => cell.status = CourseStatus::Failed,
            CourseEvent::GenerationRetried(_) => cell.status = CourseStatus::Queued,
            CourseEvent::CourseDeleted(_) => cell.deleted = true,
            CourseEvent::CourseRestored(_) => cell.deleted = false,
            _ => {}
        }
        *deltas.entry(cell.clone()).or_default() += 1;
        dirty.insert(id);
    }
    if dirty.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO course_summary_courses{suffix} ({CELL_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::date[], $4::text[], $5::bool[])
             ON CONFLICT (course_id) DO UPDATE SET status = EXCLUDED.status, deleted = EXCLUDED.deleted"
        ))
        .await
        .map_err(err)?;
    let rows: Vec<(&Uuid, &Cell)> = dirty.iter().map(|id| (id, &courses[id])).collect();
    let ids: Vec<Uuid> = rows.iter().map(|(id, _)| **id).collect();
    let users: Vec<Uuid> = rows.iter().map(|(_, c)| c.user_id).collect();
    let days: Vec<NaiveDate> = rows.iter().map(|(_, c)| c.day).collect();
    let status: Vec<CourseStatus> = rows.iter().map(|(_, c)| c.status).collect();
    let deleted: Vec<bool> = rows.iter().map(|(_, c)| c.deleted).collect();
    tx.execute(&stmt, &[&ids, &users, &days, &status, &deleted])
        .await
        .map_err(err)?;

    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO course_summary{suffix} AS s ({COUNT_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[], $4::bool[], $5::int8[])
             ON CONFLICT (user_id, day, status, deleted) DO UPDATE SET courses = s.courses + EXCLUDED.courses"
        ))
        .await
        .map_err(err)?;
    let users: Vec<Uuid> = deltas.keys().map(|c| c.user_id).collect();
    let days: Vec<NaiveDate> = deltas.keys().map(|c| c.day).collect();
    let status: Vec<CourseStatus> = deltas.keys().map(|c| c.status).collect();
    let deleted: Vec<bool> = deltas.keys().map(|c| c.deleted).collect();
    let counts: Vec<i64> = deltas.values().copied().collect();
    tx.execute(&stmt, &[&users, &days, &status, &deleted, &counts])
        .await
        .map_err(err)?;
    Ok(())
}
