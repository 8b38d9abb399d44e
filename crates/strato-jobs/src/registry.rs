//! Job kinds as a registry (River's `Workers` / `AddWorker`): a [`Worker`] is registered for its [`JobArgs`]
//! type at start-up, the pool dispatches through the registry, and [`Layer`]s wrap every worker once (timing,
//! tracing, panic capture) instead of being written per kind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::FutureExt;
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, QueueName, ResourceRef};
use tracing::Instrument;

use crate::{JobContext, JobError, JobHandler};

/// Runs the jobs of one kind, with their typed arguments.
#[async_trait]
pub trait Worker: Send + Sync + 'static {
    /// The arguments this worker's jobs carry; their type names the kind.
    type Args: JobArgs;

    /// Runs one attempt. Must be idempotent: a job may run again after a crash.
    async fn work(&self, args: Self::Args, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError>;
}

/// A worker as the pool sees it: the payload decoded into the worker's arguments first (a payload that does not
/// decode is a permanent failure: retrying cannot fix it).
struct Typed<W>(W);

#[async_trait]
impl<W: Worker> JobHandler for Typed<W> {
    async fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        let args: W::Args = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("bad {} job payload: {e}", job.kind)))?;
        self.0.work(args, job, ctx).await
    }
}

/// Wraps every registered worker once (apalis's tower layers): timing, tracing, panic capture, or a capability's
/// own concern.
pub trait Layer: Send + Sync + 'static {
    /// The worker `inner` of `kind`, wrapped.
    fn wrap(&self, kind: &JobKind, inner: Arc<dyn JobHandler>) -> Arc<dyn JobHandler>;
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two workers for one kind.
    #[error("a worker for job kind {0:?} is already registered")]
    Duplicate(JobKind),
}

struct Registered {
    defaults: JobDefaults,
    handler: Arc<dyn JobHandler>,
    /// Decodes a payload into the kind's arguments and names their resource.
    check: fn(&serde_json::Value) -> Result<Option<ResourceRef>, String>,
    /// The generic submission route may queue it.
    generic: bool,
}

fn check_args<A: JobArgs>(payload: &serde_json::Value) -> Result<Option<ResourceRef>, String> {
    A::deserialize(payload).map(|a| a.resource()).map_err(|e| e.to_string())
}

/// The job kinds this process runs: a worker and the kind's defaults per kind, and the layers around them. Build it
/// at start-up (each capability's `register(&mut Workers)`), then hand it to the pool.
#[derive(Default)]
pub struct Workers {
    kinds: BTreeMap<JobKind, Registered>,
    layers: Vec<Arc<dyn Layer>>,
    /// Workers a queue gets when the operator names none (1 otherwise).
    concurrency: BTreeMap<QueueName, usize>,
    /// Called once a job of a kind in the set has ended for good, after its end is stored.
    ended: Vec<(BTreeSet<JobKind>, EndHook)>,
}

/// Told that a job ended for good (succeeded, failed without a retry, dead-lettered or cancelled) once its end is
/// stored: `(job id, kind)`. It runs on the worker's task, so it must not block; it spawns what takes time.
pub type EndHook = Arc<dyn Fn(&str, &JobKind) + Send + Sync>;

impl Workers {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `worker` for its arguments' kind.
    ///
    /// # Panics
    /// When the kind already has a worker: two capabilities claiming one kind is a programming error, found by the
    /// first start-up (see [`Workers::try_add`] for the error instead).
    pub fn add<W: Worker>(&mut self, worker: W) -> &mut Self {
        if let Err(e) = self.try_add(worker) {
            panic!("{e}");
        }
        self
    }

    /// Registers `worker` for its arguments' kind, or says why it cannot be.
    pub fn try_add<W: Worker>(&mut self, worker: W) -> Result<&mut Self, RegistryError> {
        let kind = <W::Args as JobArgs>::KIND;
        if self.kinds.contains_key(&kind) {
            return Err(RegistryError::Duplicate(kind));
        }
        let handler: Arc<dyn JobHandler> = Arc::new(Typed(worker));
        let check = check_args::<W::Args>;
        let generic = <W::Args as JobArgs>::GENERIC_SUBMIT;
        self.kinds.insert(kind, Registered { defaults: <W::Args as JobArgs>::defaults(), handler, check, generic });
        Ok(self)
    }

    /// Adds a layer around every worker (the first added is the innermost).
    pub fn layer(&mut self, layer: impl Layer) -> &mut Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Calls `hook` when a job of one of `kinds` ends for good in this process's pool: what waits on such jobs hears
    /// of their end at once instead of polling for it. A job that ends elsewhere (a cancel while queued, a lapsed
    /// lease reaped into the dead-letter queue) is not announced: a waiter still needs a slow look of its own.
    pub fn on_end(&mut self, kinds: impl IntoIterator<Item = JobKind>, hook: EndHook) -> &mut Self {
        self.ended.push((kinds.into_iter().collect(), hook));
        self
    }

    /// The end hooks, for the pool.
    pub(crate) fn end_hooks(&self) -> Arc<[(BTreeSet<JobKind>, EndHook)]> {
        self.ended.clone().into()
    }

    /// The kinds registered, sorted.
    pub fn kinds(&self) -> Vec<JobKind> {
        self.kinds.keys().cloned().collect()
    }

    /// Whether `kind` is registered.
    pub fn knows(&self, kind: &JobKind) -> bool {
        self.kinds.contains_key(kind)
    }

    /// A registered kind's defaults.
    pub fn defaults(&self, kind: &JobKind) -> Option<&JobDefaults> {
        self.kinds.get(kind).map(|r| &r.defaults)
    }

    /// Checks that `payload` is a valid job of `kind` (it decodes into the kind's arguments), so a bad submission is
    /// refused up front instead of failing in a worker, and names the resource the job would work on; `Err` says
    /// what is wrong, `None` that the kind is unknown.
    pub fn check(&self, kind: &JobKind, payload: &serde_json::Value) -> Option<Result<Option<ResourceRef>, String>> {
        self.kinds.get(kind).map(|r| (r.check)(payload))
    }

    /// Whether the generic submission route may queue jobs of `kind`.
    pub fn is_generic(&self, kind: &JobKind) -> bool {
        self.kinds.get(kind).is_some_and(|r| r.generic)
    }

    /// The kinds the generic submission route may queue, sorted.
    pub fn generic_kinds(&self) -> impl Iterator<Item = &JobKind> {
        self.kinds.iter().filter(|(_, r)| r.generic).map(|(k, _)| k)
    }

    /// Says how many workers `queue` gets when the operator does not say: a queue whose jobs mostly wait (on
    /// functions, on a workflow's tasks) wants more than one.
    pub fn default_concurrency(&mut self, queue: QueueName, n: usize) -> &mut Self {
        self.concurrency.insert(queue, n.max(1));
        self
    }

    /// The workers `queue` gets by default.
    pub fn concurrency_of(&self, queue: &QueueName) -> usize {
        self.concurrency.get(queue).copied().unwrap_or(1)
    }

    /// The queues the registered kinds wait in by default, sorted.
    pub fn queues(&self) -> BTreeSet<QueueName> {
        self.kinds.values().map(|r| r.defaults.queue.clone()).collect()
    }

    /// Every registered worker with the layers applied, once, for the pool.
    pub(crate) fn layered(&self) -> BTreeMap<JobKind, Arc<dyn JobHandler>> {
        self.kinds
            .iter()
            .map(|(kind, r)| {
                let handler = self.layers.iter().fold(r.handler.clone(), |inner, l| l.wrap(kind, inner));
                (kind.clone(), handler)
            })
            .collect()
    }

    /// The worker of `kind` with the layers applied (a job run outside the pool, such as the CLI's `train`).
    pub fn handler(&self, kind: &JobKind) -> Option<Arc<dyn JobHandler>> {
        let r = self.kinds.get(kind)?;
        Some(self.layers.iter().fold(r.handler.clone(), |inner, l| l.wrap(kind, inner)))
    }
}

/// Turns a panic in a worker into a permanent failure of the attempt (the pool's task would catch it too, but
/// without the layers outside this one seeing an outcome).
pub struct CatchPanicLayer;

struct CatchPanic(Arc<dyn JobHandler>);

#[async_trait]
impl JobHandler for CatchPanic {
    async fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        match std::panic::AssertUnwindSafe(self.0.run(job, ctx)).catch_unwind().await {
            Ok(out) => out,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".into());
                tracing::error!(job = %job.id, kind = %job.kind, panic = %what, "the job's worker panicked");
                Err(JobError::Permanent("the job handler panicked; see the server log".into()))
            }
        }
    }
}

impl Layer for CatchPanicLayer {
    fn wrap(&self, _: &JobKind, inner: Arc<dyn JobHandler>) -> Arc<dyn JobHandler> {
        Arc::new(CatchPanic(inner))
    }
}

/// Runs each attempt in a tracing span naming the job, its kind and attempt, and logs how it ended with its
/// duration.
pub struct TracingLayer;

struct Traced(Arc<dyn JobHandler>);

#[async_trait]
impl JobHandler for Traced {
    async fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        let span =
            tracing::info_span!("job", id = %job.id, kind = %job.kind, queue = %job.queue, attempt = job.attempts);
        let started = Instant::now();
        let out = self.0.run(job, ctx).instrument(span.clone()).await;
        let ms = started.elapsed().as_millis() as u64;
        span.in_scope(|| match &out {
            Ok(_) => tracing::debug!(ms, "job attempt succeeded"),
            Err(e) => tracing::debug!(ms, error = %e, "job attempt failed"),
        });
        out
    }
}

impl Layer for TracingLayer {
    fn wrap(&self, _: &JobKind, inner: Arc<dyn JobHandler>) -> Arc<dyn JobHandler> {
        Arc::new(Traced(inner))
    }
}

/// Reports every attempt's duration and outcome (`"ok"` or `"error"`) to a callback: the service's metrics.
pub struct TimingLayer<F>(pub F);

struct Timed<F> {
    inner: Arc<dyn JobHandler>,
    observe: Arc<F>,
}

#[async_trait]
impl<F: Fn(&JobKind, &'static str, std::time::Duration) + Send + Sync + 'static> JobHandler for Timed<F> {
    async fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        let started = Instant::now();
        let out = self.inner.run(job, ctx).await;
        (self.observe)(&job.kind, if out.is_ok() { "ok" } else { "error" }, started.elapsed());
        out
    }
}

impl<F: Fn(&JobKind, &'static str, std::time::Duration) + Send + Sync + Clone + 'static> Layer for TimingLayer<F> {
    fn wrap(&self, _: &JobKind, inner: Arc<dyn JobHandler>) -> Arc<dyn JobHandler> {
        Arc::new(Timed { inner, observe: Arc::new(self.0.clone()) })
    }
}
