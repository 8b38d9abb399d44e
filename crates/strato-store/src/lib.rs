//! Metadata and the durable job queue, cut by aggregate, on SQLite or PostgreSQL.
//!
//! [`Store`] is the handle the service keeps. Each aggregate is a module with its operations, written once for both
//! backends (`db.rs` makes a statement and a row decoder serve both), and its part of the conformance suite beside
//! it (`tests.rs`), run on SQLite always and on PostgreSQL when `STRATO_TEST_DATABASE_URL` is set:
//!
//! - [`queue`]: the durable job queue ([`Queue`]): named queues, scheduled jobs, leases, retries, the dead-letter
//!   queue;
//! - [`models`]: text classifiers and their versions; [`mentors`]: mentor documents, user questions and grades;
//!   [`datasets`]; [`keys`]: API keys; [`usage`]: quota counters.
//!
//! Reads go to a pool; a write that changes several rows runs in a transaction of its own. A caller that must
//! change its own rows and queue work atomically opens a [`Tx`] (`store.begin()`), does both through the
//! transaction's aggregates (`tx.models()`, `tx.queue().enqueue(…)`) and commits: both or neither (River's
//! `InsertTx`).
//!
//! The backends:
//! - SQLite (embedded, one file in the data dir, WAL): one writer connection, a few readers, and the queue's
//!   group-commit writer on a connection and thread of its own. One process owns the queue; other processes'
//!   workers would only notice new jobs by polling.
//! - PostgreSQL, for several processes sharing one queue: row locks and advisory locks instead of SQLite's single
//!   writer, and `LISTEN/NOTIFY` so one process's writes wake every process's idle workers.
//!   [`PgStoreOptions::schema`] isolates deployments (and tests) sharing a database.
//!
//! Both write the queue's hot path (enqueue, claim, complete) by group commit: a process's concurrent requests share
//! one transaction, which is what makes thousands of jobs per second possible on 2 cores. Every multi-row change
//! happens in one transaction, so a failure never leaves partial state. Both backends keep times as integer
//! milliseconds and apply the numbered migrations in `migrations/<backend>/` at connect; a schema change adds a
//! file with the same number to both directories.

pub mod datasets;
mod db;
pub mod documents;
pub mod keys;
pub mod mentors;
pub mod models;
pub mod queue;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod usage;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection};

pub use datasets::Datasets;
pub use documents::{Document, Documents};
pub use keys::Keys;
pub use mentors::{MentorRow, Mentors, UserQuestionFilter};
pub use models::{AddVersion, Models};
pub use queue::{
    CancelOutcome, ClaimFilter, EnqueueOutcome, Enqueued, FailOutcome, Heartbeat, JobFilter, JobSignal, Queue, Reaped,
    TxQueue,
};
pub use usage::Usage;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite queue writer's connection failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the database refused or could not take the request for a reason outside the request (read-only
    /// or full disk, I/O error, lost connection, server shutting down): the caller may retry later, and nothing
    /// was changed because every change is one transaction.
    pub fn is_unavailable(&self) -> bool {
        if let StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) = self {
            return sqlite_code_unavailable(i64::from(e.extended_code));
        }
        let StoreError::Database(e) = self else { return false };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                true
            }
            sqlx::Error::Database(d) => {
                let code = d.code().unwrap_or_default();
                // SQLite codes are numbers. PostgreSQL SQLSTATEs: 08xxx connection, 53xxx insufficient resources
                // (disk full), 57Pxx shutdown, 25006 read-only transaction.
                if let Ok(n) = code.parse::<i64>() {
                    return sqlite_code_unavailable(n);
                }
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "25006"
            }
            _ => false,
        }
    }
}

/// SQLite result codes (extended codes keep the primary in the low byte) that mean "not now": BUSY 5, LOCKED 6,
/// NOMEM 7, READONLY 8, IOERR 10, FULL 13, CANTOPEN 14.
fn sqlite_code_unavailable(code: i64) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14)
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How to connect a PostgreSQL store, beside the server's address.
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Schema holding Strato's tables: created when missing and put first in every connection's `search_path`, so
    /// several deployments (or test runs) can share one database. `None` uses the server's search path (normally
    /// `public`). Lower-case letters, digits and `_`, starting with a letter or `_`, at most 63 bytes.
    pub schema: Option<String>,
    /// Most pooled connections (the notification listener has one more of its own).
    pub max_connections: u32,
    /// How long a call waits for a pooled connection (and `connect_with` for its first connection) before failing
    /// with [`StoreError::Database`]: a restarting server makes callers fail, and workers retry, instead of hanging.
    pub acquire_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        Self { schema: None, max_connections: 10, acquire_timeout: Duration::from_secs(5) }
    }
}

/// The metadata store and job queue; cheap to clone. The last clone dropped stops its background tasks (the
/// queue writer, PostgreSQL's notification listener).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: db::Db,
    /// Wakes idle workers: by this process's writes and, on PostgreSQL through the listener, by every other
    /// process's. SQLite has no cross-process notification, so other processes' workers notice new jobs by polling.
    signal: Arc<queue::JobSignal>,
    /// Group commit for enqueues, claims and completions.
    batcher: queue::batch::Batcher,
    _listener: Option<queue::ListenerTask>,
}

impl Store {
    /// Opens (creating if needed) a SQLite database file and runs migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        // Several processes may open a fresh data dir at once (API and worker processes): sqlx's SQLite migrator
        // has no cross-process lock, so migrations run under an exclusive lock on a file beside the database.
        let lock_path = path.with_extension("db.migrate-lock");
        let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(lock_path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))?
        .map_err(sqlx::Error::Io)?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        drop(lock);
        let reader = SqlitePoolOptions::new().max_connections(4).connect_with(opts.read_only(true)).await?;
        let signal: Arc<queue::JobSignal> = Arc::default();
        let batcher =
            queue::batch::Batcher::spawn_on_thread(queue::sqlite::SqliteBatchWriter::open(path, signal.clone())?)?;
        Ok(Self { inner: Arc::new(Inner { db: db::Db::Sqlite { writer, reader }, signal, batcher, _listener: None }) })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user:pass@host:port/db`) with default [`PgStoreOptions`] and
    /// runs migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url.parse()?, PgStoreOptions::default()).await
    }

    /// Connects to PostgreSQL, creates the schema when one is named, runs migrations and starts listening for
    /// other processes' job notifications.
    ///
    /// Several processes may start at once: sqlx's migrator holds a database-wide advisory lock while it migrates,
    /// and runs on a connection of its own that is closed afterwards, so a failed migration cannot leave the lock
    /// held by a pooled connection.
    pub async fn connect_with(connect: PgConnectOptions, options: PgStoreOptions) -> Result<Self> {
        let connect = match &options.schema {
            Some(schema) => {
                if !valid_schema(schema) {
                    let why = format!("invalid schema name {schema:?}: use [a-z_][a-z0-9_]*, at most 63 bytes");
                    return Err(sqlx::Error::Configuration(why.into()).into());
                }
                let mut conn = connect_one(&connect, options.acquire_timeout).await?;
                create_schema(&mut conn, schema).await?;
                conn.close().await?;
                connect.options([("search_path", schema.as_str())])
            }
            None => connect,
        };

        let mut conn = connect_one(&connect, options.acquire_timeout).await?;
        sqlx::migrate!("./migrations/postgres").run(&mut conn).await?;
        conn.close().await?;

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let signal: Arc<queue::JobSignal> = Arc::default();
        // Tells this store's own notifications apart from other processes'.
        let token = uuid::Uuid::new_v4().simple().to_string();
        let listener =
            queue::ListenerTask::start(&connect, options.acquire_timeout, signal.clone(), token.clone()).await?;
        let batcher =
            queue::batch::Batcher::spawn(queue::postgres::PgBatchWriter::new(pool.clone(), signal.clone(), &token));
        Ok(Self { inner: Arc::new(Inner { db: db::Db::Pg { pool }, signal, batcher, _listener: Some(listener) }) })
    }

    /// The job queue.
    pub fn queue(&self) -> Queue<'_> {
        Queue { store: self }
    }

    /// Text classifiers and their versions.
    pub fn models(&self) -> Models<'_> {
        Models { store: self }
    }

    /// Mentors, their user questions and grades.
    pub fn mentors(&self) -> Mentors<'_> {
        Mentors { store: self }
    }

    /// Stored datasets.
    pub fn datasets(&self) -> Datasets<'_> {
        Datasets { store: self }
    }

    /// Capabilities' documents.
    pub fn documents(&self) -> Documents<'_> {
        Documents { store: self }
    }

    /// API keys.
    pub fn keys(&self) -> Keys<'_> {
        Keys { store: self }
    }

    /// Quota counters.
    pub fn usage(&self) -> Usage<'_> {
        Usage { store: self }
    }

    /// Opens a write transaction: what is done through it (jobs enqueued included) is kept if and only if
    /// [`Tx::commit`] succeeds; dropping it uncommitted rolls everything back.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx { conn: self.inner.db.begin().await?, store: self.clone(), wakes: Vec::new() })
    }

    /// Notified whenever a job may have become claimable (see [`Queue::signal`]).
    pub fn job_signal(&self) -> Arc<queue::JobSignal> {
        self.inner.signal.clone()
    }

    /// The PostgreSQL pool, for callers that need to look at the database directly (admin tools, tests); `None` on
    /// SQLite.
    pub fn pg_pool(&self) -> Option<&sqlx::PgPool> {
        match &self.inner.db {
            db::Db::Pg { pool } => Some(pool),
            db::Db::Sqlite { .. } => None,
        }
    }

    /// Waits for in-flight writes (a batch's transaction) to finish and closes the connections; later calls fail.
    /// Call it last, at shutdown.
    pub async fn close(&self) {
        self.inner.db.close().await;
    }
}

/// A write transaction over every aggregate; rolled back when dropped uncommitted.
pub struct Tx {
    conn: db::TxConn,
    store: Store,
    /// The queues of the jobs enqueued: wake their idle workers after the commit.
    wakes: Vec<strato_types::QueueName>,
}

impl Tx {
    /// The job queue, inside this transaction.
    pub fn queue(&mut self) -> TxQueue<'_> {
        TxQueue { tx: self }
    }

    /// Text classifiers, inside this transaction.
    pub fn models(&mut self) -> models::TxModels<'_> {
        models::TxModels { tx: self }
    }

    /// Mentors, inside this transaction.
    pub fn mentors(&mut self) -> mentors::TxMentors<'_> {
        mentors::TxMentors { tx: self }
    }

    /// Datasets, inside this transaction.
    pub fn datasets(&mut self) -> datasets::TxDatasets<'_> {
        datasets::TxDatasets { tx: self }
    }

    /// Documents, inside this transaction.
    pub fn documents(&mut self) -> documents::TxDocuments<'_> {
        documents::TxDocuments { tx: self }
    }

    /// Commits; then wakes workers for the jobs it enqueued.
    pub async fn commit(self) -> Result<()> {
        self.conn.commit().await?;
        for queue in &self.wakes {
            self.store.inner.signal.wake(queue);
        }
        Ok(())
    }

    /// Rolls back (as dropping it does, but waiting for the database to acknowledge).
    pub async fn rollback(self) -> Result<()> {
        match self.conn {
            db::TxConn::Sqlite(t) => t.rollback().await?,
            db::TxConn::Pg(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// Whether `name` is safe to use unquoted as a schema (and in a `search_path` startup option).
fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// One connection outside the pool, within `limit` (an unreachable server can otherwise hang a connect for
/// minutes).
async fn connect_one(connect: &PgConnectOptions, limit: Duration) -> Result<PgConnection> {
    match tokio::time::timeout(limit, PgConnection::connect_with(connect)).await {
        Ok(conn) => Ok(conn?),
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no connection to PostgreSQL within {limit:?}"),
        ))
        .into()),
    }
}

/// Creates `schema` unless it exists. Looks first, so a role that may use an existing schema but not create one
/// still connects.
async fn create_schema(conn: &mut PgConnection, schema: &str) -> Result<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&mut *conn)
        .await?;
    if exists {
        return Ok(());
    }
    // Two processes creating the schema at once race in the catalog even with IF NOT EXISTS; the loser's
    // unique-violation error means the schema is there.
    match sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "23505" || c == "42P06") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_schema;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["public", "t_0123abcd", "_x", "strato"] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "Public", "1abc", "a-b", "a b", "a\"b", "a;drop", &"x".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
