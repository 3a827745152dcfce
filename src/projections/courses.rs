//! The `courses` projector: `courses`, `lessons`, `lesson_bodies` and
//! `lesson_checks` (SQL in `projections/0002_courses.sql`).
//!
//! A batch is applied set-wise: the rows it touches are loaded, the events
//! folded into them in log order (in memory, the same rules as one event at
//! a time), and each table written with one `INSERT ... SELECT FROM unnest(...)
//! ON CONFLICT DO UPDATE`. Every column is a function of the events alone
//! (times are the events' `recorded_at`; slugs are numbered by log position,
//! see `coursegen_slug_base`), so batch boundaries do not matter and a replay
//! rebuilds exactly the rows the live runner wrote.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{readable, ApplyError, Decoded};
use crate::domain::{CourseEvent, QuizQuestion, SourceRef};
use crate::store::Position;

/// A base for slugs, as `coursegen_slug_base` in SQL computes it: lower-case
/// ASCII letters and digits joined by single dashes, at most 80 characters,
/// `course` when empty, a trailing `-<digits>` joined to the word before.
pub fn slug_base(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    let mut dash = false;
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.push(c);
        } else {
            dash = true;
        }
    }
    slug.truncate(80);
    let mut slug = slug.trim_end_matches('-').to_owned();
    if slug.is_empty() {
        slug = "course".into();
    }
    if let Some(i) = slug.rfind('-') {
        let tail = &slug[i + 1..];
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            slug.remove(i);
        }
    }
    slug
}

#[derive(Debug, Clone)]
struct CourseRow {
    id: Uuid,
    user_id: Uuid,
    request_id: Uuid,
    title: Option<String>,
    description: Option<String>,
    topic: String,
    grade_level: Option<String>,
    language: String,
    source_filter: Option<String>,
    status: String,
    error_message: Option<String>,
    total_lessons: i32,
    lessons_generated: i32,
    sources: Vec<Value>,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    attempt: i32,
    model: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    generated_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
    slug_base: String,
    slug_position: Position,
    /// Numbered by [`number_slugs`] (empty for a new course until then).
    slug: String,
    /// The base as stored before this batch (`None` for a new course).
    stored_base: Option<String>,
}

#[derive(Debug, Clone)]
struct LessonRow {
    title: String,
    concepts: Vec<String>,
    objectives: Vec<String>,
    status: &'static str,
    generated_at: Option<DateTime<Utc>>,
}

/// A lesson's quiz, as its latest `LessonGenerated` in the batch has it.
struct Quiz<'a> {
    questions: &'a [QuizQuestion],
    /// Like [`BodyRow::from_log`]: the server copies the questions from the
    /// event's `quiz` when the payload has the current shape.
    from_log: Option<i64>,
    /// The lesson was generated before: questions past the new quiz's
    /// length are dropped.
    replaces: bool,
}

struct BodyRow {
    /// The event's global position when its payload already has the current
    /// shape: the server then copies the content straight from the log
    /// (`payload->>'content_md'`, `payload->'sections'`), the same values the
    /// decoded event holds, without shipping them back and forth.
    from_log: Option<i64>,
    /// The content, for upcast payloads only.
    content_md: Option<String>,
    content_json: Option<Value>,
    sources: Value,
    model: String,
    total_tokens: i64,
    generated_at: DateTime<Utc>,
}

fn int(v: u32) -> i32 {
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
    let ids: Vec<Uuid> = events
        .iter()
        .map(|(d, _)| d.stream_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut courses = load_courses(tx, suffix, &ids).await.map_err(&err)?;
    let lesson_ids: Vec<Uuid> = events
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
        .collect();
    let mut lessons = load_lessons(tx, suffix, &lesson_ids).await.map_err(&err)?;
    let mut dirty_courses: BTreeSet<Uuid> = BTreeSet::new();
    let mut dirty_lessons: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    let mut bodies: HashMap<(Uuid, i32), BodyRow> = HashMap::new();
    let mut checks: HashMap<(Uuid, i32), Quiz<'_>> = HashMap::new();

    for (d, event) in &events {
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
                CourseRow {
                    id,
                    user_id: r.user_id,
                    request_id: r.request_id,
                    title: None,
                    description: None,
                    topic: r.topic.clone(),
                    grade_level: r.grade_level.clone(),
                    language: r.language.clone(),
                    source_filter: r.source_filter.clone(),
                    status: "QUEUED".into(),
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
                    slug_base: slug_base(&r.topic),
                    slug_position: d.position,
                    slug: String::new(),
                    stored_base: None,
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
                            status: "PENDING",
                            generated_at: None,
                        });
                    dirty_lessons.insert(key);
                }
            }
            CourseEvent::LessonGenerated(l) => {
                let key = (id, int(l.number));
                let replaces = lessons
                    .get(&key)
                    .is_some_and(|row| row.status == "GENERATED");
                lessons
                    .entry(key)
                    .and_modify(|row| {
                        row.title = l.title.clone();
                        row.status = "GENERATED";
                        row.generated_at = Some(at);
                    })
                    .or_insert_with(|| LessonRow {
                        title: l.title.clone(),
                        concepts: Vec::new(),
                        objectives: Vec::new(),
                        status: "GENERATED",
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
                c.status = "GENERATING".into();
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
                c.status = "READY".into();
                c.total_lessons = int(done.total_lessons);
                c.error_message = None;
                c.generated_at = Some(at);
            }
            CourseEvent::CourseFailed(f) => {
                c.status = "FAILED".into();
                c.error_message = Some(format!("{}: {}", f.step, f.error));
            }
            CourseEvent::GenerationRetried(_) => {
                c.status = "QUEUED".into();
                c.error_message = None;
            }
            CourseEvent::CourseDeleted(_) => c.deleted_at = Some(at),
            CourseEvent::CourseRestored(_) => c.deleted_at = None,
        }
    }

    let renamed = number_slugs(tx, suffix, &mut courses, &dirty_courses)
        .await
        .map_err(&err)?;
    if !renamed.is_empty() {
        // Slugs move between courses: unique again at commit, not between
        // the two statements.
        tx.batch_execute("SET CONSTRAINTS ALL DEFERRED")
            .await
            .map_err(&err)?;
    }
    let rows: Vec<&CourseRow> = dirty_courses.iter().map(|id| &courses[id]).collect();
    write_courses(tx, suffix, &rows).await.map_err(&err)?;
    rename_slugs(tx, suffix, &renamed).await.map_err(&err)?;
    write_lessons(tx, suffix, &dirty_lessons, &lessons)
        .await
        .map_err(&err)?;
    write_bodies(tx, suffix, &bodies).await.map_err(&err)?;
    write_checks(tx, suffix, &checks).await.map_err(&err)?;
    Ok(())
}

async fn load_courses(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, CourseRow>, tokio_postgres::Error> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT id, user_id, request_id, title, description, topic, grade_level, language,
                    source_filter, status, error_message, total_lessons, lessons_generated, sources,
                    prompt_tokens, completion_tokens, total_tokens, attempt, model, created_at,
                    updated_at, generated_at, deleted_at, slug_base, slug_transaction_id, slug_position,
                    slug
             FROM courses{s} WHERE id = ANY($1)"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let sources: Value = r.get(13);
            let slug_base: String = r.get(23);
            let row = CourseRow {
                id: r.get(0),
                user_id: r.get(1),
                request_id: r.get(2),
                title: r.get(3),
                description: r.get(4),
                topic: r.get(5),
                grade_level: r.get(6),
                language: r.get(7),
                source_filter: r.get(8),
                status: r.get(9),
                error_message: r.get(10),
                total_lessons: r.get(11),
                lessons_generated: r.get(12),
                sources: match sources {
                    Value::Array(a) => a,
                    _ => Vec::new(),
                },
                prompt_tokens: r.get(14),
                completion_tokens: r.get(15),
                total_tokens: r.get(16),
                attempt: r.get(17),
                model: r.get(18),
                created_at: r.get(19),
                updated_at: r.get(20),
                generated_at: r.get(21),
                deleted_at: r.get(22),
                stored_base: Some(slug_base.clone()),
                slug_base,
                slug_position: Position {
                    transaction_id: r.get(24),
                    global_position: r.get(25),
                },
                slug: r.get(26),
            };
            (row.id, row)
        })
        .collect())
}

async fn load_lessons(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
    ids: &[Uuid],
) -> Result<HashMap<(Uuid, i32), LessonRow>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT course_id, lesson_number, title, concepts, objectives, status, generated_at
             FROM lessons{s} WHERE course_id = ANY($1)"
        ))
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let status: String = r.get(5);
            (
                (r.get(0), r.get(1)),
                LessonRow {
                    title: r.get(2),
                    concepts: r.get(3),
                    objectives: r.get(4),
                    status: if status == "GENERATED" {
                        "GENERATED"
                    } else {
                        "PENDING"
                    },
                    generated_at: r.get(6),
                },
            )
        })
        .collect())
}

async fn write_courses(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
    rows: &[&CourseRow],
) -> Result<(), tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO courses{s} AS c (id, user_id, request_id, title, description, slug, slug_base,
                 slug_transaction_id, slug_position, topic, grade_level, language, source_filter,
                 status, error_message, total_lessons, lessons_generated, sources, prompt_tokens,
                 completion_tokens, total_tokens, attempt, model, created_at, updated_at,
                 generated_at, deleted_at)
             SELECT id, user_id, request_id, title, description, slug, slug_base, slug_tx, slug_pos,
                    topic, grade_level, language, source_filter, status, error_message, total_lessons,
                    lessons_generated, sources, prompt_tokens, completion_tokens, total_tokens, attempt,
                    model, created_at, updated_at, generated_at, deleted_at
             FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                         $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::text[], $14::text[], $15::int4[], $16::int4[], $17::jsonb[], $18::int8[],
                         $19::int8[], $20::int8[], $21::int4[], $22::text[], $23::timestamptz[],
                         $24::timestamptz[], $25::timestamptz[], $26::timestamptz[], $27::text[])
                  AS u(id, user_id, request_id, title, description, slug_base, slug_tx, slug_pos,
                       topic, grade_level, language, source_filter, status, error_message,
                       total_lessons, lessons_generated, sources, prompt_tokens, completion_tokens,
                       total_tokens, attempt, model, created_at, updated_at, generated_at, deleted_at,
                       slug)
             ON CONFLICT (id) DO UPDATE SET
                 title = EXCLUDED.title, description = EXCLUDED.description, slug = EXCLUDED.slug,
                 slug_base = EXCLUDED.slug_base, slug_transaction_id = EXCLUDED.slug_transaction_id,
                 slug_position = EXCLUDED.slug_position, status = EXCLUDED.status,
                 error_message = EXCLUDED.error_message, total_lessons = EXCLUDED.total_lessons,
                 lessons_generated = EXCLUDED.lessons_generated, sources = EXCLUDED.sources,
                 prompt_tokens = EXCLUDED.prompt_tokens, completion_tokens = EXCLUDED.completion_tokens,
                 total_tokens = EXCLUDED.total_tokens, attempt = EXCLUDED.attempt, model = EXCLUDED.model,
                 updated_at = EXCLUDED.updated_at, generated_at = EXCLUDED.generated_at,
                 deleted_at = EXCLUDED.deleted_at"
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
    let slug_base = col!(|c| c.slug_base.as_str());
    let slug_tx = col!(|c| c.slug_position.transaction_id);
    let slug_pos = col!(|c| c.slug_position.global_position);
    let topic = col!(|c| c.topic.as_str());
    let grade_level = col!(|c| c.grade_level.as_deref());
    let language = col!(|c| c.language.as_str());
    let source_filter = col!(|c| c.source_filter.as_deref());
    let status = col!(|c| c.status.as_str());
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
    let slug = col!(|c| c.slug.as_str());
    tx.execute(
        &stmt,
        &[
            &id,
            &user_id,
            &request_id,
            &title,
            &description,
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
            &slug,
        ],
    )
    .await?;
    Ok(())
}

/// A slug: the base for the first course numbered by it, `<base>-<n>` for
/// the n-th (as the recount in `recount.rs` numbers them).
fn numbered_slug(base: &str, n: usize) -> String {
    if n == 1 {
        base.to_owned()
    } else {
        // Bases are ASCII: 72 bytes are 72 characters.
        format!("{}-{n}", &base[..base.len().min(72)])
    }
}

/// A course of a base, in numbering order: the position that took the
/// base (transaction id, global position), the course, and its stored slug
/// when it is not in the batch.
type SlugHolder = (i64, i64, Uuid, Option<String>);

/// Numbers the slugs of the batch's courses: the courses of a base are
/// numbered 1, 2, ... in the order they took it (`slug_transaction_id`,
/// `slug_position`). Only bases a course of the batch entered or left are
/// numbered again; their other courses are read by the `slug_base` index.
/// Sets `slug` on the batch's rows and returns the other courses whose slug
/// changes (when a course leaves a base, the ones after it move up).
async fn number_slugs(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
    courses: &mut HashMap<Uuid, CourseRow>,
    dirty: &BTreeSet<Uuid>,
) -> Result<Vec<(Uuid, String)>, tokio_postgres::Error> {
    let mut bases: BTreeSet<String> = BTreeSet::new();
    for id in dirty {
        let c = &courses[id];
        if c.stored_base.as_deref() != Some(c.slug_base.as_str()) {
            bases.insert(c.slug_base.clone());
            if let Some(old) = &c.stored_base {
                bases.insert(old.clone());
            }
        }
    }
    if bases.is_empty() {
        return Ok(Vec::new());
    }
    let bases: Vec<String> = bases.into_iter().collect();
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT id, slug_base, slug_transaction_id, slug_position, slug
             FROM courses{s} WHERE slug_base = ANY($1)"
        ))
        .await?;
    let mut members: HashMap<String, Vec<SlugHolder>> = HashMap::new();
    for r in tx.query(&stmt, &[&bases]).await? {
        let id: Uuid = r.get(0);
        if !dirty.contains(&id) {
            members
                .entry(r.get(1))
                .or_default()
                .push((r.get(2), r.get(3), id, Some(r.get(4))));
        }
    }
    for id in dirty {
        let c = &courses[id];
        if bases.binary_search(&c.slug_base).is_ok() {
            members.entry(c.slug_base.clone()).or_default().push((
                c.slug_position.transaction_id,
                c.slug_position.global_position,
                c.id,
                None,
            ));
        }
    }
    let mut renamed = Vec::new();
    for (base, mut list) in members {
        list.sort_unstable();
        for (i, (_, _, id, stored)) in list.into_iter().enumerate() {
            let slug = numbered_slug(&base, i + 1);
            match stored {
                None => courses.get_mut(&id).expect("a batch row").slug = slug,
                Some(old) if old != slug => renamed.push((id, slug)),
                Some(_) => {}
            }
        }
    }
    Ok(renamed)
}

/// Gives courses outside the batch their new slugs.
async fn rename_slugs(
    tx: &deadpool_postgres::Transaction<'_>,
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

async fn write_lessons(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
    keys: &BTreeSet<(Uuid, i32)>,
    lessons: &HashMap<(Uuid, i32), LessonRow>,
) -> Result<(), tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO lessons{s} (course_id, lesson_number, title, concepts, objectives, status, generated_at)
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
    let status: Vec<&str> = rows.iter().map(|(_, l)| l.status).collect();
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

async fn write_bodies(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
    bodies: &HashMap<(Uuid, i32), BodyRow>,
) -> Result<(), tokio_postgres::Error> {
    if bodies.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO lesson_bodies{s} (course_id, lesson_number, content_md, content_json, sources,
                                           model, total_tokens, generated_at)
             SELECT u.course_id, u.n, coalesce(u.content_md, e.payload->>'content_md'),
                    coalesce(u.content_json, e.payload->'sections', '[]'::jsonb),
                    u.sources, u.model, u.total_tokens, u.generated_at
             FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::jsonb[],
                         $6::text[], $7::int8[], $8::timestamptz[], $9::int8[])
                  AS u(course_id, n, content_md, content_json, sources, model, total_tokens,
                       generated_at, from_log)
             LEFT JOIN events e ON e.global_position = u.from_log
             ON CONFLICT (course_id, lesson_number) DO UPDATE SET
                 content_md = EXCLUDED.content_md, content_json = EXCLUDED.content_json,
                 sources = EXCLUDED.sources, model = EXCLUDED.model,
                 total_tokens = EXCLUDED.total_tokens, generated_at = EXCLUDED.generated_at"
        ))
        .await?;
    let rows: Vec<(&(Uuid, i32), &BodyRow)> = bodies.iter().collect();
    let ids: Vec<Uuid> = rows.iter().map(|(k, _)| k.0).collect();
    let ns: Vec<i32> = rows.iter().map(|(k, _)| k.1).collect();
    let md: Vec<Option<&str>> = rows.iter().map(|(_, b)| b.content_md.as_deref()).collect();
    let json: Vec<Option<&Value>> = rows.iter().map(|(_, b)| b.content_json.as_ref()).collect();
    let from_log: Vec<Option<i64>> = rows.iter().map(|(_, b)| b.from_log).collect();
    let sources: Vec<&Value> = rows.iter().map(|(_, b)| &b.sources).collect();
    let model: Vec<&str> = rows.iter().map(|(_, b)| b.model.as_str()).collect();
    let tokens: Vec<i64> = rows.iter().map(|(_, b)| b.total_tokens).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|(_, b)| b.generated_at).collect();
    tx.execute(
        &stmt,
        &[
            &ids, &ns, &md, &json, &sources, &model, &tokens, &at, &from_log,
        ],
    )
    .await?;
    Ok(())
}

async fn write_checks(
    tx: &deadpool_postgres::Transaction<'_>,
    s: &str,
    checks: &HashMap<(Uuid, i32), Quiz<'_>>,
) -> Result<(), tokio_postgres::Error> {
    const UPSERT: &str = "ON CONFLICT (course_id, lesson_number, question_number) DO UPDATE SET
                 question = EXCLUDED.question, options = EXCLUDED.options,
                 answer_index = EXCLUDED.answer_index, explanation = EXCLUDED.explanation";
    let (mut log_ids, mut log_ns, mut log_positions) = (Vec::new(), Vec::new(), Vec::new());
    let mut ids = Vec::new();
    let mut ns = Vec::new();
    let mut qn = Vec::new();
    let mut question = Vec::new();
    let mut options = Vec::new();
    let mut answer = Vec::new();
    let mut explanation = Vec::new();
    let (mut trim_ids, mut trim_ns, mut trim_lengths) = (Vec::new(), Vec::new(), Vec::new());
    for ((id, n), quiz) in checks {
        if quiz.replaces {
            trim_ids.push(*id);
            trim_ns.push(*n);
            trim_lengths.push(i32::try_from(quiz.questions.len()).unwrap_or(i32::MAX));
        }
        match quiz.from_log {
            Some(position) => {
                log_ids.push(*id);
                log_ns.push(*n);
                log_positions.push(position);
            }
            None => {
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
        }
    }
    if !trim_ids.is_empty() {
        // A lesson generated again: drop the questions its new quiz no longer has.
        let stmt = tx
            .prepare_cached(&format!(
                "DELETE FROM lesson_checks{s} AS c
                 USING unnest($1::uuid[], $2::int4[], $3::int4[]) AS u(course_id, n, questions)
                 WHERE c.course_id = u.course_id AND c.lesson_number = u.n
                   AND c.question_number > u.questions"
            ))
            .await?;
        tx.execute(&stmt, &[&trim_ids, &trim_ns, &trim_lengths])
            .await?;
    }
    if !log_ids.is_empty() {
        // The values the decoded `QuizQuestion`s hold (the payload decoded,
        // so every field is there), `answer_index` saturated as `int` does.
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO lesson_checks{s} (course_id, lesson_number, question_number, question,
                                               options, answer_index, explanation)
                 SELECT u.course_id, u.n, q.o::int4, q.x->>'question', q.x->'options',
                        least((q.x->>'answer_index')::int8, 2147483647)::int4, q.x->>'explanation'
                 FROM unnest($1::uuid[], $2::int4[], $3::int8[]) AS u(course_id, n, from_log)
                 JOIN events e ON e.global_position = u.from_log
                 CROSS JOIN LATERAL jsonb_array_elements(e.payload->'quiz') WITH ORDINALITY AS q(x, o)
                 {UPSERT}"
            ))
            .await?;
        tx.execute(&stmt, &[&log_ids, &log_ns, &log_positions])
            .await?;
    }
    if !ids.is_empty() {
        let stmt = tx
            .prepare_cached(&format!(
                "INSERT INTO lesson_checks{s} (course_id, lesson_number, question_number, question,
                                               options, answer_index, explanation)
                 SELECT * FROM unnest($1::uuid[], $2::int4[], $3::int4[], $4::text[], $5::jsonb[],
                                      $6::int4[], $7::text[])
                 {UPSERT}"
            ))
            .await?;
        tx.execute(
            &stmt,
            &[&ids, &ns, &qn, &question, &options, &answer, &explanation],
        )
        .await?;
    }
    Ok(())
}
