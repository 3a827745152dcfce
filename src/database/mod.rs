//! Opening the database a command works on: the configured server, or the
//! private embedded cluster; migrations applied before anything else.

pub mod embedded;

use anyhow::Context;

use crate::config::DatabaseSettings;
use embedded::EmbeddedPostgres;
use crate::store::{migrate, EventStore};

/// An open, migrated database. Keep it alive for as long as the store is
/// used: dropping it stops a private cluster this process started.
pub struct Database {
    pub store: EventStore,
    _cluster: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects (starting the private cluster if no URL is set) and migrates.
    ///
    /// # Errors
    /// Unreachable server, missing PostgreSQL binaries, failing migration.
    pub async fn open(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let db = Self::connect(settings).await?;
        let applied = migrate::run(&db.store)
            .await
            .context("applying database migrations (is PostgreSQL reachable at DATABASE_URL?)")?;
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
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let (url, cluster) = match &settings.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let dir = settings.data_dir.clone();
                let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir))
                    .await
                    .context("starting the private PostgreSQL cluster")??;
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
