//! `CourseActor`: owns one in-flight course. It loads the course's stream,
//! takes the next missing step (asking the LLM where the step needs it),
//! appends the result with the version it decided on, and repeats until the
//! course is READY or FAILED. A step already in the log is never redone, so a
//! restarted service resumes at the next missing lesson.
//!
//! Before each model call it checks that the stream has not moved on (a
//! `CourseDeleted`, another writer): if it has, it reloads and decides again,
//! so a deleted course costs no token past the call already in flight, whose
//! answer is still recorded (see `decide`) and not paid again on restore.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use crate::domain::{
    evolve, Command, Course, CourseFailed, NextStep, SubtitlesFailed, SubtitlesGenerated,
};
use crate::llm::LlmClient;
use crate::retry::Backoff;
use crate::sources::embeddings::Embedder;
use crate::sources::grounding::{self, Retrieval};
use crate::sources::semantic::SemanticError;
use crate::store::courses::{self, CommandError};
use crate::store::{EventStore, Metadata, StoreError};

/// Tells the scheduler a course actor stopped.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct CourseFinished {
    pub course_id: Uuid,
}

/// Asks a course actor to stop once its current step is recorded (its lease
/// was lost, the course was deleted, or the service is shutting down). An
/// answer already paid for and not yet appended is appended first; no new
/// model call is made.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub(crate) struct StopAfterStep;

/// Take the next step of generation. Handled atomically: no other message
/// interleaves with a step, so appends are strictly sequential.
#[derive(Message)]
#[rtype(result = "()")]
struct TakeNextStep;

/// (Re)load the course's stream before the next step.
#[derive(Message)]
#[rtype(result = "()")]
struct Reload;

/// Drives one course.
pub(crate) struct CourseActor {
    id: Uuid,
    store: EventStore,
    llm: Arc<dyn LlmClient>,
    /// Semantic retrieval's endpoint, when configured (full text alone otherwise).
    embedder: Option<Embedder>,
    finished: Recipient<CourseFinished>,
    course: Course,
    /// A decided-on command not yet appended (an LLM answer kept across a
    /// conflict or a database outage, so its tokens are not paid twice).
    pending: Option<Command>,
    /// Delay before retrying after a database failure; reset by a success.
    backoff: Backoff,
    /// [`StopAfterStep`] came while `pending` held an answer: record it, then stop.
    stopping: bool,
}

impl CourseActor {
    /// An actor for course `id`, retrieving with `embedder` too when given;
    /// `finished` hears when it stops.
    pub(crate) fn new(
        id: Uuid,
        store: EventStore,
        llm: Arc<dyn LlmClient>,
        embedder: Option<Embedder>,
        finished: Recipient<CourseFinished>,
    ) -> Self {
        Self {
            id,
            store,
            llm,
            embedder,
            finished,
            course: Course::default(),
            pending: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(10)),
            stopping: false,
        }
    }
}

impl Actor for CourseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::gauge!("coursegen_course_actors").increment(1.0);
        ctx.notify(Reload);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        metrics::gauge!("coursegen_course_actors").decrement(1.0);
        self.finished.do_send(CourseFinished { course_id: self.id });
    }
}

impl Handler<Reload> for CourseActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Reload, _: &mut Self::Context) -> Self::Result {
        let (store, id) = (self.store.clone(), self.id);
        AtomicResponse::new(Box::pin(
            async move { courses::load(&store, id).await }
                .into_actor(self)
                .map(|loaded, act, ctx| match loaded {
                    Ok((course, _)) => {
                        act.backoff.reset();
                        act.course = course;
                        ctx.notify(TakeNextStep);
                    }
                    Err(e) => {
                        let delay = act.backoff.next_delay();
                        tracing::warn!(course_id = %act.id, error = %e, ?delay, "could not load course; retrying");
                        ctx.notify_later(Reload, delay);
                    }
                }),
        ))
    }
}

/// What a step came to.
enum StepOutcome {
    /// The step is recorded; here is the new state (boxed: a course is
    /// large beside the other outcomes).
    Recorded(Box<Course>),
    /// Nothing left to do: READY, FAILED, or gone.
    Done,
    /// Another writer got in first: reload, then decide `pending` again.
    Stale(Option<Command>),
    /// The database failed: keep `pending`, try again after a pause.
    Unavailable(Option<Command>),
}

impl Handler<TakeNextStep> for CourseActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: TakeNextStep, ctx: &mut Self::Context) -> Self::Result {
        if self.stopping && self.pending.is_none() {
            ctx.stop();
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let step = take_step(
            self.store.clone(),
            self.llm.clone(),
            self.embedder.clone(),
            self.id,
            self.course.clone(),
            self.pending.take(),
        );
        AtomicResponse::new(Box::pin(step.into_actor(self).map(
            |outcome, act, ctx| match outcome {
                StepOutcome::Recorded(course) => {
                    act.backoff.reset();
                    act.course = *course;
                    ctx.notify(TakeNextStep);
                }
                StepOutcome::Done => ctx.stop(),
                StepOutcome::Stale(pending) => {
                    act.pending = pending;
                    ctx.notify(Reload);
                }
                // Stopping: the answer is left for whoever resumes the course.
                StepOutcome::Unavailable(_) if act.stopping => ctx.stop(),
                StepOutcome::Unavailable(pending) => {
                    act.pending = pending;
                    let delay = act.backoff.next_delay();
                    ctx.notify_later(Reload, delay);
                }
            },
        )))
    }
}

impl Handler<StopAfterStep> for CourseActor {
    type Result = ();

    fn handle(&mut self, _: StopAfterStep, ctx: &mut Self::Context) {
        // Steps are atomic responses: none is running while this is handled.
        if self.pending.is_none() {
            ctx.stop();
        } else {
            self.stopping = true;
        }
    }
}

/// Decides the next step's command (calling the LLM if the step needs it)
/// and appends its events.
async fn take_step(
    store: EventStore,
    llm: Arc<dyn LlmClient>,
    embedder: Option<Embedder>,
    id: Uuid,
    course: Course,
    pending: Option<Command>,
) -> StepOutcome {
    let kept = pending.is_some();
    let command = match pending {
        Some(command) => command,
        None => {
            if matches!(
                course.next_step(),
                NextStep::Outline | NextStep::Lesson(_) | NextStep::Translate(_)
            ) {
                // About to pay for a model call: only on the latest state.
                match courses::version(&store, id).await {
                    Ok(v) if v == course.version => {}
                    Ok(_) => return StepOutcome::Stale(None),
                    Err(e) => {
                        tracing::warn!(course_id = %id, error = %e, "could not check the course; will retry");
                        return StepOutcome::Unavailable(None);
                    }
                }
            }
            match next_command(&store, &*llm, embedder.as_ref(), &course).await {
                Ok(Some(command)) => command,
                Ok(None) => return StepOutcome::Done,
                // The library could not be searched (the database is down):
                // no model call was made, try the step again after a pause.
                Err(e) => {
                    tracing::warn!(course_id = %id, error = %e, "could not search the source library; will retry");
                    return StepOutcome::Unavailable(None);
                }
            }
        }
    };
    let metadata = Metadata {
        producer: Some("course-actor".into()),
        request_id: course.request.as_ref().map(|r| r.request_id),
        user_id: course.request.as_ref().map(|r| r.user_id),
        ..Metadata::default()
    };
    match courses::execute_on(&store, id, &course, command.clone(), &metadata).await {
        Ok((events, _)) => {
            let course = events.iter().fold(course, evolve);
            log_progress(id, &course);
            StepOutcome::Recorded(Box::new(course))
        }
        Err(CommandError::Store(StoreError::Conflict { .. })) => StepOutcome::Stale(Some(command)),
        Err(CommandError::Store(e)) => {
            tracing::warn!(course_id = %id, error = %e, "could not record a step; will retry");
            StepOutcome::Unavailable(Some(command))
        }
        Err(CommandError::Rejected(rule)) => {
            // Our state may be stale (someone else appended): check the log.
            match courses::load(&store, id).await {
                Ok((fresh, _)) if fresh.version != course.version => {
                    StepOutcome::Stale(Some(command))
                }
                // An answer kept across a reload, refused by the state the
                // log moved on to (the lesson is recorded already, the course
                // was deleted before it started, ...); or any step of a
                // deleted course: drop it and look at the course afresh.
                Ok((fresh, _)) if kept || fresh.deleted => {
                    tracing::debug!(course_id = %id, %rule, "dropping a step the course moved past");
                    StepOutcome::Stale(None)
                }
                Ok(_) => match command {
                    Command::Fail(_) => StepOutcome::Done,
                    _ => {
                        tracing::warn!(course_id = %id, %rule, "the course refused the model's answer");
                        StepOutcome::Stale(Some(Command::Fail(CourseFailed {
                            step: step_name(course.next_step()),
                            error: format!("the course refused this step: {rule}"),
                            retryable: true,
                        })))
                    }
                },
                Err(e) => {
                    tracing::warn!(course_id = %id, error = %e, "could not reload the course");
                    StepOutcome::Unavailable(Some(command))
                }
            }
        }
    }
}

/// The command for the course's next missing step, or `None` when none is left.
///
/// # Errors
/// The source library could not be searched: a database outage, retried
/// like a failed append rather than failing the course.
async fn next_command(
    store: &EventStore,
    llm: &dyn LlmClient,
    embedder: Option<&Embedder>,
    course: &Course,
) -> Result<Option<Command>, deadpool_postgres::PoolError> {
    let step = course.next_step();
    let Some(request) = course.request.as_ref() else {
        return Ok(None);
    };
    let failed = |e: crate::llm::LlmError| {
        Command::Fail(CourseFailed {
            step: step_name(step),
            error: e.to_string(),
            retryable: e.retryable(),
        })
    };
    Ok(Some(match step {
        NextStep::Nothing => return Ok(None),
        NextStep::Start => Command::StartGeneration {
            model: llm.model().to_owned(),
        },
        NextStep::Outline => {
            let hits = match retrieve(
                store,
                embedder,
                request,
                &request.topic,
                grounding::OUTLINE_K,
            )
            .await?
            {
                Ok(hits) => hits,
                Err(fail) => return Ok(Some(fail)),
            };
            let chunks = grounding::chunks(&hits);
            match llm.outline_grounded(request, &chunks).await {
                Ok(mut outline) => {
                    outline.retrieved = grounding::retrieved(&chunks);
                    Command::RecordOutline(outline)
                }
                Err(e) => failed(e),
            }
        }
        NextStep::Lesson(n) => {
            let Some(outline) = course.outline.as_ref() else {
                return Ok(None);
            };
            let text = outline
                .lessons
                .iter()
                .find(|l| l.number == n)
                .map(grounding::lesson_query)
                .unwrap_or_default();
            let hits = match retrieve(store, embedder, request, &text, grounding::LESSON_K).await? {
                Ok(hits) => hits,
                Err(fail) => return Ok(Some(fail)),
            };
            let chunks = grounding::chunks(&hits);
            match llm.lesson_grounded(request, outline, n, &chunks).await {
                Ok(mut lesson) => {
                    grounding::ground_lesson(&mut lesson, &chunks);
                    Command::RecordLesson(lesson)
                }
                Err(e) => failed(e),
            }
        }
        NextStep::Subtitles(n) => {
            let Some(cues) = course.narration.get(&n) else {
                return Ok(None);
            };
            Command::RecordSubtitles(SubtitlesGenerated {
                lesson: n,
                language: course.source_language().to_owned(),
                cues: cues.clone(),
                model: None,
                usage: Default::default(),
            })
        }
        NextStep::Translate(n) => {
            let Some(language) = course.next_translation_language().map(str::to_owned) else {
                return Ok(None);
            };
            let Some(source) = course
                .subtitles
                .get(&(n, course.source_language().to_owned()))
            else {
                return Ok(None);
            };
            match llm.translate(request, n, source, &language).await {
                Ok(track) => Command::RecordSubtitles(track),
                // A translation that fails stops its language, not the course.
                Err(e) => Command::FailSubtitles(SubtitlesFailed {
                    lesson: n,
                    language,
                    error: e.to_string(),
                    retryable: e.retryable(),
                }),
            }
        }
        NextStep::FinishSubtitles => Command::FinishSubtitles,
        NextStep::Complete => Command::Complete,
    }))
}

/// The chunks a step is grounded in; the inner `Err` is the step's failure
/// at `retrieval`: a `source_filter` matching no document (retryable once
/// documents are added), or the embeddings endpoint refusing the query.
///
/// # Errors
/// The library could not be searched (the database is out of reach): the
/// step is tried again later, the course is not failed for it.
async fn retrieve(
    store: &EventStore,
    embedder: Option<&Embedder>,
    request: &crate::domain::CourseRequested,
    text: &str,
    k: i64,
) -> Result<
    Result<Vec<crate::projections::sources::queries::SearchHit>, Command>,
    deadpool_postgres::PoolError,
> {
    let fail = |error: String| {
        Command::Fail(CourseFailed {
            step: "retrieval".into(),
            error,
            retryable: true,
        })
    };
    Ok(
        match grounding::retrieve(store.pool(), embedder, request, text, k).await {
            Ok(Retrieval::Hits(hits)) => Ok(hits),
            Ok(Retrieval::NoLibrary) => Ok(Vec::new()),
            Ok(Retrieval::NoDocuments { prefix }) => {
                Err(fail(grounding::no_documents_message(&prefix)))
            }
            Err(SemanticError::Database(e)) => return Err(e),
            Err(SemanticError::Embeddings(e)) => Err(fail(format!(
                "the source library could not be searched: {e}"
            ))),
        },
    )
}

fn step_name(step: NextStep) -> String {
    match step {
        NextStep::Start => "start".into(),
        NextStep::Outline => "outline".into(),
        NextStep::Lesson(n) => format!("lesson {n}"),
        NextStep::Subtitles(n) => format!("subtitles of lesson {n}"),
        NextStep::Translate(n) => format!("translation of lesson {n}"),
        NextStep::FinishSubtitles => "subtitles".into(),
        NextStep::Complete => "completion".into(),
        NextStep::Nothing => "none".into(),
    }
}

fn log_progress(id: Uuid, course: &Course) {
    match course.status {
        Some(crate::domain::CourseStatus::Ready) => tracing::info!(course_id = %id, "course ready"),
        Some(crate::domain::CourseStatus::Failed) => {
            let error = course
                .failure
                .as_ref()
                .map(|f| f.error.as_str())
                .unwrap_or("");
            tracing::warn!(course_id = %id, error, "course failed");
        }
        _ => tracing::debug!(
            course_id = %id,
            lessons = course.lessons_done.len(),
            of = course.planned_lessons(),
            "step recorded"
        ),
    }
}
