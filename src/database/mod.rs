//! Opening the database a command works on: the configured server, or the
//! private embedded cluster; migrations applied before anything else.
//!
//! - [`embedded`]: the private PostgreSQL cluster used when no `DATABASE_URL` is set.
//! - [`holders`]: the lock files that let several processes share that
//!   cluster, stopped when the last of them leaves.

pub(crate) mod embedded;
mod holders;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};

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

/// This process's hold on the private cluster: taken by the first
/// [`Database::connect`] that needs the cluster, kept until [`Self::release`].
///
/// The hold belongs to the process rather than to a [`Database`], so that
/// whoever runs the process (the CLI) releases it once, after its work, on
/// a blocking thread: the release may stop the cluster with `pg_ctl`.
#[derive(Clone, Default)]
pub(crate) struct ClusterHold(Arc<Mutex<Option<EmbeddedPostgres>>>);

impl ClusterHold {
    /// Joins the private cluster in `data_dir` (making and starting it if
    /// need be) unless this process already holds it, and makes sure the
    /// service's database exists in it. Returns that database's URL.
    ///
    /// # Errors
    /// See [`EmbeddedPostgres::start`] and [`embedded::ensure_database`].
    async fn join(&self, data_dir: &Path) -> Result<String, DatabaseError> {
        let slot = self.0.clone();
        let dir = data_dir.to_owned();
        // The slot is locked on the blocking thread for the whole start, so
        // a release waits for a start still running (one whose caller was
        // cancelled, say) rather than missing the hold it takes.
        let (admin_url, url) = tokio::task::spawn_blocking(move || {
            let mut held = slot.lock().unwrap_or_else(PoisonError::into_inner);
            let cluster = match held.take() {
                Some(cluster) => cluster,
                None => EmbeddedPostgres::start(&dir)?,
            };
            let urls = (cluster.admin_url(), cluster.database_url());
            *held = Some(cluster);
            Ok::<_, DatabaseError>(urls)
        })
        .await
        .map_err(DatabaseError::StartTask)??;
        embedded::ensure_database(&admin_url).await?;
        Ok(url)
    }

    /// Gives the hold up: the cluster stops if no other process holds it.
    /// Waits for that on a blocking thread. Call once the process's database
    /// work is over (a later [`Database::connect`] would join again).
    pub(crate) async fn release(&self) {
        let slot = self.0.clone();
        let released = tokio::task::spawn_blocking(move || {
            let cluster = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(cluster) = cluster {
                cluster.release();
            }
        })
        .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "releasing the private PostgreSQL cluster failed");
        }
    }
}

/// An open, migrated database.
pub(crate) struct Database {
    pub store: EventStore,
}

impl Database {
    /// Connects (joining the private cluster through `cluster` if no URL is
    /// set) and migrates.
    ///
    /// # Errors
    /// Unreachable server, missing PostgreSQL binaries, failing migration.
    pub(crate) async fn open(
        settings: &DatabaseSettings,
        cluster: &ClusterHold,
    ) -> Result<Self, DatabaseError> {
        let db = Self::connect(settings, cluster).await?;
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
    pub(crate) async fn connect(
        settings: &DatabaseSettings,
        cluster: &ClusterHold,
    ) -> Result<Self, DatabaseError> {
        let url = match &settings.database_url {
            Some(url) => url.clone(),
            None => cluster.join(&settings.data_dir).await?,
        };
        let store = EventStore::connect(&url, settings.max_connections)?;
        Ok(Self { store })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Close connections before the private cluster may be stopped under them.
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
        let Err(err) = Database::connect(&settings, &ClusterHold::default()).await else {
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
