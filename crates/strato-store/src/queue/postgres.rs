//! The queue's hot path on PostgreSQL, shared by any number of processes. Every other queue operation is in
//! `ops.rs`, shared with SQLite.
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
//!   hashtext(schema, key))` and then re-checks the key in the `UPDATE` itself, whose snapshot is taken after the
//!   lock and so sees every earlier claim of that key committed. When the lock is taken (another process is claiming
//!   that key right now) or the re-check fails, the key is busy: the claim moves on to the next candidate. A partial
//!   unique index on `key WHERE status = 'IN_PROGRESS'` would be simpler but stricter than the contract: a lapsed
//!   job must not block its key, and `enqueue_claimed` may start a job beside a running one of the same key.
//!   Advisory locks are database-wide, so the hashed name includes the schema: deployments (or tests) in different
//!   schemas of one database never block each other's keys.
//! - **Enqueue locks** (`ops.rs`). An enqueue with an idempotency key, or coalescing on a key, first takes an
//!   advisory lock on that key, so "look, then insert" cannot race with another enqueue of the same key.
//! - **`NOTIFY`** inside each transaction that can make a job claimable (PostgreSQL delivers it on commit only), on a
//!   channel of the schema's own ([`ops::SCHEMA_CHANNEL`]) so deployments sharing a database in different schemas
//!   neither wake each other nor pay for each other's notifications.

use std::collections::{HashMap, HashSet};

use sqlx::PgConnection;
use strato_types::{AttemptEnd, JobRecord, JobStatus, NewJob};

use super::batch::{by_filter, distinct_keys, is_plain, BatchInput, BatchOutput, BatchWriter, Claim, Completion};
use super::ops::{self, job_cols, job_from_row, run_after_ms, LEASE_EXPIRED, SCHEMA_CHANNEL};
use super::{EnqueueOutcome, Enqueued};
use crate::db::{millis, now_ms, Conn};
use crate::{Result, StoreError};

/// First half of the two-key advisory locks a claim takes per job key ("ST" 1).
const CLAIM_KEY_LOCK: i32 = 0x5354_0001;

/// Opens a claim's transaction. The pick must walk `jobs_claim_order` in claim order, but PostgreSQL chooses
/// between that walk and "bitmap scan + sort" from its row estimates, which a queue defeats: a prepared statement's
/// generic plan made while the table was empty, or statistics gathered while nothing was queued, estimate one row,
/// pick the sort, and then sort the whole backlog on every claim (10 ms per claim with 20,000 jobs queued). Sorting
/// is never needed here, so it is disabled for this transaction only.
const CLAIM_BEGIN: &str = "BEGIN; SET LOCAL enable_sort = off";

/// Opens a batch's transaction (see [`CLAIM_BEGIN`]) and, when the batch enqueues, sends the wake-up in the
/// same round trip (PostgreSQL delivers it at commit, and only then). The payload is the sending store's token, so
/// its own listener can skip it: the batch writer has already woken this process's
/// workers, and a second wake-up would only send an idle worker to claim nothing.
fn batch_begin_notify(token: &str) -> String {
    format!(
        "BEGIN; SET LOCAL enable_sort = off; \
         SELECT pg_notify({SCHEMA_CHANNEL}, '{token}')"
    )
}

/// Writes the queue's hot path: one transaction per batch, in about six round trips whatever its size: begin
/// (with the notification), the completions, the plain enqueues, the claim's pick, the claim, commit.
pub(crate) struct PgBatchWriter {
    pool: sqlx::PgPool,
    signal: std::sync::Arc<super::JobSignal>,
    begin_notify: String,
}

impl PgBatchWriter {
    /// `token` identifies this store's notifications to its own listener (a plain word: it is inlined in SQL).
    pub(crate) fn new(pool: sqlx::PgPool, signal: std::sync::Arc<super::JobSignal>, token: &str) -> Self {
        debug_assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
        Self { pool, signal, begin_notify: batch_begin_notify(token) }
    }
}

#[async_trait::async_trait]
impl BatchWriter for PgBatchWriter {
    async fn apply(&self, batch: &BatchInput) -> Result<BatchOutput> {
        // Other processes' workers learn of new jobs (the notification) …
        let begin = if batch.enqueues.is_empty() { CLAIM_BEGIN.to_string() } else { self.begin_notify.clone() };
        let mut tx = self.pool.begin_with(begin).await?;
        let conn: &mut PgConnection = &mut tx;
        // Read the clock once a connection is held: waiting for one must not shorten the leases.
        let now = now_ms();
        let (completed, freed_key) = complete_many(conn, &batch.completions, now).await?;
        let mut enqueued = insert_plain(conn, &batch.enqueues, now).await?;
        for (slot, job) in enqueued.iter_mut().zip(&batch.enqueues) {
            if slot.is_none() {
                // The batch's own notification covers this one: the transaction commits it once.
                *slot = Some(ops::enqueue_in(&mut Conn::Pg(&mut *conn), job, None).await?);
            }
        }
        let enqueued: Vec<Enqueued> = enqueued.into_iter().flatten().collect();
        let claimed = claim_many(conn, &batch.claims, now).await?;
        // … and of keys freed for jobs waiting behind them.
        if freed_key && batch.enqueues.is_empty() {
            ops::notify_workers(&mut Conn::Pg(&mut *conn)).await?;
        }
        tx.commit().await?;
        Ok(BatchOutput { completed, enqueued, claimed })
    }

    fn signal(&self) -> &super::JobSignal {
        &self.signal
    }
}

/// Inserts the batch's plain jobs with one statement; the others are left `None` for `ops::enqueue_in`.
async fn insert_plain(conn: &mut PgConnection, jobs: &[NewJob], now: i64) -> Result<Vec<Option<Enqueued>>> {
    let mut out: Vec<Option<Enqueued>> = jobs.iter().map(|_| None).collect();
    let plain: Vec<(usize, &NewJob)> = jobs.iter().enumerate().filter(|(_, j)| is_plain(j)).collect();
    if plain.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = plain.iter().map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let rows = sqlx::query(concat!(
        "INSERT INTO jobs (id, kind, queue, status, payload, key, resource, priority, max_attempts, attempts, \
           run_after, created_at, updated_at, timeout_ms) \
         SELECT u.id, u.kind, u.queue, 'QUEUED', u.payload, u.key, u.resource, u.priority, u.max_attempts, 0, \
           u.run_after, $1, $1, u.timeout_ms \
         FROM unnest($2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::int[], $9::int[], \
           $10::bigint[], $11::bigint[]) \
           WITH ORDINALITY AS u(id, kind, queue, payload, key, resource, priority, max_attempts, run_after, \
             timeout_ms, n) ORDER BY u.n \
         RETURNING ",
        job_cols!()
    ))
    .bind(now)
    .bind(&ids)
    .bind(plain.iter().map(|(_, j)| j.kind.as_str()).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.queue.as_str()).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.payload.clone()).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.key.clone()).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.resource.as_ref().map(ToString::to_string)).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.priority).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| j.max_attempts.max(1)).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| run_after_ms(j, now)).collect::<Vec<_>>())
    .bind(plain.iter().map(|(_, j)| millis(j.timeout)).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let slot: HashMap<&str, usize> = ids.iter().zip(&plain).map(|(id, (i, _))| (id.as_str(), *i)).collect();
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
    let ids: HashSet<String> = done.into_iter().map(|(id, _)| id).collect();
    Ok((cs.iter().map(|c| ids.contains(&c.id)).collect(), freed_key))
}

/// The pick of one filter's claims. A lapsed job with no attempts left or a pending cancel is the reaper's, not a
/// new attempt's. The status list matches `jobs_claim_order`'s predicate, so the pick walks that index in claim
/// order and stops once it has enough rows instead of sorting every queued job (see `CLAIM_BEGIN`). The per-status
/// test is a CASE, not `(status = 'QUEUED' AND …) OR (status = 'IN_PROGRESS' AND …)`, which invites a BitmapOr
/// over the partial status indexes. The leading uncorrelated test becomes a one-time filter: when nothing in the
/// queue is due (two partial-index probes), the walk over jobs scheduled for later is not even started. It asks for
/// the queue's earliest `run_after` rather than "any row with `run_after <= $1`": a prepared statement's generic
/// plan estimates the latter to match a third of the table and scans it whole (1 ms per claim with 10,000 jobs
/// scheduled for next year), while the minimum always walks `jobs_queued_due` to its first entry. No spare
/// candidates: every row picked is locked (a WAL record and a dirty page each), so a job passed over for a repeated
/// key waits for the next batch.
const PICK: &str = "SELECT j.id, j.key, j.status FROM jobs j \
     WHERE (SELECT (SELECT MIN(run_after) FROM jobs WHERE status = 'QUEUED' AND queue = $3) <= $1 \
                OR EXISTS (SELECT 1 FROM jobs WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1)) \
       AND j.queue = $3 AND j.status IN ('QUEUED', 'IN_PROGRESS') \
       AND ($4::text[] IS NULL OR j.kind = ANY($4)) \
       AND CASE WHEN j.status = 'QUEUED' THEN j.run_after <= $1 \
                ELSE j.lease_expires_at < $1 AND j.attempts < j.max_attempts AND NOT j.cancel_requested \
           END \
       AND (j.key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.key = j.key AND o.id <> j.id \
            AND o.status = 'IN_PROGRESS' AND o.lease_expires_at >= $1)) \
     ORDER BY j.priority DESC, j.run_after, j.id LIMIT $2 FOR UPDATE OF j SKIP LOCKED";

/// Gives each claimer at most one runnable job: per filter, one locked pick (`SKIP LOCKED`) for all its claims, a
/// `pg_try_advisory_xact_lock` per key picked, then one statement that claims, closes lapsed attempts and opens
/// the new ones.
async fn claim_many(conn: &mut PgConnection, claims: &[Claim], now: i64) -> Result<Vec<Option<JobRecord>>> {
    let mut out: Vec<Option<JobRecord>> = claims.iter().map(|_| None).collect();
    for (filter, idx) in by_filter(claims) {
        let kinds: Option<Vec<&str>> = filter.kinds.as_ref().map(|k| k.iter().map(|k| k.as_str()).collect());
        let candidates: Vec<(String, Option<String>, String)> = sqlx::query_as(PICK)
            .bind(now)
            .bind(idx.len() as i64)
            .bind(filter.queue.as_str())
            .bind(kinds)
            .fetch_all(&mut *conn)
            .await?;
        let picked = distinct_keys(
            candidates.into_iter().map(|(id, key, status)| ((id, key.clone(), status), key)).collect(),
            idx.len(),
        );
        // A key another process is claiming right now stays with it.
        let keys: Vec<&str> = picked.iter().filter_map(|(_, k, _)| k.as_deref()).collect();
        let held: HashSet<String> = if keys.is_empty() {
            HashSet::new()
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
            continue;
        }
        let ids: Vec<&str> = picked.iter().map(|(id, _)| id.as_str()).collect();
        let reclaimed: Vec<&str> =
            picked.iter().filter(|(_, st)| st == JobStatus::InProgress.as_str()).map(|(id, _)| id.as_str()).collect();
        let mine: Vec<&Claim> = idx.iter().take(picked.len()).map(|&i| &claims[i]).collect();
        let workers: Vec<&str> = mine.iter().map(|c| c.worker.as_str()).collect();
        let expires: Vec<i64> = mine.iter().map(|c| now + millis(c.lease)).collect();
        // The key is re-checked under a snapshot taken after the key locks. The CTEs share one snapshot, so closing
        // the lapsed attempts cannot touch the attempts this statement opens.
        let rows = sqlx::query(claim_statement())
            .bind(now)
            .bind(&ids)
            .bind(&workers)
            .bind(&expires)
            .bind(&reclaimed)
            .bind(AttemptEnd::LeaseExpired.as_str())
            .bind(LEASE_EXPIRED)
            .fetch_all(&mut *conn)
            .await?;
        let slot: HashMap<&str, usize> = ids.iter().zip(&idx).map(|(id, i)| (*id, *i)).collect();
        for row in &rows {
            let job = job_from_row(row)?;
            let i = *slot.get(job.id.as_str()).ok_or_else(|| StoreError::Corrupt("claimed an unpicked job".into()))?;
            out[i] = Some(job);
        }
    }
    Ok(out)
}

/// The claim itself (the job columns qualified: `unnest`'s columns share their names).
fn claim_statement() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let cols = job_cols!().split(", ").map(|c| format!("jobs.{}", c.trim())).collect::<Vec<_>>().join(", ");
        format!(
            "WITH claimed AS (UPDATE jobs SET status = 'IN_PROGRESS', lease_owner = c.worker, \
                 lease_expires_at = c.expires, attempts = attempts + 1, started_at = COALESCE(started_at, $1), \
                 updated_at = $1 \
               FROM unnest($2::text[], $3::text[], $4::bigint[]) AS c(id, worker, expires) \
               WHERE jobs.id = c.id AND (jobs.key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o \
                 WHERE o.key = jobs.key AND o.id <> jobs.id AND o.status = 'IN_PROGRESS' \
                 AND o.lease_expires_at >= $1)) \
               RETURNING {cols}), \
             lapsed AS (UPDATE job_attempts SET finished_at = $1, outcome = $6, error = $7 \
               WHERE finished_at IS NULL AND job_id = ANY($5::text[]) AND job_id IN (SELECT id FROM claimed)), \
             opened AS (INSERT INTO job_attempts (job_id, attempt, worker, started_at) \
               SELECT id, attempts, lease_owner, $1 FROM claimed) \
             SELECT * FROM claimed"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::{batch_begin_notify, SCHEMA_CHANNEL};

    #[test]
    fn the_batch_notification_goes_to_the_listened_channel_with_the_token() {
        let sql = batch_begin_notify("abc123");
        assert!(sql.contains(&format!("pg_notify({SCHEMA_CHANNEL}, 'abc123')")));
    }
}
