//! Course streams through the domain: load a course, decide a command, append.

use uuid::Uuid;

use super::{Appended, EventStore, Metadata, NewEvent, RecordedEvent, StoreError};
use crate::domain::{decide, evolve, Command, Course, CourseEvent, CourseRequest, DomainError};

/// Why a command on a course did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A course's state and the stored events it was folded from.
pub async fn load(
    store: &EventStore,
    id: Uuid,
) -> Result<(Course, Vec<RecordedEvent>), StoreError> {
    let recorded = store.read_stream(id).await?;
    let mut course = Course::default();
    for r in &recorded {
        course = evolve(course, &r.to_course_event()?);
    }
    Ok((course, recorded))
}

/// The course's current version (the number of events in its stream): a
/// cheap look, by the stream key's index, at whether a state held since is
/// still the latest.
///
/// # Errors
/// Database errors.
pub(crate) async fn version(store: &EventStore, id: Uuid) -> Result<u32, StoreError> {
    let client = store.pool().get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT COALESCE(MAX(stream_version) + 1, 0) FROM events WHERE stream_id = $1",
        )
        .await?;
    let version: i32 = client.query_one(&stmt, &[&id]).await?.get(0);
    Ok(version as u32)
}

/// Decides `command` against the course's current state and appends the
/// result with the version it was decided on; returns the new events (empty
/// for an idempotent repeat) and where they landed.
///
/// # Errors
/// [`CommandError::Rejected`] when the rules forbid it; a `Conflict` when
/// another writer appended in between (reload and decide again).
pub async fn execute(
    store: &EventStore,
    id: Uuid,
    command: Command,
    metadata: &Metadata,
) -> Result<(Vec<CourseEvent>, Option<Appended>), CommandError> {
    let (course, _) = load(store, id).await?;
    execute_on(store, id, &course, command, metadata).await
}

/// [`execute`] against a state the caller already holds (an actor's).
///
/// # Errors
/// As [`execute`].
pub(crate) async fn execute_on(
    store: &EventStore,
    id: Uuid,
    course: &Course,
    command: Command,
    metadata: &Metadata,
) -> Result<(Vec<CourseEvent>, Option<Appended>), CommandError> {
    let events = decide(course, command)?;
    if events.is_empty() {
        return Ok((events, None));
    }
    let new: Vec<NewEvent> = events.iter().map(NewEvent::from).collect();
    let appended = store.append(id, course.version, &new, metadata).await?;
    Ok((events, Some(appended)))
}

/// What [`submit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A new course was requested.
    Created(Appended),
    /// The same request was already recorded: nothing was appended.
    Duplicate,
}

/// Records a validated request as `CourseRequested` on the stream
/// `course_id(user, request)`, exactly once however often it is submitted.
///
/// # Errors
/// `Rejected(RequestMismatch)` if the id is taken by a different request.
pub async fn submit(
    store: &EventStore,
    request: CourseRequest,
    mut metadata: Metadata,
) -> Result<(Uuid, Submitted), CommandError> {
    let id = crate::domain::course_id(request.user_id, request.request_id);
    metadata.request_id.get_or_insert(request.request_id);
    metadata.user_id.get_or_insert(request.user_id);
    // Optimistic first try: a new stream needs no read.
    let first = execute_on(
        store,
        id,
        &Course::default(),
        Command::Request(request.clone()),
        &metadata,
    )
    .await;
    match first {
        Ok((_, Some(appended))) => Ok((id, Submitted::Created(appended))),
        Ok((_, None)) => unreachable!("an empty stream always records the request"),
        Err(CommandError::Store(StoreError::Conflict { .. })) => {
            match execute(store, id, Command::Request(request), &metadata).await? {
                (_, None) => Ok((id, Submitted::Duplicate)),
                (_, Some(appended)) => Ok((id, Submitted::Created(appended))),
            }
        }
        Err(e) => Err(e),
    }
}
