//! The queue's hot path on SQLite: enqueues, claims and completions written by group commit on a rusqlite
//! connection of its own, on a thread of its own. A batch is one `BEGIN IMMEDIATE` transaction of prepared
//! statements run in place, so it costs one hand-off between threads (sqlx's SQLite driver hands every statement
//! to its connection thread and back, which dominated the cost of a job before). Every other queue operation is
//! in `ops.rs`, shared with PostgreSQL.

use std::time::Duration;

use strato_types::{AttemptEnd, JobRecord, JobStatus, NewJob};

use super::batch::{by_filter, distinct_keys, is_plain, BatchInput, BatchOutput, BatchWriter, Claim, Completion};
use super::ops::{job_cols, job_columns, job_from_row, run_after_ms, CLOSE_ATTEMPT, LEASE_EXPIRED};
use super::{EnqueueOutcome, Enqueued};
use crate::db::{millis, now_ms, to_sqlite, Positional};
use crate::{Result, StoreError};

/// Writes the queue's hot path for a SQLite store.
pub(crate) struct SqliteBatchWriter {
    conn: std::sync::Mutex<rusqlite::Connection>,
    signal: std::sync::Arc<super::JobSignal>,
}

impl SqliteBatchWriter {
    /// Opens the writer's connection with the same settings as the sqlx pools.
    pub(crate) fn open(path: &std::path::Path, signal: std::sync::Arc<super::JobSignal>) -> Result<Self> {
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

    fn signal(&self) -> &super::JobSignal {
        &self.signal
    }
}

/// Inserts a plain job (no idempotency key, no coalescing: those take `ops::enqueue_in`'s path).
fn insert_plain(tx: &rusqlite::Transaction<'_>, job: &NewJob, now: i64) -> Result<Enqueued> {
    if !is_plain(job) {
        return Err(StoreError::Corrupt("the batch writer only inserts plain jobs".into()));
    }
    let mut stmt = tx.prepare_cached(concat!(
        "INSERT INTO jobs (id, kind, queue, status, payload, key, resource, priority, max_attempts, attempts, \
           run_after, created_at, updated_at, timeout_ms) \
         VALUES (?1, ?2, ?3, 'QUEUED', ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10, ?10, ?11) RETURNING ",
        job_cols!()
    ))?;
    let params = rusqlite::params![
        uuid::Uuid::now_v7().to_string(),
        job.kind.as_str(),
        job.queue.as_str(),
        job.payload.to_string(),
        job.key,
        job.resource.as_ref().map(ToString::to_string),
        job.priority,
        job.max_attempts.max(1),
        run_after_ms(job, now),
        now,
        millis(job.timeout),
    ];
    let job = stmt.query_row(params, |row| Ok(job_from_row(&Positional { row, cols: job_columns() })))??;
    Ok(Enqueued { job, outcome: EnqueueOutcome::Created, replaced_payload: None })
}

/// Records the successes of a batch; each is applied only while its worker still holds the lease.
fn complete_many(tx: &rusqlite::Transaction<'_>, cs: &[Completion], now: i64) -> Result<Vec<bool>> {
    let mut done = tx.prepare_cached(
        "UPDATE jobs SET status = 'SUCCESS', progress = 100, result = ?1, error = NULL, lease_owner = NULL, \
           lease_expires_at = NULL, finished_at = ?2, updated_at = ?2 \
         WHERE id = ?3 AND lease_owner = ?4 AND status = 'IN_PROGRESS'",
    )?;
    let mut close = tx.prepare_cached(&to_sqlite(CLOSE_ATTEMPT))?;
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

/// Whether anything in the queue may be claimable now: a due queued job or a lapsed lease. Both are probes of a
/// partial index (`jobs_queued_due`, `jobs_lease_expiry`), where the ordered pick would walk every job scheduled
/// for later before giving up.
const ANY_DUE: &str = "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'QUEUED' AND queue = ?1 AND run_after <= ?2) \
     OR EXISTS (SELECT 1 FROM jobs WHERE status = 'IN_PROGRESS' AND lease_expires_at < ?2)";

/// The ordered pick. A lapsed job with no attempts left or a pending cancel is the reaper's, not a new attempt's.
/// It walks `jobs_claim_order` (already in claim order) and stops once it has enough rows; left to itself SQLite
/// would collect and sort every queued job. Extra candidates cover jobs passed over for a repeated key. `{kinds}`
/// is empty or the kind filter.
macro_rules! pick {
    ($kinds:literal) => {
        concat!(
            "SELECT j.id, j.key, j.status FROM jobs j INDEXED BY jobs_claim_order \
             WHERE j.queue = ?1 AND j.status IN ('QUEUED', 'IN_PROGRESS') ",
            $kinds,
            " AND ((j.status = 'QUEUED' AND j.run_after <= ?2) \
                  OR (j.status = 'IN_PROGRESS' AND j.lease_expires_at < ?2 \
                      AND j.attempts < j.max_attempts AND j.cancel_requested = 0)) \
             AND (j.key IS NULL OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.key = j.key AND o.id <> j.id \
                  AND o.status = 'IN_PROGRESS' AND o.lease_expires_at >= ?2)) \
             ORDER BY j.priority DESC, j.run_after, j.id LIMIT ?3"
        )
    };
}

/// Gives each claimer at most one runnable job: per filter, one pick over `jobs_claim_order` for all its claims,
/// then an update and an attempt-log row per job.
fn claim_many(tx: &rusqlite::Transaction<'_>, claims: &[Claim], now: i64) -> Result<Vec<Option<JobRecord>>> {
    let mut out: Vec<Option<JobRecord>> = claims.iter().map(|_| None).collect();
    if claims.is_empty() {
        return Ok(out);
    }
    let mut take = tx.prepare_cached(concat!(
        "UPDATE jobs SET status = 'IN_PROGRESS', lease_owner = ?1, lease_expires_at = ?2, attempts = attempts + 1, \
           started_at = COALESCE(started_at, ?3), updated_at = ?3 WHERE id = ?4 RETURNING ",
        job_cols!()
    ))?;
    let mut close = tx.prepare_cached(&to_sqlite(CLOSE_ATTEMPT))?;
    let mut open =
        tx.prepare_cached("INSERT INTO job_attempts (job_id, attempt, worker, started_at) VALUES (?1, ?2, ?3, ?4)")?;
    let mut any_due = tx.prepare_cached(ANY_DUE)?;
    for (filter, idx) in by_filter(claims) {
        if !any_due.query_row(rusqlite::params![filter.queue.as_str(), now], |r| r.get::<_, bool>(0))? {
            continue;
        }
        let limit = (idx.len() * 2 + 8) as i64;
        let row = |r: &rusqlite::Row<'_>| {
            Ok(((r.get::<_, String>(0)?, r.get::<_, String>(2)?), r.get::<_, Option<String>>(1)?))
        };
        let candidates = match filter.kinds_json() {
            None => {
                let mut pick = tx.prepare_cached(pick!(""))?;
                let found = pick.query_map(rusqlite::params![filter.queue.as_str(), now, limit], row)?;
                found.collect::<rusqlite::Result<Vec<_>>>()?
            }
            Some(kinds) => {
                let mut pick = tx.prepare_cached(pick!("AND j.kind IN (SELECT value FROM json_each(?4))"))?;
                let found = pick.query_map(rusqlite::params![filter.queue.as_str(), now, limit, kinds], row)?;
                found.collect::<rusqlite::Result<Vec<_>>>()?
            }
        };
        for ((id, status), i) in distinct_keys(candidates, idx.len()).into_iter().zip(idx) {
            let claim = &claims[i];
            let expires = now + millis(claim.lease);
            let job = take.query_row(rusqlite::params![claim.worker, expires, now, id], |row| {
                Ok(job_from_row(&Positional { row, cols: job_columns() }))
            })??;
            // A lapsed attempt still open in the log ends here.
            if status == JobStatus::InProgress.as_str() {
                close.execute(rusqlite::params![now, AttemptEnd::LeaseExpired.as_str(), LEASE_EXPIRED, id])?;
            }
            open.execute(rusqlite::params![id, job.attempts, claim.worker, now])?;
            out[i] = Some(job);
        }
    }
    Ok(out)
}
