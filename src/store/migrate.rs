//! Applies the SQL of `schema/` (event store) and `projections/` (read
//! models), each file once, in order, tracked in `coursegen_migrations`.
//!
//! All pending files run in one transaction under a transaction-level
//! advisory lock, so two processes migrating at once serialize: the second
//! waits, then finds nothing left to do.

use sha2::{Digest, Sha256};

use super::EventStore;

/// Why the migrations did not apply. Nothing is applied then: they all run
/// in one transaction.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// An applied migration's file changed since; the database already
    /// holds the old version, so the change must be a new migration.
    #[error("migration {name} was changed after it was applied; add a new migration instead")]
    Changed { name: &'static str },
    /// A migration's SQL failed (the cause says where and why).
    #[error("migration {name} failed")]
    Failed {
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// Reading or recording the applied migrations failed.
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("no database connection")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// A migration file, embedded in the binary.
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in the order they apply.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "schema/0001_events.sql",
        sql: include_str!("../../schema/0001_events.sql"),
    },
    Migration {
        name: "schema/0002_course_work.sql",
        sql: include_str!("../../schema/0002_course_work.sql"),
    },
    Migration {
        name: "projections/0001_checkpoints.sql",
        sql: include_str!("../../projections/0001_checkpoints.sql"),
    },
    Migration {
        name: "projections/0002_courses.sql",
        sql: include_str!("../../projections/0002_courses.sql"),
    },
    Migration {
        name: "projections/0003_course_summary.sql",
        sql: include_str!("../../projections/0003_course_summary.sql"),
    },
    Migration {
        name: "projections/0004_courses_slugs.sql",
        sql: include_str!("../../projections/0004_courses_slugs.sql"),
    },
    Migration {
        name: "schema/0003_amqp.sql",
        sql: include_str!("../../schema/0003_amqp.sql"),
    },
    Migration {
        name: "projections/0005_courses_list_indexes.sql",
        sql: include_str!("../../projections/0005_courses_list_indexes.sql"),
    },
    Migration {
        name: "projections/0006_amqp_replies_checkpoint.sql",
        sql: include_str!("../../projections/0006_amqp_replies_checkpoint.sql"),
    },
    Migration {
        name: "schema/0004_course_work_deleted.sql",
        sql: include_str!("../../schema/0004_course_work_deleted.sql"),
    },
    Migration {
        name: "projections/0007_courses_metadata.sql",
        sql: include_str!("../../projections/0007_courses_metadata.sql"),
    },
    Migration {
        name: "projections/0008_interactive_elements.sql",
        sql: include_str!("../../projections/0008_interactive_elements.sql"),
    },
    Migration {
        name: "projections/0009_subtitles.sql",
        sql: include_str!("../../projections/0009_subtitles.sql"),
    },
    Migration {
        name: "schema/0005_course_work_subtitles.sql",
        sql: include_str!("../../schema/0005_course_work_subtitles.sql"),
    },
    Migration {
        name: "projections/0010_sources.sql",
        sql: include_str!("../../projections/0010_sources.sql"),
    },
    Migration {
        name: "projections/0012_export_backups.sql",
        sql: include_str!("../../projections/0012_export_backups.sql"),
    },
    Migration {
        name: "projections/0013_sources_search.sql",
        sql: include_str!("../../projections/0013_sources_search.sql"),
    },
    Migration {
        name: "schema/0006_chunk_embeddings.sql",
        sql: include_str!("../../schema/0006_chunk_embeddings.sql"),
    },
    Migration {
        name: "schema/0007_events_payload_lz4.sql",
        sql: include_str!("../../schema/0007_events_payload_lz4.sql"),
    },
    Migration {
        name: "projections/0014_sources_chunk_keys.sql",
        sql: include_str!("../../projections/0014_sources_chunk_keys.sql"),
    },
    Migration {
        name: "schema/0008_chunk_search_vectors.sql",
        sql: include_str!("../../schema/0008_chunk_search_vectors.sql"),
    },
];

/// Arbitrary key of the migration advisory lock.
const MIGRATION_LOCK: i64 = 0x636f_7572_7365_6d67;

/// Applies the pending migrations; returns the names applied now.
///
/// # Errors
/// [`MigrateError::Changed`] for an applied migration whose file changed
/// since, [`MigrateError::Failed`] for failing SQL, database errors.
pub async fn run(store: &EventStore) -> Result<Vec<&'static str>, MigrateError> {
    let mut client = store.pool().get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS coursegen_migrations (
             name       text PRIMARY KEY,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: std::collections::HashMap<String, String> = tx
        .query("SELECT name, checksum FROM coursegen_migrations", &[])
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut ran = Vec::new();
    for m in MIGRATIONS {
        let checksum = format!("{:x}", Sha256::digest(m.sql.as_bytes()));
        match applied.get(m.name) {
            Some(c) if *c == checksum => continue,
            Some(_) => return Err(MigrateError::Changed { name: m.name }),
            None => {}
        }
        tx.batch_execute(m.sql)
            .await
            .map_err(|source| MigrateError::Failed {
                name: m.name,
                source,
            })?;
        tx.execute(
            "INSERT INTO coursegen_migrations (name, checksum) VALUES ($1, $2)",
            &[&m.name, &checksum],
        )
        .await?;
        ran.push(m.name);
    }
    tx.commit().await?;
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_keeps_the_whole_cause_chain() {
        // A socket directory that does not exist: refused at once, no server needed.
        let store = EventStore::connect("host=/nonexistent/coursegen user=coursegen", 1).unwrap();
        let err = run(&store).await.unwrap_err();
        assert!(matches!(err, MigrateError::Pool(_)), "{err:?}");
        let mut cause = err.source();
        let mut io = None;
        while let Some(e) = cause {
            io = io.or(e.downcast_ref::<std::io::Error>());
            cause = e.source();
        }
        assert!(io.is_some(), "the I/O error at the bottom is kept: {err:?}");
    }
}
