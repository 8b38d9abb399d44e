//! The in-process worker pool over the durable job queue.
//!
//! Each worker loops: claim a job (with a lease) → run its handler on a separate task while a heartbeat renews the
//! lease and publishes progress → record success or failure. A panic in a handler becomes a failed attempt. Idle
//! workers sleep until woken ([`WorkerPool::wake`], called right after an enqueue in this process) or until the
//! next job is due; a bounded poll interval picks up jobs enqueued by other processes.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strato_store::MetaStore;
use strato_types::JobRecord;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

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
    cancelled: Arc<AtomicBool>,
    worker: Arc<str>,
}

impl JobContext {
    /// A fresh context for an attempt run by `worker`.
    pub fn new(worker: &str) -> Self {
        Self {
            progress: Arc::new(AtomicI32::new(0)),
            lease_lost: Arc::new(AtomicBool::new(false)),
            cancelled: Arc::new(AtomicBool::new(false)),
            worker: worker.into(),
        }
    }

    /// The worker holding the lease: handlers pass it as the fence when they publish results.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Asks the handler to stop (the process is shutting down).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// True when the handler should stop early: cancelled, or the lease was lost to another worker.
    pub fn should_stop(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.lease_lost()
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

/// Runs jobs of every kind; dispatches on `job.kind`.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one attempt. Must be idempotent: a job may run again after a crash.
    async fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError>;
}

/// Worker pool settings.
#[derive(Debug, Clone)]
pub struct WorkerPoolOptions {
    /// Concurrent workers.
    pub workers: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// Heartbeat period (well under the lease).
    pub heartbeat: Duration,
    /// Longest idle sleep, to notice jobs enqueued by other processes.
    pub poll_interval: Duration,
    /// Worker id prefix (process-unique).
    pub worker_id: String,
}

impl Default for WorkerPoolOptions {
    fn default() -> Self {
        Self {
            workers: 1,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            poll_interval: Duration::from_secs(1),
            worker_id: format!("w-{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The job succeeded and the result was stored.
    Succeeded(serde_json::Value),
    /// The attempt failed; the job was requeued or failed for good.
    Failed(String),
    /// The lease was lost before the outcome could be stored; another attempt owns the job.
    LeaseLost,
}

/// Backoff before retry `attempt` (1-based): 2^attempt seconds, capped at 5 minutes, with ±25 % jitter.
pub fn backoff(attempt: i32) -> Duration {
    let base = 2f64.powi(attempt.clamp(0, 8)).min(300.0);
    let jitter = 0.75 + 0.5 * (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    Duration::from_secs_f64(base * jitter)
}

/// Runs one claimed job to its outcome: heartbeat while the handler runs, then store the result.
pub async fn run_claimed(
    store: &Arc<dyn MetaStore>,
    handler: &Arc<dyn JobHandler>,
    job: JobRecord,
    worker: &str,
    opts: &WorkerPoolOptions,
    ctx: JobContext,
) -> AttemptOutcome {
    let id = job.id.clone();
    let task = {
        let handler = handler.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move { handler.run(&job, &ctx).await })
    };
    let beat = {
        let store = store.clone();
        let ctx = ctx.clone();
        let (id, worker, lease, period) = (id.clone(), worker.to_string(), opts.lease, opts.heartbeat);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.heartbeat(&id, &worker, lease, Some(ctx.progress())).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %id, "lease lost; another worker may run this job");
                        ctx.lease_lost.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
                }
            }
        })
    };
    let result = match task.await {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(JobError::Permanent("the job handler panicked; see the server log".into())),
        Err(e) => Err(JobError::Retryable(format!("the job task was cancelled: {e}"))),
    };
    beat.abort();
    let stored = match &result {
        Ok(v) => store.complete(&id, worker, v).await,
        Err(JobError::Permanent(m)) => store.fail(&id, worker, m, None).await,
        Err(JobError::Retryable(m)) => {
            let attempts = store.get_job(&id).await.ok().flatten().map(|j| j.attempts).unwrap_or(1);
            store.fail(&id, worker, m, Some(backoff(attempts))).await
        }
    };
    match (stored, result) {
        (Ok(true), Ok(v)) => AttemptOutcome::Succeeded(v),
        (Ok(true), Err(e)) => AttemptOutcome::Failed(e.to_string()),
        (Ok(false), _) => AttemptOutcome::LeaseLost,
        (Err(e), _) => {
            // The lease will lapse and another attempt will run: at-least-once.
            tracing::error!(job = %id, error = %e, "could not record the job outcome");
            AttemptOutcome::LeaseLost
        }
    }
}

/// A running pool of workers.
pub struct WorkerPool {
    notify: Arc<Notify>,
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    store: Arc<dyn MetaStore>,
    running: Running,
}

/// Job (and its context) each worker is running, so shutdown can cancel them and hand them back.
type Running = Arc<parking_lot::Mutex<std::collections::HashMap<String, (String, JobContext)>>>;

impl WorkerPool {
    /// Starts `opts.workers` workers.
    pub fn start(store: Arc<dyn MetaStore>, handler: Arc<dyn JobHandler>, opts: WorkerPoolOptions) -> Self {
        let notify = Arc::new(Notify::new());
        let (stop, stop_rx) = watch::channel(false);
        let running: Running = Arc::default();
        let handles = (0..opts.workers)
            .map(|i| {
                let worker = format!("{}-{i}", opts.worker_id);
                tokio::spawn(worker_loop(
                    store.clone(),
                    handler.clone(),
                    opts.clone(),
                    worker,
                    notify.clone(),
                    stop_rx.clone(),
                    running.clone(),
                ))
            })
            .collect();
        Self { notify, stop, handles, store, running }
    }

    /// Wakes an idle worker: call after enqueueing.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// A handle that can wake workers from anywhere.
    pub fn waker(&self) -> Waker {
        Waker(self.notify.clone())
    }

    /// Stops the workers and hands their running jobs back to the queue, so they run again right after a
    /// restart (or on another process) instead of waiting for their leases to lapse.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for h in &self.handles {
            h.abort();
        }
        for h in self.handles {
            let _ = h.await;
        }
        let running: Vec<(String, (String, JobContext))> = self.running.lock().drain().collect();
        for (worker, (job, ctx)) in running {
            ctx.cancel();
            match self.store.release(&job, &worker).await {
                Ok(true) => tracing::info!(%job, "interrupted job handed back to the queue"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%job, error = %e, "could not hand the job back; it reruns when its lease lapses")
                }
            }
        }
    }
}

/// Wakes the pool's idle workers; cheap to clone.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// Wakes one idle worker.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

async fn worker_loop(
    store: Arc<dyn MetaStore>,
    handler: Arc<dyn JobHandler>,
    opts: WorkerPoolOptions,
    worker: String,
    notify: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    running: Running,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        match store.claim(&worker, opts.lease).await {
            Ok(Some(job)) => {
                tracing::info!(job = %job.id, kind = job.kind.as_str(), attempt = job.attempts, %worker, "job started");
                let id = job.id.clone();
                let ctx = JobContext::new(&worker);
                running.lock().insert(worker.clone(), (id.clone(), ctx.clone()));
                let outcome = run_claimed(&store, &handler, job, &worker, &opts, ctx).await;
                running.lock().remove(&worker);
                match &outcome {
                    AttemptOutcome::Succeeded(_) => tracing::info!(job = %id, "job succeeded"),
                    AttemptOutcome::Failed(e) => tracing::warn!(job = %id, error = %e, "job attempt failed"),
                    AttemptOutcome::LeaseLost => tracing::warn!(job = %id, "job outcome dropped: lease lost"),
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "claiming a job failed; retrying"),
        }
        let wait = match store.next_due_in().await {
            Ok(Some(d)) => d.min(opts.poll_interval),
            _ => opts.poll_interval,
        };
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}
