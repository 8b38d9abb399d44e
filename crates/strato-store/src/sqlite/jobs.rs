//! The durable queue on SQLite. Every state change is one `BEGIN IMMEDIATE` transaction, so "pick and claim" is
//! atomic without row locks (SQLite has one writer at a time); the attempt log changes in the same transaction.
//! Enqueues, claims and completions go through the batch writer (its own rusqlite connection and thread, see
//! [`SqliteBatchWriter`]); the rarer changes run on the sqlx writer connection.

use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use strato_types::{AttemptEnd, JobAttempt, JobKind, JobRecord, JobStatus, NewJob, Timestamp};

use super::{json_col, now_ms, opt_json_col, ts, Columns, SqliteStore};
use crate::batch::{distinct_keys, is_plain, BatchInput, BatchOutput, BatchWriter, Claim, Completion};
use crate::{CancelOutcome, EnqueueOutcome, Enqueued, FailOutcome, Heartbeat, JobFilter, Reaped, Result, StoreError};

pub(super) const JOB_COLS: &str = "id, kind, status, payload, key, priority, progress, error, result, attempts, \
     max_attempts, lease_owner, lease_expires_at, run_after, created_at, updated_at, started_at, finished_at, \
     timeout_ms, idempotency_key, cancel_requested, dead_lettered_at";

/// Why a lapsed attempt ended, for the attempt log.
const LEASE_EXPIRED: &str = "lease expired: the worker stopped renewing it (crashed, killed or cut off)";

pub(super) fn job_from_row(row: &impl Columns) -> Result<JobRecord> {
    let kind = row.text("kind")?;
    let status = row.text("status")?;
    let int32 = |col: &str| -> Result<i32> {
        i32::try_from(row.int(col)?).map_err(|_| StoreError::Corrupt(format!("{col} out of range")))
    };
    Ok(JobRecord {
        id: row.text("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("job kind {kind:?}")))?,
        status: JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("job status {status:?}")))?,
        payload: json_col(row, "payload")?,
        key: row.opt_text("key")?,
        priority: int32("priority")?,
        progress: int32("progress")?,
        error: row.opt_text("error")?,
        result: opt_json_col(row, "result")?,
        attempts: int32("attempts")?,
        max_attempts: int32("max_attempts")?,
        lease_owner: row.opt_text("lease_owner")?,
        lease_expires_at: row.opt_int("lease_expires_at")?.map(ts),
        run_after: ts(row.int("run_after")?),
        created_at: ts(row.int("created_at")?),
        updated_at: ts(row.int("updated_at")?),
        started_at: row.opt_int("started_at")?.map(ts),
        finished_at: row.opt_int("finished_at")?.map(ts),
        timeout_ms: row.int("timeout_ms")?,
        idempotency_key: row.opt_text("idempotency_key")?,
        cancel_requested: row.int("cancel_requested")? != 0,
        dead_lettered_at: row.opt_int("dead_lettered_at")?.map(ts),
    })
}

fn attempt_from_row(row: &SqliteRow) -> Result<JobAttempt> {
    let outcome: String = row.try_get("outcome")?;
    Ok(JobAttempt {
        attempt: row.try_get("attempt")?,
        worker: row.try_get("worker")?,
        started_at: ts(row.try_get("started_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(ts),
        outcome: AttemptEnd::parse(&outcome).ok_or_else(|| StoreError::Corrupt(format!("attempt {outcome:?}")))?,
        error: row.try_get("error")?,
    })
}

async fn job_by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<JobRecord>> {
    sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| job_from_row(&r))
        .transpose()
}

async fn open_attempt(conn: &mut SqliteConnection, job: &JobRecord, worker: &str, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO job_attempts (job_id, attempt, worker, started_at) VALUES (?, ?, ?, ?)")
        .bind(&job.id)
        .bind(job.attempts)
        .bind(worker)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn close_attempt(
    conn: &mut SqliteConnection,
    job_id: &str,
    end: AttemptEnd,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(CLOSE_ATTEMPT).bind(now).bind(end.as_str()).bind(error).bind(job_id).execute(&mut *conn).await?;
    Ok(())
}

impl SqliteStore {
    /// The job an earlier submit with the same idempotency key created, if any.
    pub(super) async fn idempotent_hit(conn: &mut SqliteConnection, job: &NewJob) -> Result<Option<Enqueued>> {
        let Some(k) = &job.idempotency_key else { return Ok(None) };
        let found = sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE idempotency_key = ?"))
            .bind(k)
            .fetch_optional(&mut *conn)
            .await?;
        found
            .map(|row| {
                Ok(Enqueued { job: job_from_row(&row)?, outcome: EnqueueOutcome::Idempotent, replaced_payload: None })
            })
            .transpose()
    }

    /// Enqueue inside the caller's transaction: idempotency key, then coalescing, then a new row.
    pub(super) async fn enqueue_in(
        conn: &mut SqliteConnection,
        job: &NewJob,
        claimed: Option<(&str, Duration)>,
    ) -> Result<Enqueued> {
        if let Some(e) = Self::idempotent_hit(conn, job).await? {
            return Ok(e);
        }
        let now = now_ms();
        if let (true, Some(key), None) = (job.coalesce, &job.key, claimed) {
            let queued: Option<(String, String)> = sqlx::query_as(
                "SELECT id, payload FROM jobs WHERE key = ? AND kind = ? AND status = 'QUEUED' ORDER BY created_at \
                 LIMIT 1",
            )
            .bind(key)
            .bind(job.kind.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((id, old)) = queued {
                let row = sqlx::query(&format!(
                    "UPDATE jobs SET payload = ?1, priority = MAX(priority, ?2), updated_at = ?3 WHERE id = ?4 \
                     RETURNING {JOB_COLS}"
                ))
                .bind(job.payload.to_string())
                .bind(job.priority)
                .bind(now)
                .bind(&id)
                .fetch_one(&mut *conn)
                .await?;
                let replaced = serde_json::from_str(&old).map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
                return Ok(Enqueued {
                    job: job_from_row(&row)?,
                    outcome: EnqueueOutcome::Coalesced,
                    replaced_payload: Some(replaced),
                });
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let (status, owner, expires, attempts, started) = match claimed {
            Some((w, lease)) => (JobStatus::InProgress, Some(w), Some(now + lease.as_millis() as i64), 1, Some(now)),
            None => (JobStatus::Queued, None, None, 0, None),
        };
        let row = sqlx::query(&format!(
            "INSERT INTO jobs (id, kind, status, payload, key, priority, max_attempts, lease_owner, lease_expires_at, \
             attempts, started_at, run_after, created_at, updated_at, timeout_ms, idempotency_key) \
             VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING {JOB_COLS}"
        ))
        .bind(&id)
        .bind(job.kind.as_str())
        .bind(status.as_str())
        .bind(job.payload.to_string())
        .bind(&job.key)
        .bind(job.priority)
        .bind(job.max_attempts.max(1))
        .bind(owner)
        .bind(expires)
        .bind(attempts)
        .bind(started)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(job.timeout_or_default().as_millis() as i64)
        .bind(&job.idempotency_key)
        .fetch_one(&mut *conn)
        .await?;
        let rec = job_from_row(&row)?;
        if let Some((w, _)) = claimed {
            open_attempt(conn, &rec, w, now).await?;
        }
        Ok(Enqueued { job: rec, outcome: EnqueueOutcome::Created, replaced_payload: None })
    }

    pub(super) async fn job_enqueue(&self, job: NewJob) -> Result<Enqueued> {
        if is_plain(&job) {
            return self.jobs.enqueue(job).await;
        }
        // Idempotency keys and coalescing look before they insert; they are rare enough to take the long way.
        let out = write_tx!(self, |conn| { Self::enqueue_in(conn, &job, None).await })?;
        self.signal.notify_one();
        Ok(out)
    }

    pub(super) async fn job_enqueue_claimed(&self, job: NewJob, worker: &str, lease: Duration) -> Result<JobRecord> {
        write_tx!(self, |conn| { Ok(Self::enqueue_in(conn, &job, Some((worker, lease))).await?.job) })
    }

    pub(super) async fn job_get(&self, id: &str) -> Result<Option<JobRecord>> {
        let mut conn = self.reader.acquire().await?;
        job_by_id(&mut conn, id).await
    }

    pub(super) async fn job_attempts_list(&self, id: &str) -> Result<Vec<JobAttempt>> {
        sqlx::query(
            "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts WHERE job_id = ? \
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(attempt_from_row)
        .collect()
    }

    pub(super) async fn job_list(&self, f: &JobFilter) -> Result<Vec<JobRecord>> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2) \
             AND (?3 IS NULL OR key = ?3) ORDER BY created_at DESC, id DESC LIMIT ?4"
        ))
        .bind(f.status.map(JobStatus::as_str))
        .bind(f.kind.map(JobKind::as_str))
        .bind(&f.key)
        .bind(f.limit.unwrap_or(1000))
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    pub(super) async fn job_claim(&self, worker: &str, lease: Duration) -> Result<Option<JobRecord>> {
        self.jobs.claim(worker, lease).await
    }

    pub(super) async fn job_heartbeat(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
        progress: Option<i32>,
    ) -> Result<Heartbeat> {
        let now = now_ms();
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = ?1, progress = COALESCE(?2, progress), updated_at = ?3 \
             WHERE id = ?4 AND lease_owner = ?5 AND status = 'IN_PROGRESS' RETURNING cancel_requested",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(progress.map(|p| p.clamp(0, 100)))
        .bind(now)
        .bind(id)
        .bind(worker)
        .fetch_optional(&self.writer)
        .await?;
        Ok(match cancel {
            Some(c) => Heartbeat::Held { cancel_requested: c != 0 },
            None => Heartbeat::Lost,
        })
    }

    pub(super) async fn job_complete(&self, id: &str, worker: &str, result: &serde_json::Value) -> Result<bool> {
        // A job waiting behind this one's key may run now: the batch writer wakes a worker.
        self.jobs.complete(id, worker, result).await
    }

    pub(super) async fn job_fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
        timed_out: bool,
    ) -> Result<FailOutcome> {
        let now = now_ms();
        let retry_at = retry_in.map(|d| now + d.as_millis() as i64);
        let out = write_tx!(self, |conn| {
            let row = sqlx::query(&format!(
                "UPDATE jobs SET \
                   status = CASE WHEN cancel_requested = 1 THEN 'CANCELLED' \
                            WHEN ?1 IS NOT NULL AND attempts < max_attempts THEN 'QUEUED' ELSE 'FAILURE' END, \
                   run_after = COALESCE(?1, run_after), \
                   finished_at = CASE WHEN cancel_requested = 0 AND ?1 IS NOT NULL AND attempts < max_attempts \
                                 THEN NULL ELSE ?2 END, \
                   dead_lettered_at = CASE WHEN cancel_requested = 0 AND ?1 IS NOT NULL \
                                      AND attempts >= max_attempts THEN ?2 END, \
                   error = ?3, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?2 \
                 WHERE id = ?4 AND lease_owner = ?5 AND status = 'IN_PROGRESS' RETURNING {JOB_COLS}"
            ))
            .bind(retry_at)
            .bind(now)
            .bind(error)
            .bind(id)
            .bind(worker)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else { return Ok(FailOutcome::LeaseLost) };
            let job = job_from_row(&row)?;
            let end = if timed_out { AttemptEnd::TimedOut } else { AttemptEnd::Failed };
            close_attempt(conn, id, end, Some(error), now).await?;
            Ok(match (job.status, job.dead_lettered_at) {
                (JobStatus::Queued, _) => FailOutcome::Retrying,
                (JobStatus::Cancelled, _) => FailOutcome::Cancelled,
                (_, Some(_)) => FailOutcome::DeadLettered(Box::new(job)),
                _ => FailOutcome::Failed,
            })
        })?;
        self.signal.notify_one();
        Ok(out)
    }

    pub(super) async fn job_release(&self, id: &str, worker: &str) -> Result<bool> {
        let now = now_ms();
        let done = write_tx!(self, |conn| {
            let n = sqlx::query(
                "UPDATE jobs SET status = CASE WHEN cancel_requested = 1 THEN 'CANCELLED' ELSE 'QUEUED' END, \
                   finished_at = CASE WHEN cancel_requested = 1 THEN ?1 END, \
                   attempts = MAX(attempts - 1, 0), lease_owner = NULL, \
                   lease_expires_at = NULL, run_after = ?1, updated_at = ?1 \
                 WHERE id = ?2 AND lease_owner = ?3 AND status = 'IN_PROGRESS'",
            )
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 1 {
                close_attempt(conn, id, AttemptEnd::Released, Some("handed back: the worker shut down"), now).await?;
            }
            Ok(n == 1)
        })?;
        self.signal.notify_one();
        Ok(done)
    }

    pub(super) async fn job_cancel(&self, id: &str) -> Result<CancelOutcome> {
        let now = now_ms();
        let out = write_tx!(self, |conn| {
            let Some(job) = job_by_id(conn, id).await? else { return Ok(CancelOutcome::NotFound) };
            match job.status {
                JobStatus::Queued => {
                    sqlx::query(
                        "UPDATE jobs SET status = 'CANCELLED', finished_at = ?1, updated_at = ?1, \
                         error = 'cancelled before it ran' WHERE id = ?2",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                }
                JobStatus::InProgress => {
                    sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = ?1 WHERE id = ?2")
                        .bind(now)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
                _ => return Ok(CancelOutcome::AlreadyFinished(Box::new(job))),
            }
            let after = Box::new(job_by_id(conn, id).await?.ok_or_else(|| StoreError::Corrupt("job vanished".into()))?);
            Ok(if job.status == JobStatus::Queued {
                CancelOutcome::Cancelled(after)
            } else {
                CancelOutcome::Requested(after)
            })
        })?;
        Ok(out)
    }

    pub(super) async fn job_finish_cancelled(&self, id: &str, worker: &str) -> Result<bool> {
        let now = now_ms();
        let done = write_tx!(self, |conn| {
            let n = sqlx::query(
                "UPDATE jobs SET status = 'CANCELLED', error = 'cancelled while running', lease_owner = NULL, \
                   lease_expires_at = NULL, finished_at = ?1, updated_at = ?1 \
                 WHERE id = ?2 AND lease_owner = ?3 AND status = 'IN_PROGRESS'",
            )
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 1 {
                close_attempt(conn, id, AttemptEnd::Cancelled, None, now).await?;
            }
            Ok(n == 1)
        })?;
        self.signal.notify_one();
        Ok(done)
    }

    pub(super) async fn job_reap(&self) -> Result<Reaped> {
        let now = now_ms();
        write_tx!(self, |conn| {
            sqlx::query(
                "UPDATE job_attempts SET finished_at = ?1, outcome = 'lease_expired', error = ?2 \
                 WHERE finished_at IS NULL AND job_id IN (SELECT id FROM jobs WHERE status = 'IN_PROGRESS' \
                   AND lease_expires_at < ?1 AND (cancel_requested = 1 OR attempts >= max_attempts))",
            )
            .bind(now)
            .bind(LEASE_EXPIRED)
            .execute(&mut *conn)
            .await?;
            let cancelled = sqlx::query(
                "UPDATE jobs SET status = 'CANCELLED', error = 'cancelled; its worker stopped', lease_owner = NULL, \
                   lease_expires_at = NULL, finished_at = ?1, updated_at = ?1 \
                 WHERE status = 'IN_PROGRESS' AND lease_expires_at < ?1 AND cancel_requested = 1",
            )
            .bind(now)
            .execute(&mut *conn)
            .await?
            .rows_affected() as usize;
            let dead = sqlx::query(&format!(
                "UPDATE jobs SET status = 'FAILURE', dead_lettered_at = ?1, finished_at = ?1, updated_at = ?1, \
                   error = ?2, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE status = 'IN_PROGRESS' AND lease_expires_at < ?1 AND attempts >= max_attempts \
                 RETURNING {JOB_COLS}"
            ))
            .bind(now)
            .bind(format!("last attempt lost: {LEASE_EXPIRED}"))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>>>()?;
            Ok(Reaped { dead_lettered: dead, cancelled })
        })
    }

    pub(super) async fn dead_letters(&self, limit: i64) -> Result<Vec<JobRecord>> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE dead_lettered_at IS NOT NULL ORDER BY dead_lettered_at DESC, id DESC \
             LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    pub(super) async fn dead_letter_replay(&self, id: &str) -> Result<Option<JobRecord>> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = 'QUEUED', attempts = 0, dead_lettered_at = NULL, finished_at = NULL, \
               cancel_requested = 0, progress = 0, result = NULL, run_after = ?1, updated_at = ?1 \
             WHERE id = ?2 AND dead_lettered_at IS NOT NULL RETURNING {JOB_COLS}"
        ))
        .bind(now)
        .bind(id)
        .fetch_optional(&self.writer)
        .await?;
        self.signal.notify_one();
        row.map(|r| job_from_row(&r)).transpose()
    }

    pub(super) async fn dead_letter_delete(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM jobs WHERE id = ? AND dead_lettered_at IS NOT NULL")
            .bind(id)
            .execute(&self.writer)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub(super) async fn jobs_delete_finished_before(&self, cutoff: Timestamp) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? \
             AND status IN ('SUCCESS', 'FAILURE', 'CANCELLED')",
        )
        .bind(cutoff.timestamp_millis())
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(n)
    }

    pub(super) async fn jobs_next_due_in(&self) -> Result<Option<Duration>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM (SELECT MIN(run_after) AS t FROM jobs WHERE status = 'QUEUED' \
             UNION ALL SELECT MIN(lease_expires_at) FROM jobs WHERE status = 'IN_PROGRESS')",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(next.map(|t| Duration::from_millis((t - now_ms()).max(0) as u64)))
    }
}

/// Ends an open attempt in the log: `(finished_at, outcome, error, job_id)`.
const CLOSE_ATTEMPT: &str =
    "UPDATE job_attempts SET finished_at = ?1, outcome = ?2, error = ?3 WHERE job_id = ?4 AND finished_at IS NULL";

/// Writes the queue's hot path for [`SqliteStore`] on a connection of its own, on a thread of its own: a batch
/// is one `BEGIN IMMEDIATE` transaction of prepared statements run in place, so it costs one hand-off between
/// threads (sqlx's SQLite driver hands every statement to its connection thread and back, which dominated the
/// cost of a job before).
pub(super) struct SqliteBatchWriter {
    conn: std::sync::Mutex<rusqlite::Connection>,
    signal: std::sync::Arc<tokio::sync::Notify>,
}

impl SqliteBatchWriter {
    /// Opens the writer's connection with the same settings as the sqlx pools.
    pub(super) fn open(path: &std::path::Path, signal: std::sync::Arc<tokio::sync::Notify>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "normal")?;
        conn.pragma_update(None, "foreign_keys", "on")?;
        Ok(Self { conn: std::sync::Mutex::new(conn), signal })
    }

    fn apply_now(&self, batch: &BatchInput) -> Result<BatchOutput> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let now = now_ms();
        let completed = complete_many(&tx, &batch.completions, now)?;
        let enqueued = batch.enqueues.iter().map(|job| insert_plain(&tx, job, now)).collect::<Result<_>>()?;
        let claimed = claim_many(&tx, &batch.claims, now)?;
        tx.commit()?;
        Ok(BatchOutput { completed, enqueued, claimed })
    }
}

#[async_trait::async_trait]
impl BatchWriter for SqliteBatchWriter {
    async fn apply(&self, batch: &BatchInput) -> Result<BatchOutput> {
        // Runs on the batcher's own thread (`Batcher::spawn_on_thread`): blocking here blocks no runtime.
        self.apply_now(batch)
    }

    fn signal(&self) -> &tokio::sync::Notify {
        &self.signal
    }
}

/// Inserts a plain job (no idempotency key, no coalescing: those take [`SqliteStore::enqueue_in`]'s path).
fn insert_plain(tx: &rusqlite::Transaction<'_>, job: &NewJob, now: i64) -> Result<Enqueued> {
    if !is_plain(job) {
        return Err(StoreError::Corrupt("the batch writer only inserts plain jobs".into()));
    }
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT INTO jobs (id, kind, status, payload, key, priority, max_attempts, attempts, run_after, created_at, \
           updated_at, timeout_ms) VALUES (?1, ?2, 'QUEUED', ?3, ?4, ?5, ?6, 0, ?7, ?7, ?7, ?8) RETURNING {JOB_COLS}"
    ))?;
    let params = rusqlite::params![
        uuid::Uuid::now_v7().to_string(),
        job.kind.as_str(),
        job.payload.to_string(),
        job.key,
        job.priority,
        job.max_attempts.max(1),
        now,
        job.timeout_or_default().as_millis() as i64,
    ];
    let job = stmt.query_row(params, |row| Ok(job_from_row(row)))??;
    Ok(Enqueued { job, outcome: EnqueueOutcome::Created, replaced_payload: None })
}

/// Records the successes of a batch; each is applied only while its worker still holds the lease.
fn complete_many(tx: &rusqlite::Transaction<'_>, cs: &[Completion], now: i64) -> Result<Vec<bool>> {
    let mut done = tx.prepare_cached(
        "UPDATE jobs SET status = 'SUCCESS', progress = 100, result = ?1, error = NULL, lease_owner = NULL, \
           lease_expires_at = NULL, finished_at = ?2, updated_at = ?2 \
         WHERE id = ?3 AND lease_owner = ?4 AND status = 'IN_PROGRESS'",
    )?;
    let mut close = tx.prepare_cached(CLOSE_ATTEMPT)?;
    let mut out = Vec::with_capacity(cs.len());
    for c in cs {
        let ok = done.execute(rusqlite::params![c.result, now, c.id, c.worker])? == 1;
        if ok {
            close.execute(rusqlite::params![now, AttemptEnd::Succeeded.as_str(), None::<String>, c.id])?;
        }
        out.push(ok);
    }
    Ok(out)
}

/// Gives each claimer at most one runnable job: one pick over `jobs_claim_order` for the whole batch, then an
/// update and an attempt-log row per job.
fn claim_many(tx: &rusqlite::Transaction<'_>, claims: &[Claim], now: i64) -> Result<Vec<Option<JobRecord>>> {
    let mut out: Vec<Option<JobRecord>> = claims.iter().map(|_| None).collect();
    if claims.is_empty() {
        return Ok(out);
    }
    // A lapsed job with no attempts left or a pending cancel is the reaper's, not a new attempt's. The pick walks
    // `jobs_claim_order` (already in claim order) and stops once it has enough rows; left to itself SQLite would
    // collect and sort every queued job. Extra candidates cover jobs passed over for a repeated key.
    let mut pick = tx.prepare_cached(
        "SELECT j.id, j.key, j.status FROM jobs j INDEXED BY jobs_claim_order \
         WHERE j.status IN ('QUEUED', 'IN_PROGRESS') \
           AND ((j.status = 'QUEUED' AND j.run_after <= ?1) \
                OR (j.status = 'IN_PROGRESS' AND j.lease_expires_at < ?1 \
                    AND j.attempts < j.max_attempts AND j.cancel_requested = 0)) \
           AND (j.key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.key = j.key AND o.id <> j.id \
                AND o.status = 'IN_PROGRESS' AND o.lease_expires_at >= ?1)) \
         ORDER BY j.priority DESC, j.created_at, j.id LIMIT ?2",
    )?;
    let limit = (claims.len() * 2 + 8) as i64;
    let candidates = pick
        .query_map(rusqlite::params![now, limit], |r| {
            Ok(((r.get::<_, String>(0)?, r.get::<_, String>(2)?), r.get::<_, Option<String>>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut take = tx.prepare_cached(&format!(
        "UPDATE jobs SET status = 'IN_PROGRESS', lease_owner = ?1, lease_expires_at = ?2, attempts = attempts + 1, \
           started_at = COALESCE(started_at, ?3), updated_at = ?3 WHERE id = ?4 RETURNING {JOB_COLS}"
    ))?;
    let mut close = tx.prepare_cached(CLOSE_ATTEMPT)?;
    let mut open =
        tx.prepare_cached("INSERT INTO job_attempts (job_id, attempt, worker, started_at) VALUES (?1, ?2, ?3, ?4)")?;
    for (((id, status), claim), slot) in distinct_keys(candidates, claims.len()).into_iter().zip(claims).zip(&mut out) {
        let expires = now + claim.lease.as_millis() as i64;
        let job = take.query_row(rusqlite::params![claim.worker, expires, now, id], |r| Ok(job_from_row(r)))??;
        // A lapsed attempt still open in the log ends here.
        if status == JobStatus::InProgress.as_str() {
            close.execute(rusqlite::params![now, AttemptEnd::LeaseExpired.as_str(), LEASE_EXPIRED, id])?;
        }
        open.execute(rusqlite::params![id, job.attempts, claim.worker, now])?;
        *slot = Some(job);
    }
    Ok(out)
}
