//! The generation work queue (`course_work`, kept by a trigger on `events`):
//! claiming courses under a lease, renewing and releasing leases.

use std::time::Duration;

use uuid::Uuid;

use super::{EventStore, StoreError};

/// Leases on `course_work` rows held by one scheduler (`owner`).
#[derive(Clone)]
pub(crate) struct WorkQueue {
    store: EventStore,
    owner: Uuid,
    lease: Duration,
}

impl WorkQueue {
    /// A queue handle for a scheduler identified by `owner`, taking leases of `lease`.
    pub fn new(store: EventStore, owner: Uuid, lease: Duration) -> Self {
        Self {
            store,
            owner,
            lease,
        }
    }

    /// This scheduler's id.
    pub(crate) fn owner(&self) -> Uuid {
        self.owner
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Claims up to `limit` courses that nobody holds (or whose lease
    /// expired), oldest first. Rows other schedulers are claiming at this
    /// moment are skipped, not waited for.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn claim(&self, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let client = self.store.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE course_work w
                 SET owner = $1, lease_expires_at = clock_timestamp() + make_interval(secs => $2)
                 FROM (SELECT course_id FROM course_work
                       WHERE owner IS NULL OR lease_expires_at < clock_timestamp()
                       ORDER BY enqueued_at
                       LIMIT $3
                       FOR UPDATE SKIP LOCKED) claimable
                 WHERE w.course_id = claimable.course_id
                 RETURNING w.course_id",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&self.owner, &self.lease_secs(), &limit])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Extends the leases this scheduler holds on `courses`; returns the
    /// courses whose lease it still holds (a course that left the queue or
    /// was taken over is missing).
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn renew(&self, courses: &[Uuid]) -> Result<Vec<Uuid>, StoreError> {
        if courses.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.store.pool().get().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE course_work
                 SET lease_expires_at = clock_timestamp() + make_interval(secs => $2)
                 WHERE owner = $1 AND course_id = ANY($3)
                 RETURNING course_id",
            )
            .await?;
        let rows = client
            .query(&stmt, &[&self.owner, &self.lease_secs(), &courses])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Gives up this scheduler's leases on `courses` (all of them when
    /// `None`), so another scheduler can take them at once.
    ///
    /// # Errors
    /// Database errors.
    pub(crate) async fn release(&self, courses: Option<&[Uuid]>) -> Result<u64, StoreError> {
        let client = self.store.pool().get().await?;
        let n = match courses {
            Some(ids) => {
                client
                    .execute(
                        "UPDATE course_work SET owner = NULL, lease_expires_at = NULL
                         WHERE owner = $1 AND course_id = ANY($2)",
                        &[&self.owner, &ids],
                    )
                    .await?
            }
            None => client
                .execute(
                    "UPDATE course_work SET owner = NULL, lease_expires_at = NULL WHERE owner = $1",
                    &[&self.owner],
                )
                .await?,
        };
        Ok(n)
    }
}
