//! Dynamic batching of embedding requests, the way text-embeddings-inference queues them: concurrent requests'
//! texts go through the model in one forward pass, on one thread of its own.
//!
//! There is no fixed wait by default: a lone request runs at once, and while a batch is being computed the next
//! requests queue up and become the next batch, so batches grow with the load by themselves. Admission is
//! bounded: when more texts are queued than `max_queued_texts`, a request is refused at once with `overloaded`
//! (503, Retry-After) rather than left to wait in an unbounded queue. A request whose caller has gone (client
//! disconnected, request timed out) is dropped before it is computed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strato_ml::Embedder;
use strato_types::{ErrorCode, StratoError};
use tokio::sync::oneshot;

use crate::Result;

/// How requests are batched.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Texts per forward pass at most; a request with more (a training job's) bypasses the queue.
    pub max_batch_texts: usize,
    /// Tokens per forward pass at most, estimated from text length before tokenising.
    pub max_batch_tokens: usize,
    /// Texts waiting beyond which new requests are refused.
    pub max_queued_texts: usize,
    /// How long the first request of a batch waits for company (zero: not at all).
    pub max_wait: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self { max_batch_texts: 64, max_batch_tokens: 4096, max_queued_texts: 1024, max_wait: Duration::ZERO }
    }
}

struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>>>,
}

/// The queue in front of the model thread; dropping it stops the thread once the queue is drained.
pub(crate) struct EmbedQueue {
    tx: mpsc::Sender<Request>,
    queued: Arc<AtomicUsize>,
    max_queued: usize,
}

/// What the model thread reports per batch.
pub(crate) type BatchObserver = Box<dyn Fn(usize) + Send>;

/// The model: texts in, one vector per text out.
type EmbedFn = dyn Fn(&[&str]) -> std::result::Result<Vec<Vec<f32>>, String>;

impl EmbedQueue {
    /// Starts the model thread.
    pub(crate) fn start(embedder: Arc<Embedder>, opts: BatchOptions, observe: BatchObserver) -> Self {
        Self::start_with(move |texts: &[&str]| embedder.embed_batch(texts).map_err(|e| e.to_string()), opts, observe)
    }

    /// Starts the thread with any embedding function (the model's, or a test's).
    fn start_with(
        embed: impl Fn(&[&str]) -> std::result::Result<Vec<Vec<f32>>, String> + Send + 'static,
        opts: BatchOptions,
        observe: BatchObserver,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        let spawned =
            std::thread::Builder::new().name("strato-embed".into()).spawn(move || run(&embed, &rx, &q, opts, &observe));
        if let Err(e) = spawned {
            // Requests then fail one by one with a clear error (their sender sees the channel closed).
            tracing::error!(error = %e, "cannot start the embedding thread");
        }
        Self { tx, queued, max_queued: opts.max_queued_texts.max(1) }
    }

    /// Queues texts; the answer comes on the returned channel. Refuses at once when the queue is full.
    pub(crate) fn submit(&self, texts: Vec<String>) -> Result<oneshot::Receiver<Result<Vec<Vec<f32>>>>> {
        let n = texts.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        // A request larger than the whole queue is still admitted when nothing else waits.
        if before > 0 && before + n > self.max_queued {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(StratoError::new(
                ErrorCode::Overloaded,
                format!("{before} texts are already waiting for the embedding model; retry in a moment"),
            ));
        }
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request { texts, reply }).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(StratoError::internal("the embedding thread is not running; see the server log"));
        }
        Ok(rx)
    }
}

/// Cost of a text before tokenising: about four bytes per token, plus `[CLS]` and `[SEP]`.
fn estimated_tokens(text: &str) -> usize {
    text.len() / 4 + 2
}

fn run(
    embed: &EmbedFn,
    rx: &mpsc::Receiver<Request>,
    queued: &AtomicUsize,
    opts: BatchOptions,
    observe: &BatchObserver,
) {
    let mut carry: Option<Request> = None;
    loop {
        // 1. The batch's first request: one carried over from the last round, or the next to arrive.
        let first = match carry.take() {
            Some(r) => r,
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        let mut texts = batch[0].texts.len();
        let mut tokens: usize = batch[0].texts.iter().map(|t| estimated_tokens(t)).sum();
        // 2. Everything else already waiting, up to the budget; with a wait window, what arrives within it.
        let deadline = Instant::now() + opts.max_wait;
        while texts < opts.max_batch_texts && tokens < opts.max_batch_tokens {
            let next = match rx.try_recv() {
                Ok(r) => r,
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                }
            };
            let cost: usize = next.texts.iter().map(|t| estimated_tokens(t)).sum();
            if texts + next.texts.len() > opts.max_batch_texts || tokens + cost > opts.max_batch_tokens {
                carry = Some(next);
                break;
            }
            texts += next.texts.len();
            tokens += cost;
            batch.push(next);
        }
        // 3. Callers that have gone are not computed.
        let (live, gone): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(|r| !r.reply.is_closed());
        queued.fetch_sub(gone.iter().map(|r| r.texts.len()).sum(), Ordering::AcqRel);
        if live.is_empty() {
            continue;
        }
        let all: Vec<&str> = live.iter().flat_map(|r| r.texts.iter().map(String::as_str)).collect();
        observe(all.len());
        // 4. One forward pass, answers split back.
        let result = embed(&all);
        queued.fetch_sub(all.len(), Ordering::AcqRel);
        match result {
            Ok(vectors) => {
                let mut vectors = vectors.into_iter();
                for r in live {
                    let mine: Vec<Vec<f32>> = vectors.by_ref().take(r.texts.len()).collect();
                    let _ = r.reply.send(Ok(mine));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, texts = all.len(), "embedding failed");
                for r in live {
                    let _ = r.reply.send(Err(StratoError::internal("embedding failed; see the server log")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, Sender};
    use std::sync::Mutex;

    use super::*;

    /// A queue whose "model" answers each text with its length, records each batch, and blocks each call until
    /// the test lets it go: batches then form exactly as the test arranges them.
    struct Harness {
        queue: EmbedQueue,
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        started: Receiver<()>,
        release: Sender<bool>,
    }

    fn harness(opts: BatchOptions) -> Harness {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<bool>();
        let (b, release_rx) = (batches.clone(), Mutex::new(release_rx));
        let embed = move |texts: &[&str]| {
            b.lock().unwrap().push(texts.iter().map(|t| t.to_string()).collect());
            started_tx.send(()).unwrap();
            // true: answer; false: fail the batch.
            if release_rx.lock().unwrap().recv().unwrap() {
                Ok(texts.iter().map(|t| vec![t.len() as f32]).collect())
            } else {
                Err("model failed".into())
            }
        };
        Harness { queue: EmbedQueue::start_with(embed, opts, Box::new(|_| {})), batches, started, release }
    }

    fn texts(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn requests_waiting_during_a_batch_become_the_next_batch() {
        let h = harness(BatchOptions::default());
        let a = h.queue.submit(texts(&["a"])).unwrap();
        h.started.recv().unwrap();
        let b = h.queue.submit(texts(&["bb", "bbb"])).unwrap();
        let c = h.queue.submit(texts(&["cccc"])).unwrap();
        h.release.send(true).unwrap();
        assert_eq!(a.await.unwrap().unwrap(), vec![vec![1.0]]);
        h.started.recv().unwrap();
        h.release.send(true).unwrap();
        assert_eq!(b.await.unwrap().unwrap(), vec![vec![2.0], vec![3.0]]);
        assert_eq!(c.await.unwrap().unwrap(), vec![vec![4.0]]);
        assert_eq!(*h.batches.lock().unwrap(), vec![texts(&["a"]), texts(&["bb", "bbb", "cccc"])]);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_text_budget() {
        let h = harness(BatchOptions { max_batch_texts: 2, ..Default::default() });
        let a = h.queue.submit(texts(&["a"])).unwrap();
        h.started.recv().unwrap();
        let rest: Vec<_> = ["b", "c", "d"].iter().map(|t| h.queue.submit(texts(&[t])).unwrap()).collect();
        for _ in 0..3 {
            h.release.send(true).unwrap();
        }
        a.await.unwrap().unwrap();
        for r in rest {
            r.await.unwrap().unwrap();
        }
        assert_eq!(*h.batches.lock().unwrap(), vec![texts(&["a"]), texts(&["b", "c"]), texts(&["d"])]);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_frees_up() {
        let h = harness(BatchOptions { max_queued_texts: 3, ..Default::default() });
        let a = h.queue.submit(texts(&["a"])).unwrap();
        h.started.recv().unwrap();
        let b = h.queue.submit(texts(&["b", "b"])).unwrap();
        let refused = h.queue.submit(texts(&["c"])).expect_err("the queue holds 3 texts");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert!(refused.message.contains("retry"), "{}", refused.message);
        h.release.send(true).unwrap();
        h.started.recv().unwrap();
        h.release.send(true).unwrap();
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        // Everything answered: the queue takes requests again.
        let d = h.queue.submit(texts(&["d"])).unwrap();
        h.started.recv().unwrap();
        h.release.send(true).unwrap();
        assert_eq!(d.await.unwrap().unwrap(), vec![vec![1.0]]);
    }

    #[tokio::test]
    async fn callers_that_left_are_not_computed() {
        let h = harness(BatchOptions::default());
        let a = h.queue.submit(texts(&["a"])).unwrap();
        h.started.recv().unwrap();
        drop(h.queue.submit(texts(&["gone"])).unwrap());
        let c = h.queue.submit(texts(&["c"])).unwrap();
        h.release.send(true).unwrap();
        h.started.recv().unwrap();
        h.release.send(true).unwrap();
        a.await.unwrap().unwrap();
        c.await.unwrap().unwrap();
        assert_eq!(*h.batches.lock().unwrap(), vec![texts(&["a"]), texts(&["c"])]);
    }

    #[tokio::test]
    async fn a_failed_batch_fails_its_callers_only() {
        let h = harness(BatchOptions::default());
        let a = h.queue.submit(texts(&["a"])).unwrap();
        h.started.recv().unwrap();
        h.release.send(false).unwrap();
        let err = a.await.unwrap().expect_err("the batch failed");
        assert_eq!(err.code, ErrorCode::Internal);
        let b = h.queue.submit(texts(&["b"])).unwrap();
        h.started.recv().unwrap();
        h.release.send(true).unwrap();
        assert_eq!(b.await.unwrap().unwrap(), vec![vec![1.0]]);
    }
}
