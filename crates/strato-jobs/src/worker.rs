//! Workers: claim from their queue, run under a heartbeat and a time limit, record the outcome; plus the
//! maintenance task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use strato_store::{ClaimFilter, FailOutcome, Heartbeat, JobSignal, Store};
use strato_types::{JobKind, JobRecord, JobStatus, QueueName};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{backoff, AttemptOutcome, JobContext, JobError, JobHandler, WorkerPoolOptions, Workers};

/// The layered worker of each registered kind.
type Handlers = Arc<BTreeMap<JobKind, Arc<dyn JobHandler>>>;

/// Runs one claimed job to its outcome: heartbeat while the handler runs, stop it at its time limit, then store
/// the result.
pub async fn run_claimed(
    store: &Store,
    handler: &Arc<dyn JobHandler>,
    job: JobRecord,
    worker: &str,
    opts: &WorkerPoolOptions,
    ctx: JobContext,
) -> AttemptOutcome {
    run_claimed_then(store, handler, job, worker, opts, ctx, None).await.0
}

/// The end hooks of a pool.
type EndHooks = Arc<[(BTreeSet<JobKind>, crate::registry::EndHook)]>;

/// Whether an attempt's stored outcome ended its job for good.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    Yes,
    No,
}

/// [`run_claimed`]; with `claim_next`, a success is recorded together with the claim of the worker's next job
/// (one store round trip instead of two), which is returned.
async fn run_claimed_then(
    store: &Store,
    handler: &Arc<dyn JobHandler>,
    job: JobRecord,
    worker: &str,
    opts: &WorkerPoolOptions,
    ctx: JobContext,
    claim_next: Option<&Arc<ClaimFilter>>,
) -> (AttemptOutcome, Option<JobRecord>, Ended) {
    let id = job.id.clone();
    let limit = Duration::from_millis(job.timeout_ms.max(1) as u64);
    let mut task = {
        let handler = handler.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move { handler.run(&job, &ctx).await })
    };
    let beat = tokio::spawn(heartbeat(store.clone(), ctx.clone(), id.clone(), worker.to_string(), opts.clone()));
    let queue = store.queue();

    // 1. Wait for the handler, up to the time limit; then ask it to stop and give it a grace period.
    let joined = match tokio::time::timeout(limit, &mut task).await {
        Ok(r) => Some(r),
        Err(_) => {
            ctx.timed_out.store(true, Ordering::Relaxed);
            tracing::warn!(job = %id, limit_s = limit.as_secs(), "job ran past its time limit; stopping it");
            match tokio::time::timeout(opts.stop_grace, &mut task).await {
                Ok(r) => Some(r),
                Err(_) => {
                    task.abort();
                    None
                }
            }
        }
    };
    beat.abort();
    let result = match joined {
        None => Err(JobError::Retryable(format!("timed out after {} s (the handler did not stop)", limit.as_secs()))),
        Some(_) if ctx.timed_out() => Err(JobError::Retryable(format!("timed out after {} s", limit.as_secs()))),
        Some(Ok(r)) => r,
        Some(Err(e)) if e.is_panic() => Err(JobError::Permanent("the job handler panicked; see the server log".into())),
        Some(Err(e)) => Err(JobError::Retryable(format!("the job task was cancelled: {e}"))),
    };

    // 2. Record the outcome; every write is fenced by the lease.
    let mut next = None;
    let mut ended = Ended::Yes;
    let stored = match &result {
        Ok(v) => match claim_next {
            Some(filter) => match queue.complete_and_claim(&id, worker, v, filter, opts.lease).await {
                Ok((ok, n)) => {
                    next = n;
                    Ok(if ok { Ok(()) } else { Err(()) })
                }
                Err(e) => Err(e),
            },
            None => queue.complete(&id, worker, v).await.map(|ok| if ok { Ok(()) } else { Err(()) }),
        },
        Err(_) if ctx.cancel_requested() => {
            queue.finish_cancelled(&id, worker).await.map(|ok| if ok { Ok(()) } else { Err(()) })
        }
        Err(e) => {
            let retry_in = match e {
                JobError::Permanent(_) => None,
                JobError::Retryable(_) => {
                    let attempts = queue.get(&id).await.ok().flatten().map(|j| j.attempts).unwrap_or(1);
                    Some(backoff(attempts))
                }
            };
            match queue.fail(&id, worker, &e.to_string(), retry_in, ctx.timed_out()).await {
                Ok(FailOutcome::LeaseLost) => Ok(Err(())),
                Ok(FailOutcome::Retrying) => {
                    ended = Ended::No;
                    Ok(Ok(()))
                }
                Ok(FailOutcome::Cancelled) => {
                    // The cancel request arrived after the last heartbeat: the store already ended the job.
                    ctx.request_cancel();
                    Ok(Ok(()))
                }
                Ok(FailOutcome::DeadLettered(job)) => {
                    tracing::error!(job = %id, error = %e, "job exhausted its attempts; moved to the dead-letter queue");
                    if let Some(a) = &opts.alerter {
                        a.dead_lettered(&job);
                    }
                    Ok(Ok(()))
                }
                Ok(_) => Ok(Ok(())),
                Err(e) => Err(e),
            }
        }
    };
    let outcome = match (stored, result) {
        (Ok(Ok(())), Ok(v)) => AttemptOutcome::Succeeded(v),
        (Ok(Ok(())), Err(_)) if ctx.cancel_requested() => AttemptOutcome::Cancelled,
        (Ok(Ok(())), Err(e)) => AttemptOutcome::Failed(e.to_string()),
        (Ok(Err(())), _) => AttemptOutcome::LeaseLost,
        (Err(e), _) => {
            // The lease will lapse and another attempt will run: at-least-once.
            tracing::error!(job = %id, error = %e, "could not record the job outcome");
            AttemptOutcome::LeaseLost
        }
    };
    let ended = if matches!(outcome, AttemptOutcome::LeaseLost) { Ended::No } else { ended };
    (outcome, next, ended)
}

/// Renews the lease, publishes progress and turns a cancel request into the context's flag.
async fn heartbeat(store: Store, ctx: JobContext, id: String, worker: String, opts: WorkerPoolOptions) {
    let mut tick = tokio::time::interval(opts.heartbeat);
    tick.tick().await;
    loop {
        tick.tick().await;
        match store.queue().heartbeat(&id, &worker, opts.lease, Some(ctx.progress())).await {
            Ok(Heartbeat::Held { cancel_requested }) => {
                if cancel_requested && !ctx.cancel_requested() {
                    tracing::info!(job = %id, "cancel requested; asking the handler to stop");
                    ctx.request_cancel();
                }
            }
            Ok(Heartbeat::Lost) => {
                tracing::warn!(job = %id, "lease lost; another worker may run this job");
                ctx.lease_lost.store(true, Ordering::Relaxed);
                return;
            }
            // The database may be restarting: keep the handler running and try again next tick; if the lease
            // lapses meanwhile, the fenced writes refuse this attempt's outcome.
            Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
        }
    }
}

/// A running pool of workers.
pub struct WorkerPool {
    signal: Arc<JobSignal>,
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    store: Store,
    running: Running,
}

/// Job (and its context) each worker is running, so shutdown can cancel them and hand them back.
type Running = Arc<parking_lot::Mutex<HashMap<String, (String, JobContext)>>>;

impl WorkerPool {
    /// Starts the workers of each queue in `opts.queues` (none is allowed: maintenance only), running the kinds
    /// `workers` registers, and the maintenance task.
    pub fn start(store: Store, workers: &Workers, opts: WorkerPoolOptions) -> Self {
        let signal = store.job_signal();
        let (stop, stop_rx) = watch::channel(false);
        let running: Running = Arc::default();
        let handlers: Handlers = Arc::new(workers.layered());
        let hooks = workers.end_hooks();
        let mut handles = Vec::new();
        for (queue, n) in &opts.queues.0 {
            // Every kind this process runs, whatever queue it usually waits in: a submitter may choose the queue.
            let filter = Arc::new(ClaimFilter::new(queue.clone(), handlers.keys().cloned()));
            let clock = Arc::new(tokio::sync::Mutex::new(()));
            for i in 0..*n {
                let worker = format!("{}-{queue}-{i}", opts.worker_id);
                handles.push(tokio::spawn(worker_loop(
                    store.clone(),
                    handlers.clone(),
                    hooks.clone(),
                    filter.clone(),
                    clock.clone(),
                    opts.clone(),
                    worker,
                    stop_rx.clone(),
                    running.clone(),
                )));
            }
        }
        let known: BTreeSet<JobKind> = handlers.keys().cloned().collect();
        handles.push(tokio::spawn(maintenance(store.clone(), known, opts, stop_rx)));
        Self { signal, stop, handles, store, running }
    }

    /// Wakes an idle worker of each queue: for jobs written behind the store's back.
    pub fn wake(&self) {
        self.signal.wake_all();
    }

    /// A handle that can wake workers from anywhere.
    pub fn waker(&self) -> Waker {
        Waker(self.signal.clone())
    }

    /// Stops the workers and hands their running jobs back to the queue, so they run again right after a
    /// restart (or on another process) instead of waiting for their leases to lapse.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        // Idle workers and the maintenance task end at their next wait: let them, so none is cut off inside a
        // database transaction (an aborted transaction can leave its pooled connection unusable for the writes
        // below). Workers still running a job are stopped after the grace period and their jobs handed back.
        let grace = tokio::time::Instant::now() + std::time::Duration::from_millis(500);
        let mut running = Vec::new();
        for mut h in self.handles {
            if tokio::time::timeout_at(grace, &mut h).await.is_err() {
                h.abort();
                running.push(h);
            }
        }
        for h in running {
            let _ = h.await;
        }
        let running: Vec<(String, (String, JobContext))> = self.running.lock().drain().collect();
        for (worker, (job, ctx)) in running {
            ctx.cancel();
            match self.store.queue().release(&job, &worker).await {
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
pub struct Waker(Arc<JobSignal>);

impl Waker {
    /// Wakes one idle worker of each queue.
    pub fn wake(&self) {
        self.0.wake_all();
    }
}

#[allow(clippy::too_many_arguments, reason = "the loop's own state, passed once at spawn")]
async fn worker_loop(
    store: Store,
    handlers: Handlers,
    hooks: EndHooks,
    filter: Arc<ClaimFilter>,
    clock: Arc<tokio::sync::Mutex<()>>,
    opts: WorkerPoolOptions,
    worker: String,
    mut stop: watch::Receiver<bool>,
    running: Running,
) {
    // This queue's own wake-ups: another queue's idle workers never take them.
    let signal = store.job_signal().queue(&filter.queue);
    let queue = store.queue();
    let mut failures = 0u32;
    // The job claimed together with the last success, if any.
    let mut next: Option<JobRecord> = None;
    // The queue's next due time, read after an idle wait that the clock ended (no wake-up came): a claim then can
    // only find something when a job has become due, and the claim's transaction is skipped when none has.
    let mut after_clock: Option<Option<Duration>> = None;
    // Held while this worker keeps its queue's clock: one idle worker per queue sleeps until the next due job (or
    // the safety poll) and looks at the queue when it ends; the others wait for a wake-up, or for the clock to be
    // handed on when its holder takes a job. An idle queue costs one look per poll, however many workers wait.
    let mut keeping_clock: Option<tokio::sync::OwnedMutexGuard<()>> = None;
    loop {
        if *stop.borrow() {
            if let Some(job) = next.take() {
                // Claimed but not started: hand it straight back rather than leave it to its lease.
                let _ = queue.release(&job.id, &worker).await;
            }
            return;
        }
        let nothing_due = matches!(after_clock, Some(None)) || matches!(after_clock, Some(Some(d)) if !d.is_zero());
        let claimed = match next.take() {
            Some(job) => Ok(Some(job)),
            None if nothing_due => Ok(None),
            None => queue.claim_from(&filter, &worker, opts.lease).await,
        };
        match claimed {
            Ok(Some(job)) => {
                failures = 0;
                keeping_clock = None;
                // There may be more: pass the wake-up on to another idle worker.
                signal.notify_one();
                tracing::info!(job = %job.id, kind = %job.kind, queue = %job.queue, attempt = job.attempts, %worker, "job started");
                let id = job.id.clone();
                let ctx = JobContext::new(&worker);
                // The claim only takes registered kinds; a job of another kind here means the store was changed
                // under us: give it back untouched.
                let Some(handler) = handlers.get(&job.kind).cloned() else {
                    tracing::error!(job = %id, kind = %job.kind, "claimed a job of a kind this process does not run");
                    let _ = queue.release(&id, &worker).await;
                    continue;
                };
                running.lock().insert(worker.clone(), (id.clone(), ctx.clone()));
                let kind = job.kind.clone();
                let (outcome, then, ended) =
                    run_claimed_then(&store, &handler, job, &worker, &opts, ctx, Some(&filter)).await;
                next = then;
                running.lock().remove(&worker);
                if ended == Ended::Yes {
                    for (kinds, hook) in hooks.iter() {
                        if kinds.contains(&kind) {
                            hook(&id, &kind);
                        }
                    }
                }
                match &outcome {
                    AttemptOutcome::Succeeded(_) => tracing::info!(job = %id, "job succeeded"),
                    AttemptOutcome::Failed(e) => tracing::warn!(job = %id, error = %e, "job attempt failed"),
                    AttemptOutcome::Cancelled => tracing::info!(job = %id, "job cancelled"),
                    AttemptOutcome::LeaseLost => tracing::warn!(job = %id, "job outcome dropped: lease lost"),
                }
                continue;
            }
            Ok(None) => failures = 0,
            Err(e) => {
                // The database is down or restarting: back off (up to 10 s) instead of spinning.
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(100u64 << failures.min(7)).min(Duration::from_secs(10));
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "claiming a job failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        }
        if keeping_clock.is_none() {
            match clock.clone().try_lock_owned() {
                Ok(g) => keeping_clock = Some(g),
                Err(_) => {
                    keeping_clock = tokio::select! {
                        g = clock.clone().lock_owned() => Some(g),
                        _ = signal.notified() => None,
                        _ = stop.changed() => None,
                    };
                    // Woken, or handed the clock by a worker that just took a job (which may have left more): look.
                    after_clock = None;
                    continue;
                }
            }
        }
        // Nothing to claim: sleep until the queue's next job is due (however far ahead), a wake-up, or the safety
        // poll. A job that is due but was not claimed waits behind its key: the completion that frees the key wakes
        // a worker, so wait for that (or the poll) rather than spin.
        let due = match after_clock.take() {
            Some(due) if nothing_due => Ok(due),
            _ => queue.next_due_in(&filter).await,
        };
        let wait = match due {
            Ok(Some(d)) if !d.is_zero() => d.min(opts.poll_interval),
            _ => opts.poll_interval,
        };
        let by_clock = tokio::select! {
            _ = signal.notified() => false,
            _ = tokio::time::sleep(wait) => true,
            _ = stop.changed() => false,
        };
        if by_clock {
            after_clock = queue.next_due_in(&filter).await.ok();
        }
    }
}

/// How often queued jobs of unknown kinds are looked for (and, while they stay, reported again).
const UNKNOWN_KINDS_EVERY: Duration = Duration::from_secs(600);

/// Reaps lapsed leases (alerting on dead-lettered jobs), deletes finished jobs past their TTL, and reports queued
/// jobs of kinds this process does not run (`known`).
async fn maintenance(store: Store, known: BTreeSet<JobKind>, opts: WorkerPoolOptions, mut stop: watch::Receiver<bool>) {
    let sweep_every = opts.job_ttl.map(|ttl| (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(600)));
    let mut last_sweep: Option<tokio::time::Instant> = None;
    let mut last_kinds_check: Option<tokio::time::Instant> = None;
    let queue = store.queue();
    loop {
        if !opts.queues.0.is_empty() && last_kinds_check.is_none_or(|t| t.elapsed() >= UNKNOWN_KINDS_EVERY) {
            last_kinds_check = Some(tokio::time::Instant::now());
            report_unknown_kinds(&store, &known, &opts.queues.0).await;
        }
        match queue.reap_expired_leases().await {
            Ok(r) => {
                for job in &r.dead_lettered {
                    tracing::error!(job = %job.id, "the last attempt's worker died; job moved to the dead-letter queue");
                    if let Some(a) = &opts.alerter {
                        a.dead_lettered(job);
                    }
                }
                if r.cancelled > 0 {
                    tracing::info!(count = r.cancelled, "cancelled jobs whose workers stopped");
                }
            }
            Err(e) => tracing::warn!(error = %e, "reaping lapsed leases failed"),
        }
        if let (Some(ttl), Some(every)) = (opts.job_ttl, sweep_every) {
            if last_sweep.is_none_or(|t| t.elapsed() >= every) {
                last_sweep = Some(tokio::time::Instant::now());
                let cutoff = chrono::Utc::now() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
                match queue.delete_finished_before(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "expired finished jobs"),
                    Err(e) => tracing::warn!(error = %e, "deleting expired jobs failed"),
                }
            }
        }
        let wait = sweep_every.map_or(opts.reap_interval, |s| s.min(opts.reap_interval));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Logs the queued jobs of kinds this process does not run: written by a newer version, or by a capability this
/// build leaves out. They are left alone (another process may run them) but never silently.
async fn report_unknown_kinds(store: &Store, known: &BTreeSet<JobKind>, served: &[(QueueName, usize)]) {
    let counts = match store.queue().counts().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "could not count queued jobs by kind");
            return;
        }
    };
    for (kind, status, n) in counts {
        if status == JobStatus::Queued.as_str() && !known.iter().any(|k| k.as_str() == kind) {
            let queues: Vec<String> = served.iter().map(|(q, _)| q.to_string()).collect();
            tracing::warn!(
                kind = %kind,
                queued = n,
                "queued jobs of a kind this process does not run are left alone (served queues: {}); a process that \
                 runs it must be started, or the jobs cancelled",
                queues.join(",")
            );
        }
    }
}
