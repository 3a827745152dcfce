//! The checkpoint rows of `projection_checkpoints`: where each projection
//! (read model or reply publisher) is in the log, whether its runner may
//! apply events, and how far it lags behind.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::text_sql::text_sql;
use super::ProjectionError;
use crate::store::{EventStore, Position};

/// The `state` of a checkpoint row: whether its runner may apply events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointState {
    /// Applying events (the default).
    Running,
    /// Set by an operator: the runner idles until it is `running` again.
    Stopped,
    /// Stopped on a poison event (see the row's error and failed position).
    Failed,
}

impl CheckpointState {
    /// The text stored in `projection_checkpoints.state`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for CheckpointState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `state` text that is not a [`CheckpointState`].
#[derive(Debug, thiserror::Error)]
#[error("unknown checkpoint state {0:?} (known: running, stopped, failed)")]
pub struct UnknownCheckpointState(String);

impl std::str::FromStr for CheckpointState {
    type Err = UnknownCheckpointState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Running, Self::Stopped, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownCheckpointState(s.to_owned()))
    }
}

text_sql!(CheckpointState);

/// A projection's checkpoint row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub position: Position,
    pub state: CheckpointState,
    pub error: Option<String>,
    /// The poison event's global position, when failed.
    pub failed_position: Option<i64>,
    pub updated_at: DateTime<Utc>,
}

/// Clears the failed state (error and poison event) of the checkpoint row
/// `name` (a [`Projection`](super::Projection)'s or the AMQP reply publisher's) so that its
/// runner, which re-reads the row while idle, retries from its checkpoint.
/// Returns whether it had failed.
///
/// # Errors
/// Database errors.
pub async fn resume(store: &EventStore, name: &str) -> Result<bool, ProjectionError> {
    let client = store.pool().get().await?;
    let resumed = client
        .execute(
            "UPDATE projection_checkpoints
             SET state = $2, error = NULL, failed_transaction_id = NULL,
                 failed_position = NULL, updated_at = now()
             WHERE name = $1 AND state = $3",
            &[&name, &CheckpointState::Running, &CheckpointState::Failed],
        )
        .await?;
    Ok(resumed > 0)
}

/// Reads the checkpoint row of `name` (`None` before its runner first ran).
///
/// # Errors
/// Database errors.
pub async fn checkpoint(
    store: &EventStore,
    name: &str,
) -> Result<Option<Checkpoint>, ProjectionError> {
    let client = store.pool().get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT transaction_id, global_position, state, error, failed_position, updated_at
             FROM projection_checkpoints WHERE name = $1",
        )
        .await?;
    Ok(client
        .query_opt(&stmt, &[&name])
        .await?
        .map(|r| Checkpoint {
            position: Position {
                transaction_id: r.get(0),
                global_position: r.get(1),
            },
            state: r.get(2),
            error: r.get(3),
            failed_position: r.get(4),
            updated_at: r.get(5),
        }))
}

/// How far a projection is behind the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Lag {
    /// Events readable (past the commit horizon) and not yet applied.
    pub events: i64,
    /// Age of the oldest such event, in seconds (0 when none).
    pub seconds: f64,
}

/// The lag of projection `name` behind the head of the log (the newest
/// event past the commit horizon): what health checks and metrics report.
///
/// # Errors
/// Database errors.
pub async fn lag(store: &EventStore, name: &str) -> Result<Lag, ProjectionError> {
    let client = store.pool().get().await?;
    let stmt = client
        .prepare_cached(
            "WITH cp AS (
                 SELECT coalesce(max(transaction_id), 0) AS tx, coalesce(max(global_position), 0) AS pos
                 FROM projection_checkpoints WHERE name = $1)
             SELECT count(*), coalesce(extract(epoch FROM now() - min(e.recorded_at))::float8, 0)
             FROM events e, cp
             WHERE (e.transaction_id, e.global_position) > (cp.tx::text::xid8, cp.pos)
               AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())",
        )
        .await?;
    let row = client.query_one(&stmt, &[&name]).await?;
    Ok(Lag {
        events: row.get(0),
        seconds: row.get::<_, f64>(1).max(0.0),
    })
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_postgres::types::{FromSql, ToSql, Type};

    use super::*;

    #[test]
    fn checkpoint_states_are_stored_as_their_names() {
        for state in [
            CheckpointState::Running,
            CheckpointState::Stopped,
            CheckpointState::Failed,
        ] {
            let mut buf = BytesMut::new();
            state.to_sql_checked(&Type::TEXT, &mut buf).unwrap();
            assert_eq!(&buf[..], state.as_str().as_bytes());
            assert_eq!(CheckpointState::from_sql(&Type::TEXT, &buf).unwrap(), state);
        }
        assert!(CheckpointState::from_sql(&Type::TEXT, b"RUNNING").is_err());
    }
}
