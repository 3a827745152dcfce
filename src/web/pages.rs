//! The pages people read: the library, a course (live while it is being
//! written), a lesson. They read what the API's handlers read, through the
//! same functions, so the tenant rules are the API's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::elements;
use super::session::Session;
use super::views::{
    self, Choice, CourseCard, CoursePage, EventLine, LessonLine, LessonPage, LibraryPage,
    QuizOption, QuizQuestion, SectionLink,
};
use super::PageError;
use crate::domain::CourseStatus;
use crate::ingress::http::courses::dto::{CourseView, ListParams};
use crate::ingress::http::courses::handlers::find_course;
use crate::ingress::http::courses::progress;
use crate::ingress::http::{ApiError, ApiState, User};
use crate::projections::courses::queries;
use crate::projections::courses::LessonStatus;
use crate::render::Rendered;
use crate::store::RecordedEvent;

/// Courses on one library page.
const PER_PAGE: i64 = 20;

/// The library's query: a search form's fields (empty means "any").
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LibraryQuery {
    q: Option<String>,
    status: Option<String>,
    language: Option<String>,
    /// One tag, normalised as the API's `tag` filter normalises it.
    tag: Option<String>,
    page: Option<String>,
}

/// `/`: the user's courses, searched, filtered and paged.
pub(crate) async fn library(
    req: HttpRequest,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, PageError> {
    let session = Session::begin(&req, &state)?;
    // A hand-edited query shows the library with a message, not an error.
    let query = web::Query::<LibraryQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let blank = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or("").to_owned();
    let (q, language, status_text, tag) = (
        blank(&query.q),
        blank(&query.language),
        blank(&query.status),
        blank(&query.tag),
    );
    let mut page_number = 1;
    let mut error = None;
    if let Some(p) = query.page.as_deref().filter(|p| !p.trim().is_empty()) {
        match p.trim().parse::<i64>() {
            Ok(n) => page_number = n,
            Err(_) => error = Some(format!("page must be a whole number, got {p:?}")),
        }
    }
    let status = match status_text.parse::<CourseStatus>() {
        Ok(s) => Some(s),
        Err(_) if status_text.is_empty() => None,
        Err(e) => {
            error.get_or_insert(e.to_string());
            None
        }
    };
    let params = ListParams {
        page: Some(page_number),
        per_page: Some(PER_PAGE),
        q: Some(q.clone()).filter(|q| !q.is_empty()),
        language: Some(language.clone()).filter(|l| !l.is_empty()),
        tag: Some(tag.clone()).filter(|t| !t.is_empty()),
        ..ListParams::default()
    };
    let (items, total) = match params.into_page(&session.user, status) {
        Ok(page) => {
            let client = state.store.pool().get().await.map_err(ApiError::from)?;
            let (courses, total) = page.list.run(&client).await.map_err(ApiError::from)?;
            (courses.into_iter().map(CourseView::from).collect(), total)
        }
        Err(e) => {
            error.get_or_insert(e.to_string());
            (Vec::new(), 0)
        }
    };
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let link = |n: i64| {
        let mut pairs = vec![("page", n.to_string())];
        for (k, v) in [
            ("q", &q),
            ("status", &status_text),
            ("language", &language),
            ("tag", &tag),
        ] {
            if !v.is_empty() {
                pairs.push((k, v.clone()));
            }
        }
        format!(
            "/?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let prev = (page_number > 1).then(|| link(page_number - 1));
    let next = (page_number < pages).then(|| link(page_number + 1));
    let statuses = std::iter::once(Choice {
        value: String::new(),
        label: "Any status".into(),
        selected: status.is_none(),
    })
    .chain(
        [
            CourseStatus::Queued,
            CourseStatus::Generating,
            CourseStatus::Ready,
            CourseStatus::Failed,
        ]
        .into_iter()
        .map(|s| Choice {
            value: s.to_string(),
            label: s.to_string(),
            selected: status == Some(s),
        }),
    )
    .collect();
    session.page(&LibraryPage {
        layout: session.layout("Your courses"),
        items: items.into_iter().map(card).collect(),
        filtered: !q.is_empty() || !language.is_empty() || !tag.is_empty() || status.is_some(),
        q,
        language,
        tag,
        statuses,
        total,
        page: page_number,
        pages,
        prev,
        next,
        error,
    })
}

fn card(c: CourseView) -> CourseCard {
    CourseCard {
        url: format!("/courses/{}", c.course_id),
        title: c.title.clone().unwrap_or_else(|| c.topic.clone()),
        topic: c.topic,
        status: c.status.to_string(),
        status_class: views::status_class(c.status),
        lessons_generated: c.lessons_generated,
        total_lessons: c.total_lessons,
        language: c.language,
        created: views::when(c.created_at),
        tags: tag_links(&c.tags),
    }
}

/// Each tag and the library filtered by it.
fn tag_links(tags: &[String]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            let query = serde_urlencoded::to_string([("tag", t)]).unwrap_or_default();
            (t.clone(), format!("/?{query}"))
        })
        .collect()
}

/// Query of a course page: what an action just did.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CourseQuery {
    done: Option<String>,
}

/// `/courses/{id}`: a course, its outline, metadata, sources, tokens and
/// history; deleted ones too (with Restore).
pub(crate) async fn course(
    req: HttpRequest,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let session = Session::begin(&req, &state)?;
    let id = course_id(&id)?;
    let (view, lessons, events) = load_course(&state, &session.user, id).await?;
    let notice = web::Query::<CourseQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().done)
        .and_then(|d| match d.as_str() {
            "deleted" => Some("The course was deleted. Restore brings it back."),
            "restored" => Some("The course was restored."),
            "retried" => Some("Generation starts again where it stopped."),
            "created" => Some("Your course is requested; this page follows its progress."),
            _ => None,
        })
        .map(str::to_owned);
    session.page(&course_page(&session, view, lessons, &events, notice))
}

/// The course, its lessons and history, if `user` may see it.
async fn load_course(
    state: &ApiState,
    user: &User,
    id: Uuid,
) -> Result<(CourseView, Vec<queries::LessonEntry>, Vec<RecordedEvent>), PageError> {
    let view = find_course(state, user, id).await?;
    let client = state.store.pool().get().await.map_err(ApiError::from)?;
    let (_, lessons) = queries::course_with_lessons(&client, id)
        .await
        .map_err(ApiError::from)?;
    drop(client);
    let events = state.store.read_stream(id).await.map_err(ApiError::from)?;
    Ok((view, lessons, events))
}

fn course_page(
    session: &Session,
    c: CourseView,
    lessons: Vec<queries::LessonEntry>,
    events: &[RecordedEvent],
    notice: Option<String>,
) -> CoursePage {
    let title = c.title.clone().unwrap_or_else(|| c.topic.clone());
    let base = format!("/courses/{}", c.course_id);
    let lessons = lessons
        .into_iter()
        .map(|l| LessonLine {
            url: (l.status == LessonStatus::Generated && c.deleted_at.is_none())
                .then(|| format!("{base}/lessons/{}", l.number)),
            number: l.number,
            title: l.title,
            concepts: l.concepts.join(", "),
        })
        .collect();
    let mut metadata = vec![("Topic".to_owned(), c.topic.clone())];
    let mut add = |k: &str, v: String| {
        if !v.is_empty() {
            metadata.push((k.to_owned(), v));
        }
    };
    add("Audience", c.grade_level.clone().unwrap_or_default());
    add("Language", c.language.clone());
    add(
        "Difficulty",
        c.difficulty.map(|d| d.to_string()).unwrap_or_default(),
    );
    add("Author", c.author.clone().unwrap_or_default());
    add("Prerequisites", c.prerequisites.join("; "));
    add("Learning outcomes", c.learning_outcomes.join("; "));
    add(
        "Estimated time",
        if c.estimated_minutes > 0 {
            format!("{} minutes", c.estimated_minutes)
        } else {
            String::new()
        },
    );
    add("Source filter", c.source_filter.clone().unwrap_or_default());
    add("Model", c.model.clone().unwrap_or_default());
    add("Attempt", c.attempt.to_string());
    add("Requested", views::when(c.created_at));
    add(
        "Finished",
        c.generated_at.map(views::when).unwrap_or_default(),
    );
    CoursePage {
        layout: session.layout(title.clone()),
        id: c.course_id.to_string(),
        title,
        description: c.description.clone().unwrap_or_default(),
        status: c.status.to_string(),
        status_class: views::status_class(c.status),
        live: !c.status.is_finished() && c.deleted_at.is_none(),
        failed: c.status == CourseStatus::Failed,
        deleted: c.deleted_at.is_some(),
        error: c.error.clone(),
        lessons_generated: c.lessons_generated,
        total_lessons: c.total_lessons,
        lessons,
        metadata,
        tags: tag_links(&c.tags),
        sources: views::documents(&c.sources),
        tokens: (c.tokens.prompt, c.tokens.completion, c.tokens.total),
        events: events.iter().map(event_line).collect(),
        notice,
    }
}

fn event_line(e: &RecordedEvent) -> EventLine {
    let p = &e.payload;
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let summary = match e.event_type.as_str() {
        "CourseRequested" => format!("topic: {}", text("topic")),
        "GenerationStarted" => format!(
            "attempt {}, model {}",
            p.get("attempt").map(Value::to_string).unwrap_or_default(),
            text("model")
        ),
        "OutlineGenerated" => text("title"),
        "LessonGenerated" | "LessonRegenerated" => format!(
            "lesson {}: {}",
            p.get("number").map(Value::to_string).unwrap_or_default(),
            text("title")
        ),
        "CourseFailed" => format!("{}: {}", text("step"), text("error")),
        "CourseDeleted" | "GenerationRetried" => text("reason"),
        _ => String::new(),
    };
    EventLine {
        version: e.stream_version,
        event_type: e.event_type.clone(),
        at: e.recorded_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        summary: summary.chars().take(200).collect(),
    }
}

/// `/courses/{id}/progress`: the API's progress stream, for the page's
/// script (which cannot send a bearer header; the session cookie goes along).
pub(crate) async fn progress(
    req: HttpRequest,
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let session = Session::begin(&req, &state)?;
    let id = course_id(&id)?;
    Ok(progress::stream(&state, &session.user, id).await?)
}

/// A course id from the path; anything else is the 404 page.
pub(crate) fn course_id(text: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(text).map_err(|_| PageError::not_found("There is no course at this address."))
}

/// `/courses/{id}/lessons/{n}`: a lesson to read, with its quiz.
pub(crate) async fn lesson(
    req: HttpRequest,
    state: web::Data<ApiState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let session = Session::begin(&req, &state)?;
    let (id, n) = path.into_inner();
    let page = lesson_page(&state, &session, &id, &n, None).await?;
    session.page(&page)
}

/// The lesson page of `id`/`n`, its quiz checked against `answers` (the
/// option chosen for each question) when given.
pub(crate) async fn lesson_page(
    state: &ApiState,
    session: &Session,
    id: &str,
    n: &str,
    answers: Option<&[Option<usize>]>,
) -> Result<LessonPage, PageError> {
    let id = course_id(id)?;
    let missing = || PageError::not_found(format!("This course has no lesson {n}."));
    let number: i32 = n.parse().map_err(|_| missing())?;
    // The course, its outline and the lesson in one round trip.
    let client = state.store.pool().get().await.map_err(ApiError::from)?;
    let ((record, entries), lesson, element_values, tracks) = futures::try_join!(
        queries::course_with_lessons(&client, id),
        queries::lesson(&client, id, number),
        queries::elements(&client, id, number),
        queries::subtitles_of_lesson(&client, id, number)
    )
    .map_err(ApiError::from)?;
    drop(client);
    let course = match record {
        Some(r) if session.user.may_access(r.user_id) => CourseView::from(r),
        Some(_) => return Err(ApiError::course_not_found(id).into()),
        None => find_course(state, &session.user, id).await?,
    };
    if course.deleted_at.is_some() {
        return Err(PageError::status(
            actix_web::http::StatusCode::GONE,
            "This course was deleted. Its page has a Restore button.",
        ));
    }
    let lesson = lesson.ok_or_else(missing)?;
    let content = lesson
        .content_md
        .as_deref()
        .ok_or_else(|| PageError::not_found(format!("Lesson {n} is not written yet.")))?;
    let sources = views::sources(lesson.sources.as_ref().unwrap_or(&Value::Null));
    let rendered = rendered(
        id,
        number,
        lesson.entry.generated_at,
        &views::link_citations(content, &sources),
        &lesson.entry.title,
    );
    let base = format!("/courses/{id}");
    let neighbour = |k: i32| {
        entries
            .iter()
            .find(|e| e.number == k && e.status == LessonStatus::Generated)
            .map(|e| (format!("{base}/lessons/{k}"), e.title.clone()))
    };
    let quiz = quiz(&lesson.checks, answers);
    let score = answers.map(|_| {
        (
            quiz.iter().filter(|q| q.verdict == Some(true)).count(),
            quiz.len(),
        )
    });
    Ok(LessonPage {
        layout: session.layout(lesson.entry.title.clone()),
        course_title: course.title.clone().unwrap_or_else(|| course.topic.clone()),
        course_url: base.clone(),
        number,
        title: lesson.entry.title.clone(),
        objectives: lesson.entry.objectives.clone(),
        sections: rendered
            .headings
            .iter()
            .filter(|h| h.level >= 2 && h.level <= 3)
            .map(|h| SectionLink {
                id: h.id.clone(),
                text: h.text.clone(),
                sub: h.level == 3,
            })
            .collect(),
        html: rendered.html.clone(),
        prev: neighbour(number - 1),
        next: neighbour(number + 1),
        quiz_url: format!("{base}/lessons/{number}/quiz#quiz"),
        quiz,
        score,
        sources,
        elements: elements::cards(&element_values),
        transcript: elements::transcript(
            &format!("{base}/lessons/{number}"),
            &course.language,
            tracks,
        ),
    })
}

/// Lessons rendered recently, by course, number and when generated (a
/// regenerated lesson is a new key): rendering and sanitising is most of
/// a lesson page's work, and a lesson is read many times.
type RenderCache = HashMap<(Uuid, i32, Option<DateTime<Utc>>), Arc<Rendered>>;

/// Most lessons kept rendered; the cache starts over when full.
const RENDER_CACHE_SIZE: usize = 512;

fn rendered(
    id: Uuid,
    number: i32,
    at: Option<DateTime<Utc>>,
    content: &str,
    title: &str,
) -> Arc<Rendered> {
    static CACHE: OnceLock<Mutex<RenderCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let key = (id, number, at);
    if let Some(hit) = cache.lock().expect("render cache lock").get(&key) {
        return hit.clone();
    }
    let fresh = Arc::new(crate::render::lesson(content, title));
    let mut cache = cache.lock().expect("render cache lock");
    if cache.len() >= RENDER_CACHE_SIZE {
        cache.clear();
    }
    cache.insert(key, fresh.clone());
    fresh
}

/// The quiz questions of a lesson (`checks`: question, options,
/// answer_index, explanation), checked against `answers` when given.
fn quiz(checks: &Value, answers: Option<&[Option<usize>]>) -> Vec<QuizQuestion> {
    let Some(items) = checks.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let correct = q
                .get("answer_index")
                .and_then(Value::as_u64)
                .map(|a| a as usize);
            let chosen = answers.map(|a| a.get(i).copied().flatten());
            let options = q
                .get("options")
                .and_then(Value::as_array)
                .map(|o| {
                    o.iter()
                        .enumerate()
                        .map(|(j, text)| QuizOption {
                            index: j,
                            text: text.as_str().unwrap_or("").to_owned(),
                            chosen: chosen.flatten() == Some(j),
                            correct: correct == Some(j),
                        })
                        .collect()
                })
                .unwrap_or_default();
            QuizQuestion {
                index: i,
                question: q
                    .get("question")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                options,
                explanation: q
                    .get("explanation")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                verdict: chosen.map(|c| c.is_some() && c == correct),
                answered: chosen.flatten().is_some(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_quiz_marks_each_answer_right_or_wrong() {
        let checks = json!([
            { "question": "One?", "options": ["A", "B"], "answer_index": 1, "explanation": "B." },
            { "question": "Two?", "options": ["A", "B"], "answer_index": 0, "explanation": "A." },
            { "question": "Three?", "options": ["A", "B"], "answer_index": 0, "explanation": "A." },
        ]);
        let q = quiz(&checks, Some(&[Some(1), Some(1), None]));
        let verdicts: Vec<_> = q.iter().map(|q| q.verdict).collect();
        assert_eq!(verdicts, [Some(true), Some(false), Some(false)]);
        assert!(q[1].options[1].chosen && q[1].options[0].correct);
        assert!(quiz(&checks, None).iter().all(|q| q.verdict.is_none()));
    }
}
