//! The durable queue on PostgreSQL, shared by any number of processes.
//!
//! Every state change is one `READ COMMITTED` transaction; the attempt log changes in the same transaction. Where
//! SQLite relies on its single writer, this backend relies on:
//!
//! - **Row locks.** A claim picks its job with `FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait on each
//!   other and never take the same row. Updates guarded by the lease (`lease_owner = $worker AND status =
//!   'IN_PROGRESS'`) are re-checked by PostgreSQL against the newest row version, so a worker whose job was taken
//!   over changes nothing.
//! - **Per-key serialisation by advisory lock.** `SKIP LOCKED` alone lets two transactions claim two *different*
//!   jobs of one key at once: each checks "no other job of this key runs" against a snapshot that cannot see the
//!   other's uncommitted claim. So a claim of a keyed job takes `pg_try_advisory_xact_lock(CLAIM_KEY_LOCK,
//!   hashtext(schema, key))` and then re-checks the key in the `UPDATE` itself, whose snapshot is taken after the lock and
//!   so sees every earlier claim of that key committed. When the lock is taken (another process is claiming that
//!   key right now) or the re-check fails, the key is busy: the claim moves on to the next candidate. A partial
//!   unique index on `key WHERE status = 'IN_PROGRESS'` would be simpler but stricter than the contract: a lapsed
//!   job must not block its key, and `enqueue_claimed` may start a job beside a running one of the same key.
//!   Advisory locks are database-wide, so the hashed name includes the schema: deployments (or tests) in different
//!   schemas of one database never block each other's keys.
//! - **Enqueue locks.** An enqueue with an idempotency key, or coalescing on a key, first takes an advisory lock on
//!   that key (`ENQUEUE_LOCK` namespace), so "look, then insert" cannot race with another enqueue of the same key
//!   (SQLite gets the same from its single writer).
//! - **`NOTIFY strato_jobs`** inside each transaction that can make a job claimable (PostgreSQL delivers it on commit
//!   only), with the schema as payload so deployments sharing a database in different schemas don't wake each other.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use strato_types::{AttemptEnd, JobAttempt, JobKind, JobRecord, JobStatus, NewJob, Timestamp};

use super::{now_ms, ts, PgStore};
use crate::batch::{distinct_keys, is_plain, BatchInput, BatchOutput, BatchWriter, Claim, Completion};
use crate::{CancelOutcome, EnqueueOutcome, Enqueued, FailOutcome, Heartbeat, JobFilter, Reaped, Result, StoreError};

const JOB_COLS: &str = "id, kind, status, payload, key, priority, progress, error, result, attempts, \
     max_attempts, lease_owner, lease_expires_at, run_after, created_at, updated_at, started_at, finished_at, \
     timeout_ms, idempotency_key, cancel_requested, dead_lettered_at";

/// Why a lapsed attempt ended, for the attempt log.
const LEASE_EXPIRED: &str = "lease expired: the worker stopped renewing it (crashed, killed or cut off)";

/// The `LISTEN/NOTIFY` channel of job wake-ups.
pub(super) const CHANNEL: &str = "strato_jobs";

/// First half of the two-key advisory locks a claim takes per job key ("ST" 1). Two-key advisory locks never
/// collide with one-key ones such as sqlx's migration lock.
const CLAIM_KEY_LOCK: i32 = 0x5354_0001;
/// First half of the advisory locks an enqueue takes per idempotency key or coalescing key ("ST" 2).
const ENQUEUE_LOCK: i32 = 0x5354_0002;

/// Opens a claim's transaction. The pick must walk `jobs_claim_order` in claim order, but PostgreSQL chooses
/// between that walk and "bitmap scan + sort" from its row estimates, which a queue defeats: a prepared statement's
/// generic plan made while the table was empty, or statistics gathered while nothing was queued, estimate one row,
/// pick the sort, and then sort the whole backlog on every claim (10 ms per claim with 20,000 jobs queued). Sorting
/// is never needed here, so it is disabled for this transaction only.
const CLAIM_BEGIN: &str = "BEGIN; SET LOCAL enable_sort = off";

fn job_from_row(row: &PgRow) -> Result<JobRecord> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("job kind {kind:?}")))?,
        status: JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("job status {status:?}")))?,
        payload: row.try_get("payload")?,
        key: row.try_get("key")?,
        priority: row.try_get("priority")?,
        progress: row.try_get("progress")?,
        error: row.try_get("error")?,
        result: row.try_get("result")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get::<Option<i64>, _>("lease_expires_at")?.map(ts),
        run_after: ts(row.try_get("run_after")?),
        created_at: ts(row.try_get("created_at")?),
        updated_at: ts(row.try_get("updated_at")?),
        started_at: row.try_get::<Option<i64>, _>("started_at")?.map(ts),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(ts),
        timeout_ms: row.try_get("timeout_ms")?,
        idempotency_key: row.try_get("idempotency_key")?,
        cancel_requested: row.try_get("cancel_requested")?,
        dead_lettered_at: row.try_get::<Option<i64>, _>("dead_lettered_at")?.map(ts),
    })
}

fn attempt_from_row(row: &PgRow) -> Result<JobAttempt> {
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

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Wakes idle workers of every process on this schema once the caller's transaction commits.
async fn notify_workers(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, COALESCE(current_schema(), ''))").bind(CHANNEL).execute(&mut *conn).await?;
    Ok(())
}

/// Holds `text`'s enqueue lock until the transaction ends.
async fn enqueue_lock(conn: &mut PgConnection, text: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || chr(31) || $2))")
        .bind(ENQUEUE_LOCK)
        .bind(text)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn job_by_id(conn: &mut PgConnection, id: &str, for_update: bool) -> Result<Option<JobRecord>> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1{lock}"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| job_from_row(&r))
        .transpose()
}

async fn open_attempt(conn: &mut PgConnection, job: &JobRecord, worker: &str, now: i64) -> Result<()> {
    sqlx::query("INSERT INTO job_attempts (job_id, attempt, worker, started_at) VALUES ($1, $2, $3, $4)")
        .bind(&job.id)
        .bind(job.attempts)
        .bind(worker)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn close_attempt(
    conn: &mut PgConnection,
    job_id: &str,
    end: AttemptEnd,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE job_attempts SET finished_at = $1, outcome = $2, error = $3 WHERE job_id = $4 AND finished_at IS NULL",
    )
    .bind(now)
    .bind(end.as_str())
    .bind(error)
    .bind(job_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The job an earlier submit with the same idempotency key created, if any. Takes the key's enqueue lock first,
/// so a concurrent submit with the same key either is visible here or waits for this transaction.
pub(super) async fn idempotent_hit(conn: &mut PgConnection, job: &NewJob) -> Result<Option<Enqueued>> {
    let Some(k) = &job.idempotency_key else { return Ok(None) };
    enqueue_lock(conn, &format!("idempotency:{k}")).await?;
    let found = sqlx::query(&format!("SELECT {JOB_COLS} FROM jobs WHERE idempotency_key = $1"))
        .bind(k)
        .fetch_optional(&mut *conn)
        .await?;
    found
        .map(|row| {
            Ok(Enqueued { job: job_from_row(&row)?, outcome: EnqueueOutcome::Idempotent, replaced_payload: None })
        })
        .transpose()
}

/// Enqueue inside the caller's transaction: idempotency key, then coalescing, then a new row. Sends the
/// notification when a job became claimable.
pub(super) async fn enqueue_in(
    conn: &mut PgConnection,
    job: &NewJob,
    claimed: Option<(&str, Duration)>,
) -> Result<Enqueued> {
    enqueue_notifying(conn, job, claimed, true).await
}

/// [`enqueue_in`], leaving the notification to the caller when `notify` is false (a batch sends one for all).
async fn enqueue_notifying(
    conn: &mut PgConnection,
    job: &NewJob,
    claimed: Option<(&str, Duration)>,
    notify: bool,
) -> Result<Enqueued> {
    if let Some(e) = idempotent_hit(conn, job).await? {
        return Ok(e);
    }
    let now = now_ms();
    if let (true, Some(key), None) = (job.coalesce, &job.key, claimed) {
        enqueue_lock(conn, &format!("coalesce:{}:{key}", job.kind.as_str())).await?;
        // The outer status test matters: if a claim took the row meanwhile, PostgreSQL re-evaluates it on the
        // claimed version and nothing is updated, so the request queues a new job instead.
        let found = sqlx::query(&format!(
            "WITH old AS (SELECT id AS old_id, payload AS old_payload FROM jobs WHERE key = $4 AND kind = $5 \
               AND status = 'QUEUED' ORDER BY created_at LIMIT 1 FOR UPDATE) \
             UPDATE jobs SET payload = $1, priority = GREATEST(priority, $2), updated_at = $3 \
             FROM old WHERE status = 'QUEUED' AND id = old.old_id \
             RETURNING {JOB_COLS}, old.old_payload"
        ))
        .bind(&job.payload)
        .bind(job.priority)
        .bind(now)
        .bind(key)
        .bind(job.kind.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = found {
            if notify {
                notify_workers(conn).await?;
            }
            let replaced: serde_json::Value = row.try_get("old_payload")?;
            return Ok(Enqueued {
                job: job_from_row(&row)?,
                outcome: EnqueueOutcome::Coalesced,
                replaced_payload: Some(replaced),
            });
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let (status, owner, expires, attempts, started) = match claimed {
        Some((w, lease)) => (JobStatus::InProgress, Some(w), Some(now + millis(lease)), 1, Some(now)),
        None => (JobStatus::Queued, None, None, 0, None),
    };
    let row = sqlx::query(&format!(
        "INSERT INTO jobs (id, kind, status, payload, key, priority, max_attempts, lease_owner, lease_expires_at, \
         attempts, started_at, run_after, created_at, updated_at, timeout_ms, idempotency_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12, $13, $14) RETURNING {JOB_COLS}"
    ))
    .bind(&id)
    .bind(job.kind.as_str())
    .bind(status.as_str())
    .bind(&job.payload)
    .bind(&job.key)
    .bind(job.priority)
    .bind(job.max_attempts.max(1))
    .bind(owner)
    .bind(expires)
    .bind(attempts)
    .bind(started)
    .bind(now)
    .bind(millis(job.timeout_or_default()))
    .bind(&job.idempotency_key)
    .fetch_one(&mut *conn)
    .await?;
    let rec = job_from_row(&row)?;
    match claimed {
        Some((w, _)) => open_attempt(conn, &rec, w, now).await?,
        None if notify => notify_workers(conn).await?,
        None => {}
    }
    Ok(Enqueued { job: rec, outcome: EnqueueOutcome::Created, replaced_payload: None })
}

impl PgStore {
    pub(super) async fn job_enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.jobs.enqueue(job).await
    }

    pub(super) async fn job_enqueue_claimed(&self, job: NewJob, worker: &str, lease: Duration) -> Result<JobRecord> {
        pg_tx!(self, |conn| { Ok(enqueue_in(conn, &job, Some((worker, lease))).await?.job) })
    }

    pub(super) async fn job_get(&self, id: &str) -> Result<Option<JobRecord>> {
        let mut conn = self.pool.acquire().await?;
        job_by_id(&mut conn, id, false).await
    }

    pub(super) async fn job_attempts_list(&self, id: &str) -> Result<Vec<JobAttempt>> {
        sqlx::query(
            "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts WHERE job_id = $1 \
             ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(attempt_from_row)
        .collect()
    }

    pub(super) async fn job_list(&self, f: &JobFilter) -> Result<Vec<JobRecord>> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2) \
             AND ($3::text IS NULL OR key = $3) ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(f.status.map(JobStatus::as_str))
        .bind(f.kind.map(JobKind::as_str))
        .bind(&f.key)
        .bind(f.limit.unwrap_or(1000))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    /// Claims the best runnable job; see the module docs for how keys stay serialised across processes.
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
        let cancel: Option<bool> = sqlx::query_scalar(
            "UPDATE jobs SET lease_expires_at = $1, progress = COALESCE($2, progress), updated_at = $3 \
             WHERE id = $4 AND lease_owner = $5 AND status = 'IN_PROGRESS' RETURNING cancel_requested",
        )
        .bind(now + millis(lease))
        .bind(progress.map(|p| p.clamp(0, 100)))
        .bind(now)
        .bind(id)
        .bind(worker)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match cancel {
            Some(cancel_requested) => Heartbeat::Held { cancel_requested },
            None => Heartbeat::Lost,
        })
    }

    pub(super) async fn job_complete(&self, id: &str, worker: &str, result: &serde_json::Value) -> Result<bool> {
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
        let retry_at = retry_in.map(|d| now + millis(d));
        let out = pg_tx!(self, |conn| {
            let row = sqlx::query(&format!(
                "UPDATE jobs SET \
                   status = CASE WHEN cancel_requested THEN 'CANCELLED' \
                            WHEN $1::bigint IS NOT NULL AND attempts < max_attempts THEN 'QUEUED' \
                            ELSE 'FAILURE' END, \
                   run_after = COALESCE($1, run_after), \
                   finished_at = CASE WHEN NOT cancel_requested AND $1::bigint IS NOT NULL \
                                 AND attempts < max_attempts THEN NULL ELSE $2 END, \
                   dead_lettered_at = CASE WHEN NOT cancel_requested AND $1::bigint IS NOT NULL \
                                      AND attempts >= max_attempts THEN $2 END, \
                   error = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
                 WHERE id = $4 AND lease_owner = $5 AND status = 'IN_PROGRESS' RETURNING {JOB_COLS}"
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
            // Queued again (due after the backoff: woken workers compute the wait), or its key is free.
            if job.status == JobStatus::Queued || job.key.is_some() {
                notify_workers(conn).await?;
            }
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
        let done = pg_tx!(self, |conn| {
            let n = sqlx::query(
                "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE 'QUEUED' END, \
                   finished_at = CASE WHEN cancel_requested THEN $1 END, \
                   attempts = GREATEST(attempts - 1, 0), lease_owner = NULL, \
                   lease_expires_at = NULL, run_after = $1, updated_at = $1 \
                 WHERE id = $2 AND lease_owner = $3 AND status = 'IN_PROGRESS'",
            )
            .bind(now)
            .bind(id)
            .bind(worker)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 1 {
                close_attempt(conn, id, AttemptEnd::Released, Some("handed back: the worker shut down"), now).await?;
                notify_workers(conn).await?;
            }
            Ok(n == 1)
        })?;
        self.signal.notify_one();
        Ok(done)
    }

    pub(super) async fn job_cancel(&self, id: &str) -> Result<CancelOutcome> {
        let now = now_ms();
        pg_tx!(self, |conn| {
            let Some(job) = job_by_id(conn, id, true).await? else { return Ok(CancelOutcome::NotFound) };
            match job.status {
                JobStatus::Queued => {
                    sqlx::query(
                        "UPDATE jobs SET status = 'CANCELLED', finished_at = $1, updated_at = $1, \
                         error = 'cancelled before it ran' WHERE id = $2",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                }
                JobStatus::InProgress => {
                    sqlx::query("UPDATE jobs SET cancel_requested = TRUE, updated_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
                _ => return Ok(CancelOutcome::AlreadyFinished(Box::new(job))),
            }
            let after = job_by_id(conn, id, false).await?.ok_or_else(|| StoreError::Corrupt("job vanished".into()))?;
            Ok(if job.status == JobStatus::Queued {
                CancelOutcome::Cancelled(Box::new(after))
            } else {
                CancelOutcome::Requested(Box::new(after))
            })
        })
    }

    pub(super) async fn job_finish_cancelled(&self, id: &str, worker: &str) -> Result<bool> {
        let now = now_ms();
        let done = pg_tx!(self, |conn| {
            let key: Option<Option<String>> = sqlx::query_scalar(
                "UPDATE jobs SET status = 'CANCELLED', error = 'cancelled while running', lease_owner = NULL, \
                   lease_expires_at = NULL, finished_at = $1, updated_at = $1 \
                 WHERE id = $2 AND lease_owner = $3 AND status = 'IN_PROGRESS' RETURNING key",
            )
            .bind(now)
            .bind(id)
            .bind(worker)
            .fetch_optional(&mut *conn)
            .await?;
            let Some(key) = key else { return Ok(false) };
            close_attempt(conn, id, AttemptEnd::Cancelled, None, now).await?;
            if key.is_some() {
                notify_workers(conn).await?;
            }
            Ok(true)
        })?;
        self.signal.notify_one();
        Ok(done)
    }

    /// Jobs first, attempts after, by the ids the job updates returned: a heartbeat that renewed a lease between
    /// two statements can never leave its attempt closed while the job runs on.
    pub(super) async fn job_reap(&self) -> Result<Reaped> {
        let now = now_ms();
        pg_tx!(self, |conn| {
            let cancelled: Vec<String> = sqlx::query_scalar(
                "UPDATE jobs SET status = 'CANCELLED', error = 'cancelled; its worker stopped', lease_owner = NULL, \
                   lease_expires_at = NULL, finished_at = $1, updated_at = $1 \
                 WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1 AND cancel_requested RETURNING id",
            )
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            let dead = sqlx::query(&format!(
                "UPDATE jobs SET status = 'FAILURE', dead_lettered_at = $1, finished_at = $1, updated_at = $1, \
                   error = $2, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1 AND attempts >= max_attempts \
                 RETURNING {JOB_COLS}"
            ))
            .bind(now)
            .bind(format!("last attempt lost: {LEASE_EXPIRED}"))
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>>>()?;
            let ids: Vec<&str> =
                cancelled.iter().map(String::as_str).chain(dead.iter().map(|j| j.id.as_str())).collect();
            if !ids.is_empty() {
                sqlx::query(
                    "UPDATE job_attempts SET finished_at = $1, outcome = 'lease_expired', error = $2 \
                     WHERE finished_at IS NULL AND job_id = ANY($3)",
                )
                .bind(now)
                .bind(LEASE_EXPIRED)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
            }
            Ok(Reaped { dead_lettered: dead, cancelled: cancelled.len() })
        })
    }

    pub(super) async fn dead_letters(&self, limit: i64) -> Result<Vec<JobRecord>> {
        sqlx::query(&format!(
            "SELECT {JOB_COLS} FROM jobs WHERE dead_lettered_at IS NOT NULL ORDER BY dead_lettered_at DESC, id DESC \
             LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }

    pub(super) async fn dead_letter_replay(&self, id: &str) -> Result<Option<JobRecord>> {
        let now = now_ms();
        let row = pg_tx!(self, |conn| {
            let row = sqlx::query(&format!(
                "UPDATE jobs SET status = 'QUEUED', attempts = 0, dead_lettered_at = NULL, finished_at = NULL, \
                   cancel_requested = FALSE, progress = 0, result = NULL, run_after = $1, updated_at = $1 \
                 WHERE id = $2 AND dead_lettered_at IS NOT NULL RETURNING {JOB_COLS}"
            ))
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
            if row.is_some() {
                notify_workers(conn).await?;
            }
            Ok(row)
        })?;
        self.signal.notify_one();
        row.map(|r| job_from_row(&r)).transpose()
    }

    pub(super) async fn dead_letter_delete(&self, id: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM jobs WHERE id = $1 AND dead_lettered_at IS NOT NULL")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub(super) async fn jobs_delete_finished_before(&self, cutoff: Timestamp) -> Result<u64> {
        let n = sqlx::query(
            "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 \
             AND status IN ('SUCCESS', 'FAILURE', 'CANCELLED')",
        )
        .bind(cutoff.timestamp_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n)
    }

    pub(super) async fn jobs_next_due_in(&self) -> Result<Option<Duration>> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM (SELECT MIN(run_after) AS t FROM jobs WHERE status = 'QUEUED' \
             UNION ALL SELECT MIN(lease_expires_at) FROM jobs WHERE status = 'IN_PROGRESS') due",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next.map(|t| Duration::from_millis((t - now_ms()).max(0) as u64)))
    }
}

/// Opens a batch's transaction (see [`CLAIM_BEGIN`]) and, when the batch enqueues, sends the wake-up in the
/// same round trip (PostgreSQL delivers it at commit, and only then). The payload carries the sending store's
/// token after the schema, so its own listener can skip it: the batch writer has already woken this process's
/// workers, and a second wake-up would only send an idle worker to claim nothing.
fn batch_begin_notify(token: &str) -> String {
    format!(
        "BEGIN; SET LOCAL enable_sort = off; \
         SELECT pg_notify('{CHANNEL}', COALESCE(current_schema(), '') || chr(31) || '{token}')"
    )
}

/// Writes the queue's hot path for [`PgStore`]: one transaction per batch, in about six round trips whatever its
/// size: begin (with the notification), the completions, the plain enqueues, the claim's pick, the claim, commit.
pub(super) struct PgBatchWriter {
    pool: sqlx::PgPool,
    signal: std::sync::Arc<tokio::sync::Notify>,
    begin_notify: String,
}

impl PgBatchWriter {
    /// `token` identifies this store's notifications to its own listener (a plain word: it is inlined in SQL).
    pub(super) fn new(pool: sqlx::PgPool, signal: std::sync::Arc<tokio::sync::Notify>, token: &str) -> Self {
        debug_assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
        Self { pool, signal, begin_notify: batch_begin_notify(token) }
    }
}

#[async_trait::async_trait]
impl BatchWriter for PgBatchWriter {
    async fn apply(&self, batch: &BatchInput) -> Result<BatchOutput> {
        // Other processes' workers learn of new jobs (the notification) …
        let begin = if batch.enqueues.is_empty() { CLAIM_BEGIN.to_string() } else { self.begin_notify.clone() };
        pg_tx!(self, begin = begin, |conn| {
            // Read the clock once a connection is held: waiting for one must not shorten the leases.
            let now = now_ms();
            let (completed, freed_key) = complete_many(conn, &batch.completions, now).await?;
            let mut enqueued = insert_plain(conn, &batch.enqueues, now).await?;
            for (slot, job) in enqueued.iter_mut().zip(&batch.enqueues) {
                if slot.is_none() {
                    *slot = Some(enqueue_notifying(conn, job, None, false).await?);
                }
            }
            let enqueued: Vec<Enqueued> = enqueued.into_iter().flatten().collect();
            let claimed = claim_many(conn, &batch.claims, now).await?;
            // … and of keys freed for jobs waiting behind them.
            if freed_key && batch.enqueues.is_empty() {
                notify_workers(conn).await?;
            }
            Ok(BatchOutput { completed, enqueued, claimed })
        })
    }

    fn signal(&self) -> &tokio::sync::Notify {
        &self.signal
    }
}

/// Inserts the batch's plain jobs with one statement; the others are left `None` for [`enqueue_notifying`].
async fn insert_plain(conn: &mut PgConnection, jobs: &[NewJob], now: i64) -> Result<Vec<Option<Enqueued>>> {
    let mut out: Vec<Option<Enqueued>> = jobs.iter().map(|_| None).collect();
    let plain: Vec<(usize, &NewJob)> = jobs.iter().enumerate().filter(|(_, j)| is_plain(j)).collect();
    if plain.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = plain.iter().map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let rows = sqlx::query(&format!(
        "INSERT INTO jobs (id, kind, status, payload, key, priority, max_attempts, attempts, run_after, created_at, \
           updated_at, timeout_ms) \
         SELECT u.id, u.kind, 'QUEUED', u.payload, u.key, u.priority, u.max_attempts, 0, $1, $1, $1, u.timeout_ms \
         FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::text[], $6::int[], $7::int[], $8::bigint[]) \
           WITH ORDINALITY AS u(id, kind, payload, key, priority, max_attempts, timeout_ms, n) ORDER BY u.n \
         RETURNING {JOB_COLS}"
    ))
    .bind(now)
    .bind(&ids)
    .bind(plain.iter().map(|(_, j)| j.kind.as_str()).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.payload.clone()).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.key.clone()).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.priority).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.max_attempts.max(1)).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| millis(j.timeout_or_default())).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let slot: std::collections::HashMap<&str, usize> =
        ids.iter().zip(&plain).map(|(id, (i, _))| (id.as_str(), *i)).collect();
    for row in &rows {
        let job = job_from_row(row)?;
        let i = *slot.get(job.id.as_str()).ok_or_else(|| StoreError::Corrupt("inserted an unknown job".into()))?;
        out[i] = Some(Enqueued { job, outcome: EnqueueOutcome::Created, replaced_payload: None });
    }
    Ok(out)
}

/// Records the successes of a batch (each only while its worker still holds the lease) and closes their attempts,
/// in one statement. Also says whether a finished job had a key (a job waiting behind it may run now).
async fn complete_many(conn: &mut PgConnection, cs: &[Completion], now: i64) -> Result<(Vec<bool>, bool)> {
    if cs.is_empty() {
        return Ok((Vec::new(), false));
    }
    let results = cs
        .iter()
        .map(|c| serde_json::from_str(&c.result))
        .collect::<std::result::Result<Vec<serde_json::Value>, _>>()
        .map_err(|e| StoreError::Corrupt(format!("job result: {e}")))?;
    let done: Vec<(String, Option<String>)> = sqlx::query_as(
        "WITH done AS (UPDATE jobs SET status = 'SUCCESS', progress = 100, result = c.result, error = NULL, \
             lease_owner = NULL, lease_expires_at = NULL, finished_at = $1, updated_at = $1 \
           FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS c(id, worker, result) \
           WHERE jobs.id = c.id AND jobs.lease_owner = c.worker AND jobs.status = 'IN_PROGRESS' \
           RETURNING jobs.id, jobs.key), \
         closed AS (UPDATE job_attempts a SET finished_at = $1, outcome = $5, error = NULL FROM done \
           WHERE a.job_id = done.id AND a.finished_at IS NULL) \
         SELECT id, key FROM done",
    )
    .bind(now)
    .bind(cs.iter().map(|c| c.id.as_str()).collect::<Vec<_>>())
    .bind(cs.iter().map(|c| c.worker.as_str()).collect::<Vec<_>>())
    .bind(results)
    .bind(AttemptEnd::Succeeded.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let freed_key = done.iter().any(|(_, k)| k.is_some());
    let ids: std::collections::HashSet<String> = done.into_iter().map(|(id, _)| id).collect();
    Ok((cs.iter().map(|c| ids.contains(&c.id)).collect(), freed_key))
}

/// Gives each claimer at most one runnable job: one locked pick (`SKIP LOCKED`) for the whole batch, a
/// `pg_try_advisory_xact_lock` per key picked, then one statement that claims, closes lapsed attempts and opens
/// the new ones.
async fn claim_many(conn: &mut PgConnection, claims: &[Claim], now: i64) -> Result<Vec<Option<JobRecord>>> {
    let mut out: Vec<Option<JobRecord>> = claims.iter().map(|_| None).collect();
    if claims.is_empty() {
        return Ok(out);
    }
    // A lapsed job with no attempts left or a pending cancel is the reaper's, not a new attempt's. The status list
    // matches `jobs_claim_order`'s predicate, so the pick walks that index in claim order and stops once it has
    // enough rows instead of sorting every queued job (see `CLAIM_BEGIN`). The per-status test is a CASE, not
    // `(status = 'QUEUED' AND …) OR (status = 'IN_PROGRESS' AND …)`, which invites a BitmapOr over
    // the partial status indexes. No spare candidates: every row picked is locked (a WAL record and a dirty page each), so a
    // job passed over for a repeated key waits for the next batch.
    let candidates: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT j.id, j.key, j.status FROM jobs j \
         WHERE j.status IN ('QUEUED', 'IN_PROGRESS') \
           AND CASE WHEN j.status = 'QUEUED' THEN j.run_after <= $1 \
                    ELSE j.lease_expires_at < $1 AND j.attempts < j.max_attempts AND NOT j.cancel_requested \
               END \
           AND (j.key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.key = j.key AND o.id <> j.id \
                AND o.status = 'IN_PROGRESS' AND o.lease_expires_at >= $1)) \
         ORDER BY j.priority DESC, j.created_at, j.id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .bind(claims.len() as i64)
    .fetch_all(&mut *conn)
    .await?;
    let picked = distinct_keys(
        candidates.into_iter().map(|(id, key, status)| ((id, key.clone(), status), key)).collect(),
        claims.len(),
    );
    // A key another process is claiming right now stays with it.
    let keys: Vec<&str> = picked.iter().filter_map(|(_, k, _)| k.as_deref()).collect();
    let held: std::collections::HashSet<String> = if keys.is_empty() {
        Default::default()
    } else {
        sqlx::query_scalar(
            "SELECT k FROM unnest($2::text[]) AS k \
             WHERE pg_try_advisory_xact_lock($1, hashtext(current_schema() || chr(31) || k))",
        )
        .bind(CLAIM_KEY_LOCK)
        .bind(&keys)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let picked: Vec<(String, String)> = picked
        .into_iter()
        .filter(|(_, k, _)| k.as_ref().is_none_or(|k| held.contains(k)))
        .map(|(id, _, status)| (id, status))
        .collect();
    if picked.is_empty() {
        return Ok(out);
    }
    let ids: Vec<&str> = picked.iter().map(|(id, _)| id.as_str()).collect();
    let reclaimed: Vec<&str> =
        picked.iter().filter(|(_, st)| st == JobStatus::InProgress.as_str()).map(|(id, _)| id.as_str()).collect();
    let workers: Vec<&str> = claims.iter().take(picked.len()).map(|c| c.worker.as_str()).collect();
    let expires: Vec<i64> = claims.iter().take(picked.len()).map(|c| now + millis(c.lease)).collect();
    // The key is re-checked under a snapshot taken after the key locks. The CTEs share one snapshot, so closing
    // the lapsed attempts cannot touch the attempts this statement opens.
    let rows = sqlx::query(&format!(
        "WITH claimed AS (UPDATE jobs SET status = 'IN_PROGRESS', lease_owner = c.worker, \
             lease_expires_at = c.expires, attempts = attempts + 1, started_at = COALESCE(started_at, $1), \
             updated_at = $1 \
           FROM unnest($2::text[], $3::text[], $4::bigint[]) AS c(id, worker, expires) \
           WHERE jobs.id = c.id AND (jobs.key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o \
             WHERE o.key = jobs.key AND o.id <> jobs.id AND o.status = 'IN_PROGRESS' AND o.lease_expires_at >= $1)) \
           RETURNING {}), \
         lapsed AS (UPDATE job_attempts SET finished_at = $1, outcome = $6, error = $7 \
           WHERE finished_at IS NULL AND job_id = ANY($5::text[]) AND job_id IN (SELECT id FROM claimed)), \
         opened AS (INSERT INTO job_attempts (job_id, attempt, worker, started_at) \
           SELECT id, attempts, lease_owner, $1 FROM claimed) \
         SELECT * FROM claimed",
        JOB_COLS.split(", ").map(|c| format!("jobs.{}", c.trim())).collect::<Vec<_>>().join(", ")
    ))
    .bind(now)
    .bind(&ids)
    .bind(&workers)
    .bind(&expires)
    .bind(&reclaimed)
    .bind(AttemptEnd::LeaseExpired.as_str())
    .bind(LEASE_EXPIRED)
    .fetch_all(&mut *conn)
    .await?;
    let slot: std::collections::HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for row in &rows {
        let job = job_from_row(row)?;
        let i = *slot.get(job.id.as_str()).ok_or_else(|| StoreError::Corrupt("claimed an unpicked job".into()))?;
        out[i] = Some(job);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{batch_begin_notify, CHANNEL};

    #[test]
    fn the_batch_notification_goes_to_the_listened_channel_with_the_token() {
        let sql = batch_begin_notify("abc123");
        assert!(sql.contains(&format!("pg_notify('{CHANNEL}',")));
        assert!(sql.contains("chr(31) || 'abc123'"));
    }
}
