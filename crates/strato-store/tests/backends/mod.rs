//! The backends the conformance tests run on.

use std::any::Any;
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;
use strato_store::{MetaStore, PgStore, PgStoreOptions, SqliteStore};

/// Where the PostgreSQL tests connect; `.ci/run` sets it. Unset: those tests are skipped, loudly.
pub const DATABASE_URL_VAR: &str = "STRATO_TEST_DATABASE_URL";

/// A store plus whatever keeps it alive (temp dir, schema).
pub struct Backend {
    pub store: Arc<dyn MetaStore>,
    _guard: Box<dyn Any + Send>,
}

/// SQLite in a temp dir always; PostgreSQL when `STRATO_TEST_DATABASE_URL` is set.
pub async fn all() -> Vec<(&'static str, Backend)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
    let mut out = vec![("sqlite", Backend { store: Arc::new(sqlite), _guard: Box::new(dir) })];
    if let Some(url) = database_url() {
        let schema = PgSchema::new(url);
        let store = schema.connect().await;
        out.push(("postgres", Backend { store: Arc::new(store), _guard: Box::new(schema) }));
    }
    out
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
    pub name: String,
}

impl PgSchema {
    pub fn new(url: String) -> Self {
        Self { url, name: format!("t_{}", uuid::Uuid::new_v4().simple()) }
    }

    /// A store on this schema (creating and migrating it on first use); each call is another pool, like another
    /// process.
    pub async fn connect(&self) -> PgStore {
        self.connect_as(&self.name).await
    }

    /// [`PgSchema::connect`], the connections tagged with `application_name` (to find them in
    /// `pg_stat_activity`).
    pub async fn connect_as(&self, application_name: &str) -> PgStore {
        self.try_connect_as(application_name).await.unwrap()
    }

    pub async fn try_connect_as(&self, application_name: &str) -> strato_store::Result<PgStore> {
        let connect = self.url.parse::<PgConnectOptions>().unwrap().application_name(application_name);
        let options = PgStoreOptions { schema: Some(self.name.clone()), max_connections: 8, ..Default::default() };
        PgStore::connect_with(connect, options).await
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
