//! One watcher of the log for every course that progress streams follow.
//!
//! Each progress stream used to query the database every 200 ms on its own.
//! Instead one task per API follows every course some stream follows:
//! woken by the notifier (an append anywhere), it asks in one query which
//! of those courses have new events, reads only the new events of those,
//! folds them into the course's state and publishes it on a watch channel
//! that every stream of the course reads, once the `courses` projection
//! shows it too (so a client reading the course after a progress event sees
//! at least as much). Idle streams then cost the database nothing; a slow
//! poll ([`SAFETY_POLL`]) covers a lost wake-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::{evolve, Course};
use crate::projections::wait_for_position;
use crate::store::subscription::Waiter;
use crate::store::{courses, EventStore, Position, StoreError};

/// How often the watcher looks without a wake-up (a wake-up lost while the
/// LISTEN connection reconnected, say). Per API, not per stream.
pub(crate) const SAFETY_POLL: Duration = Duration::from_secs(2);

/// Longest wait for the `courses` projection to show what a stream is
/// about to show.
const READ_YOUR_WRITES: Duration = Duration::from_secs(5);

/// The shared watcher: [`CourseWatch::follow`] a course to get its state as
/// it changes. Its task ends once the last handle is dropped.
#[derive(Clone)]
pub(crate) struct CourseWatch {
    inner: Arc<Inner>,
}

struct Inner {
    store: EventStore,
    /// The followed courses; one entry serves every stream of a course.
    followed: Mutex<HashMap<Uuid, watch::Sender<Course>>>,
}

impl CourseWatch {
    /// Starts the watcher's task on the current runtime, woken by `wakeups`
    /// (a [`Notifier`](crate::store::subscription::Notifier)'s); without
    /// them it only polls.
    pub(crate) fn start(store: EventStore, wakeups: Option<watch::Receiver<u64>>) -> Self {
        let inner = Arc::new(Inner {
            store,
            followed: Mutex::new(HashMap::new()),
        });
        // No notifier: a channel whose sender is gone, so the waiter polls.
        let wakeups = wakeups.unwrap_or_else(|| watch::channel(0).1);
        let waiter = Waiter::new(wakeups, SAFETY_POLL, SAFETY_POLL);
        tokio::spawn(watch_log(Arc::downgrade(&inner), waiter));
        Self { inner }
    }

    /// The state of course `id`, updated as its events are appended. The
    /// first follower of a course reads its stream once; the others share
    /// what the watcher holds.
    ///
    /// # Errors
    /// Database errors, or a stored event this build cannot read.
    pub(crate) async fn follow(&self, id: Uuid) -> Result<watch::Receiver<Course>, StoreError> {
        if let Some(tx) = self.lock().get(&id) {
            return Ok(tx.subscribe());
        }
        let (course, events) = courses::load(&self.inner.store, id).await?;
        if let Some(last) = events.last() {
            show_after_projection(&self.inner.store, last.position()).await;
        }
        let mut followed = self.lock();
        let tx = followed
            .entry(id)
            .or_insert_with(|| watch::channel(course.clone()).0);
        // Another follower came first: keep whichever state is newer.
        publish_if_newer(tx, course);
        Ok(tx.subscribe())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, watch::Sender<Course>>> {
        self.inner.followed.lock().expect("followed courses lock")
    }
}

impl Inner {
    /// Brings every followed course up to date: one query for all of them,
    /// then one per course that has new events. Returns whether any had.
    async fn catch_up(&self) -> Result<bool, StoreError> {
        let ids: Vec<Uuid> = {
            let mut followed = self.followed.lock().expect("followed courses lock");
            // Courses no stream follows any more are dropped.
            followed.retain(|_, tx| tx.receiver_count() > 0);
            followed.keys().copied().collect()
        };
        if ids.is_empty() {
            return Ok(false);
        }
        let mut updated = Vec::new();
        let mut last = Position::START;
        for (id, next) in self.store.stream_versions(&ids).await? {
            let Some(held) = self.held(id) else { continue };
            if next <= held.version {
                continue;
            }
            match self.fold_new_events(id, held).await {
                Ok((course, position)) => {
                    last = last.max(position);
                    updated.push((id, course));
                }
                // One course's unreadable event holds back that course only.
                Err(e) => tracing::warn!(course = %id, error = %e, "could not follow a course"),
            }
        }
        if updated.is_empty() {
            return Ok(false);
        }
        show_after_projection(&self.store, last).await;
        let followed = self.followed.lock().expect("followed courses lock");
        for (id, course) in updated {
            if let Some(tx) = followed.get(&id) {
                publish_if_newer(tx, course);
            }
        }
        Ok(true)
    }

    /// Course `id` with its events after `held` folded in, and the position
    /// of the last of them.
    async fn fold_new_events(
        &self,
        id: Uuid,
        held: Course,
    ) -> Result<(Course, Position), StoreError> {
        let mut course = held;
        let mut last = Position::START;
        for event in self.store.read_stream_from(id, course.version).await? {
            course = evolve(course, &event.to_course_event()?);
            last = event.position();
        }
        Ok((course, last))
    }

    /// What the watcher holds of course `id`, if it is followed.
    fn held(&self, id: Uuid) -> Option<Course> {
        let followed = self.followed.lock().expect("followed courses lock");
        followed.get(&id).map(|tx| tx.borrow().clone())
    }
}

/// What a stream shows, `GET /courses/{id}` shows too: the read model is
/// given (bounded) time to apply the events up to `position` first. A slow
/// or stopped projection only delays the streams.
async fn show_after_projection(store: &EventStore, position: Position) {
    if let Err(e) = wait_for_position(store, "courses", position, READ_YOUR_WRITES).await {
        tracing::debug!(error = %e, "showing progress the courses projection does not show yet");
    }
}

/// Stores `course` unless what `tx` holds is as new (a follower and the
/// watcher may both have read the stream).
fn publish_if_newer(tx: &watch::Sender<Course>, course: Course) {
    tx.send_if_modified(|held| {
        let newer = course.version > held.version;
        if newer {
            *held = course;
        }
        newer
    });
}

/// The watcher's task: catch up, wait for a wake-up or the safety poll,
/// again, until the watcher is dropped.
async fn watch_log(inner: Weak<Inner>, mut waiter: Waiter) {
    loop {
        waiter.reading();
        let Some(watch) = inner.upgrade() else { return };
        match watch.catch_up().await {
            Ok(true) => waiter.found(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not follow courses' progress; retrying"),
        }
        drop(watch);
        waiter.wait().await;
    }
}
