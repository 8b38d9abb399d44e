//! Test support (feature `test-support`): the backends every conformance test runs on, and throw-away
//! PostgreSQL schemas. Used by this crate's tests and by other crates' tests that need a real store.

use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use crate::{PgStoreOptions, Store};

/// Where the PostgreSQL tests connect; `.ci/run` sets it. Unset: those tests are skipped, loudly.
pub const DATABASE_URL_VAR: &str = "STRATO_TEST_DATABASE_URL";

/// A store plus whatever keeps it alive (temp dir, schema).
pub struct Backend {
    /// The store.
    pub store: Store,
    _guard: Arc<dyn std::any::Any + Send + Sync>,
}

/// SQLite in a temp dir always; PostgreSQL (a fresh schema) when `STRATO_TEST_DATABASE_URL` is set.
pub async fn all() -> Vec<(&'static str, Backend)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open_sqlite(&dir.path().join("meta.db")).await.unwrap();
    let mut out = vec![("sqlite", Backend { store: sqlite, _guard: Arc::new(dir) })];
    if let Some(url) = database_url() {
        let schema = PgSchema::new(url);
        let store = schema.connect().await;
        out.push(("postgres", Backend { store, _guard: Arc::new(schema) }));
    }
    out
}

/// Runs `body` once per backend with `$s: &Store`, naming the backend on failure.
#[macro_export]
macro_rules! each_backend {
    (|$s:ident| $body:block) => {{
        for (name, backend) in $crate::testing::all().await {
            let $s: &$crate::Store = &backend.store;
            let run = async { $body };
            let r = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
            if let Err(p) = r {
                eprintln!("failed on backend {name}");
                std::panic::resume_unwind(p);
            }
        }
    }};
}

/// The test server's URL, or `None` after printing why the PostgreSQL backend is skipped.
pub fn database_url() -> Option<String> {
    let url = std::env::var(DATABASE_URL_VAR).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("SKIP postgres backend: {DATABASE_URL_VAR} is not set");
    }
    url
}

/// A fresh schema of its own (`t_<uuid>`), dropped with everything in it when the guard is dropped.
pub struct PgSchema {
    url: String,
    /// The schema's name.
    pub name: String,
}

impl PgSchema {
    /// A schema name not used yet on the server at `url` (created on first connect).
    pub fn new(url: String) -> Self {
        Self { url, name: format!("t_{}", uuid::Uuid::new_v4().simple()) }
    }

    /// A store on this schema (creating and migrating it on first use); each call is another pool, like another
    /// process.
    pub async fn connect(&self) -> Store {
        self.connect_as(&self.name).await
    }

    /// [`PgSchema::connect`], the connections tagged with `application_name` (to find them in
    /// `pg_stat_activity`).
    pub async fn connect_as(&self, application_name: &str) -> Store {
        self.try_connect_as(application_name).await.unwrap()
    }

    /// [`PgSchema::connect_as`], returning the error.
    pub async fn try_connect_as(&self, application_name: &str) -> crate::Result<Store> {
        let connect = self.url.parse::<PgConnectOptions>().unwrap().application_name(application_name);
        let options = PgStoreOptions { schema: Some(self.name.clone()), max_connections: 8, ..Default::default() };
        Store::connect_with(connect, options).await
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which must not block on itself: use a runtime of our own.
        let (url, sql) = (self.url.clone(), format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::query("SET lock_timeout = '10s'").execute(&mut conn).await?;
                sqlx::query(&sql).execute(&mut conn).await?;
                conn.close().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

/// The `noop` kind, as the queue's tests use it (the store runs no workers, so any kind will do).
pub const NOOP: strato_types::JobKind = strato_types::JobKind::new("noop");

/// A lease long enough for any test.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// A no-op job of `priority` with two attempts.
pub fn job(priority: i32) -> strato_types::NewJob {
    strato_types::NewJob {
        priority,
        max_attempts: 2,
        ..strato_types::NewJob::new(NOOP, serde_json::json!({"p": priority}))
    }
}

/// A no-op job with a serialisation key.
pub fn keyed(key: &str) -> strato_types::NewJob {
    strato_types::NewJob { key: Some(key.into()), ..strato_types::NewJob::new(NOOP, serde_json::json!({})) }
}

/// Enqueues and returns the job.
pub async fn enqueue(s: &Store, j: strato_types::NewJob) -> strato_types::JobRecord {
    s.queue().enqueue(j).await.unwrap().job
}

/// Any kind in the default queue.
pub fn any() -> Arc<crate::ClaimFilter> {
    Arc::new(crate::ClaimFilter::default())
}

/// Milliseconds as a timestamp.
pub fn ts(ms: i64) -> strato_types::Timestamp {
    chrono::TimeZone::timestamp_millis_opt(&chrono::Utc, ms).single().unwrap()
}
