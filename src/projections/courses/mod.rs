//! The `courses` read model: `courses`, `lessons`, `lesson_bodies`,
//! `lesson_checks` (SQL in `projections/0002_courses.sql` and later) and
//! `interactive_elements` (`0008`), its projector,
//! and every query of its tables ([`queries`]).
//!
//! A batch is applied set-wise: the rows it touches are loaded, the events
//! folded into them in log order (in memory, the same rules as one event at
//! a time), and each table written with one `INSERT ... SELECT FROM unnest(...)
//! ON CONFLICT DO UPDATE`. Every column is a function of the events alone
//! (times are the events' `recorded_at`; slugs are numbered by log position,
//! see `coursegen_slug_base`), so batch boundaries do not matter and a replay
//! rebuilds exactly the rows the live runner wrote.

mod fold;
pub(crate) mod queries;
mod slugs;
mod status;
#[cfg(test)]
mod tests;
mod writer;

pub use slugs::slug_base;
pub(crate) use status::LessonStatus;

use super::stages::timed;
use super::{readable, ApplyError, Decoded};
use crate::store::Position;

fn db(position: Position) -> impl Fn(tokio_postgres::Error) -> ApplyError {
    move |e| ApplyError::from_db(position, e)
}

/// Applies `events` to the tables with `suffix`.
pub(crate) async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    events: &[Decoded],
) -> Result<(), ApplyError> {
    let events = readable(events)?;
    let Some(first) = events.first().map(|(d, _)| d.position) else {
        return Ok(());
    };
    let err = db(first);
    let (courses, stored_bases) = timed(
        "courses.load",
        writer::load_courses(tx, suffix, &fold::course_ids(&events)),
    )
    .await
    .map_err(&err)?;
    let lessons = timed(
        "courses.load",
        writer::load_lessons(tx, suffix, &fold::lesson_course_ids(&events)),
    )
    .await
    .map_err(&err)?;
    let mut changes = fold::fold(courses, lessons, &events)?;

    let bases = slugs::touched_bases(&changes.courses, &stored_bases, &changes.dirty_courses);
    let renamed = if bases.is_empty() {
        Vec::new()
    } else {
        let others = timed(
            "courses.load",
            writer::slug_holders(tx, suffix, &bases, &changes.dirty_courses),
        )
        .await
        .map_err(&err)?;
        slugs::number(&bases, others, &mut changes.courses, &changes.dirty_courses)
    };
    if !renamed.is_empty() {
        // Slugs move between courses: unique again at commit, not between
        // the two statements.
        tx.batch_execute("SET CONSTRAINTS ALL DEFERRED")
            .await
            .map_err(&err)?;
    }
    let rows: Vec<_> = changes
        .dirty_courses
        .iter()
        .map(|id| &changes.courses[id])
        .collect();
    timed("write courses", writer::write_courses(tx, suffix, &rows))
        .await
        .map_err(&err)?;
    timed("write courses", writer::rename_slugs(tx, suffix, &renamed))
        .await
        .map_err(&err)?;
    timed(
        "write lessons",
        writer::write_lessons(tx, suffix, &changes.dirty_lessons, &changes.lessons),
    )
    .await
    .map_err(&err)?;
    timed(
        "write lesson_bodies",
        writer::write_bodies(tx, suffix, &changes.bodies),
    )
    .await
    .map_err(&err)?;
    timed(
        "write lesson_checks",
        writer::write_checks(tx, suffix, &changes.checks),
    )
    .await
    .map_err(&err)?;
    timed(
        "write interactive_elements",
        writer::write_elements(tx, suffix, &changes.elements),
    )
    .await
    .map_err(&err)?;
    timed(
        "write subtitles",
        writer::write_subtitles(tx, suffix, &changes.subtitles),
    )
    .await
    .map_err(&err)?;
    Ok(())
}
