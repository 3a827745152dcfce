//! The I/O half of the `courses` projector: loads the rows a batch touches
//! and writes what the fold changed, one multi-row statement per table
//! (`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE`).

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::fold::{int, BodyRow, LessonRow, Quiz, SubtitleRow};
use super::queries::{
    CourseRecord, COURSE_COLUMNS, COURSE_FIXED_COLUMNS, COURSE_LIST_COLUMNS, ELEMENT_COLUMNS,
    LESSON_BODY_COLUMNS, LESSON_CHECK_COLUMNS, LESSON_COLUMNS, SUBTITLE_COLUMNS,
};
use super::slugs::SlugHolder;
use super::LessonStatus;
use crate::domain::InteractiveElement;

type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// The courses `ids` as stored, and the slug base each had (what the slug
/// numbering compares the batch's bases with).
pub(super) async fn load_courses(
    tx: &Tx<'_>,
    s: &str,
    ids: &[Uuid],
) -> Result<(HashMap<Uuid, CourseRecord>, HashMap<Uuid, String>), tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {COURSE_COLUMNS} FROM courses{s} WHERE id = ANY($1)"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    let mut courses = HashMap::with_capacity(rows.len());
    let mut bases = HashMap::with_capacity(rows.len());
    for r in &rows {
        let c = CourseRecord::from_row(r)?;
        bases.insert(c.id, c.slug_base.clone());
        courses.insert(c.id, c);
    }
    Ok((courses, bases))
}

/// The lessons of the courses `ids`.
pub(super) async fn load_lessons(
    tx: &Tx<'_>,
    s: &str,
    ids: &[Uuid],
) -> Result<HashMap<(Uuid, i32), LessonRow>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {LESSON_COLUMNS} FROM lessons{s} WHERE course_id = ANY($1)"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    rows.iter()
        .map(|r| {
            Ok((
                (r.try_get(0)?, r.try_get(1)?),
                LessonRow {
                    title: r.try_get(2)?,
                    concepts: r.try_get(3)?,
                    objectives: r.try_get(4)?,
                    status: r.try_get(5)?,
                    generated_at: r.try_get(6)?,
                },
            ))
        })
        .collect()
}

/// The stored courses of `bases` outside the batch (`dirty`), read by the
/// `slug_base` index, with their base.
pub(super) async fn slug_holders(
    tx: &Tx<'_>,
    s: &str,
    bases: &[String],
    dirty: &BTreeSet<Uuid>,
) -> Result<Vec<(String, SlugHolder)>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT id, slug_base, slug_transaction_id, slug_position, slug
             FROM courses{s} WHERE slug_base = ANY($1)"
        ))
        .await?;
    let mut holders = Vec::new();
    for r in tx.query(&stmt, &[&bases]).await? {
        let id: Uuid = r.try_get(0)?;
        if !dirty.contains(&id) {
            holders.push((
                r.try_get(1)?,
                (r.try_get(2)?, r.try_get(3)?, id, Some(r.try_get(4)?)),
            ));
        }
    }
    Ok(holders)
}

/// Gives courses outside the batch their new slugs.
pub(super) async fn rename_slugs(
    tx: &Tx<'_>,
    s: &str,
    renamed: &[(Uuid, String)],
) -> Result<(), tokio_postgres::Error> {
    if renamed.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE courses{s} AS c SET slug = u.slug
             FROM unnest($1::uuid[], $2::text[]) AS u(id, slug) WHERE c.id = u.id"
        ))
        .await?;
    let ids: Vec<Uuid> = renamed.iter().map(|(id, _)| *id).collect();
    let slugs: Vec<&str> = renamed.iter().map(|(_, slug)| slug.as_str()).collect();
    tx.execute(&stmt, &[&ids, &slugs]).await?;
    Ok(())
}

/// The array type each column of [`COURSE_COLUMNS`] is shipped as, in order.
#[rustfmt::skip]
const COURSE_ARRAY_TYPES: [&str; 35] = [
    "uuid", "uuid", "uuid", "text", "text", "text", "text", "int8", "int8", "text", "text",
    "text", "text", "text", "text", "int4", "int4", "jsonb", "int8", "int8", "int8", "int4",
    "text", "timestamptz", "timestamptz", "timestamptz", "timestamptz", "text", "jsonb", "text",
    "jsonb", "jsonb", "int4", "jsonb", "int4",
];

/// The rows of the upsert of `courses`, after `INSERT INTO courses<suffix>
/// (<columns>)`: one array per column of [`COURSE_COLUMNS`] in order (the
/// [`COURSE_LIST_COLUMNS`] as `jsonb`, turned into `text[]`), then every
/// column but [`COURSE_FIXED_COLUMNS`] updated.
static COURSES_UPSERT: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<&str> = COURSE_COLUMNS.split(", ").collect();
    let select: Vec<String> = columns
        .iter()
        .map(|c| {
            if COURSE_LIST_COLUMNS.contains(c) {
                format!("ARRAY(SELECT jsonb_array_elements_text(u.{c}))")
            } else {
                format!("u.{c}")
            }
        })
        .collect();
    let arrays: Vec<String> = COURSE_ARRAY_TYPES
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    let update: Vec<String> = columns
        .iter()
        .filter(|c| !COURSE_FIXED_COLUMNS.contains(c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    format!(
        "SELECT {} FROM unnest({}) AS u({})
         ON CONFLICT (id) DO UPDATE SET {}",
        select.join(", "),
        arrays.join(", "),
        columns.join(", "),
        update.join(", ")
    )
});

/// Writes the courses `rows` (new or changed).
pub(super) async fn write_courses(
    tx: &Tx<'_>,
    s: &str,
    rows: &[&CourseRecord],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO courses{s} AS c ({COURSE_COLUMNS}) {}",
            *COURSES_UPSERT
        ))
        .await?;
    macro_rules! col {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    let id = col!(|c| c.id);
    let user_id = col!(|c| c.user_id);
    let request_id = col!(|c| c.request_id);
    let title = col!(|c| c.title.as_deref());
    let description = col!(|c| c.description.as_deref());
    let slug = col!(|c| c.slug.as_str());
    let slug_base = col!(|c| c.slug_base.as_str());
    let slug_tx = col!(|c| c.slug_position.transaction_id);
    let slug_pos = col!(|c| c.slug_position.global_position);
    let topic = col!(|c| c.topic.as_str());
    let grade_level = col!(|c| c.grade_level.as_deref());
    let language = col!(|c| c.language.as_str());
    let source_filter = col!(|c| c.source_filter.as_deref());
    let status = col!(|c| c.status);
    let error_message = col!(|c| c.error_message.as_deref());
    let total_lessons = col!(|c| c.total_lessons);
    let lessons_generated = col!(|c| c.lessons_generated);
    let sources = col!(|c| Value::Array(c.sources.clone()));
    let prompt = col!(|c| c.prompt_tokens);
    let completion = col!(|c| c.completion_tokens);
    let total = col!(|c| c.total_tokens);
    let attempt = col!(|c| c.attempt);
    let model = col!(|c| c.model.as_deref());
    let created_at = col!(|c| c.created_at);
    let updated_at = col!(|c| c.updated_at);
    let generated_at = col!(|c| c.generated_at);
    let deleted_at = col!(|c| c.deleted_at);
    let author = col!(|c| c.author.as_deref());
    let tags = col!(|c| Value::from(c.tags.clone()));
    let difficulty = col!(|c| c.difficulty);
    let prerequisites = col!(|c| Value::from(c.prerequisites.clone()));
    let outcomes = col!(|c| Value::from(c.learning_outcomes.clone()));
    let minutes = col!(|c| c.estimated_minutes);
    let subtitle_languages = col!(|c| Value::from(c.subtitle_languages.clone()));
    let subtitles_generated = col!(|c| c.subtitles_generated);
    tx.execute(
        &stmt,
        &[
            &id,
            &user_id,
            &request_id,
            &title,
            &description,
            &slug,
            &slug_base,
            &slug_tx,
            &slug_pos,
            &topic,
            &grade_level,
            &language,
            &source_filter,
            &status,
            &error_message,
            &total_lessons,
            &lessons_generated,
            &sources,
            &prompt,
            &completion,
            &total,
            &attempt,
            &model,
            &created_at,
            &updated_at,
            &generated_at,
            &deleted_at,
            &author,
            &tags,
            &difficulty,
            &prerequisites,
            &outcomes,
            &minutes,
            &subtitle_languages,
            &subtitles_generated,
        ],
    )
    .await?;
    Ok(())
}

/// Writes the lessons `keys` of `lessons`.
pub(super) async fn write_lessons(
    tx: &Tx<'_>,
    s: &str,
    keys: &BTreeSet<(Uuid, i32)>,
    lessons: &HashMap<(Uuid, i32), LessonRow>,
) -> Result<(), tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO lessons{s} ({LESSON_COLUMNS})
             SELECT u.course_id, u.n, u.title,
                    ARRAY(SELECT jsonb_array_elements_text(u.concepts)),
                    ARRAY(SELECT jsonb_array_elements_text(u.objectives)), u.status, u.generated_at
             FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::jsonb[], $6::text[],
                         $7::timestamptz[])
                  AS u(course_id, n, title, concepts, objectives, status, generated_at)
             ON CONFLICT (course_id, lesson_number) DO UPDATE SET
                 title = EXCLUDED.title, concepts = EXCLUDED.concepts, objectives = EXCLUDED.objectives,
                 status = EXCLUDED.status, generated_at = EXCLUDED.generated_at"
        ))
        .await?;
    let rows: Vec<(&(Uuid, i32), &LessonRow)> = keys.iter().map(|k| (k, &lessons[k])).collect();
    let ids: Vec<Uuid> = rows.iter().map(|(k, _)| k.0).collect();
    let ns: Vec<i32> = rows.iter().map(|(k, _)| k.1).collect();
    let titles: Vec<&str> = rows.iter().map(|(_, l)| l.title.as_str()).collect();
    let concepts: Vec<Value> = rows
        .iter()
        .map(|(_, l)| Value::from(l.concepts.clone()))
        .collect();
    let objectives: Vec<Value> = rows
        .iter()
        .map(|(_, l)| Value::from(l.objectives.clone()))
        .collect();
    let status: Vec<LessonStatus> = rows.iter().map(|(_, l)| l.status).collect();
    let generated_at: Vec<Option<DateTime<Utc>>> =
        rows.iter().map(|(_, l)| l.generated_at).collect();
    tx.execute(
        &stmt,
        &[
            &ids,
            &ns,
            &titles,
            &concepts,
            &objectives,
            &status,
            &generated_at,
        ],
    )
    .await?;
    Ok(())
}

/// Writes the lesson bodies whose content the decoded event holds (upcast
/// payloads); those of the current shape are written by [`write_lessons_from_log`].
pub(super) async fn write_bodies(
    tx: &Tx<'_>,
    s: &str,
    bodies: &HashMap<(Uuid, i32), BodyRow>,
) -> Result<(), tokio_postgres::Error> {
    let rows: Vec<(&(Uuid, i32), &BodyRow)> = bodies
        .iter()
        .filter(|(_, b)| b.from_log.is_none())
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO lesson_bodies{s} ({LESSON_BODY_COLUMNS})
             SELECT u.course_id, u.n, u.content_md, coalesce(u.content_json, '[]'::jsonb),
                    u.sources, u.model, u.total_tokens, u.generated_at
             FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::jsonb[],
                         $6::text[], $7::int8[], $8::timestamptz[])
                  AS u(course_id, n, content_md, content_json, sources, model, total_tokens,
                       generated_at)
             {BODY_UPSERT}"
        ))
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|(k, _)| k.0).collect();
    let ns: Vec<i32> = rows.iter().map(|(k, _)| k.1).collect();
    let md: Vec<&str> = rows
        .iter()
        .map(|(_, b)| b.content_md.as_deref().unwrap_or_default())
        .collect();
    let json: Vec<Option<&Value>> = rows.iter().map(|(_, b)| b.content_json.as_ref()).collect();
    let sources: Vec<&Value> = rows.iter().map(|(_, b)| &b.sources).collect();
    let model: Vec<&str> = rows.iter().map(|(_, b)| b.model.as_str()).collect();
    let tokens: Vec<i64> = rows.iter().map(|(_, b)| b.total_tokens).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|(_, b)| b.generated_at).collect();
    tx.execute(
        &stmt,
        &[&ids, &ns, &md, &json, &sources, &model, &tokens, &at],
    )
    .await?;
    Ok(())
}

const BODY_UPSERT: &str = "ON CONFLICT (course_id, lesson_number) DO UPDATE SET
                 content_md = EXCLUDED.content_md, content_json = EXCLUDED.content_json,
                 sources = EXCLUDED.sources, model = EXCLUDED.model,
                 total_tokens = EXCLUDED.total_tokens, generated_at = EXCLUDED.generated_at";

/// The lessons whose latest `LessonGenerated` in the batch has the current
/// shape: their content is copied from the log (`from_log`).
fn from_log(bodies: &HashMap<(Uuid, i32), BodyRow>) -> Vec<(&(Uuid, i32), &BodyRow, i64)> {
    bodies
        .iter()
        .filter_map(|(k, b)| b.from_log.map(|p| (k, b, p)))
        .collect()
}

/// The course ids, lesson numbers and log positions of [`from_log`]'s rows,
/// as the parameters of a statement reading them from the log.
fn keys_and_positions(rows: &[(&(Uuid, i32), &BodyRow, i64)]) -> (Vec<Uuid>, Vec<i32>, Vec<i64>) {
    (
        rows.iter().map(|(k, _, _)| k.0).collect(),
        rows.iter().map(|(k, _, _)| k.1).collect(),
        rows.iter().map(|(_, _, p)| *p).collect(),
    )
}

/// Writes the content of the lessons whose latest `LessonGenerated` in the
/// batch has the current shape straight from the log, in one statement that
/// reads (detoasts) each payload once: its `content_md` and `sections` to
/// `lesson_bodies`, its `quiz` (the values the decoded `QuizQuestion`s
/// hold, `answer_index` saturated as `int` does) to `lesson_checks`, its
/// `elements` (each element's JSON as recorded) to `interactive_elements`.
/// The old questions and elements of lessons generated again are gone
/// already ([`delete_checks`], [`delete_elements`]), so those two are plain
/// inserts.
pub(super) async fn write_lessons_from_log(
    tx: &Tx<'_>,
    s: &str,
    bodies: &HashMap<(Uuid, i32), BodyRow>,
) -> Result<(), tokio_postgres::Error> {
    let rows = from_log(bodies);
    if rows.is_empty() {
        return Ok(());
    }
    // `payload || '{}'` is the payload detoasted (jsonb_concat returns its
    // non-empty side), materialized once for the three inserts.
    let stmt = tx
        .prepare_cached(&format!(
            "WITH l AS MATERIALIZED (
                 SELECT u.course_id, u.n, u.sources, u.model, u.total_tokens, u.generated_at,
                        e.payload || '{{}}'::jsonb AS p
                 FROM unnest($1::uuid[], $2::int4[], $3::jsonb[], $4::text[], $5::int8[],
                             $6::timestamptz[], $7::int8[])
                      AS u(course_id, n, sources, model, total_tokens, generated_at, from_log)
                 JOIN events e ON e.global_position = u.from_log
             ), bodies AS (
                 INSERT INTO lesson_bodies{s} ({LESSON_BODY_COLUMNS})
                 SELECT course_id, n, p->>'content_md', coalesce(p->'sections', '[]'::jsonb),
                        sources, model, total_tokens, generated_at
                 FROM l
                 {BODY_UPSERT}
             ), checks AS (
                 INSERT INTO lesson_checks{s} ({LESSON_CHECK_COLUMNS})
                 SELECT l.course_id, l.n, q.o::int4, q.x->>'question', q.x->'options',
                        least((q.x->>'answer_index')::int8, 2147483647)::int4, q.x->>'explanation'
                 FROM l CROSS JOIN LATERAL jsonb_array_elements(l.p->'quiz') WITH ORDINALITY AS q(x, o)
             )
             INSERT INTO interactive_elements{s} ({ELEMENT_COLUMNS})
             SELECT l.course_id, l.n, x.o::int4, x.e->>'id', x.e->>'kind', x.e
             FROM l CROSS JOIN LATERAL jsonb_array_elements(coalesce(l.p->'elements', '[]'::jsonb))
                  WITH ORDINALITY AS x(e, o)"
        ))
        .await?;
    let (ids, ns, positions) = keys_and_positions(&rows);
    let sources: Vec<&Value> = rows.iter().map(|(_, b, _)| &b.sources).collect();
    let model: Vec<&str> = rows.iter().map(|(_, b, _)| b.model.as_str()).collect();
    let tokens: Vec<i64> = rows.iter().map(|(_, b, _)| b.total_tokens).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|(_, b, _)| b.generated_at).collect();
    tx.execute(
        &stmt,
        &[&ids, &ns, &sources, &model, &tokens, &at, &positions],
    )
    .await?;
    Ok(())
}

/// Drops the questions of the lessons generated again in the batch (those
/// whose quiz `replaces` one): their new quiz is inserted whole, and a
/// lesson generated for the first time has no questions yet.
pub(super) async fn delete_checks(
    tx: &Tx<'_>,
    s: &str,
    checks: &HashMap<(Uuid, i32), Quiz>,
) -> Result<(), tokio_postgres::Error> {
    let (ids, ns): (Vec<Uuid>, Vec<i32>) = checks
        .iter()
        .filter(|(_, q)| q.replaces)
        .map(|((id, n), _)| (*id, *n))
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "DELETE FROM lesson_checks{s} AS c
             USING unnest($1::uuid[], $2::int4[]) AS u(course_id, n)
             WHERE c.course_id = u.course_id AND c.lesson_number = u.n"
        ))
        .await?;
    tx.execute(&stmt, &[&ids, &ns]).await?;
    Ok(())
}

/// Writes the quizzes the decoded events hold (upcast payloads); those of
/// the current shape are written by [`write_lessons_from_log`].
pub(super) async fn write_checks(
    tx: &Tx<'_>,
    s: &str,
    checks: &HashMap<(Uuid, i32), Quiz>,
) -> Result<(), tokio_postgres::Error> {
    let mut ids = Vec::new();
    let mut ns = Vec::new();
    let mut qn = Vec::new();
    let mut question = Vec::new();
    let mut options = Vec::new();
    let mut answer = Vec::new();
    let mut explanation = Vec::new();
    for ((id, n), quiz) in checks.iter().filter(|(_, q)| q.from_log.is_none()) {
        for (i, q) in quiz.questions.iter().enumerate() {
            ids.push(*id);
            ns.push(*n);
            qn.push(i32::try_from(i + 1).unwrap_or(i32::MAX));
            question.push(q.question.as_str());
            options.push(Value::from(q.options.clone()));
            answer.push(int(q.answer_index));
            explanation.push(q.explanation.as_str());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO lesson_checks{s} ({LESSON_CHECK_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::int4[], $4::text[], $5::jsonb[],
                                  $6::int4[], $7::text[])"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[&ids, &ns, &qn, &question, &options, &answer, &explanation],
    )
    .await?;
    Ok(())
}

/// Drops the elements of the lessons generated again in the batch (those
/// whose quiz `replaces` one): a lesson keeps only its latest elements, and
/// one generated for the first time has none yet.
pub(super) async fn delete_elements(
    tx: &Tx<'_>,
    s: &str,
    checks: &HashMap<(Uuid, i32), Quiz>,
) -> Result<(), tokio_postgres::Error> {
    let keys: Vec<&(Uuid, i32)> = checks
        .iter()
        .filter(|(_, q)| q.replaces)
        .map(|(k, _)| k)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let lesson_ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let lesson_ns: Vec<i32> = keys.iter().map(|k| k.1).collect();
    let stmt = tx
        .prepare_cached(&format!(
            "DELETE FROM interactive_elements{s} AS e
             USING unnest($1::uuid[], $2::int4[]) AS u(course_id, n)
             WHERE e.course_id = u.course_id AND e.lesson_number = u.n"
        ))
        .await?;
    tx.execute(&stmt, &[&lesson_ids, &lesson_ns]).await?;
    Ok(())
}

/// Writes the elements the decoded events hold (of the lessons whose body
/// is not copied from the log: upcast payloads); the others are written by
/// [`write_lessons_from_log`].
pub(super) async fn write_elements(
    tx: &Tx<'_>,
    s: &str,
    bodies: &HashMap<(Uuid, i32), BodyRow>,
    elements: &HashMap<(Uuid, i32), Vec<InteractiveElement>>,
) -> Result<(), tokio_postgres::Error> {
    let (mut ids, mut ns, mut positions) = (Vec::new(), Vec::new(), Vec::new());
    let (mut element_ids, mut kinds, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for ((id, n), list) in elements {
        if bodies.get(&(*id, *n)).is_some_and(|b| b.from_log.is_some()) {
            continue;
        }
        for (i, e) in list.iter().enumerate() {
            ids.push(*id);
            ns.push(*n);
            positions.push(i32::try_from(i + 1).unwrap_or(i32::MAX));
            element_ids.push(e.id.as_str());
            kinds.push(e.body.kind());
            values.push(serde_json::to_value(e).expect("elements serialize"));
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO interactive_elements{s} ({ELEMENT_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::int4[], $3::int4[], $4::text[], $5::text[],
                                  $6::jsonb[])"
        ))
        .await?;
    tx.execute(
        &stmt,
        &[&ids, &ns, &positions, &element_ids, &kinds, &values],
    )
    .await?;
    Ok(())
}

/// Writes the subtitle tracks (a track recorded again replaces the old one).
pub(super) async fn write_subtitles(
    tx: &Tx<'_>,
    s: &str,
    tracks: &HashMap<(Uuid, i32, String), SubtitleRow>,
) -> Result<(), tokio_postgres::Error> {
    if tracks.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO subtitles{s} ({SUBTITLE_COLUMNS})
             SELECT u.course_id, u.n, u.language, coalesce(u.cues, e.payload->'cues'),
                    u.model, u.total_tokens, u.generated_at
             FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::text[],
                         $6::int8[], $7::timestamptz[], $8::int8[])
                  AS u(course_id, n, language, cues, model, total_tokens, generated_at, from_log)
             LEFT JOIN events e ON e.global_position = u.from_log
             ON CONFLICT (course_id, lesson_number, language) DO UPDATE SET
                 cues = EXCLUDED.cues, model = EXCLUDED.model,
                 total_tokens = EXCLUDED.total_tokens, generated_at = EXCLUDED.generated_at"
        ))
        .await?;
    let rows: Vec<_> = tracks.iter().collect();
    let ids: Vec<Uuid> = rows.iter().map(|(k, _)| k.0).collect();
    let ns: Vec<i32> = rows.iter().map(|(k, _)| k.1).collect();
    let languages: Vec<&str> = rows.iter().map(|(k, _)| k.2.as_str()).collect();
    let cues: Vec<Option<&Value>> = rows.iter().map(|(_, r)| r.cues.as_ref()).collect();
    let from_log: Vec<Option<i64>> = rows.iter().map(|(_, r)| r.from_log).collect();
    let models: Vec<Option<&str>> = rows.iter().map(|(_, r)| r.model.as_deref()).collect();
    let tokens: Vec<i64> = rows.iter().map(|(_, r)| r.total_tokens).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|(_, r)| r.generated_at).collect();
    tx.execute(
        &stmt,
        &[
            &ids, &ns, &languages, &cues, &models, &tokens, &at, &from_log,
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The upsert's arrays are positional: one per column of
    /// [`COURSE_COLUMNS`], so a column added there must be added here too.
    #[test]
    fn the_courses_upsert_has_one_array_per_column() {
        let columns = COURSE_COLUMNS.split(", ").count();
        let arrays = COURSES_UPSERT.matches("::").count();
        assert_eq!(columns, 35);
        assert_eq!(COURSE_ARRAY_TYPES.len(), columns);
        assert_eq!(arrays, columns, "{}", *COURSES_UPSERT);
        assert!(COURSES_UPSERT.contains(&format!("${columns}::")));
        assert!(!COURSES_UPSERT.contains(&format!("${}::", columns + 1)));
    }

    /// An upsert leaves what the request set once alone and updates the rest.
    #[test]
    fn the_courses_upsert_updates_every_column_but_the_fixed_ones() {
        for column in COURSE_COLUMNS.split(", ") {
            let updated = COURSES_UPSERT.contains(&format!(" {column} = EXCLUDED.{column}"));
            assert_eq!(updated, !COURSE_FIXED_COLUMNS.contains(&column), "{column}");
        }
    }
}
