//! Opening the database a command works on: the configured server, or the
//! private embedded cluster; migrations applied before anything else.
//!
//! - [`embedded`]: the private PostgreSQL cluster used when no `DATABASE_URL` is set.

pub(crate) mod embedded;

use std::path::PathBuf;
use std::process::ExitStatus;

use crate::config::DatabaseSettings;
use crate::store::migrate::{self, MigrateError};
use crate::store::{EventStore, StoreError};
use embedded::EmbeddedPostgres;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DatabaseError {
    /// The private cluster needs this machine's PostgreSQL server binaries.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `sudo apt-get install -y postgresql`) \
         or point DATABASE_URL at an existing server"
    )]
    NoBinaries,
    /// Running as root needs a `postgres` user to own the private cluster.
    #[error(
        "running as root, and initdb refuses root: create a `postgres` user to own the private \
         cluster (installing the postgresql package does) or run as an ordinary user"
    )]
    NoPostgresUser,
    /// A file operation on the cluster's directory failed.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `initdb` or `pg_ctl` ran and failed; their output says why.
    #[error("{program} failed ({status}): {output}")]
    Tool {
        program: &'static str,
        status: ExitStatus,
        output: String,
    },
    /// The server did not start; its log says why.
    #[error("see {}", log.display())]
    Start {
        log: PathBuf,
        #[source]
        source: Box<DatabaseError>,
    },
    /// The task starting the cluster panicked or was cancelled.
    #[error("starting the private PostgreSQL cluster")]
    StartTask(#[source] tokio::task::JoinError),
    #[error("connecting to the private PostgreSQL cluster")]
    Connect(#[source] tokio_postgres::Error),
    #[error("creating the coursegen database")]
    CreateDatabase(#[source] tokio_postgres::Error),
    #[error("applying database migrations (is PostgreSQL reachable at DATABASE_URL?)")]
    Migrate(#[from] MigrateError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An open, migrated database. Keep it alive for as long as the store is
/// used: dropping it stops a private cluster this process started.
pub(crate) struct Database {
    pub store: EventStore,
    _cluster: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects (starting the private cluster if no URL is set) and migrates.
    ///
    /// # Errors
    /// Unreachable server, missing PostgreSQL binaries, failing migration.
    pub(crate) async fn open(settings: &DatabaseSettings) -> Result<Self, DatabaseError> {
        let db = Self::connect(settings).await?;
        let applied = migrate::run(&db.store).await?;
        for name in applied {
            tracing::info!(migration = name, "applied migration");
        }
        Ok(db)
    }

    /// Connects (starting the private cluster if no URL is set) and leaves
    /// the schema alone: for commands that only work beside the configured
    /// database, such as the benchmarks' scratch databases.
    ///
    /// # Errors
    /// Unreachable server, missing PostgreSQL binaries.
    pub(crate) async fn connect(settings: &DatabaseSettings) -> Result<Self, DatabaseError> {
        let (url, cluster) = match &settings.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let dir = settings.data_dir.clone();
                let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir))
                    .await
                    .map_err(DatabaseError::StartTask)??;
                embedded::ensure_database(&cluster).await?;
                (cluster.database_url(), Some(cluster))
            }
        };
        let store = EventStore::connect(&url, settings.max_connections)?;
        Ok(Self {
            store,
            _cluster: cluster,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Close connections before a private cluster is stopped under them.
        self.store.pool().close();
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[tokio::test]
    async fn a_malformed_url_keeps_the_parser_error_as_its_source() {
        let settings = DatabaseSettings {
            database_url: Some("host".into()),
            data_dir: PathBuf::from("unused"),
            max_connections: 1,
        };
        let Err(err) = Database::connect(&settings).await else {
            panic!("a malformed DATABASE_URL connected");
        };
        assert!(matches!(
            err,
            DatabaseError::Store(StoreError::InvalidUrl(_))
        ));
        assert_eq!(err.to_string(), "invalid DATABASE_URL");
        let parser = err.source().expect("the parser's error is kept");
        assert!(parser.downcast_ref::<tokio_postgres::Error>().is_some());
    }
}
