//! Every projected table computed by plain SQL straight from `events`: the
//! oracle the tests compare the runners against, and the pure-SQL rebuild
//! that `coursegen bench replay` measures the replay against.
//!
//! Slugs too: they are numbered by the log position of the event that set
//! their base, which plain SQL computes as well.

use super::{course_summary, courses, sources, Projection};

/// How to recount one table.
#[derive(Debug, Clone, Copy)]
pub struct Recount {
    pub table: &'static str,
    /// The columns `select` yields, in order (what an `INSERT` names, and
    /// what a comparison with the live table compares).
    pub columns: &'static str,
    /// Which live rows a comparison takes (`course_summary` keeps cells at 0).
    pub live_filter: &'static str,
    /// The query, over `events` only.
    pub select: &'static str,
}

/// The recounts of a projection's tables (each read model keeps its own).
pub fn recounts(projection: Projection) -> Vec<Recount> {
    match projection {
        Projection::Courses => courses::queries::recounts(),
        Projection::CourseSummary => course_summary::recounts(),
        Projection::Sources => sources::recounts(),
    }
}

/// SQL counting the rows on which `table` (with `suffix`) and its recount
/// differ (0 when the projection equals the log).
pub fn difference_sql(r: &Recount, suffix: &str) -> String {
    format!(
        "WITH live AS (SELECT {cols} FROM {table}{suffix} {filter}),
              recount AS (SELECT {cols} FROM ({select}) AS q({columns}))
         SELECT (SELECT count(*) FROM (SELECT * FROM live EXCEPT ALL SELECT * FROM recount) a)
              + (SELECT count(*) FROM (SELECT * FROM recount EXCEPT ALL SELECT * FROM live) b)",
        cols = r.columns,
        table = r.table,
        filter = r.live_filter,
        select = r.select,
        columns = r.columns,
    )
}
