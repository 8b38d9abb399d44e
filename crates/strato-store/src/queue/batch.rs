//! Group commit for the queue's hot path. A process's concurrent enqueues, claims and completions are gathered by
//! one task and written together, one transaction per batch, so the fixed cost of a write transaction (its round
//! trips, the commit and its WAL write) is shared by every job in it instead of paid three times per job.
//!
//! A batch takes whatever arrived while the previous one was being written, so a lone request goes through at
//! once (no waiting window) and a busy queue makes big batches by itself. A batch is all or nothing: when it
//! fails, each request is retried in a batch of its own, so every caller gets its own answer or its own error and
//! one bad request never fails its neighbours.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use strato_types::{JobRecord, NewJob};
use tokio::sync::{mpsc, oneshot};

use super::{ClaimFilter, Enqueued};
use crate::{Result, StoreError};

/// The most requests in one transaction: bounds a batch's lock time and memory.
const MAX_BATCH: usize = 512;

/// One request to the batcher, with where its answer goes.
pub(crate) enum JobOp {
    Enqueue(NewJob, oneshot::Sender<Result<Enqueued>>),
    Claim(Claim, oneshot::Sender<Result<Option<JobRecord>>>),
    Complete(Completion, oneshot::Sender<Result<bool>>),
}

/// A worker asking for one job of those its filter allows.
pub(crate) struct Claim {
    pub worker: String,
    pub lease: Duration,
    pub filter: Arc<ClaimFilter>,
}

/// A worker reporting success; applied only while `worker` still holds the job's lease.
pub(crate) struct Completion {
    pub id: String,
    pub worker: String,
    /// The result as JSON text.
    pub result: String,
}

/// The requests of one batch, in the order they are applied: completions first (they free per-key slots), then
/// enqueues, then claims (which may take jobs enqueued in the same batch).
#[derive(Default)]
pub(crate) struct BatchInput {
    pub completions: Vec<Completion>,
    pub enqueues: Vec<NewJob>,
    pub claims: Vec<Claim>,
}

/// The answers, index for index with [`BatchInput`].
pub(crate) struct BatchOutput {
    pub completed: Vec<bool>,
    pub enqueued: Vec<Enqueued>,
    pub claimed: Vec<Option<JobRecord>>,
}

/// A backend's way of writing one batch.
#[async_trait]
pub(crate) trait BatchWriter: Send + Sync + 'static {
    /// Applies the whole batch in one transaction: every change or none.
    async fn apply(&self, batch: &BatchInput) -> Result<BatchOutput>;
    /// This process's job signal, woken after each commit.
    fn signal(&self) -> &super::JobSignal;
}

/// The handle stores keep: sends requests to the batcher task and waits for the answers.
#[derive(Clone)]
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<JobOp>,
}

impl Batcher {
    /// Starts the batcher task on the current runtime; it ends when the last handle is dropped.
    pub fn spawn(writer: impl BatchWriter) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, rx));
        Self { tx }
    }

    /// Starts the batcher on a thread of its own, for a writer that blocks (SQLite's); it ends when the last
    /// handle is dropped.
    pub fn spawn_on_thread(writer: impl BatchWriter) -> Result<Self> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("strato-job-writer".into())
            .spawn(move || {
                let mut ops = Vec::new();
                while let Some(op) = rx.blocking_recv() {
                    ops.push(op);
                    while ops.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    // The writer does its work in place; nothing here needs a runtime.
                    futures::executor::block_on(write(&writer, std::mem::take(&mut ops)));
                }
            })
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Ok(Self { tx })
    }

    async fn call<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> JobOp) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(op(tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.call(|tx| JobOp::Enqueue(job, tx)).await
    }

    pub async fn claim(&self, filter: Arc<ClaimFilter>, worker: &str, lease: Duration) -> Result<Option<JobRecord>> {
        self.call(|tx| JobOp::Claim(Claim { worker: worker.to_string(), lease, filter }, tx)).await
    }

    pub async fn complete(&self, id: &str, worker: &str, result: &serde_json::Value) -> Result<bool> {
        let c = Completion { id: id.to_string(), worker: worker.to_string(), result: result.to_string() };
        self.call(|tx| JobOp::Complete(c, tx)).await
    }

    /// Sends a completion and a claim together: they land in the same batch (or the claim in the next one), and the
    /// completion is applied first either way.
    pub async fn complete_and_claim(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
        filter: Arc<ClaimFilter>,
        lease: Duration,
    ) -> Result<(bool, Option<JobRecord>)> {
        let c = Completion { id: id.to_string(), worker: worker.to_string(), result: result.to_string() };
        let (done_tx, done_rx) = oneshot::channel();
        let (next_tx, next_rx) = oneshot::channel();
        self.tx.send(JobOp::Complete(c, done_tx)).map_err(|_| stopped())?;
        let claim = Claim { worker: worker.to_string(), lease, filter };
        self.tx.send(JobOp::Claim(claim, next_tx)).map_err(|_| stopped())?;
        let done = done_rx.await.map_err(|_| stopped())??;
        Ok((done, next_rx.await.map_err(|_| stopped())??))
    }
}

fn stopped() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

async fn run(writer: impl BatchWriter, mut rx: mpsc::UnboundedReceiver<JobOp>) {
    let mut ops = Vec::new();
    while let Some(op) = rx.recv().await {
        ops.push(op);
        // Let the tasks the last batch's answers woke (enqueuers, workers) send their next requests first, so they
        // join this batch instead of waiting for the one after; free when nothing else is ready to run.
        tokio::task::yield_now().await;
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        write(&writer, std::mem::take(&mut ops)).await;
    }
}

/// Where each answer goes, index for index with the batch's input.
#[derive(Default)]
struct Replies {
    completions: Vec<oneshot::Sender<Result<bool>>>,
    enqueues: Vec<oneshot::Sender<Result<Enqueued>>>,
    claims: Vec<oneshot::Sender<Result<Option<JobRecord>>>>,
}

async fn write(writer: &impl BatchWriter, ops: Vec<JobOp>) {
    let mut input = BatchInput::default();
    let mut replies = Replies::default();
    for op in ops {
        match op {
            JobOp::Complete(c, tx) => {
                input.completions.push(c);
                replies.completions.push(tx);
            }
            JobOp::Enqueue(j, tx) => {
                input.enqueues.push(j);
                replies.enqueues.push(tx);
            }
            // A worker that stopped waiting (shut down) must not be handed a lease it will never renew.
            JobOp::Claim(_, tx) if tx.is_closed() => {}
            JobOp::Claim(c, tx) => {
                input.claims.push(c);
                replies.claims.push(tx);
            }
        }
    }
    let n = input.completions.len() + input.enqueues.len() + input.claims.len();
    if n == 0 {
        return;
    }
    let t0 = std::time::Instant::now();
    let applied = writer.apply(&input).await;
    tracing::trace!(
        completions = input.completions.len(),
        enqueues = input.enqueues.len(),
        claims = input.claims.len(),
        micros = t0.elapsed().as_micros() as u64,
        ok = applied.is_ok(),
        "job batch written"
    );
    match applied {
        Ok(out) => {
            wake(writer.signal(), &out);
            for (tx, v) in replies.completions.into_iter().zip(out.completed) {
                let _ = tx.send(Ok(v));
            }
            for (tx, v) in replies.enqueues.into_iter().zip(out.enqueued) {
                let _ = tx.send(Ok(v));
            }
            for (tx, v) in replies.claims.into_iter().zip(out.claimed) {
                let _ = tx.send(Ok(v));
            }
        }
        Err(e) if n == 1 => {
            // One request: the error is its own.
            if let Some(tx) = replies.completions.pop() {
                let _ = tx.send(Err(e));
            } else if let Some(tx) = replies.enqueues.pop() {
                let _ = tx.send(Err(e));
            } else if let Some(tx) = replies.claims.pop() {
                let _ = tx.send(Err(e));
            }
        }
        Err(e) => {
            // Nothing of the batch was applied: retry each request alone, so each caller gets its own answer.
            tracing::debug!(error = %e, requests = n, "batched job write failed; retrying one by one");
            let BatchInput { completions, enqueues, claims } = input;
            for (c, tx) in completions.into_iter().zip(replies.completions) {
                Box::pin(write(writer, vec![JobOp::Complete(c, tx)])).await;
            }
            for (j, tx) in enqueues.into_iter().zip(replies.enqueues) {
                Box::pin(write(writer, vec![JobOp::Enqueue(j, tx)])).await;
            }
            for (c, tx) in claims.into_iter().zip(replies.claims) {
                Box::pin(write(writer, vec![JobOp::Claim(c, tx)])).await;
            }
        }
    }
}

/// One wake-up per new job for idle workers (each wakes one), and one when a finished job may unblock a job
/// waiting behind its key.
fn wake(signal: &super::JobSignal, out: &BatchOutput) {
    for e in out.enqueued.iter().filter(|e| e.outcome == super::EnqueueOutcome::Created) {
        signal.wake(&e.job.queue);
    }
    if out.completed.iter().any(|c| *c) {
        signal.wake_all();
    }
}

/// An enqueue with nothing to look up first (no idempotency key, no coalescing), which a backend may insert
/// together with the batch's other plain jobs in one statement.
pub(crate) fn is_plain(job: &NewJob) -> bool {
    job.idempotency_key.is_none() && !(job.coalesce && job.key.is_some())
}

/// The batch's claims grouped by filter (claims of one filter share one pick), each with its index in the batch.
pub(crate) fn by_filter(claims: &[Claim]) -> Vec<(&Arc<ClaimFilter>, Vec<usize>)> {
    let mut groups: Vec<(&Arc<ClaimFilter>, Vec<usize>)> = Vec::new();
    for (i, c) in claims.iter().enumerate() {
        match groups.iter_mut().find(|(f, _)| Arc::ptr_eq(f, &c.filter) || **f == c.filter) {
            Some((_, idx)) => idx.push(i),
            None => groups.push((&c.filter, vec![i])),
        }
    }
    groups
}

/// Picks up to `n` of `candidates` (already in claim order) so that no two share a serialisation key.
pub(crate) fn distinct_keys<T>(candidates: Vec<(T, Option<String>)>, n: usize) -> Vec<T> {
    let mut seen = HashSet::new();
    let mut picked = Vec::with_capacity(n);
    for (item, key) in candidates {
        if picked.len() == n {
            break;
        }
        if let Some(k) = key {
            if !seen.insert(k) {
                continue;
            }
        }
        picked.push(item);
    }
    picked
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use strato_types::{JobKind, JobRecord, JobStatus, NewJob, QueueName};

    use super::*;
    use crate::EnqueueOutcome;

    const NOOP: JobKind = JobKind::new("noop");

    /// Fails every batch that holds a job whose payload is `{"poison": true}`; records batch sizes.
    #[derive(Clone, Default)]
    struct FakeWriter {
        batches: Arc<parking_lot::Mutex<Vec<usize>>>,
        commits: Arc<AtomicUsize>,
        signal: Arc<crate::JobSignal>,
    }

    fn record(job: &NewJob) -> JobRecord {
        let now = chrono::Utc::now();
        JobRecord {
            id: job.payload["n"].to_string(),
            kind: job.kind.clone(),
            queue: QueueName::DEFAULT,
            status: JobStatus::Queued,
            payload: job.payload.clone(),
            key: None,
            resource: None,
            priority: 0,
            progress: 0,
            error: None,
            result: None,
            attempts: 0,
            max_attempts: 1,
            lease_owner: None,
            lease_expires_at: None,
            run_after: now,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            timeout_ms: 1,
            idempotency_key: None,
            cancel_requested: false,
            dead_lettered_at: None,
        }
    }

    #[async_trait]
    impl BatchWriter for FakeWriter {
        async fn apply(&self, b: &BatchInput) -> Result<BatchOutput> {
            self.batches.lock().push(b.enqueues.len() + b.claims.len() + b.completions.len());
            if b.enqueues.iter().any(|j| j.payload["poison"] == true) {
                return Err(StoreError::Corrupt("poisoned batch".into()));
            }
            self.commits.fetch_add(1, Ordering::Relaxed);
            Ok(BatchOutput {
                completed: b.completions.iter().map(|c| c.worker == "holder").collect(),
                enqueued: b
                    .enqueues
                    .iter()
                    .map(|j| Enqueued { job: record(j), outcome: EnqueueOutcome::Created, replaced_payload: None })
                    .collect(),
                claimed: b.claims.iter().map(|_| None).collect(),
            })
        }

        fn signal(&self) -> &crate::JobSignal {
            &self.signal
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_requests_share_one_transaction() {
        let w = FakeWriter::default();
        let b = Batcher::spawn(w.clone());
        let jobs = (0..20).map(|n| b.enqueue(NewJob::new(NOOP, serde_json::json!({ "n": n }))));
        let result = serde_json::json!({});
        let (enq, done, other) = tokio::join!(
            futures::future::join_all(jobs),
            b.complete("j1", "holder", &result),
            b.complete("j2", "someone-else", &result),
        );
        let ids: Vec<String> = enq.into_iter().map(|e| e.unwrap().job.id).collect();
        assert_eq!(ids, (0..20).map(|n| n.to_string()).collect::<Vec<_>>(), "answers go back to their callers");
        assert!(done.unwrap());
        assert!(!other.unwrap());
        assert_eq!(*w.batches.lock(), vec![22], "one batch for all concurrent requests");
        assert_eq!(w.commits.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failing_request_fails_alone() {
        let w = FakeWriter::default();
        let b = Batcher::spawn(w.clone());
        let payloads =
            [serde_json::json!({"n": 1}), serde_json::json!({"n": 2, "poison": true}), serde_json::json!({"n": 3})];
        let out = futures::future::join_all(payloads.iter().map(|p| b.enqueue(NewJob::new(NOOP, p.clone())))).await;
        assert_eq!(out[0].as_ref().unwrap().job.id, "1");
        assert!(matches!(&out[1], Err(StoreError::Corrupt(m)) if m == "poisoned batch"));
        assert_eq!(out[2].as_ref().unwrap().job.id, "3");
        // The shared batch failed whole, then each request ran alone.
        assert_eq!(*w.batches.lock(), vec![3, 1, 1, 1]);
        assert_eq!(w.commits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_whose_caller_left_is_not_made() {
        let w = FakeWriter::default();
        let b = Batcher::spawn(w.clone());
        let any = Arc::new(ClaimFilter::default());
        let gone = b.claim(any.clone(), "w1", Duration::from_secs(1));
        // Polled once (the request is sent), then dropped before the answer.
        let _ = futures::poll!(Box::pin(gone));
        let kept = b.claim(any, "w2", Duration::from_secs(1)).await.unwrap();
        assert!(kept.is_none());
        assert_eq!(*w.batches.lock(), vec![1], "only the waiting claim reached the writer");
    }

    #[test]
    fn distinct_keys_keeps_order_and_skips_repeated_keys() {
        let c = vec![
            (1, Some("a".to_string())),
            (2, None),
            (3, Some("a".to_string())),
            (4, Some("b".to_string())),
            (5, None),
        ];
        assert_eq!(distinct_keys(c.clone(), 10), vec![1, 2, 4, 5]);
        assert_eq!(distinct_keys(c, 2), vec![1, 2]);
    }
}
