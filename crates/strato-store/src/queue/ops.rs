//! The queue's statements, written once for both backends. Each operation takes the connection it runs on: a
//! pooled one, or the caller's transaction. Where PostgreSQL needs more than SQLite (advisory locks so "look, then
//! insert" cannot race across processes; `NOTIFY` so other processes' workers wake up), the operation does that on
//! PostgreSQL connections only: SQLite has one writer at a time, so its write transactions are already serial.

use std::time::Duration;

use strato_types::{AttemptEnd, JobAttempt, JobKind, JobRecord, JobStatus, NewJob, QueueName, ResourceRef, Timestamp};

use super::{CancelOutcome, ClaimFilter, EnqueueOutcome, Enqueued, FailOutcome, Heartbeat, JobFilter, Reaped};
use crate::db::{
    exec, fetch_all, fetch_optional, json, millis, now_ms, scalar, scalar_all, scalar_optional, sql, sql_for_update,
    Columns, Conn,
};
use crate::{Result, StoreError};

/// Every column of a job, in one order for every statement that returns jobs.
macro_rules! job_cols {
    () => {
        "id, kind, queue, status, payload, key, resource, priority, progress, error, result, attempts, max_attempts, \
         lease_owner, lease_expires_at, run_after, created_at, updated_at, started_at, finished_at, timeout_ms, \
         idempotency_key, cancel_requested, dead_lettered_at"
    };
}
pub(crate) use job_cols;

/// `job_cols!()` as a list, in its order.
pub(crate) fn job_columns() -> &'static [&'static str] {
    static COLS: std::sync::LazyLock<Vec<&'static str>> =
        std::sync::LazyLock::new(|| job_cols!().split(',').map(str::trim).collect());
    &COLS
}

/// Why a lapsed attempt ended, for the attempt log.
pub(crate) const LEASE_EXPIRED: &str = "lease expired: the worker stopped renewing it (crashed, killed or cut off)";

/// Ends an open attempt in the log: `(finished_at, outcome, error, job_id)`.
pub(crate) const CLOSE_ATTEMPT: &str =
    "UPDATE job_attempts SET finished_at = $1, outcome = $2, error = $3 WHERE job_id = $4 AND finished_at IS NULL";

/// The `LISTEN/NOTIFY` channel an operator may `NOTIFY` by hand to wake every process's idle workers.
pub(crate) const CHANNEL: &str = "strato_jobs";

/// SQL for the channel of this schema's wake-ups (`strato_jobs.` and the schema's MD5, within PostgreSQL's 63-byte
/// limit however long the name): deployments sharing a database in different schemas never hear each other's
/// traffic, which every listening backend would otherwise be signalled for and read.
pub(crate) const SCHEMA_CHANNEL: &str = "'strato_jobs.' || md5(COALESCE(current_schema(), ''))";

/// First half of the advisory locks an enqueue takes per idempotency key or coalescing key ("ST" 2). Two-key
/// advisory locks never collide with one-key ones such as sqlx's migration lock.
const ENQUEUE_LOCK: i32 = 0x5354_0002;

/// A job row, from any backend.
pub(crate) fn job_from_row(r: &impl Columns) -> Result<JobRecord> {
    let status = r.text("status")?;
    Ok(JobRecord {
        id: r.text("id")?,
        kind: JobKind::from_stored(r.text("kind")?),
        queue: QueueName::from_stored(r.text("queue")?),
        status: JobStatus::parse(&status).ok_or_else(|| StoreError::Corrupt(format!("job status {status:?}")))?,
        payload: r.json("payload")?,
        key: r.opt_text("key")?,
        resource: r.opt_text("resource")?.as_deref().and_then(ResourceRef::parse_stored),
        priority: r.i32("priority")?,
        progress: r.i32("progress")?,
        error: r.opt_text("error")?,
        result: r.opt_json("result")?,
        attempts: r.i32("attempts")?,
        max_attempts: r.i32("max_attempts")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_expires_at: r.opt_ts("lease_expires_at")?,
        run_after: r.ts("run_after")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        started_at: r.opt_ts("started_at")?,
        finished_at: r.opt_ts("finished_at")?,
        timeout_ms: r.i64("timeout_ms")?,
        idempotency_key: r.opt_text("idempotency_key")?,
        cancel_requested: r.bool("cancel_requested")?,
        dead_lettered_at: r.opt_ts("dead_lettered_at")?,
    })
}

fn attempt_from_row(r: &impl Columns) -> Result<JobAttempt> {
    let outcome = r.text("outcome")?;
    Ok(JobAttempt {
        attempt: r.i32("attempt")?,
        worker: r.text("worker")?,
        started_at: r.ts("started_at")?,
        finished_at: r.opt_ts("finished_at")?,
        outcome: AttemptEnd::parse(&outcome).ok_or_else(|| StoreError::Corrupt(format!("attempt {outcome:?}")))?,
        error: r.opt_text("error")?,
    })
}

/// A list of strings as one bound value (a JSON array), which both dialects unpack in SQL.
pub(crate) fn id_list<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    serde_json::Value::from(ids.into_iter().collect::<Vec<_>>()).to_string()
}

/// Wakes idle workers of every process on this schema once the caller's transaction commits (PostgreSQL; SQLite's
/// store signals its own workers after the commit, and no other process can hear it).
pub(crate) async fn notify_workers(c: &mut Conn<'_>) -> Result<()> {
    if let Conn::Pg(c) = c {
        sqlx::query(&format!("SELECT pg_notify({SCHEMA_CHANNEL}, '')")).execute(&mut **c).await?;
    }
    Ok(())
}

/// Holds `text`'s enqueue lock until the transaction ends (PostgreSQL; SQLite's writer is already alone).
async fn enqueue_lock(c: &mut Conn<'_>, text: &str) -> Result<()> {
    if let Conn::Pg(c) = c {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema() || chr(31) || $2))")
            .bind(ENQUEUE_LOCK)
            .bind(text)
            .execute(&mut **c)
            .await?;
    }
    Ok(())
}

/// One job; with `for_update`, its row stays locked until the transaction ends (PostgreSQL).
pub(crate) async fn get(c: &mut Conn<'_>, id: &str, for_update: bool) -> Result<Option<JobRecord>> {
    Ok(if for_update {
        fetch_optional!(
            c,
            job_from_row,
            sql_for_update!(concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1")),
            id
        )
    } else {
        fetch_optional!(c, job_from_row, sql!(concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1")), id)
    })
}

async fn open_attempt(c: &mut Conn<'_>, job: &JobRecord, worker: &str, now: i64) -> Result<()> {
    exec!(
        c,
        sql!("INSERT INTO job_attempts (job_id, attempt, worker, started_at) VALUES ($1, $2, $3, $4)"),
        &job.id,
        job.attempts,
        worker,
        now
    );
    Ok(())
}

async fn close_attempt(c: &mut Conn<'_>, job_id: &str, end: AttemptEnd, error: Option<&str>, now: i64) -> Result<()> {
    exec!(c, sql!(CLOSE_ATTEMPT), now, end.as_str(), error, job_id);
    Ok(())
}

/// The job an earlier enqueue with the same idempotency key created, if any. On PostgreSQL the key's enqueue lock
/// is taken first, so a concurrent enqueue with the same key either is visible here or waits for this transaction.
pub(crate) async fn idempotent_hit(c: &mut Conn<'_>, job: &NewJob) -> Result<Option<Enqueued>> {
    let Some(k) = &job.idempotency_key else { return Ok(None) };
    enqueue_lock(c, &format!("idempotency:{k}")).await?;
    let found = fetch_optional!(
        c,
        job_from_row,
        sql!(concat!("SELECT ", job_cols!(), " FROM jobs WHERE idempotency_key = $1")),
        k
    );
    Ok(found.map(|job| Enqueued { job, outcome: EnqueueOutcome::Idempotent, replaced_payload: None }))
}

/// Enqueue inside the caller's transaction: idempotency key, then coalescing, then a new row; already claimed by
/// a worker when `claimed` names one. Sends the notification (PostgreSQL) when a job became claimable.
pub(crate) async fn enqueue_in(c: &mut Conn<'_>, job: &NewJob, claimed: Option<(&str, Duration)>) -> Result<Enqueued> {
    if let Some(e) = idempotent_hit(c, job).await? {
        return Ok(e);
    }
    let now = now_ms();
    if let (true, Some(key), None) = (job.coalesce, &job.key, claimed) {
        enqueue_lock(c, &format!("coalesce:{}:{key}", job.kind)).await?;
        let queued = fetch_optional!(
            c,
            id_and_payload,
            sql_for_update!(
                "SELECT id, payload FROM jobs WHERE key = $1 AND kind = $2 AND status = 'QUEUED' ORDER BY created_at \
                 LIMIT 1"
            ),
            key,
            job.kind.as_str()
        );
        if let Some((id, old)) = queued {
            // The status test matters on PostgreSQL: a claim that took the row meanwhile leaves nothing to update,
            // and the request queues a new job instead.
            let row = fetch_optional!(
                c,
                job_from_row,
                sql!(concat!(
                    "UPDATE jobs SET payload = $1, priority = CASE WHEN priority > $2 THEN priority ELSE $2 END, \
                     updated_at = $3 WHERE id = $4 AND status = 'QUEUED' RETURNING ",
                    job_cols!()
                )),
                json(&job.payload),
                job.priority,
                now,
                &id
            );
            if let Some(job) = row {
                notify_workers(c).await?;
                return Ok(Enqueued { job, outcome: EnqueueOutcome::Coalesced, replaced_payload: Some(old) });
            }
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let (status, owner, expires, attempts, started) = match claimed {
        Some((w, lease)) => (JobStatus::InProgress, Some(w), Some(now + millis(lease)), 1, Some(now)),
        None => (JobStatus::Queued, None, None, 0, None),
    };
    let rec = fetch_optional!(
        c,
        job_from_row,
        sql!(concat!(
            "INSERT INTO jobs (id, kind, queue, status, payload, key, resource, priority, max_attempts, lease_owner, \
             lease_expires_at, attempts, started_at, run_after, created_at, updated_at, timeout_ms, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17) RETURNING ",
            job_cols!()
        )),
        &id,
        job.kind.as_str(),
        job.queue.as_str(),
        status.as_str(),
        json(&job.payload),
        &job.key,
        job.resource.as_ref().map(ToString::to_string),
        job.priority,
        job.max_attempts.max(1),
        owner,
        expires,
        attempts,
        started,
        run_after_ms(job, now),
        now,
        millis(job.timeout),
        &job.idempotency_key
    )
    .ok_or_else(|| StoreError::Corrupt("an insert returned no row".into()))?;
    match claimed {
        Some((w, _)) => open_attempt(c, &rec, w, now).await?,
        None => notify_workers(c).await?,
    }
    Ok(Enqueued { job: rec, outcome: EnqueueOutcome::Created, replaced_payload: None })
}

fn id_and_payload(r: &impl Columns) -> Result<(String, serde_json::Value)> {
    Ok((r.text("id")?, r.json("payload")?))
}

/// When a new job becomes claimable: its `run_after`, never earlier than now (a time in the past would put it ahead
/// of jobs that were due before it).
pub(crate) fn run_after_ms(job: &NewJob, now: i64) -> i64 {
    job.run_after.map_or(now, |t| t.timestamp_millis().max(now))
}

/// Whether `worker` holds job `id`'s lease; on PostgreSQL the row stays locked until the transaction ends, so a
/// claim taking the job over (its lease lapsed) skips it and complete/fail wait.
pub(crate) async fn holds_lease(c: &mut Conn<'_>, id: &str, worker: &str) -> Result<bool> {
    let held = scalar_optional!(
        c,
        i32,
        sql_for_update!("SELECT 1 FROM jobs WHERE id = $1 AND lease_owner = $2 AND status = 'IN_PROGRESS'"),
        id,
        worker
    );
    Ok(held.is_some())
}

pub(crate) async fn attempts(c: &mut Conn<'_>, id: &str) -> Result<Vec<JobAttempt>> {
    Ok(fetch_all!(
        c,
        attempt_from_row,
        sql!(
            "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts WHERE job_id = $1 \
             ORDER BY id"
        ),
        id
    ))
}

pub(crate) async fn list(c: &mut Conn<'_>, f: &JobFilter) -> Result<Vec<JobRecord>> {
    Ok(fetch_all!(
        c,
        job_from_row,
        sql!(concat!(
            "SELECT ",
            job_cols!(),
            " FROM jobs WHERE (CAST($1 AS TEXT) IS NULL OR status = $1) AND (CAST($2 AS TEXT) IS NULL OR kind = $2) \
             AND (CAST($3 AS TEXT) IS NULL OR key = $3) AND (CAST($4 AS TEXT) IS NULL OR queue = $4) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        )),
        f.status.map(JobStatus::as_str),
        f.kind.as_ref().map(JobKind::as_str),
        &f.key,
        f.queue.as_ref().map(QueueName::as_str),
        f.limit.unwrap_or(1000)
    ))
}

pub(crate) async fn heartbeat(
    c: &mut Conn<'_>,
    id: &str,
    worker: &str,
    lease: Duration,
    progress: Option<i32>,
) -> Result<Heartbeat> {
    let now = now_ms();
    let cancel = scalar_optional!(
        c,
        bool,
        sql!(
            "UPDATE jobs SET lease_expires_at = $1, progress = COALESCE($2, progress), updated_at = $3 \
             WHERE id = $4 AND lease_owner = $5 AND status = 'IN_PROGRESS' RETURNING cancel_requested"
        ),
        now + millis(lease),
        progress.map(|p| p.clamp(0, 100)),
        now,
        id,
        worker
    );
    Ok(match cancel {
        Some(cancel_requested) => Heartbeat::Held { cancel_requested },
        None => Heartbeat::Lost,
    })
}

pub(crate) async fn fail(
    c: &mut Conn<'_>,
    id: &str,
    worker: &str,
    error: &str,
    retry_in: Option<Duration>,
    timed_out: bool,
) -> Result<FailOutcome> {
    let now = now_ms();
    let retry_at = retry_in.map(|d| now + millis(d));
    let row = fetch_optional!(
        c,
        job_from_row,
        sql!(concat!(
            "UPDATE jobs SET \
               status = CASE WHEN cancel_requested THEN 'CANCELLED' \
                        WHEN CAST($1 AS BIGINT) IS NOT NULL AND attempts < max_attempts THEN 'QUEUED' \
                        ELSE 'FAILURE' END, \
               run_after = COALESCE(CAST($1 AS BIGINT), run_after), \
               finished_at = CASE WHEN NOT cancel_requested AND CAST($1 AS BIGINT) IS NOT NULL \
                             AND attempts < max_attempts THEN NULL ELSE CAST($2 AS BIGINT) END, \
               dead_lettered_at = CASE WHEN NOT cancel_requested AND CAST($1 AS BIGINT) IS NOT NULL \
                                  AND attempts >= max_attempts THEN CAST($2 AS BIGINT) END, \
               error = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $2 \
             WHERE id = $4 AND lease_owner = $5 AND status = 'IN_PROGRESS' RETURNING ",
            job_cols!()
        )),
        retry_at,
        now,
        error,
        id,
        worker
    );
    let Some(job) = row else { return Ok(FailOutcome::LeaseLost) };
    let end = if timed_out { AttemptEnd::TimedOut } else { AttemptEnd::Failed };
    close_attempt(c, id, end, Some(error), now).await?;
    // Queued again (due after the backoff: woken workers compute the wait), or its key is free.
    if job.status == JobStatus::Queued || job.key.is_some() {
        notify_workers(c).await?;
    }
    Ok(match (job.status, job.dead_lettered_at) {
        (JobStatus::Queued, _) => FailOutcome::Retrying,
        (JobStatus::Cancelled, _) => FailOutcome::Cancelled,
        (_, Some(_)) => FailOutcome::DeadLettered(Box::new(job)),
        _ => FailOutcome::Failed,
    })
}

/// Hands a job back. Its `run_after` stays as it was (it was due, or it could not have been claimed), so it keeps
/// its place ahead of jobs that became due after it.
pub(crate) async fn release(c: &mut Conn<'_>, id: &str, worker: &str) -> Result<bool> {
    let now = now_ms();
    let n = exec!(
        c,
        sql!(
            "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'CANCELLED' ELSE 'QUEUED' END, \
               finished_at = CASE WHEN cancel_requested THEN CAST($1 AS BIGINT) END, \
               attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, lease_owner = NULL, \
               lease_expires_at = NULL, updated_at = $1 \
             WHERE id = $2 AND lease_owner = $3 AND status = 'IN_PROGRESS'"
        ),
        now,
        id,
        worker
    );
    if n == 1 {
        close_attempt(c, id, AttemptEnd::Released, Some("handed back: the worker shut down"), now).await?;
        notify_workers(c).await?;
    }
    Ok(n == 1)
}

pub(crate) async fn withdraw(c: &mut Conn<'_>, id: &str) -> Result<bool> {
    // A queued job has no attempts: its row is all there is.
    Ok(exec!(c, sql!("DELETE FROM jobs WHERE id = $1 AND status = 'QUEUED'"), id) == 1)
}

pub(crate) async fn cancel(c: &mut Conn<'_>, id: &str) -> Result<CancelOutcome> {
    let now = now_ms();
    let Some(job) = get(c, id, true).await? else { return Ok(CancelOutcome::NotFound) };
    match job.status {
        JobStatus::Queued => {
            exec!(
                c,
                sql!(
                    "UPDATE jobs SET status = 'CANCELLED', finished_at = $1, updated_at = $1, \
                     error = 'cancelled before it ran' WHERE id = $2"
                ),
                now,
                id
            );
        }
        JobStatus::InProgress => {
            exec!(c, sql!("UPDATE jobs SET cancel_requested = TRUE, updated_at = $1 WHERE id = $2"), now, id);
        }
        _ => return Ok(CancelOutcome::AlreadyFinished(Box::new(job))),
    }
    let after = Box::new(get(c, id, false).await?.ok_or_else(|| StoreError::Corrupt("job vanished".into()))?);
    Ok(if job.status == JobStatus::Queued { CancelOutcome::Cancelled(after) } else { CancelOutcome::Requested(after) })
}

pub(crate) async fn finish_cancelled(c: &mut Conn<'_>, id: &str, worker: &str) -> Result<bool> {
    let now = now_ms();
    let key = scalar_optional!(
        c,
        Option<String>,
        sql!(
            "UPDATE jobs SET status = 'CANCELLED', error = 'cancelled while running', lease_owner = NULL, \
               lease_expires_at = NULL, finished_at = $1, updated_at = $1 \
             WHERE id = $2 AND lease_owner = $3 AND status = 'IN_PROGRESS' RETURNING key"
        ),
        now,
        id,
        worker
    );
    let Some(key) = key else { return Ok(false) };
    close_attempt(c, id, AttemptEnd::Cancelled, None, now).await?;
    if key.is_some() {
        notify_workers(c).await?;
    }
    Ok(true)
}

/// Jobs first, attempts after, by the ids the job updates returned: a heartbeat that renewed a lease between two
/// statements (possible on PostgreSQL) can never leave its attempt closed while the job runs on.
pub(crate) async fn reap(c: &mut Conn<'_>) -> Result<Reaped> {
    let now = now_ms();
    let cancelled = scalar_all!(
        c,
        String,
        sql!(
            "UPDATE jobs SET status = 'CANCELLED', error = 'cancelled; its worker stopped', lease_owner = NULL, \
               lease_expires_at = NULL, finished_at = $1, updated_at = $1 \
             WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1 AND cancel_requested RETURNING id"
        ),
        now
    );
    let dead = fetch_all!(
        c,
        job_from_row,
        sql!(concat!(
            "UPDATE jobs SET status = 'FAILURE', dead_lettered_at = $1, finished_at = $1, updated_at = $1, \
               error = $2, lease_owner = NULL, lease_expires_at = NULL \
             WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1 AND attempts >= max_attempts RETURNING ",
            job_cols!()
        )),
        now,
        format!("last attempt lost: {LEASE_EXPIRED}")
    );
    if !cancelled.is_empty() || !dead.is_empty() {
        let ids = id_list(cancelled.iter().map(String::as_str).chain(dead.iter().map(|j| j.id.as_str())));
        exec!(
            c,
            sql!(
                sqlite: "UPDATE job_attempts SET finished_at = $1, outcome = 'lease_expired', error = $2 \
                         WHERE finished_at IS NULL AND job_id IN (SELECT value FROM json_each($3))",
                postgres: "UPDATE job_attempts SET finished_at = $1, outcome = 'lease_expired', error = $2 \
                           WHERE finished_at IS NULL AND job_id IN (SELECT jsonb_array_elements_text($3::jsonb))",
            ),
            now,
            LEASE_EXPIRED,
            ids
        );
    }
    Ok(Reaped { dead_lettered: dead, cancelled: cancelled.len() })
}

pub(crate) async fn dead_letters(c: &mut Conn<'_>, limit: i64) -> Result<Vec<JobRecord>> {
    Ok(fetch_all!(
        c,
        job_from_row,
        sql!(concat!(
            "SELECT ",
            job_cols!(),
            " FROM jobs WHERE dead_lettered_at IS NOT NULL ORDER BY dead_lettered_at DESC, id DESC LIMIT $1"
        )),
        limit
    ))
}

pub(crate) async fn replay_dead_letter(c: &mut Conn<'_>, id: &str) -> Result<Option<JobRecord>> {
    let now = now_ms();
    let job = fetch_optional!(
        c,
        job_from_row,
        sql!(concat!(
            "UPDATE jobs SET status = 'QUEUED', attempts = 0, dead_lettered_at = NULL, finished_at = NULL, \
               cancel_requested = FALSE, progress = 0, result = NULL, run_after = $1, updated_at = $1 \
             WHERE id = $2 AND dead_lettered_at IS NOT NULL RETURNING ",
            job_cols!()
        )),
        now,
        id
    );
    if job.is_some() {
        notify_workers(c).await?;
    }
    Ok(job)
}

pub(crate) async fn delete_dead_letter(c: &mut Conn<'_>, id: &str) -> Result<bool> {
    Ok(exec!(c, sql!("DELETE FROM jobs WHERE id = $1 AND dead_lettered_at IS NOT NULL"), id) == 1)
}

pub(crate) async fn delete_finished_before(c: &mut Conn<'_>, cutoff: Timestamp) -> Result<u64> {
    Ok(exec!(
        c,
        sql!(
            "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 \
             AND status IN ('SUCCESS', 'FAILURE', 'CANCELLED')"
        ),
        cutoff.timestamp_millis()
    ))
}

/// The earliest `run_after` of the filter's queued jobs, and the earliest lease expiry of any running job (a lapsed
/// lease makes its job claimable again; running jobs are few, so every queue's workers may look at all of them).
/// Each walks a partial index to its first entry (`jobs_queued_due`, `jobs_lease_expiry`), so the answer costs the
/// same with ten thousand jobs scheduled for next year as with none. The lease half names no queue on purpose:
/// with one, a planner without statistics (a fresh table) walked the queue's every job through `jobs_claim_order`
/// instead (4 ms with 10,000 waiting, on every idle worker's every poll).
pub(crate) async fn next_due_in(c: &mut Conn<'_>, f: &ClaimFilter) -> Result<Option<Duration>> {
    let next = scalar!(
        c,
        Option<i64>,
        sql!(
            sqlite: "SELECT MIN(t) FROM (\
                       SELECT MIN(run_after) AS t FROM jobs WHERE status = 'QUEUED' AND queue = $1 \
                         AND ($2 IS NULL OR kind IN (SELECT value FROM json_each($2))) \
                       UNION ALL SELECT MIN(lease_expires_at) FROM jobs WHERE status = 'IN_PROGRESS')",
            postgres: "SELECT MIN(t) FROM (\
                         SELECT MIN(run_after) AS t FROM jobs WHERE status = 'QUEUED' AND queue = $1 \
                           AND ($2::jsonb IS NULL OR kind IN (SELECT jsonb_array_elements_text($2::jsonb))) \
                         UNION ALL SELECT MIN(lease_expires_at) FROM jobs WHERE status = 'IN_PROGRESS') due",
        ),
        f.queue.as_str(),
        f.kinds_json()
    );
    Ok(next.map(|t| Duration::from_millis((t - now_ms()).max(0) as u64)))
}

pub(crate) async fn counts(c: &mut Conn<'_>) -> Result<Vec<(String, String, i64)>> {
    Ok(fetch_all!(
        c,
        kind_status_count,
        sql!(
            "SELECT kind, CASE WHEN dead_lettered_at IS NOT NULL THEN 'DEAD_LETTER' ELSE status END AS s, \
             COUNT(*) AS n FROM jobs GROUP BY kind, CASE WHEN dead_lettered_at IS NOT NULL THEN 'DEAD_LETTER' \
             ELSE status END ORDER BY kind, s"
        )
    ))
}

fn kind_status_count(r: &impl Columns) -> Result<(String, String, i64)> {
    Ok((r.text("kind")?, r.text("s")?, r.i64("n")?))
}
