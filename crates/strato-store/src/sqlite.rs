//! SQLite implementation: one file, WAL, a single-connection writer pool (SQLite has one writer anyway), the job
//! queue's batch writer (a second connection on a thread of its own) and a small reader pool. Every write
//! transaction starts with `BEGIN IMMEDIATE`, so the two writers queue for the write lock (`busy_timeout`) instead
//! of failing a lock upgrade.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use strato_types::{
    AnswerType, ApiKeyRecord, DatasetRecord, Grade, JobAttempt, JobRecord, ModelRecord, ModelVersionRecord, NewJob,
    Timestamp, UserQuestionRecord,
};

use crate::batch::Batcher;
use crate::{
    AddVersion, CancelOutcome, Enqueued, FailOutcome, Heartbeat, JobFilter, MentorRow, MetaStore, Reaped, Result,
    StoreError, TrainSubmission, UserQuestionFilter,
};

/// Metadata store on a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Wakes this process's idle workers: SQLite has no cross-process notification, so other processes' workers
    /// notice new jobs by their poll interval.
    signal: Arc<tokio::sync::Notify>,
    /// Group commit for enqueues, claims and completions.
    jobs: Batcher,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn ts(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// Column access shared by sqlx's rows and rusqlite's (the batch writer's), so one mapping serves both.
pub(super) trait Columns {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
}

impl Columns for SqliteRow {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.get(col)?)
    }
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.get(col)?)
    }
}

fn json_col(row: &impl Columns, col: &str) -> Result<serde_json::Value> {
    let s = row.text(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn opt_json_col(row: &impl Columns, col: &str) -> Result<Option<serde_json::Value>> {
    let s = row.opt_text(col)?;
    s.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))).transpose()
}

fn dataset_from_row(row: &SqliteRow) -> Result<DatasetRecord> {
    let labels: Vec<String> =
        serde_json::from_value(json_col(row, "labels")?).map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?;
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

fn model_from_row(row: &SqliteRow) -> Result<ModelRecord> {
    Ok(ModelRecord {
        id: row.try_get("id")?,
        active_version: row.try_get("active_version")?,
        meta: json_col(row, "meta")?,
        created_at: ts(row.try_get("created_at")?),
        updated_at: ts(row.try_get("updated_at")?),
    })
}

fn version_from_row(row: &SqliteRow) -> Result<ModelVersionRecord> {
    Ok(ModelVersionRecord {
        model_id: row.try_get("model_id")?,
        version: row.try_get("version")?,
        blob_key: row.try_get("blob_key")?,
        metrics: json_col(row, "metrics")?,
        params: json_col(row, "params")?,
        job_id: row.try_get("job_id")?,
        created_at: ts(row.try_get("created_at")?),
    })
}

/// Runs `body` inside `BEGIN IMMEDIATE … COMMIT` on the writer, rolling back on error. The transaction is sqlx's
/// own, not a `BEGIN` statement: a caller's future dropped mid-transaction (a worker stopped at shutdown, an HTTP
/// client gone) then rolls back when the connection goes back to the pool, where a bare `BEGIN` left the only
/// writer connection inside a transaction and every later write failed with "cannot start a transaction within
/// a transaction".
macro_rules! write_tx {
    ($self:expr, |$conn:ident| $body:block) => {{
        let mut tx = $self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let out: Result<_> = async {
            let $conn: &mut sqlx::SqliteConnection = &mut *tx;
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

fn user_question_from_row(row: &SqliteRow) -> Result<UserQuestionRecord> {
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
        graded_off_topic: row.try_get::<i64, _>("graded_off_topic")? != 0,
        graded_at: row.try_get::<Option<i64>, _>("graded_at")?.map(ts),
        created_at: ts(row.try_get("created_at")?),
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs migrations.
    pub async fn open(path: &Path) -> Result<Self> {
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
        let signal: Arc<tokio::sync::Notify> = Arc::default();
        let jobs = Batcher::spawn_on_thread(jobs::SqliteBatchWriter::open(path, signal.clone())?)?;
        Ok(Self { writer, reader, signal, jobs })
    }
}

#[async_trait]
impl MetaStore for SqliteStore {
    async fn put_dataset(&self, rec: &DatasetRecord) -> Result<Option<DatasetRecord>> {
        write_tx!(self, |conn| {
            let old = sqlx::query("SELECT * FROM datasets WHERE name = ?")
                .bind(&rec.name)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| dataset_from_row(&r))
                .transpose()?;
            sqlx::query(
                "INSERT OR REPLACE INTO datasets (name, format, rows, labels, size_bytes, blob_key, created_at) \
                 VALUES (?,?,?,?,?,?,?)",
            )
            .bind(&rec.name)
            .bind(&rec.format)
            .bind(rec.rows)
            .bind(serde_json::to_string(&rec.labels).unwrap_or_default())
            .bind(rec.size_bytes)
            .bind(&rec.blob_key)
            .bind(rec.created_at.timestamp_millis())
            .execute(&mut *conn)
            .await?;
            Ok(old)
        })
    }

    async fn get_dataset(&self, name: &str) -> Result<Option<DatasetRecord>> {
        sqlx::query("SELECT * FROM datasets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .map(|r| dataset_from_row(&r))
            .transpose()
    }

    async fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        sqlx::query("SELECT * FROM datasets ORDER BY name")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(dataset_from_row)
            .collect()
    }

    async fn delete_dataset(&self, name: &str) -> Result<Option<DatasetRecord>> {
        sqlx::query("DELETE FROM datasets WHERE name = ? RETURNING *")
            .bind(name)
            .fetch_optional(&self.writer)
            .await?
            .map(|r| dataset_from_row(&r))
            .transpose()
    }

    async fn get_model(&self, id: &str) -> Result<Option<ModelRecord>> {
        sqlx::query("SELECT * FROM models WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .map(|r| model_from_row(&r))
            .transpose()
    }

    async fn list_models(&self) -> Result<Vec<ModelRecord>> {
        sqlx::query("SELECT * FROM models WHERE id NOT LIKE 'mentor:%' ORDER BY id")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(model_from_row)
            .collect()
    }

    async fn list_versions(&self, model_id: &str) -> Result<Vec<ModelVersionRecord>> {
        sqlx::query("SELECT * FROM model_versions WHERE model_id = ? ORDER BY version")
            .bind(model_id)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(version_from_row)
            .collect()
    }

    async fn get_version(&self, model_id: &str, version: i64) -> Result<Option<ModelVersionRecord>> {
        sqlx::query("SELECT * FROM model_versions WHERE model_id = ? AND version = ?")
            .bind(model_id)
            .bind(version)
            .fetch_optional(&self.reader)
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
        let out = write_tx!(self, |conn| {
            if let Some(e) = Self::idempotent_hit(conn, &job).await? {
                return Ok(TrainSubmission::Queued(Box::new(e)));
            }
            let exists = sqlx::query("SELECT 1 FROM models WHERE id = ?")
                .bind(model_id)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            if exists && !force {
                return Ok(TrainSubmission::ModelExists);
            }
            let now = now_ms();
            sqlx::query(
                "INSERT INTO models (id, meta, created_at, updated_at) VALUES (?, ?, ?, ?) \
                 ON CONFLICT(id) DO UPDATE SET meta = excluded.meta, updated_at = excluded.updated_at",
            )
            .bind(model_id)
            .bind(meta.to_string())
            .bind(now)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(TrainSubmission::Queued(Box::new(Self::enqueue_in(conn, &job, claimed_by).await?)))
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
        write_tx!(self, |conn| {
            if let Some((job, worker)) = fence {
                let held =
                    sqlx::query("SELECT 1 FROM jobs WHERE id = ? AND lease_owner = ? AND status = 'IN_PROGRESS'")
                        .bind(job)
                        .bind(worker)
                        .fetch_optional(&mut *conn)
                        .await?;
                if held.is_none() {
                    return Ok(AddVersion::LeaseLost);
                }
            }
            let exists =
                sqlx::query("SELECT 1 FROM models WHERE id = ?").bind(model_id).fetch_optional(&mut *conn).await?;
            if exists.is_none() {
                return Ok(AddVersion::ModelMissing);
            }
            let version: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model_id = ?")
                    .bind(model_id)
                    .fetch_one(&mut *conn)
                    .await?;
            let now = now_ms();
            sqlx::query(
                "INSERT INTO model_versions (model_id, version, blob_key, metrics, params, job_id, created_at) \
                 VALUES (?,?,?,?,?,?,?)",
            )
            .bind(model_id)
            .bind(version)
            .bind(blob_key)
            .bind(metrics.to_string())
            .bind(params.to_string())
            .bind(fence.map(|(job, _)| job))
            .bind(now)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE models SET active_version = ?, updated_at = ? WHERE id = ?")
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
            "INSERT INTO models (id, meta, created_at, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
        )
        .bind(model_id)
        .bind(meta.to_string())
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn activate_version(&self, model_id: &str, version: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE models SET active_version = ?1, updated_at = ?2 WHERE id = ?3 \
             AND EXISTS (SELECT 1 FROM model_versions WHERE model_id = ?3 AND version = ?1)",
        )
        .bind(version)
        .bind(now_ms())
        .bind(model_id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_model(&self, model_id: &str) -> Result<Option<(ModelRecord, Vec<ModelVersionRecord>)>> {
        write_tx!(self, |conn| {
            let Some(model) = sqlx::query("SELECT * FROM models WHERE id = ?")
                .bind(model_id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| model_from_row(&r))
                .transpose()?
            else {
                return Ok(None);
            };
            let versions = sqlx::query("DELETE FROM model_versions WHERE model_id = ? RETURNING *")
                .bind(model_id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(version_from_row)
                .collect::<Result<Vec<_>>>()?;
            sqlx::query("DELETE FROM models WHERE id = ?").bind(model_id).execute(&mut *conn).await?;
            Ok(Some((model, versions)))
        })
    }

    async fn put_mentor(&self, id: &str, body: &serde_json::Value) -> Result<i64> {
        let now = now_ms();
        // The revision is a timestamp-ordered counter: strictly increasing even across delete and re-create.
        let rev: i64 = sqlx::query_scalar(
            "INSERT INTO mentors (id, body, revision, created_at, updated_at) VALUES (?1, ?2, ?3, ?3, ?3) \
             ON CONFLICT(id) DO UPDATE SET body = excluded.body, revision = MAX(mentors.revision + 1, excluded.revision), \
             updated_at = excluded.updated_at RETURNING revision",
        )
        .bind(id)
        .bind(body.to_string())
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(rev)
    }

    async fn get_mentor(&self, id: &str) -> Result<Option<MentorRow>> {
        let Some(row) = sqlx::query("SELECT * FROM mentors WHERE id = ?").bind(id).fetch_optional(&self.reader).await?
        else {
            return Ok(None);
        };
        Ok(Some(MentorRow {
            body: json_col(&row, "body")?,
            revision: row.try_get("revision")?,
            created_at: ts(row.try_get("created_at")?),
            updated_at: ts(row.try_get("updated_at")?),
        }))
    }

    async fn list_mentor_ids(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM mentors ORDER BY id").fetch_all(&self.reader).await?)
    }

    async fn delete_mentor(&self, id: &str) -> Result<bool> {
        write_tx!(self, |conn| {
            sqlx::query("DELETE FROM user_questions WHERE mentor_id = ?").bind(id).execute(&mut *conn).await?;
            let done = sqlx::query("DELETE FROM mentors WHERE id = ?").bind(id).execute(&mut *conn).await?;
            Ok(done.rows_affected() == 1)
        })
    }

    async fn mentor_state(&self, id: &str, model_id: &str) -> Result<Option<(i64, Option<i64>)>> {
        let row = sqlx::query(
            "SELECT m.revision AS revision, (SELECT active_version FROM models WHERE id = ?2) AS active \
             FROM mentors m WHERE m.id = ?1",
        )
        .bind(id)
        .bind(model_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| Ok((r.try_get("revision")?, r.try_get("active")?))).transpose()
    }

    async fn insert_user_question(&self, q: &UserQuestionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO user_questions (id, mentor_id, text, chat_session_id, answer_id, answer_type, confidence, \
             created_at) VALUES (?,?,?,?,?,?,?,?)",
        )
        .bind(&q.id)
        .bind(&q.mentor_id)
        .bind(&q.text)
        .bind(&q.chat_session_id)
        .bind(&q.answer_id)
        .bind(q.answer_type.as_str())
        .bind(q.confidence)
        .bind(q.created_at.timestamp_millis())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_user_questions(&self, mentor_id: &str, f: &UserQuestionFilter) -> Result<Vec<UserQuestionRecord>> {
        sqlx::query(
            "SELECT * FROM user_questions WHERE mentor_id = ?1 AND (?2 IS NULL OR answer_type = ?2) \
             AND (?3 = 0 OR (graded_answer_id IS NULL AND graded_off_topic = 0)) \
             ORDER BY created_at DESC, id DESC LIMIT ?4",
        )
        .bind(mentor_id)
        .bind(f.answer_type.map(AnswerType::as_str))
        .bind(f.ungraded as i64)
        .bind(f.limit.unwrap_or(1000))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(user_question_from_row)
        .collect()
    }

    async fn get_user_question(&self, id: &str) -> Result<Option<UserQuestionRecord>> {
        sqlx::query("SELECT * FROM user_questions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .map(|r| user_question_from_row(&r))
            .transpose()
    }

    async fn grade_user_question(&self, id: &str, grade: &Grade) -> Result<Option<UserQuestionRecord>> {
        write_tx!(self, |conn| {
            let now = now_ms();
            let (answer, off_topic) = match grade {
                Grade::Answer(a) => (Some(a.as_str()), 0),
                Grade::OffTopic => (None, 1),
            };
            let Some(row) = sqlx::query(
                "UPDATE user_questions SET graded_answer_id = ?1, graded_off_topic = ?2, graded_at = ?3 WHERE id = ?4 \
                 RETURNING *",
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
            sqlx::query("UPDATE mentors SET revision = revision + 1, updated_at = ? WHERE id = ?")
                .bind(now)
                .bind(&rec.mentor_id)
                .execute(&mut *conn)
                .await?;
            Ok(Some(rec))
        })
    }

    async fn graded_user_questions(&self, mentor_id: &str) -> Result<Vec<UserQuestionRecord>> {
        sqlx::query(
            "SELECT * FROM user_questions WHERE mentor_id = ? AND (graded_answer_id IS NOT NULL OR graded_off_topic = 1) \
             ORDER BY created_at",
        )
        .bind(mentor_id)
        .fetch_all(&self.reader)
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.secret_hash)
        .bind(&key.role)
        .bind(grants)
        .bind(plan)
        .bind(key.created_at.timestamp_millis())
        .bind(key.revoked_at.map(|t| t.timestamp_millis()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys ORDER BY created_at DESC, id")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(api_key_from_row)
            .collect()
    }

    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>> {
        sqlx::query("SELECT * FROM api_keys WHERE secret_hash = ?")
            .bind(secret_hash)
            .fetch_optional(&self.reader)
            .await?
            .map(|r| api_key_from_row(&r))
            .transpose()
    }

    async fn revoke_api_key(&self, id: &str, at: strato_types::Timestamp) -> Result<Option<ApiKeyRecord>> {
        sqlx::query("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1 RETURNING *")
            .bind(id)
            .bind(at.timestamp_millis())
            .fetch_optional(&self.writer)
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
            "INSERT INTO usage_counters (subject, window_start, count) VALUES (?, ?, 1) \
             ON CONFLICT (subject, window_start) DO UPDATE SET count = usage_counters.count + 1 \
             WHERE usage_counters.count < ? RETURNING count",
        )
        .bind(subject)
        .bind(window_start)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_optional(&self.writer)
        .await?;
        Ok(count.map(|c| c.max(0) as u64))
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn job_counts(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT kind, CASE WHEN dead_lettered_at IS NOT NULL THEN 'DEAD_LETTER' ELSE status END AS s, COUNT(*) \
             FROM jobs GROUP BY kind, s ORDER BY kind, s",
        )
        .fetch_all(&self.reader)
        .await?)
    }

    async fn delete_usage_before(&self, cutoff: i64) -> Result<u64> {
        let r =
            sqlx::query("DELETE FROM usage_counters WHERE window_start < ?").bind(cutoff).execute(&self.writer).await?;
        Ok(r.rows_affected())
    }
}

fn api_key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord> {
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
    use super::*;

    fn dataset(name: &str) -> DatasetRecord {
        DatasetRecord {
            name: name.into(),
            format: "csv".into(),
            rows: 1,
            labels: vec!["a".into()],
            size_bytes: 1,
            blob_key: format!("datasets/{name}"),
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_write_dropped_mid_transaction_rolls_back_and_later_writes_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
        // A caller that goes away while its transaction is open, as a stopped worker or a gone HTTP client does.
        let dropped = tokio::time::timeout(Duration::from_millis(100), async {
            let r: Result<()> = write_tx!(store, |conn| {
                sqlx::query(
                    "INSERT INTO datasets (name, format, rows, labels, size_bytes, blob_key, created_at) \
                     VALUES ('half', 'csv', 1, '[]', 1, 'k', 0)",
                )
                .execute(&mut *conn)
                .await?;
                std::future::pending::<()>().await;
                Ok(())
            });
            r
        })
        .await;
        assert!(dropped.is_err(), "the write was meant to be cut off mid-transaction");

        store.put_dataset(&dataset("after")).await.expect("the writer connection is usable again");
        assert!(store.get_dataset("after").await.unwrap().is_some());
        assert!(store.get_dataset("half").await.unwrap().is_none(), "the cut-off transaction was rolled back");
    }
}
