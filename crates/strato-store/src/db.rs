//! One shape for both backends: the pools, a connection of either kind, statements written once, and row decoding
//! shared by sqlx's SQLite and PostgreSQL rows and rusqlite's.
//!
//! A statement is written once in PostgreSQL's `$n` form ([`sql!`]); SQLite gets the same text with `?n`, which
//! binds the same arguments by number. Where the dialects disagree (row locks, `GREATEST`, arrays) a statement
//! names both texts side by side. The query macros ([`exec!`], [`fetch_optional!`], …) bind the same arguments on
//! whichever backend the connection belongs to and decode rows with the same function, so an aggregate's operation
//! is written once.

use std::borrow::Cow;
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Row, Sqlite, SqliteConnection, SqlitePool};
use strato_types::Timestamp;

use crate::{Result, StoreError};

/// The connection pools of a backend.
#[derive(Clone)]
pub(crate) enum Db {
    /// One writer connection (SQLite has one writer anyway) and a few read-only ones.
    Sqlite { writer: SqlitePool, reader: SqlitePool },
    /// One pool for everything.
    Pg { pool: PgPool },
}

/// A connection of either backend, borrowed for one operation.
pub(crate) enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Pg(&'c mut PgConnection),
}

/// A pooled connection of either backend.
pub(crate) enum Pooled {
    Sqlite(PoolConnection<Sqlite>),
    Pg(PoolConnection<Postgres>),
}

impl Pooled {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(c) => Conn::Sqlite(c),
            Self::Pg(c) => Conn::Pg(c),
        }
    }
}

/// An open write transaction of either backend; rolled back when dropped uncommitted.
pub(crate) enum TxConn {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Pg(sqlx::Transaction<'static, Postgres>),
}

impl TxConn {
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Sqlite(t) => Conn::Sqlite(t),
            Self::Pg(t) => Conn::Pg(t),
        }
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Self::Sqlite(t) => t.commit().await?,
            Self::Pg(t) => t.commit().await?,
        }
        Ok(())
    }
}

impl Db {
    /// A connection for reads (SQLite: a read-only one, so reads never wait for the writer).
    pub(crate) async fn read(&self) -> Result<Pooled> {
        Ok(match self {
            Self::Sqlite { reader, .. } => Pooled::Sqlite(reader.acquire().await?),
            Self::Pg { pool } => Pooled::Pg(pool.acquire().await?),
        })
    }

    /// A connection for a single-statement write (autocommit).
    pub(crate) async fn write(&self) -> Result<Pooled> {
        Ok(match self {
            Self::Sqlite { writer, .. } => Pooled::Sqlite(writer.acquire().await?),
            Self::Pg { pool } => Pooled::Pg(pool.acquire().await?),
        })
    }

    /// Opens a write transaction. SQLite's starts with `BEGIN IMMEDIATE`, so it queues for the write lock
    /// (`busy_timeout`) instead of failing a lock upgrade beside the queue's batch writer. The transaction is
    /// sqlx's own, not a `BEGIN` statement: a caller's future dropped mid-transaction (a worker stopped at shutdown,
    /// an HTTP client gone) then rolls back when the connection goes back to the pool, where a bare `BEGIN` left the
    /// only writer connection inside a transaction and every later write failed.
    pub(crate) async fn begin(&self) -> Result<TxConn> {
        Ok(match self {
            Self::Sqlite { writer, .. } => TxConn::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?),
            Self::Pg { pool } => TxConn::Pg(pool.begin().await?),
        })
    }

    /// Closes every connection; later calls fail.
    pub(crate) async fn close(&self) {
        match self {
            Self::Sqlite { writer, reader } => {
                writer.close().await;
                reader.close().await;
            }
            Self::Pg { pool } => pool.close().await,
        }
    }
}

/// A statement's text for each backend.
pub(crate) struct Sql {
    pg: &'static str,
    sqlite: Option<&'static str>,
    converted: OnceLock<String>,
}

impl Sql {
    /// A statement both backends run, written with PostgreSQL's `$n` placeholders.
    pub(crate) const fn shared(pg: &'static str) -> Self {
        Self { pg, sqlite: None, converted: OnceLock::new() }
    }

    /// A statement whose texts differ (both with `$n` placeholders).
    pub(crate) const fn dialects(sqlite: &'static str, pg: &'static str) -> Self {
        Self { pg, sqlite: Some(sqlite), converted: OnceLock::new() }
    }

    pub(crate) fn pg(&self) -> &'static str {
        self.pg
    }

    pub(crate) fn sqlite(&self) -> &str {
        self.converted.get_or_init(|| to_sqlite(self.sqlite.unwrap_or(self.pg)).into_owned())
    }
}

/// `$1` → `?1`: SQLite's numbered parameters bind by the same numbers.
pub(crate) fn to_sqlite(pg: &str) -> Cow<'_, str> {
    if !pg.contains('$') {
        return Cow::Borrowed(pg);
    }
    let mut out = String::with_capacity(pg.len());
    let mut chars = pg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A statement, converted once per process for SQLite: `sql!("… $1")`, or `sql!(sqlite: "…", postgres: "…")`
/// where the dialects differ.
macro_rules! sql {
    ($text:expr) => {{
        static S: $crate::db::Sql = $crate::db::Sql::shared($text);
        &S
    }};
    (sqlite: $sqlite:expr, postgres: $pg:expr $(,)?) => {{
        static S: $crate::db::Sql = $crate::db::Sql::dialects($sqlite, $pg);
        &S
    }};
}
pub(crate) use sql;

/// A `SELECT` that locks the rows it reads on PostgreSQL (`FOR UPDATE`); SQLite's write transaction already holds
/// the database's write lock.
macro_rules! sql_for_update {
    ($text:expr) => {
        $crate::db::sql!(sqlite: $text, postgres: concat!($text, " FOR UPDATE"))
    };
}
pub(crate) use sql_for_update;

/// Runs `$body` (an operation's future over `$c: &mut Conn`) in a write transaction of its own on `$db`,
/// committing when it succeeds; evaluates to its value (`?` on errors).
macro_rules! in_tx {
    ($db:expr, |$c:ident| $body:expr) => {{
        let mut tx = $db.begin().await?;
        let out = {
            let $c = &mut tx.conn();
            $body.await?
        };
        tx.commit().await?;
        out
    }};
}
pub(crate) use in_tx;

/// Runs a statement on `conn` (a `&mut Conn`); evaluates to the number of rows it changed.
macro_rules! exec {
    ($conn:expr, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::db::Conn::Sqlite(c) => {
                sqlx::query($sql.sqlite())$(.bind($arg))*.execute(&mut **c).await?.rows_affected()
            }
            $crate::db::Conn::Pg(c) => sqlx::query($sql.pg())$(.bind($arg))*.execute(&mut **c).await?.rows_affected(),
        }
    };
}
pub(crate) use exec;

/// At most one row, decoded by `$decode` (a function over [`Columns`]).
macro_rules! fetch_optional {
    ($conn:expr, $decode:path, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::db::Conn::Sqlite(c) => {
                match sqlx::query($sql.sqlite())$(.bind($arg))*.fetch_optional(&mut **c).await? {
                    Some(r) => Some($decode(&r)?),
                    None => None,
                }
            }
            $crate::db::Conn::Pg(c) => match sqlx::query($sql.pg())$(.bind($arg))*.fetch_optional(&mut **c).await? {
                Some(r) => Some($decode(&r)?),
                None => None,
            },
        }
    };
}
pub(crate) use fetch_optional;

/// Every row, decoded by `$decode`.
macro_rules! fetch_all {
    ($conn:expr, $decode:path, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::db::Conn::Sqlite(c) => sqlx::query($sql.sqlite())$(.bind($arg))*
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| $decode(r))
                .collect::<$crate::Result<Vec<_>>>()?,
            $crate::db::Conn::Pg(c) => sqlx::query($sql.pg())$(.bind($arg))*
                .fetch_all(&mut **c)
                .await?
                .iter()
                .map(|r| $decode(r))
                .collect::<$crate::Result<Vec<_>>>()?,
        }
    };
}
pub(crate) use fetch_all;

/// One value of type `$t` from exactly one row.
macro_rules! scalar {
    ($conn:expr, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::db::Conn::Sqlite(c) => {
                sqlx::query_scalar::<_, $t>($sql.sqlite())$(.bind($arg))*.fetch_one(&mut **c).await?
            }
            $crate::db::Conn::Pg(c) => sqlx::query_scalar::<_, $t>($sql.pg())$(.bind($arg))*.fetch_one(&mut **c).await?,
        }
    };
}
pub(crate) use scalar;

/// One value of type `$t` from at most one row.
macro_rules! scalar_optional {
    ($conn:expr, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::db::Conn::Sqlite(c) => {
                sqlx::query_scalar::<_, $t>($sql.sqlite())$(.bind($arg))*.fetch_optional(&mut **c).await?
            }
            $crate::db::Conn::Pg(c) => {
                sqlx::query_scalar::<_, $t>($sql.pg())$(.bind($arg))*.fetch_optional(&mut **c).await?
            }
        }
    };
}
pub(crate) use scalar_optional;

/// One value of type `$t` per row.
macro_rules! scalar_all {
    ($conn:expr, $t:ty, $sql:expr $(, $arg:expr)* $(,)?) => {
        match &mut *$conn {
            $crate::db::Conn::Sqlite(c) => {
                sqlx::query_scalar::<_, $t>($sql.sqlite())$(.bind($arg))*.fetch_all(&mut **c).await?
            }
            $crate::db::Conn::Pg(c) => sqlx::query_scalar::<_, $t>($sql.pg())$(.bind($arg))*.fetch_all(&mut **c).await?,
        }
    };
}
pub(crate) use scalar_all;

/// Column access shared by sqlx's SQLite and PostgreSQL rows and rusqlite's (the SQLite queue writer's), so one
/// decoding function serves every backend. SQLite keeps booleans as integers and JSON as text; PostgreSQL has
/// `BOOLEAN`, `JSONB` and 4-byte `INTEGER`s, which sqlx will not read as `i64`.
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn i64(&self, col: &str) -> Result<i64>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>>;
    fn i32(&self, col: &str) -> Result<i32>;
    fn f64(&self, col: &str) -> Result<f64>;
    fn bool(&self, col: &str) -> Result<bool>;
    fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>>;

    fn json(&self, col: &str) -> Result<serde_json::Value> {
        self.opt_json(col)?.ok_or_else(|| StoreError::Corrupt(format!("{col} is NULL")))
    }

    fn ts(&self, col: &str) -> Result<Timestamp> {
        Ok(ts(self.i64(col)?))
    }

    fn opt_ts(&self, col: &str) -> Result<Option<Timestamp>> {
        Ok(self.opt_i64(col)?.map(ts))
    }
}

fn parse_json(col: &str, text: Option<String>) -> Result<Option<serde_json::Value>> {
    text.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))).transpose()
}

fn narrow(col: &str, v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} out of range")))
}

impl Columns for sqlx::sqlite::SqliteRow {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
    fn i64(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_i64(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
    fn i32(&self, col: &str) -> Result<i32> {
        narrow(col, self.try_get(col)?)
    }
    fn f64(&self, col: &str) -> Result<f64> {
        Ok(self.try_get(col)?)
    }
    fn bool(&self, col: &str) -> Result<bool> {
        Ok(self.try_get(col)?)
    }
    fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>> {
        parse_json(col, self.try_get(col)?)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
    fn i64(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_i64(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
    fn i32(&self, col: &str) -> Result<i32> {
        Ok(self.try_get(col)?)
    }
    fn f64(&self, col: &str) -> Result<f64> {
        Ok(self.try_get(col)?)
    }
    fn bool(&self, col: &str) -> Result<bool> {
        Ok(self.try_get(col)?)
    }
    fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>> {
        Ok(self.try_get(col)?)
    }
}

/// A rusqlite row read by position from the list of the columns its statement selects: looking a column up by
/// name makes rusqlite ask SQLite for every column's name in turn, which on the queue's hot path (a job row per
/// claim) cost about a tenth of the group-commit writer's time.
pub(crate) struct Positional<'a, 'r> {
    pub row: &'a rusqlite::Row<'r>,
    pub cols: &'a [&'static str],
}

impl Positional<'_, '_> {
    fn at(&self, col: &str) -> Result<usize> {
        self.cols
            .iter()
            .position(|c| *c == col)
            .ok_or_else(|| StoreError::Corrupt(format!("column {col} is not selected")))
    }
}

impl Columns for Positional<'_, '_> {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.row.get(self.at(col)?)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.row.get(self.at(col)?)?)
    }
    fn i64(&self, col: &str) -> Result<i64> {
        Ok(self.row.get(self.at(col)?)?)
    }
    fn opt_i64(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.row.get(self.at(col)?)?)
    }
    fn i32(&self, col: &str) -> Result<i32> {
        narrow(col, self.row.get(self.at(col)?)?)
    }
    fn f64(&self, col: &str) -> Result<f64> {
        Ok(self.row.get(self.at(col)?)?)
    }
    fn bool(&self, col: &str) -> Result<bool> {
        Ok(self.row.get::<_, i64>(self.at(col)?)? != 0)
    }
    fn opt_json(&self, col: &str) -> Result<Option<serde_json::Value>> {
        parse_json(col, self.row.get(self.at(col)?)?)
    }
}

/// The clock, in the milliseconds every table stores.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Stored milliseconds as a timestamp.
pub(crate) fn ts(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A duration in stored milliseconds (saturating).
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A JSON value bound as a column: text on SQLite, `JSONB` on PostgreSQL.
pub(crate) fn json(v: &serde_json::Value) -> sqlx::types::Json<&serde_json::Value> {
    sqlx::types::Json(v)
}

#[cfg(test)]
mod tests {
    use super::to_sqlite;

    #[test]
    fn placeholders_become_numbered_question_marks() {
        assert_eq!(to_sqlite("SELECT 1"), "SELECT 1");
        assert_eq!(to_sqlite("a = $1 AND b = $12 OR c = $2"), "a = ?1 AND b = ?12 OR c = ?2");
        assert_eq!(to_sqlite("price$ = $1"), "price$ = ?1");
    }
}
