//! The worker pool over the durable job queue, the registry of job kinds, and the facilities around them.
//!
//! Job kinds are registered, not matched: a capability registers a [`Worker`] for its [`strato_types::JobArgs`]
//! type in a [`Workers`] registry at start-up, and [`Layer`]s wrap every worker once. The pool runs a number of
//! workers per named queue ([`WorkerPoolOptions::queues`]), so long jobs of one queue never hold up another's, and
//! each claims only the kinds its process knows: jobs of other kinds (a newer version's) stay queued and are
//! reported.
//!
//! Each worker loops: claim a job of its queue (with a lease) → run its kind's worker on a separate task while a
//! heartbeat renews the lease, publishes progress and picks up cancel requests → record success, failure (retry with
//! backoff, or the dead-letter queue once attempts run out) or cancellation. A panic in a worker is a failed
//! attempt; an attempt that outlives its time limit is stopped and counted as a retryable failure. Idle workers wait
//! on the store's job signal (in-process wake-up on SQLite, `LISTEN/NOTIFY` on PostgreSQL) or the next due time of
//! their queue (so a job scheduled for next year costs nothing meanwhile), with a bounded poll as the safety net.
//! Beside the workers, a maintenance task reaps lapsed leases (dead-lettering jobs whose last attempt's worker
//! died), deletes finished jobs past their TTL and reports queued jobs of kinds no worker here knows; dead-lettered
//! jobs raise an alert through [`Alerter`] without ever blocking a worker.

mod alerts;
pub mod noop;
mod registry;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strato_types::{JobRecord, QueueName, StratoError};

pub use alerts::{Alerter, AlerterOptions};
pub use registry::{CatchPanicLayer, EndHook, Layer, RegistryError, TimingLayer, TracingLayer, Worker, Workers};
pub use worker::{run_claimed, Waker, WorkerPool};

/// How a handler failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// Retrying cannot help (bad input): fail at once.
    #[error("{0}")]
    Permanent(String),
    /// Might work next time (I/O, resources): retry with backoff while attempts remain.
    #[error("{0}")]
    Retryable(String),
}

/// What a handler sees of the running job.
#[derive(Clone)]
pub struct JobContext {
    progress: Arc<AtomicI32>,
    lease_lost: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
    cancel_requested: Arc<AtomicBool>,
    timed_out: Arc<AtomicBool>,
    worker: Arc<str>,
}

impl JobContext {
    /// A fresh context for an attempt run by `worker`.
    pub fn new(worker: &str) -> Self {
        Self {
            progress: Arc::new(AtomicI32::new(0)),
            lease_lost: Arc::default(),
            shutdown: Arc::default(),
            cancel_requested: Arc::default(),
            timed_out: Arc::default(),
            worker: worker.into(),
        }
    }

    /// The worker holding the lease: handlers pass it as the fence when they publish results.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Asks the handler to stop because the process is shutting down (the job goes back to the queue).
    pub fn cancel(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    /// Asks the handler to stop because a user cancelled the job.
    pub fn request_cancel(&self) {
        self.cancel_requested.store(true, Ordering::Relaxed);
    }

    /// True when a user cancelled the job while it ran.
    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Relaxed)
    }

    /// True when the attempt ran past its time limit.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// True when the handler should stop early: shutdown, cancel request, time limit, or the lease was lost.
    pub fn should_stop(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed) || self.cancel_requested() || self.timed_out() || self.lease_lost()
    }

    /// Publishes progress 0–100; the heartbeat stores it.
    pub fn set_progress(&self, pct: i32) {
        self.progress.store(pct.clamp(0, 100), Ordering::Relaxed);
    }

    /// Current progress.
    pub fn progress(&self) -> i32 {
        self.progress.load(Ordering::Relaxed)
    }

    /// True once another worker may have taken the job over; long handlers should stop early.
    pub fn lease_lost(&self) -> bool {
        self.lease_lost.load(Ordering::Relaxed)
    }
}

/// Runs jobs: a registered [`Worker`] as the pool sees it (its payload not decoded yet), and what a [`Layer`] wraps.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one attempt. Must be idempotent: a job may run again after a crash.
    async fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError>;
}

/// How many workers run per queue; a queue not listed is not served by this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConcurrency(pub Vec<(QueueName, usize)>);

impl QueueConcurrency {
    /// `n` workers on the default queue only.
    pub fn default_queue(n: usize) -> Self {
        Self(vec![(QueueName::DEFAULT, n)])
    }

    /// The defaults of a process told only how many workers to run: `n` on the default queue and, on each other
    /// queue a registered kind waits in, what the registry says it wants (one unless said; none at all when `n` is 0:
    /// an API-only process).
    pub fn for_workers(n: usize, registry: &Workers) -> Self {
        if n == 0 {
            return Self(Vec::new());
        }
        let mut queues = vec![(QueueName::DEFAULT, n)];
        queues.extend(registry.queues().into_iter().filter(|q| *q != QueueName::DEFAULT).map(|q| {
            let n = registry.concurrency_of(&q);
            (q, n)
        }));
        Self(queues)
    }

    /// Parses `default=2,media=1`: each queue once, with at least one worker.
    pub fn parse(s: &str) -> Result<Self, StratoError> {
        let mut out: Vec<(QueueName, usize)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| {
                StratoError::new(
                    strato_types::ErrorCode::InvalidRequest,
                    format!(
                        "queue setting {part:?}: {why}; write QUEUE=WORKERS[,QUEUE=WORKERS…], e.g. default=2,media=1"
                    ),
                )
            };
            let (name, n) = part.split_once('=').ok_or_else(|| bad("no '='"))?;
            let queue = QueueName::parse(name.trim())?;
            let n: usize = n.trim().parse().map_err(|_| bad("the worker count is not a number"))?;
            if n == 0 || n > 1024 {
                return Err(bad("the worker count must be 1-1024"));
            }
            if out.iter().any(|(q, _)| *q == queue) {
                return Err(bad("the queue is named twice"));
            }
            out.push((queue, n));
        }
        Ok(Self(out))
    }

    /// Workers in all.
    pub fn total(&self) -> usize {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

impl std::fmt::Display for QueueConcurrency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(q, n)| format!("{q}={n}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// Worker pool settings.
#[derive(Clone)]
pub struct WorkerPoolOptions {
    /// Workers per queue (none: maintenance only).
    pub queues: QueueConcurrency,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// Heartbeat period (well under the lease); also how fast a running job notices a cancel request.
    pub heartbeat: Duration,
    /// Longest idle sleep, to notice jobs enqueued by processes that cannot signal this one.
    pub poll_interval: Duration,
    /// Worker id prefix (process-unique).
    pub worker_id: String,
    /// How long a handler asked to stop (time limit) gets before its attempt is recorded anyway.
    pub stop_grace: Duration,
    /// How often lapsed leases are reaped.
    pub reap_interval: Duration,
    /// Finished jobs and dead-letter entries older than this are deleted; `None` keeps them forever.
    pub job_ttl: Option<Duration>,
    /// Where dead-lettered jobs are announced.
    pub alerter: Option<Alerter>,
}

impl Default for WorkerPoolOptions {
    fn default() -> Self {
        Self {
            queues: QueueConcurrency::default_queue(1),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            worker_id: format!("w-{}", uuid::Uuid::new_v4().simple()),
            stop_grace: Duration::from_secs(30),
            reap_interval: Duration::from_secs(5),
            job_ttl: Some(DEFAULT_JOB_TTL),
            alerter: None,
        }
    }
}

/// Finished jobs are kept this long by default (the seeds' DynamoDB TTL).
pub const DEFAULT_JOB_TTL: Duration = Duration::from_secs(20 * 24 * 3600);

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The job succeeded and the result was stored.
    Succeeded(serde_json::Value),
    /// The attempt failed; the job was requeued, failed for good, or dead-lettered.
    Failed(String),
    /// The job was cancelled while it ran.
    Cancelled,
    /// The lease was lost before the outcome could be stored; another attempt owns the job.
    LeaseLost,
}

/// Backoff before retry `attempt` (1-based): 2^attempt seconds, capped at 5 minutes, with ±25 % jitter.
pub fn backoff(attempt: i32) -> Duration {
    let base = 2f64.powi(attempt.clamp(0, 8)).min(300.0);
    let jitter = 0.75 + 0.5 * (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    Duration::from_secs_f64(base * jitter)
}
