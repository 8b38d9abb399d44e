//! The durable job queue: enqueue (alone, or inside the caller's transaction), claims with leases, heartbeats,
//! outcomes, retries, cancellation, the dead-letter queue, expiry, and the wake-up signal for idle workers.
//!
//! The statements both backends share are in `ops.rs`; what each does on its own is beside it: `sqlite.rs` (the
//! group-commit writer on a rusqlite connection of its own) and `postgres.rs` (row locks, advisory locks per key,
//! `NOTIFY`, the group-commit writer), with `listener.rs` (`LISTEN`) and `batch.rs` (the group commit both writers
//! plug into).
//!
//! Jobs wait in named queues; a claim names its queue and, optionally, the kinds its process runs, so jobs of a
//! kind no worker here knows stay queued for a process that does. Within a queue the claim order is priority, then
//! the time a job became due (`run_after`: its enqueue time, or later when scheduled or backing off), then id.

pub(crate) mod batch;
mod listener;
pub(crate) mod ops;
pub(crate) mod postgres;
mod signal;
pub(crate) mod sqlite;
pub use signal::JobSignal;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use strato_types::{JobAttempt, JobKind, JobRecord, JobStatus, NewJob, QueueName, Timestamp};

pub(crate) use listener::ListenerTask;

use crate::db::in_tx;
use crate::{Result, Store};

/// How an enqueue was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new job was queued.
    Created,
    /// A job with the same idempotency key exists; it is returned unchanged.
    Idempotent,
    /// A job of the same kind and key was still queued; it now carries the new payload and is returned.
    Coalesced,
}

/// A job returned by an enqueue, and how it came about.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The job.
    pub job: JobRecord,
    /// Whether it is new.
    pub outcome: EnqueueOutcome,
    /// On [`EnqueueOutcome::Coalesced`], the payload the new one replaced (so the caller can release what it
    /// referenced, e.g. an uploaded dataset blob).
    pub replaced_payload: Option<serde_json::Value>,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The worker still holds the job; `cancel_requested` tells the worker to stop.
    Held {
        /// Someone asked to cancel the job.
        cancel_requested: bool,
    },
    /// The lease is gone (lapsed and taken over, or the job was finished elsewhere).
    Lost,
}

/// What recording a failed attempt did.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOutcome {
    /// Queued again; runs after the backoff.
    Retrying,
    /// Failed for good without a retry (a permanent error).
    Failed,
    /// Attempts exhausted: the job is in the dead-letter queue.
    DeadLettered(Box<JobRecord>),
    /// A cancel was requested while the attempt ran: the job is `CANCELLED` instead of retried.
    Cancelled,
    /// The worker no longer held the job; nothing changed.
    LeaseLost,
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The job was queued and is now `CANCELLED`.
    Cancelled(Box<JobRecord>),
    /// The job is running; its worker was asked to stop and the job becomes `CANCELLED` when it does.
    Requested(Box<JobRecord>),
    /// The job had already finished; nothing changed.
    AlreadyFinished(Box<JobRecord>),
    /// No such job.
    NotFound,
}

/// What the periodic lease reaper did.
#[derive(Debug, Default, Clone)]
pub struct Reaped {
    /// Jobs whose last attempt's lease lapsed with no attempts left: now in the dead-letter queue.
    pub dead_lettered: Vec<JobRecord>,
    /// Jobs whose lease lapsed after a cancel request: now `CANCELLED`.
    pub cancelled: usize,
}

/// Filter for job listings.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this kind.
    pub kind: Option<JobKind>,
    /// Only this queue.
    pub queue: Option<QueueName>,
    /// Only this key.
    pub key: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

/// Which jobs a worker may claim: one queue, and the kinds its process runs (`None`: any kind).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ClaimFilter {
    /// The queue.
    pub queue: QueueName,
    /// The kinds, sorted; `None` takes any kind.
    pub kinds: Option<Arc<[JobKind]>>,
}

impl ClaimFilter {
    /// Jobs of `kinds` in `queue`.
    pub fn new(queue: QueueName, kinds: impl IntoIterator<Item = JobKind>) -> Self {
        let mut kinds: Vec<JobKind> = kinds.into_iter().collect();
        kinds.sort();
        kinds.dedup();
        Self { queue, kinds: Some(kinds.into()) }
    }

    /// Jobs of any kind in `queue`.
    pub fn any_kind(queue: QueueName) -> Self {
        Self { queue, kinds: None }
    }

    /// The kinds as a JSON array (how both dialects take a list), or `None` for any kind.
    pub(crate) fn kinds_json(&self) -> Option<String> {
        self.kinds
            .as_ref()
            .map(|k| serde_json::Value::from(k.iter().map(|k| k.as_str()).collect::<Vec<_>>()).to_string())
    }
}

/// The queue's operations on the store's pools (a write transaction of their own where they need one).
pub struct Queue<'s> {
    pub(crate) store: &'s Store,
}

impl Queue<'_> {
    /// Enqueues a job: returns the existing job when its idempotency key was seen, or the queued job of the same
    /// kind and key when `coalesce` is set (replacing its payload); else a new `QUEUED` job. Wakes workers.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        if batch::is_plain(&job) {
            return self.store.inner.batcher.enqueue(job).await;
        }
        // Idempotency keys and coalescing look before they insert; they are rare enough to take the long way.
        let mut tx = self.store.begin().await?;
        let out = tx.queue().enqueue(&job).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Enqueues a job already claimed by `worker`, so no other worker picks it up (the CLI runs jobs itself).
    pub async fn enqueue_claimed(&self, job: NewJob, worker: &str, lease: Duration) -> Result<JobRecord> {
        let mut tx = self.store.begin().await?;
        let out = tx.queue().enqueue_claimed(&job, worker, lease).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        ops::get(&mut self.store.inner.db.read().await?.conn(), id, false).await
    }

    /// Every attempt of a job, oldest first.
    pub async fn attempts(&self, id: &str) -> Result<Vec<JobAttempt>> {
        ops::attempts(&mut self.store.inner.db.read().await?.conn(), id).await
    }

    /// Jobs, newest first.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        ops::list(&mut self.store.inner.db.read().await?.conn(), filter).await
    }

    /// [`Queue::claim_from`] the default queue, any kind.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<JobRecord>> {
        self.claim_from(&Arc::new(ClaimFilter::default()), worker, lease).await
    }

    /// Claims the next runnable job the filter allows: queued and due, or in progress with a lapsed lease and
    /// attempts left. Highest priority first, then the one due first; a job whose key has another job running
    /// under a live lease waits (one training per model or mentor at a time). Records the attempt (closing a
    /// lapsed one as `lease_expired`).
    pub async fn claim_from(
        &self,
        filter: &Arc<ClaimFilter>,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<JobRecord>> {
        self.store.inner.batcher.claim(filter.clone(), worker, lease).await
    }

    /// Extends the lease and records progress.
    pub async fn heartbeat(&self, id: &str, worker: &str, lease: Duration, progress: Option<i32>) -> Result<Heartbeat> {
        ops::heartbeat(&mut self.store.inner.db.write().await?.conn(), id, worker, lease, progress).await
    }

    /// Marks success; false (and no change) when `worker` no longer holds the job.
    pub async fn complete(&self, id: &str, worker: &str, result: &serde_json::Value) -> Result<bool> {
        // A job waiting behind this one's key may run now: the batch writer wakes a worker.
        self.store.inner.batcher.complete(id, worker, result).await
    }

    /// [`Queue::complete`], then [`Queue::claim_from`] for the same worker: a worker's "done, what's next", sent
    /// together so they share a transaction (the completion applied first).
    pub async fn complete_and_claim(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
        filter: &Arc<ClaimFilter>,
        lease: Duration,
    ) -> Result<(bool, Option<JobRecord>)> {
        self.store.inner.batcher.complete_and_claim(id, worker, result, filter.clone(), lease).await
    }

    /// Records a failed attempt (`timed_out` says why it ended): back to `QUEUED` after `retry_in` when attempts
    /// remain and a delay is given; `FAILURE` at once when no delay is given (permanent error); `FAILURE` in the
    /// dead-letter queue when a retryable error exhausted the attempts; `CANCELLED` when a cancel was requested.
    pub async fn fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
        timed_out: bool,
    ) -> Result<FailOutcome> {
        let out = in_tx!(self.store.inner.db, |c| ops::fail(c, id, worker, error, retry_in, timed_out));
        self.store.inner.signal.wake_all();
        Ok(out)
    }

    /// Gives a job back to the queue without counting against its attempts (the worker is shutting down); a job
    /// with a pending cancel request becomes `CANCELLED` instead. False when `worker` no longer holds it.
    pub async fn release(&self, id: &str, worker: &str) -> Result<bool> {
        let done = in_tx!(self.store.inner.db, |c| ops::release(c, id, worker));
        self.store.inner.signal.wake_all();
        Ok(done)
    }

    /// Cancels a job: at once when queued, by request when running (see [`Queue::finish_cancelled`]).
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        Ok(in_tx!(self.store.inner.db, |c| ops::cancel(c, id)))
    }

    /// Marks a running job `CANCELLED` after its worker stopped on a cancel request; false when `worker` no
    /// longer holds it.
    pub async fn finish_cancelled(&self, id: &str, worker: &str) -> Result<bool> {
        let done = in_tx!(self.store.inner.db, |c| ops::finish_cancelled(c, id, worker));
        self.store.inner.signal.wake_all();
        Ok(done)
    }

    /// Moves jobs whose lease lapsed with no attempts left to the dead-letter queue, and lapsed jobs with a cancel
    /// request to `CANCELLED`. Idempotent; any process may run it.
    pub async fn reap_expired_leases(&self) -> Result<Reaped> {
        Ok(in_tx!(self.store.inner.db, |c| ops::reap(c)))
    }

    /// Dead-letter queue entries, newest first.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<JobRecord>> {
        ops::dead_letters(&mut self.store.inner.db.read().await?.conn(), limit).await
    }

    /// Re-queues a dead-lettered job with fresh attempts (its history is kept); `None` when it is not in the
    /// dead-letter queue.
    pub async fn replay_dead_letter(&self, id: &str) -> Result<Option<JobRecord>> {
        let job = in_tx!(self.store.inner.db, |c| ops::replay_dead_letter(c, id));
        self.store.inner.signal.wake_all();
        Ok(job)
    }

    /// Removes a job from the dead-letter queue and deletes it; false when it is not there.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<bool> {
        ops::delete_dead_letter(&mut self.store.inner.db.write().await?.conn(), id).await
    }

    /// Deletes finished jobs (and dead-letter entries) that finished before `cutoff`, with their attempts; returns
    /// how many.
    pub async fn delete_finished_before(&self, cutoff: Timestamp) -> Result<u64> {
        ops::delete_finished_before(&mut self.store.inner.db.write().await?.conn(), cutoff).await
    }

    /// Time until the earliest job the filter allows becomes claimable (due, or its lease lapses), if any is
    /// waiting: lets idle workers sleep exactly, however far ahead jobs are scheduled.
    pub async fn next_due_in(&self, filter: &ClaimFilter) -> Result<Option<Duration>> {
        ops::next_due_in(&mut self.store.inner.db.read().await?.conn(), filter).await
    }

    /// How many jobs there are per kind and status (dead-lettered jobs count as `DEAD_LETTER`).
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        ops::counts(&mut self.store.inner.db.read().await?.conn()).await
    }

    /// Notified whenever a job may have become claimable: by this process's own writes, and — where the backend
    /// can tell (PostgreSQL `LISTEN/NOTIFY`) — by other processes'. Workers wait on it instead of polling.
    pub fn signal(&self) -> Arc<JobSignal> {
        self.store.inner.signal.clone()
    }
}

/// The queue inside a caller's transaction (River's `InsertTx`): jobs enqueued here exist if and only if the
/// transaction commits, together with the caller's own rows.
pub struct TxQueue<'t> {
    pub(crate) tx: &'t mut crate::Tx,
}

impl TxQueue<'_> {
    /// Enqueues a job in the transaction (idempotency and coalescing as [`Queue::enqueue`]); workers are woken
    /// when it commits.
    pub async fn enqueue(&mut self, job: &NewJob) -> Result<Enqueued> {
        let out = ops::enqueue_in(&mut self.tx.conn.conn(), job, None).await?;
        if out.outcome == EnqueueOutcome::Created {
            self.tx.wakes.push(out.job.queue.clone());
        }
        Ok(out)
    }

    /// Enqueues a job already claimed by `worker`.
    pub async fn enqueue_claimed(&mut self, job: &NewJob, worker: &str, lease: Duration) -> Result<JobRecord> {
        Ok(ops::enqueue_in(&mut self.tx.conn.conn(), job, Some((worker, lease))).await?.job)
    }

    /// The job an earlier enqueue with this job's idempotency key created, if any. On PostgreSQL this takes the
    /// key's lock until the transaction ends, so a concurrent enqueue with the same key waits for this one.
    pub async fn find_idempotent(&mut self, job: &NewJob) -> Result<Option<Enqueued>> {
        ops::idempotent_hit(&mut self.tx.conn.conn(), job).await
    }

    /// Withdraws a job that has not started: it is deleted as if never enqueued (a fallback whose work was done
    /// another way). False when it is claimed, ended or gone — then it stays as it is.
    pub async fn withdraw(&mut self, id: &str) -> Result<bool> {
        ops::withdraw(&mut self.tx.conn.conn(), id).await
    }

    /// Whether `worker` holds the lease of job `id`. On PostgreSQL the job's row stays locked until the
    /// transaction ends, so no other attempt can take the job over meanwhile: a result published in the same
    /// transaction is fenced by the lease.
    pub async fn holds_lease(&mut self, id: &str, worker: &str) -> Result<bool> {
        ops::holds_lease(&mut self.tx.conn.conn(), id, worker).await
    }
}
