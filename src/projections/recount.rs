//! Every projected table computed by plain SQL straight from `events`: the
//! oracle the tests compare the runners against, and the pure-SQL rebuild
//! that `coursegen bench replay` measures the replay against.
//!
//! Slugs too: they are numbered by the log position of the event that set
//! their base, which plain SQL computes as well.

use super::Projection;

/// How to recount one table.
#[derive(Debug, Clone, Copy)]
pub struct Recount {
    pub table: &'static str,
    /// The columns `select` yields, in order (what an `INSERT` names).
    pub columns: &'static str,
    /// Columns a comparison with the live table uses.
    pub compared_columns: &'static str,
    /// Which live rows a comparison takes (`course_summary` keeps cells at 0).
    pub live_filter: &'static str,
    /// The query, over `events` only.
    pub select: &'static str,
}

const COURSE_COLUMNS: &str = "id, user_id, request_id, title, description, slug, slug_base, \
    slug_transaction_id, slug_position, topic, grade_level, \
    language, source_filter, status, error_message, total_lessons, lessons_generated, sources, \
    prompt_tokens, completion_tokens, total_tokens, attempt, model, created_at, updated_at, \
    generated_at, deleted_at";

const COURSE_COMPARED: &str = "id, user_id, request_id, title, description, slug, slug_base, \
    slug_transaction_id, slug_position, topic, grade_level, \
    language, source_filter, status, error_message, total_lessons, lessons_generated, sources, \
    prompt_tokens, completion_tokens, total_tokens, attempt, model, created_at, updated_at, \
    generated_at, deleted_at";

const COURSES: &str = "
WITH c AS (
    SELECT r.stream_id AS id,
           (r.payload->>'user_id')::uuid AS user_id,
           (r.payload->>'request_id')::uuid AS request_id,
           o.payload->>'title' AS title,
           o.payload->>'description' AS description,
           r.payload->>'topic' AS topic,
           r.payload->>'grade_level' AS grade_level,
           r.payload->>'language' AS language,
           r.payload->>'source_filter' AS source_filter,
           CASE s.event_type WHEN 'GenerationStarted' THEN 'GENERATING' WHEN 'CourseCompleted' THEN 'READY'
                             WHEN 'CourseFailed' THEN 'FAILED' ELSE 'QUEUED' END AS status,
           CASE WHEN s.event_type = 'CourseFailed'
                THEN (s.payload->>'step') || ': ' || (s.payload->>'error') END AS error_message,
           CASE t.event_type WHEN 'CourseRequested' THEN (t.payload->>'num_lessons')::int
                             WHEN 'OutlineGenerated' THEN jsonb_array_length(t.payload->'lessons')
                             ELSE (t.payload->>'total_lessons')::int END AS total_lessons,
           u.lessons::int AS lessons_generated,
           coalesce(src.sources, '[]'::jsonb) AS sources,
           u.prompt_tokens, u.completion_tokens, u.total_tokens,
           coalesce((g.payload->>'attempt')::int, 0) AS attempt,
           g.payload->>'model' AS model,
           r.recorded_at AS created_at,
           u.updated_at,
           done.recorded_at AS generated_at,
           CASE WHEN d.event_type = 'CourseDeleted' THEN d.recorded_at END AS deleted_at,
           coursegen_slug_base(coalesce(o.payload->>'title', r.payload->>'topic')) AS base,
           CASE WHEN o.tx IS NOT NULL
                 AND coursegen_slug_base(o.payload->>'title') <> coursegen_slug_base(r.payload->>'topic')
                THEN o.tx ELSE r.transaction_id::text::bigint END AS slug_transaction_id,
           CASE WHEN o.tx IS NOT NULL
                 AND coursegen_slug_base(o.payload->>'title') <> coursegen_slug_base(r.payload->>'topic')
                THEN o.pos ELSE r.global_position END AS slug_position
    FROM events r
    LEFT JOIN LATERAL (SELECT payload, transaction_id::text::bigint AS tx, global_position AS pos
                       FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'OutlineGenerated'
                       ORDER BY stream_version DESC LIMIT 1) o ON true
    LEFT JOIN LATERAL (SELECT event_type, payload FROM events
                       WHERE stream_id = r.stream_id
                         AND event_type IN ('CourseRequested', 'GenerationStarted', 'CourseCompleted',
                                            'CourseFailed', 'GenerationRetried')
                       ORDER BY stream_version DESC LIMIT 1) s ON true
    LEFT JOIN LATERAL (SELECT event_type, payload FROM events
                       WHERE stream_id = r.stream_id
                         AND event_type IN ('CourseRequested', 'OutlineGenerated', 'CourseCompleted')
                       ORDER BY stream_version DESC LIMIT 1) t ON true
    LEFT JOIN LATERAL (SELECT payload FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'GenerationStarted'
                       ORDER BY stream_version DESC LIMIT 1) g ON true
    LEFT JOIN LATERAL (SELECT recorded_at FROM events
                       WHERE stream_id = r.stream_id AND event_type = 'CourseCompleted'
                       ORDER BY stream_version DESC LIMIT 1) done ON true
    LEFT JOIN LATERAL (SELECT event_type, recorded_at FROM events
                       WHERE stream_id = r.stream_id AND event_type IN ('CourseDeleted', 'CourseRestored')
                       ORDER BY stream_version DESC LIMIT 1) d ON true
    LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE event_type = 'LessonGenerated') AS lessons,
               coalesce(sum((payload->'usage'->>'prompt_tokens')::bigint)
                        FILTER (WHERE event_type IN ('OutlineGenerated', 'LessonGenerated')), 0)::bigint AS prompt_tokens,
               coalesce(sum((payload->'usage'->>'completion_tokens')::bigint)
                        FILTER (WHERE event_type IN ('OutlineGenerated', 'LessonGenerated')), 0)::bigint AS completion_tokens,
               coalesce(sum((payload->'usage'->>'total_tokens')::bigint)
                        FILTER (WHERE event_type IN ('OutlineGenerated', 'LessonGenerated')), 0)::bigint AS total_tokens,
               max(recorded_at) AS updated_at
        FROM events WHERE stream_id = r.stream_id) u ON true
    LEFT JOIN LATERAL (
        SELECT jsonb_agg(x ORDER BY v, o) AS sources
        FROM (SELECT DISTINCT ON (a.x) a.x, e.stream_version AS v, a.o
              FROM events e, jsonb_array_elements(coalesce(e.payload->'sources', '[]')) WITH ORDINALITY AS a(x, o)
              WHERE e.stream_id = r.stream_id AND e.event_type = 'LessonGenerated'
              ORDER BY a.x, e.stream_version, a.o) f) src ON true
    WHERE r.event_type = 'CourseRequested'
)
SELECT id, user_id, request_id, title, description,
       CASE WHEN n = 1 THEN base ELSE left(base, 72) || '-' || n END AS slug,
       base, slug_transaction_id, slug_position,
       topic, grade_level, language, source_filter, status, error_message, total_lessons,
       lessons_generated, sources, prompt_tokens, completion_tokens, total_tokens, attempt, model,
       created_at, updated_at, generated_at, deleted_at
FROM (SELECT c.*, row_number() OVER (PARTITION BY base ORDER BY slug_transaction_id, slug_position) AS n
      FROM c) numbered";

const LESSONS: &str = "
WITH plan AS (
    SELECT DISTINCT ON (e.stream_id, (l->>'number')::int)
           e.stream_id AS course_id, (l->>'number')::int AS lesson_number, l->>'title' AS title,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(l->'concepts', '[]'))) AS concepts,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(l->'objectives', '[]'))) AS objectives
    FROM events e, jsonb_array_elements(e.payload->'lessons') AS l
    WHERE e.event_type = 'OutlineGenerated'
    ORDER BY e.stream_id, (l->>'number')::int, e.stream_version DESC
), done AS (
    SELECT DISTINCT ON (stream_id, (payload->>'number')::int)
           stream_id AS course_id, (payload->>'number')::int AS lesson_number,
           payload->>'title' AS title, recorded_at
    FROM events WHERE event_type = 'LessonGenerated'
    ORDER BY stream_id, (payload->>'number')::int, stream_version DESC
)
SELECT course_id, lesson_number, coalesce(d.title, p.title), coalesce(p.concepts, '{}'),
       coalesce(p.objectives, '{}'),
       CASE WHEN d.course_id IS NULL THEN 'PENDING' ELSE 'GENERATED' END, d.recorded_at
FROM plan p FULL JOIN done d USING (course_id, lesson_number)";

const LESSON_BODIES: &str = "
SELECT DISTINCT ON (stream_id, (payload->>'number')::int)
       stream_id, (payload->>'number')::int, payload->>'content_md',
       coalesce(payload->'sections', '[]'),
       (SELECT coalesce(jsonb_agg(x ORDER BY o), '[]')
        FROM (SELECT DISTINCT ON (a.x) a.x, a.o
              FROM jsonb_array_elements(coalesce(payload->'sources', '[]')) WITH ORDINALITY AS a(x, o)
              ORDER BY a.x, a.o) f),
       payload->>'model', coalesce((payload->'usage'->>'total_tokens')::bigint, 0), recorded_at
FROM events WHERE event_type = 'LessonGenerated'
ORDER BY stream_id, (payload->>'number')::int, stream_version DESC";

const LESSON_CHECKS: &str = "
SELECT l.stream_id, l.number, q.ord::int, q.x->>'question', q.x->'options',
       (q.x->>'answer_index')::int, coalesce(q.x->>'explanation', '')
FROM (SELECT DISTINCT ON (stream_id, (payload->>'number')::int)
             stream_id, (payload->>'number')::int AS number, payload
      FROM events WHERE event_type = 'LessonGenerated'
      ORDER BY stream_id, (payload->>'number')::int, stream_version DESC) l,
     jsonb_array_elements(coalesce(l.payload->'quiz', '[]')) WITH ORDINALITY AS q(x, ord)";

/// Each course's cell of `course_summary`: its user, day, current status and
/// whether it is deleted (a macro so the count below can embed it at compile time).
macro_rules! summary_courses {
    () => {
        "
SELECT r.stream_id, (r.payload->>'user_id')::uuid AS user_id,
       (r.recorded_at AT TIME ZONE 'UTC')::date AS day,
       CASE s.event_type WHEN 'GenerationStarted' THEN 'GENERATING' WHEN 'CourseCompleted' THEN 'READY'
                         WHEN 'CourseFailed' THEN 'FAILED' ELSE 'QUEUED' END AS status,
       coalesce(d.event_type = 'CourseDeleted', false) AS deleted
FROM events r
LEFT JOIN LATERAL (SELECT event_type FROM events
                   WHERE stream_id = r.stream_id
                     AND event_type IN ('CourseRequested', 'GenerationStarted', 'CourseCompleted',
                                        'CourseFailed', 'GenerationRetried')
                   ORDER BY stream_version DESC LIMIT 1) s ON true
LEFT JOIN LATERAL (SELECT event_type FROM events
                   WHERE stream_id = r.stream_id AND event_type IN ('CourseDeleted', 'CourseRestored')
                   ORDER BY stream_version DESC LIMIT 1) d ON true
WHERE r.event_type = 'CourseRequested'"
    };
}

const SUMMARY_COURSES: &str = summary_courses!();

const SUMMARY_COUNTS: &str = concat!(
    "SELECT user_id, day, status, deleted, count(*)::bigint FROM (",
    summary_courses!(),
    ") c GROUP BY user_id, day, status, deleted"
);

/// The recounts of a projection's tables.
pub fn recounts(projection: Projection) -> Vec<Recount> {
    match projection {
        Projection::Courses => vec![
            Recount {
                table: "courses",
                columns: COURSE_COLUMNS,
                compared_columns: COURSE_COMPARED,
                live_filter: "",
                select: COURSES,
            },
            Recount {
                table: "lessons",
                columns: "course_id, lesson_number, title, concepts, objectives, status, generated_at",
                compared_columns: "course_id, lesson_number, title, concepts, objectives, status, generated_at",
                live_filter: "",
                select: LESSONS,
            },
            Recount {
                table: "lesson_bodies",
                columns: "course_id, lesson_number, content_md, content_json, sources, model, total_tokens, generated_at",
                compared_columns: "course_id, lesson_number, content_md, content_json, sources, model, total_tokens, generated_at",
                live_filter: "",
                select: LESSON_BODIES,
            },
            Recount {
                table: "lesson_checks",
                columns: "course_id, lesson_number, question_number, question, options, answer_index, explanation",
                compared_columns: "course_id, lesson_number, question_number, question, options, answer_index, explanation",
                live_filter: "",
                select: LESSON_CHECKS,
            },
        ],
        Projection::CourseSummary => vec![
            Recount {
                table: "course_summary_courses",
                columns: "course_id, user_id, day, status, deleted",
                compared_columns: "course_id, user_id, day, status, deleted",
                live_filter: "",
                select: SUMMARY_COURSES,
            },
            Recount {
                table: "course_summary",
                columns: "user_id, day, status, deleted, courses",
                compared_columns: "user_id, day, status, deleted, courses",
                live_filter: "WHERE courses > 0",
                select: SUMMARY_COUNTS,
            },
        ],
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
        cols = r.compared_columns,
        table = r.table,
        filter = r.live_filter,
        select = r.select,
        columns = r.columns,
    )
}
