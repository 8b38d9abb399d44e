//! PostgreSQL implementation: a connection pool shared by any number of processes, row locks and transaction-scoped
//! advisory locks instead of SQLite's single writer, and `LISTEN/NOTIFY` so one process's writes wake every
//! process's idle workers.
//!
//! Every multi-statement change runs in one transaction (`READ COMMITTED`); the queue's concurrency story is in
//! `postgres/jobs.rs`. Times are the caller's clock in milliseconds, as on SQLite, so the processes sharing a
//! database need roughly synchronised clocks (leases are seconds to minutes long).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, PgPool, Row};
use strato_types::{
    AnswerType, ApiKeyRecord, DatasetRecord, Grade, JobAttempt, JobRecord, ModelRecord, ModelVersionRecord, NewJob,
    Timestamp, UserQuestionRecord,
};

use crate::batch::Batcher;
use crate::{
    AddVersion, CancelOutcome, Enqueued, FailOutcome, Heartbeat, JobFilter, MentorRow, MetaStore, Reaped, Result,
    StoreError, TrainSubmission, UserQuestionFilter,
};

/// How to connect a [`PgStore`], beside the server's address.
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

/// Metadata store on a PostgreSQL database. Cheap to clone; the notification listener stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Woken by this process's writes and, through the listener, by every other process's.
    signal: Arc<tokio::sync::Notify>,
    /// Group commit for enqueues, claims and completions.
    jobs: Batcher,
    _listener: Arc<listener::ListenerTask>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ts(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn dataset_from_row(row: &PgRow) -> Result<DatasetRecord> {
    let labels: Vec<String> =
        serde_json::from_value(row.try_get("labels")?).map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?;
    Ok(DatasetRecord {
        name: row.try_get("name")?,
        format: row.try_get("format")?,
        rows: row.try_get("rows")?,
        labels,
        size_bytes: row.try_get("size_bytes")?,
        blob_key: row.try_get("blob_key")?,
        created_at: ts(row.try_get("created_at")?),
    })
}

fn model_from_row(row: &PgRow) -> Result<ModelRecord> {
    Ok(ModelRecord {
        id: row.try_get("id")?,
        active_version: row.try_get("active_version")?,
        meta: row.try_get("meta")?,
        created_at: ts(row.try_get("created_at")?),
        updated_at: ts(row.try_get("updated_at")?),
    })
}

fn version_from_row(row: &PgRow) -> Result<ModelVersionRecord> {
    Ok(ModelVersionRecord {
        model_id: row.try_get("model_id")?,
        version: row.try_get("version")?,
        blob_key: row.try_get("blob_key")?,
        metrics: row.try_get("metrics")?,
        params: row.try_get("params")?,
        job_id: row.try_get("job_id")?,
        created_at: ts(row.try_get("created_at")?),
    })
}

fn user_question_from_row(row: &PgRow) -> Result<UserQuestionRecord> {
    let t: String = row.try_get("answer_type")?;
    Ok(UserQuestionRecord {
        id: row.try_get("id")?,
        mentor_id: row.try_get("mentor_id")?,
        text: row.try_get("text")?,
        chat_session_id: row.try_get("chat_session_id")?,
        answer_id: row.try_get::<Option<String>, _>("answer_id")?.unwrap_or_default(),
        answer_type: AnswerType::parse(&t).ok_or_else(|| StoreError::Corrupt(format!("answer type {t:?}")))?,
        confidence: row.try_get("confidence")?,
        graded_answer_id: row.try_get("graded_answer_id")?,
        graded_off_topic: row.try_get("graded_off_topic")?,
        graded_at: row.try_get::<Option<i64>, _>("graded_at")?.map(ts),
        created_at: ts(row.try_get("created_at")?),
    })
}

/// Runs `body` in a transaction on a pooled connection: commits on `Ok`, rolls back on `Err`. `begin = SQL` opens
/// the transaction with that statement instead of `BEGIN` (sent in the same round trip).
macro_rules! pg_tx {
    ($self:expr, |$conn:ident| $body:block) => {
        pg_tx!(@run $self.pool.begin().await?, |$conn| $body)
    };
    ($self:expr, begin = $begin:expr, |$conn:ident| $body:block) => {
        pg_tx!(@run $self.pool.begin_with($begin).await?, |$conn| $body)
    };
    (@run $begin:expr, |$conn:ident| $body:block) => {{
        let mut tx = $begin;
        let out: Result<_> = async {
            let $conn: &mut sqlx::PgConnection = &mut *tx;
            $body
        }
        .await;
        match out {
            Ok(v) => {
                tx.commit().await?;
                Ok(v)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }};
}

mod jobs;
mod listener;

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

impl PgStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db`) with default [`PgStoreOptions`] and runs migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url.parse()?, PgStoreOptions::default()).await
    }

    /// Connects, creates the schema when one is named, runs migrations and starts listening for other processes'
    /// job notifications.
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
        let signal = Arc::new(tokio::sync::Notify::new());
        // Tells this store's own notifications apart from other processes'.
        let token = uuid::Uuid::new_v4().simple().to_string();
        let listener =
            listener::ListenerTask::start(&connect, options.acquire_timeout, signal.clone(), token.clone()).await?;
        let jobs = Batcher::spawn(jobs::PgBatchWriter::new(pool.clone(), signal.clone(), &token));
        Ok(Self { pool, signal, jobs, _listener: Arc::new(listener) })
    }

    /// The connection pool, for callers that need to look at the database directly (admin tools, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl MetaStore for PgStore {
    async fn put_dataset(&self, rec: &DatasetRecord) -> Result<Option<DatasetRecord>> {
        pg_tx!(self, |conn| {
            let old = sqlx::query("SELECT * FROM datasets WHERE name = $1 FOR UPDATE")
                .bind(&rec.name)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| dataset_from_row(&r))
                .transpose()?;
            sqlx::query(
                "INSERT INTO datasets (name, format, rows, labels, size_bytes, blob_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (name) DO UPDATE SET format = excluded.format, rows = excluded.rows, \
                   labels = excluded.labels, size_bytes = excluded.size_bytes, blob_key = excluded.blob_key, \
                   created_at = excluded.created_at",
            )
            .bind(&rec.name)
            .bind(&rec.format)
            .bind(rec.rows)
            .bind(serde_json::json!(rec.labels))
            .bind(rec.size_bytes)
            .bind(&rec.blob_key)
            .bind(rec.created_at.timestamp_millis())
            .execute(&mut *conn)
            .await?;
            Ok(old)
        })
    }

    async fn get_dataset(&self, name: &str) -> Result<Option<DatasetRecord>> {
        sqlx::query("SELECT * FROM datasets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| dataset_from_row(&r))
            .transpose()
    }

    async fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        sqlx::query("SELECT * FROM datasets ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(dataset_from_row)
            .collect()
    }

    async fn delete_dataset(&self, name: &str) -> Result<Option<DatasetRecord>> {
        sqlx::query("DELETE FROM datasets WHERE name = $1 RETURNING *")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| dataset_from_row(&r))
            .transpose()
    }

    async fn get_model(&self, id: &str) -> Result<Option<ModelRecord>> {
        sqlx::query("SELECT * FROM models WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| model_from_row(&r))
            .transpose()
    }

    async fn list_models(&self) -> Result<Vec<ModelRecord>> {
        sqlx::query("SELECT * FROM models WHERE id NOT LIKE 'mentor:%' ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(model_from_row)
            .collect()
    }

    async fn list_versions(&self, model_id: &str) -> Result<Vec<ModelVersionRecord>> {
        sqlx::query("SELECT * FROM model_versions WHERE model_id = $1 ORDER BY version")
            .bind(model_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version_from_row)
            .collect()
    }

    async fn get_version(&self, model_id: &str, version: i64) -> Result<Option<ModelVersionRecord>> {
        sqlx::query("SELECT * FROM model_versions WHERE model_id = $1 AND version = $2")
            .bind(model_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| version_from_row(&r))
            .transpose()
    }

    async fn submit_training(
        &self,
        model_id: &str,
        meta: &serde_json::Value,
        force: bool,
        job: NewJob,
        claimed_by: Option<(&str, Duration)>,
    ) -> Result<TrainSubmission> {
        let out = pg_tx!(self, |conn| {
            if let Some(e) = jobs::idempotent_hit(conn, &job).await? {
                return Ok(TrainSubmission::Queued(Box::new(e)));
            }
            // Lock the model row (when it exists) so a concurrent delete or submit waits for this one.
            let exists = sqlx::query("SELECT 1 FROM models WHERE id = $1 FOR UPDATE")
                .bind(model_id)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            if exists && !force {
                return Ok(TrainSubmission::ModelExists);
            }
            let now = now_ms();
            sqlx::query(
                "INSERT INTO models (id, meta, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET meta = excluded.meta, updated_at = excluded.updated_at",
            )
            .bind(model_id)
            .bind(meta)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(TrainSubmission::Queued(Box::new(jobs::enqueue_in(conn, &job, claimed_by).await?)))
        })?;
        self.signal.notify_one();
        Ok(out)
    }

    async fn add_version(
        &self,
        model_id: &str,
        blob_key: &str,
        metrics: &serde_json::Value,
        params: &serde_json::Value,
        fence: Option<(&str, &str)>,
    ) -> Result<AddVersion> {
        pg_tx!(self, |conn| {
            // The row lock holds the lease still until commit: a claim taking the job over (its lease lapsed)
            // skips a locked row, and complete/fail wait, so no other attempt can publish beside this one.
            if let Some((job, worker)) = fence {
                let held = sqlx::query(
                    "SELECT 1 FROM jobs WHERE id = $1 AND lease_owner = $2 AND status = 'IN_PROGRESS' FOR UPDATE",
                )
                .bind(job)
                .bind(worker)
                .fetch_optional(&mut *conn)
                .await?;
                if held.is_none() {
                    return Ok(AddVersion::LeaseLost);
                }
            }
            // Locking the model row serialises version numbering per model.
            let exists = sqlx::query("SELECT 1 FROM models WHERE id = $1 FOR UPDATE")
                .bind(model_id)
                .fetch_optional(&mut *conn)
                .await?;
            if exists.is_none() {
                return Ok(AddVersion::ModelMissing);
            }
            let version: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model_id = $1")
                    .bind(model_id)
                    .fetch_one(&mut *conn)
                    .await?;
            let now = now_ms();
            sqlx::query(
                "INSERT INTO model_versions (model_id, version, blob_key, metrics, params, job_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(model_id)
            .bind(version)
            .bind(blob_key)
            .bind(metrics)
            .bind(params)
            .bind(fence.map(|(job, _)| job))
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE models SET active_version = $1, updated_at = $2 WHERE id = $3")
                .bind(version)
                .bind(now)
                .bind(model_id)
                .execute(&mut *conn)
                .await?;
            Ok(AddVersion::Added(version))
        })
    }

    async fn ensure_model(&self, model_id: &str, meta: &serde_json::Value) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO models (id, meta, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(model_id)
        .bind(meta)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn activate_version(&self, model_id: &str, version: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE models SET active_version = $1, updated_at = $2 WHERE id = $3 \
             AND EXISTS (SELECT 1 FROM model_versions WHERE model_id = $3 AND version = $1)",
        )
        .bind(version)
        .bind(now_ms())
        .bind(model_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_model(&self, model_id: &str) -> Result<Option<(ModelRecord, Vec<ModelVersionRecord>)>> {
        pg_tx!(self, |conn| {
            let Some(model) = sqlx::query("SELECT * FROM models WHERE id = $1 FOR UPDATE")
                .bind(model_id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| model_from_row(&r))
                .transpose()?
            else {
                return Ok(None);
            };
            let versions = sqlx::query("DELETE FROM model_versions WHERE model_id = $1 RETURNING *")
                .bind(model_id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(version_from_row)
                .collect::<Result<Vec<_>>>()?;
            sqlx::query("DELETE FROM models WHERE id = $1").bind(model_id).execute(&mut *conn).await?;
            Ok(Some((model, versions)))
        })
    }

    async fn put_mentor(&self, id: &str, body: &serde_json::Value) -> Result<i64> {
        let now = now_ms();
        // The revision is a timestamp-ordered counter: strictly increasing even across delete and re-create.
        let rev: i64 = sqlx::query_scalar(
            "INSERT INTO mentors (id, body, revision, created_at, updated_at) VALUES ($1, $2, $3, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, \
               revision = GREATEST(mentors.revision + 1, excluded.revision), updated_at = excluded.updated_at \
             RETURNING revision",
        )
        .bind(id)
        .bind(body)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(rev)
    }

    async fn get_mentor(&self, id: &str) -> Result<Option<MentorRow>> {
        let Some(row) = sqlx::query("SELECT * FROM mentors WHERE id = $1").bind(id).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        Ok(Some(MentorRow {
            body: row.try_get("body")?,
            revision: row.try_get("revision")?,
            created_at: ts(row.try_get("created_at")?),
            updated_at: ts(row.try_get("updated_at")?),
        }))
    }

    async fn list_mentor_ids(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM mentors ORDER BY id").fetch_all(&self.pool).await?)
    }

    async fn delete_mentor(&self, id: &str) -> Result<bool> {
        pg_tx!(self, |conn| {
            sqlx::query("DELETE FROM user_questions WHERE mentor_id = $1").bind(id).execute(&mut *conn).await?;
            let done = sqlx::query("DELETE FROM mentors WHERE id = $1").bind(id).execute(&mut *conn).await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn mentor_state(&self, id: &str, model_id: &str) -> Result<Option<(i64, Option<i64>)>> {
        let row = sqlx::query(
            "SELECT m.revision AS revision, (SELECT active_version FROM models WHERE id = $2) AS active \
             FROM mentors m WHERE m.id = $1",
        )
        .bind(id)
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("revision")?, r.try_get("active")?))).transpose()
    }

    async fn insert_user_question(&self, q: &UserQuestionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_questions (id, mentor_id, text, chat_session_id, answer_id, answer_type, confidence, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&q.id)
        .bind(&q.mentor_id)
        .bind(&q.text)
        .bind(&q.chat_session_id)
        .bind(&q.answer_id)
        .bind(q.answer_type.as_str())
        .bind(q.confidence)
        .bind(q.created_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_user_questions(&self, mentor_id: &str, f: &UserQuestionFilter) -> Result<Vec<UserQuestionRecord>> {
        sqlx::query(
            "SELECT * FROM user_questions WHERE mentor_id = $1 AND ($2::text IS NULL OR answer_type = $2) \
             AND (NOT $3 OR (graded_answer_id IS NULL AND NOT graded_off_topic)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(mentor_id)
        .bind(f.answer_type.map(AnswerType::as_str))
        .bind(f.ungraded)
        .bind(f.limit.unwrap_or(1000))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_question_from_row)
        .collect()
    }

    async fn get_user_question(&self, id: &str) -> Result<Option<UserQuestionRecord>> {
        sqlx::query("SELECT * FROM user_questions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| user_question_from_row(&r))
            .transpose()
    }

    async fn grade_user_question(&self, id: &str, grade: &Grade) -> Result<Option<UserQuestionRecord>> {
        pg_tx!(self, |conn| {
            let now = now_ms();
            let (answer, off_topic) = match grade {
                Grade::Answer(a) => (Some(a.as_str()), false),
                Grade::OffTopic => (None, true),
            };
            let Some(row) = sqlx::query(
                "UPDATE user_questions SET graded_answer_id = $1, graded_off_topic = $2, graded_at = $3 \
                 WHERE id = $4 RETURNING *",
            )
            .bind(answer)
            .bind(off_topic)
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            else {
                return Ok(None);
            };
            let rec = user_question_from_row(&row)?;
            sqlx::query("UPDATE mentors SET revision = revision + 1, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&rec.mentor_id)
                .execute(&mut *conn)
                .await?;
            Ok(Some(rec))
        })
    }

    async fn graded_user_questions(&self, mentor_id: &str) -> Result<Vec<UserQuestionRecord>> {
        sqlx::query(
            "SELECT * FROM user_questions WHERE mentor_id = $1 AND (graded_answer_id IS NOT NULL OR graded_off_topic) \
             ORDER BY created_at",
        )
        .bind(mentor_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(user_question_from_row)
        .collect()
    }

    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.job_enqueue(job).await
    }

    async fn enqueue_claimed(&self, job: NewJob, worker: &str, lease: Duration) -> Result<JobRecord> {
        self.job_enqueue_claimed(job, worker, lease).await
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        self.job_get(id).await
    }

    async fn job_attempts(&self, id: &str) -> Result<Vec<JobAttempt>> {
        self.job_attempts_list(id).await
    }

    async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>> {
        self.job_list(f).await
    }

    async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<JobRecord>> {
        self.job_claim(worker, lease).await
    }

    async fn heartbeat(&self, id: &str, worker: &str, lease: Duration, progress: Option<i32>) -> Result<Heartbeat> {
        self.job_heartbeat(id, worker, lease, progress).await
    }

    async fn complete(&self, id: &str, worker: &str, result: &serde_json::Value) -> Result<bool> {
        self.job_complete(id, worker, result).await
    }

    async fn complete_and_claim(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
        lease: Duration,
    ) -> Result<(bool, Option<JobRecord>)> {
        self.jobs.complete_and_claim(id, worker, result, lease).await
    }

    async fn fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
        timed_out: bool,
    ) -> Result<FailOutcome> {
        self.job_fail(id, worker, error, retry_in, timed_out).await
    }

    async fn release(&self, id: &str, worker: &str) -> Result<bool> {
        self.job_release(id, worker).await
    }

    async fn cancel_job(&self, id: &str) -> Result<CancelOutcome> {
        self.job_cancel(id).await
    }

    async fn finish_cancelled(&self, id: &str, worker: &str) -> Result<bool> {
        self.job_finish_cancelled(id, worker).await
    }

    async fn reap_expired_leases(&self) -> Result<Reaped> {
        self.job_reap().await
    }

    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<JobRecord>> {
        self.dead_letters(limit).await
    }

    async fn replay_dead_letter(&self, id: &str) -> Result<Option<JobRecord>> {
        self.dead_letter_replay(id).await
    }

    async fn delete_dead_letter(&self, id: &str) -> Result<bool> {
        self.dead_letter_delete(id).await
    }

    async fn delete_finished_before(&self, cutoff: Timestamp) -> Result<u64> {
        self.jobs_delete_finished_before(cutoff).await
    }

    async fn next_due_in(&self) -> Result<Option<Duration>> {
        self.jobs_next_due_in().await
    }

    fn job_signal(&self) -> Arc<tokio::sync::Notify> {
        self.signal.clone()
    }
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let (grants, plan) = crate::api_key_documents(key);
        sqlx::query(
            "INSERT INTO api_keys (id, name, secret_hash, role, grants, plan, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(&key.role)
        .bind(grants)
        .bind(plan)
        .bind(key.created_at.timestamp_millis())
        .bind(key.revoked_at.map(|t| t.timestamp_millis()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(api_key_from_row)
            .collect()
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys WHERE secret_hash = $1")
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| api_key_from_row(&r))
            .transpose()
    }

    async fn revoke_api_key(&self, id: &str, at: strato_types::Timestamp) -> Result<Option<ApiKeyRecord>> {
        sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *")
            .bind(id)
            .bind(at.timestamp_millis())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| api_key_from_row(&r))
            .transpose()
    }

    async fn take_usage(&self, subject: &str, window_start: i64, limit: u64) -> Result<Option<u64>> {
        if limit == 0 {
            return Ok(None);
        }
        // One conditional upsert: concurrent callers, in any process, never count past `limit`.
        let count: Option<i64> = sqlx::query_scalar(
            "INSERT INTO usage_counters (subject, window_start, count) VALUES ($1, $2, 1) \
             ON CONFLICT (subject, window_start) DO UPDATE SET count = usage_counters.count + 1 \
             WHERE usage_counters.count < $3 RETURNING count",
        )
        .bind(subject)
        .bind(window_start)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?;
        Ok(count.map(|c| c.max(0) as u64))
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn job_counts(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT kind, CASE WHEN dead_lettered_at IS NOT NULL THEN 'DEAD_LETTER' ELSE status END AS s, COUNT(*) \
             FROM jobs GROUP BY kind, s ORDER BY kind, s",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_usage_before(&self, cutoff: i64) -> Result<u64> {
        let r =
            sqlx::query("DELETE FROM usage_counters WHERE window_start < $1").bind(cutoff).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }
}

fn api_key_from_row(row: &PgRow) -> Result<ApiKeyRecord> {
    let grants: String = row.try_get("grants")?;
    let plan: String = row.try_get("plan")?;
    crate::api_key_from_columns(
        row.try_get("id")?,
        row.try_get("name")?,
        row.try_get("secret_hash")?,
        row.try_get("role")?,
        &grants,
        &plan,
        row.try_get("created_at")?,
        row.try_get("revoked_at")?,
    )
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
