//! Test fixtures: a fresh, migrated database per test, dropped afterwards
//! (also when the test panics), and waiting on a condition with a deadline.

use coursegen::store::{migrate, EventStore};
use uuid::Uuid;

/// Server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("COURSEGEN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into())
}

/// A database of one test's own.
pub struct TestDb {
    pub store: EventStore,
    pub name: String,
    pub config: tokio_postgres::Config,
}

impl TestDb {
    /// A migrated database with a pool of 32 connections.
    pub async fn new() -> Self {
        Self::with_pool(32).await
    }

    /// A migrated database with a pool of `connections`.
    pub async fn with_pool(connections: usize) -> Self {
        let db = Self::empty(connections).await;
        migrate::run(&db.store).await.expect("migrations apply");
        db
    }

    /// A database without migrations.
    pub async fn empty(connections: usize) -> Self {
        let name = format!("test_{}", Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
            .await
            .expect("PostgreSQL for tests is reachable (COURSEGEN_TEST_DATABASE_URL)");
        let conn = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        drop(client);
        let _ = conn.await;
        let mut config: tokio_postgres::Config = admin_url().parse().expect("valid url");
        config.dbname(&name);
        let store = EventStore::from_config(config.clone(), connections);
        Self {
            store,
            name,
            config,
        }
    }

    /// A connection string for this database (for a `coursegen` subprocess).
    pub fn url(&self) -> String {
        format!("{} dbname={}", admin_url(), self.name)
    }

    /// A plain client on this database (for raw SQL in assertions).
    pub async fn client(&self) -> deadpool_postgres::Object {
        self.store.pool().get().await.expect("connection")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.store.pool().close();
        let name = self.name.clone();
        // Drop runs outside async context guarantees: use a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (client, conn) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
