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

use std::collections::HashMap;

use uuid::Uuid;

use self::fold::{BodyRow, Quiz, SubtitleRow};
use super::stages::timed;
use super::{readable, ApplyError, Decoded};
use crate::domain::InteractiveElement;
use crate::store::Position;

fn db(position: Position) -> impl Fn(tokio_postgres::Error) -> ApplyError {
    move |e| ApplyError::from_db(position, e)
}

/// What a batch writes to the content tables: `lesson_bodies`,
/// `lesson_checks` and `interactive_elements` (each lesson's latest
/// generation in the batch), and `subtitles`. No other row depends on them
/// and nothing in a batch reads them back, so a replay writes them on
/// connections of their own, beside the rows ([`apply_rows`]).
#[derive(Debug)]
pub(crate) struct Content {
    /// The batch's first event: what a refused statement names.
    pub(crate) first: Position,
    bodies: HashMap<(Uuid, i32), BodyRow>,
    checks: HashMap<(Uuid, i32), Quiz>,
    elements: HashMap<(Uuid, i32), Vec<InteractiveElement>>,
    subtitles: HashMap<(Uuid, i32, String), SubtitleRow>,
}

/// The part of [`Content`] one statement group writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentPart {
    /// `lesson_bodies`, `lesson_checks` and `interactive_elements`: one
    /// statement reads each lesson's payload from the log once for the three.
    Lessons,
    /// `subtitles`.
    Subtitles,
}

impl ContentPart {
    pub(crate) const ALL: [Self; 2] = [Self::Lessons, Self::Subtitles];

    /// The stage its writes are timed under during a replay.
    pub(crate) fn stage(self) -> &'static str {
        match self {
            Self::Lessons => "apply courses (bodies, checks, elements)",
            Self::Subtitles => "apply courses (subtitles)",
        }
    }

    /// The tables it writes.
    pub(crate) fn tables(self) -> &'static [&'static str] {
        match self {
            Self::Lessons => &["lesson_bodies", "lesson_checks", "interactive_elements"],
            Self::Subtitles => &["subtitles"],
        }
    }
}

impl std::fmt::Display for ContentPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Lessons => "lessons",
            Self::Subtitles => "subtitles",
        })
    }
}

impl Content {
    /// The content split by course into `n` shards, course `c` in shard
    /// `c % n` (its id as a number): all of a course's rows in one shard, so
    /// that the shards of successive batches can be written side by side,
    /// each shard's in log order, and still leave each row as written last.
    pub(crate) fn shards(self, n: usize) -> Vec<Content> {
        let n = n.max(1);
        let shard = |id: &Uuid| (id.as_u128() % n as u128) as usize;
        let mut shards: Vec<Content> = (0..n)
            .map(|_| Content {
                first: self.first,
                bodies: HashMap::new(),
                checks: HashMap::new(),
                elements: HashMap::new(),
                subtitles: HashMap::new(),
            })
            .collect();
        for (k, v) in self.bodies {
            shards[shard(&k.0)].bodies.insert(k, v);
        }
        for (k, v) in self.checks {
            shards[shard(&k.0)].checks.insert(k, v);
        }
        for (k, v) in self.elements {
            shards[shard(&k.0)].elements.insert(k, v);
        }
        for (k, v) in self.subtitles {
            shards[shard(&k.0)].subtitles.insert(k, v);
        }
        shards
    }

    /// Whether it writes nothing to `part`'s tables.
    pub(crate) fn is_empty(&self, part: ContentPart) -> bool {
        match part {
            ContentPart::Lessons => self.bodies.is_empty() && self.checks.is_empty(),
            ContentPart::Subtitles => self.subtitles.is_empty(),
        }
    }

    /// Writes `part` of the content to the tables with `suffix`.
    pub(crate) async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        suffix: &str,
        part: ContentPart,
    ) -> Result<(), ApplyError> {
        let err = db(self.first);
        match part {
            ContentPart::Lessons => {
                // Old questions and elements go first: the inserts below write the new ones.
                timed(
                    "write lesson_checks, interactive_elements",
                    writer::delete_checks(tx, suffix, &self.checks),
                )
                .await
                .map_err(&err)?;
                timed(
                    "write lesson_checks, interactive_elements",
                    writer::delete_elements(tx, suffix, &self.checks),
                )
                .await
                .map_err(&err)?;
                timed(
                    "write lesson_bodies, lesson_checks, interactive_elements",
                    writer::write_lessons_from_log(tx, suffix, &self.bodies),
                )
                .await
                .map_err(&err)?;
                timed(
                    "write lesson_bodies",
                    writer::write_bodies(tx, suffix, &self.bodies),
                )
                .await
                .map_err(&err)?;
                timed(
                    "write lesson_checks, interactive_elements",
                    writer::write_checks(tx, suffix, &self.checks),
                )
                .await
                .map_err(&err)?;
                timed(
                    "write lesson_checks, interactive_elements",
                    writer::write_elements(tx, suffix, &self.bodies, &self.elements),
                )
                .await
                .map_err(&err)?;
            }
            ContentPart::Subtitles => {
                timed(
                    "write subtitles",
                    writer::write_subtitles(tx, suffix, &self.subtitles),
                )
                .await
                .map_err(&err)?;
            }
        }
        Ok(())
    }
}

/// Applies `events` to the tables with `suffix`.
pub(crate) async fn apply(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    events: &[Decoded],
) -> Result<(), ApplyError> {
    let Some(content) = apply_rows(tx, suffix, events).await? else {
        return Ok(());
    };
    for part in ContentPart::ALL {
        content.write(tx, suffix, part).await?;
    }
    Ok(())
}

/// Applies `events` to `courses` and `lessons` with `suffix`, and returns
/// what they write to the content tables (`None`: nothing to apply).
pub(crate) async fn apply_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    suffix: &str,
    events: &[Decoded],
) -> Result<Option<Content>, ApplyError> {
    let events = readable(events)?;
    let Some(first) = events.first().map(|(d, _)| d.position) else {
        return Ok(None);
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
    Ok(Some(Content {
        first,
        bodies: changes.bodies,
        checks: changes.checks,
        elements: changes.elements,
        subtitles: changes.subtitles,
    }))
}
