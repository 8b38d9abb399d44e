//! Failed executions as dead letters, and metrics per state machine.
//!
//! When an execution fails or times out, the commit that ends it queues a `workflow.failed` job. Its first attempt
//! fails on purpose with the execution's error, so the job lands in the dead-letter queue at once: the same alert
//! (the webhook), the same `GET /v1/dlq` listing as any failed job. Replaying that dead letter redrives the
//! execution — the seeds' "go to the console, pick and restart the failed execution", done from the DLQ.

use async_trait::async_trait;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, NewJob, QueueName};

use crate::durable::{decode, ExecutionRecord, EXEC_DOC};
use crate::service::{WorkflowError, Workflows};

/// The `workflow.failed` job: an execution that failed (or timed out) with this redrive count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedArgs {
    /// The execution (`<machine>:<name>`).
    pub execution: String,
    /// Its redrive count when it failed: a later failure is a new dead letter.
    pub redrive_count: u32,
}

impl JobArgs for FailedArgs {
    const KIND: JobKind = JobKind::new("workflow.failed");

    fn defaults() -> JobDefaults {
        // One attempt: the first is the dead letter.
        JobDefaults {
            queue: QueueName::new("workflows"),
            timeout: std::time::Duration::from_secs(60),
            max_attempts: 1,
            priority: 0,
        }
    }
}

/// The dead-letter job of an execution that ended failed or timed out; `None` for any other end (a stop is
/// deliberate, not an alert).
pub(crate) fn failure_job(x: &ExecutionRecord) -> Option<NewJob> {
    // A Map Run's child is its parent's business: the parent's failure is the dead letter.
    if !matches!(x.status.as_str(), "FAILED" | "TIMED_OUT") || x.map_run.is_some() {
        return None;
    }
    let args = FailedArgs { execution: format!("{}:{}", x.machine, x.name), redrive_count: x.redrive_count };
    let mut job = NewJob::of(&args).ok()?;
    job.key = Some(format!("sfn-failed:{}#{}", args.execution, args.redrive_count));
    Some(job)
}

/// Runs `workflow.failed` jobs.
pub struct FailedWorker {
    workflows: Workflows,
}

impl FailedWorker {
    /// A worker over `workflows`.
    pub fn new(workflows: Workflows) -> Self {
        Self { workflows }
    }
}

#[async_trait]
impl Worker for FailedWorker {
    type Args = FailedArgs;

    async fn work(&self, a: FailedArgs, job: &JobRecord, _: &JobContext) -> Result<Value, JobError> {
        let w = &self.workflows;
        let doc =
            w.store().documents().get(EXEC_DOC, &a.execution).await.map_err(|e| JobError::Retryable(e.to_string()))?;
        let Some(doc) = doc else { return Ok(json!({"skipped": "the execution no longer exists"})) };
        let x: ExecutionRecord = decode(&doc).map_err(|e| JobError::Permanent(e.to_string()))?;
        let still_failed = matches!(x.status.as_str(), "FAILED" | "TIMED_OUT") && x.redrive_count == a.redrive_count;
        if !still_failed {
            return Ok(
                json!({"skipped": format!("the execution is {} (redriven {} times)", x.status, x.redrive_count)}),
            );
        }
        let arn = w.execution_arn(&x.machine, &x.name);
        if job.error.is_none() {
            // The first attempt: into the dead-letter queue, with what failed and how to restart it.
            return Err(JobError::Retryable(format!(
                "execution {arn} {}: {}: {}. Replaying this dead letter redrives the execution",
                x.status,
                x.error.as_deref().unwrap_or_default(),
                x.cause.as_deref().unwrap_or_default()
            )));
        }
        // Replayed from the dead-letter queue: redrive.
        match w.redrive_execution(&a.execution).await {
            Ok(r) => Ok(json!({"redriven": arn, "redrive_count": r.redrive_count})),
            Err(WorkflowError::Internal(m)) => Err(JobError::Retryable(m)),
            Err(e) => Err(JobError::Permanent(e.to_string())),
        }
    }
}

/// The `workflow.expire` job: an ended execution's records deleted once they are older than the history's time to
/// keep (the job TTL), unless it was redriven meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExpireArgs {
    /// The execution (`<machine>:<name>`).
    pub execution: String,
    /// When it ended (milliseconds since the epoch): a later end (after a redrive) has its own expiry.
    pub stopped_ms: i64,
}

impl JobArgs for ExpireArgs {
    const KIND: JobKind = JobKind::new("workflow.expire");

    fn defaults() -> JobDefaults {
        JobDefaults {
            queue: QueueName::new("workflows"),
            timeout: std::time::Duration::from_secs(600),
            max_attempts: 5,
            priority: -1,
        }
    }
}

/// The job that deletes an ended execution's records after `keep`; `None` while it runs or when history is kept
/// forever.
pub(crate) fn expiry_job(x: &ExecutionRecord, keep: Option<std::time::Duration>) -> Option<NewJob> {
    // A Map Run's children go with their parent (a redrive of the parent may redrive them until then).
    if x.status == "RUNNING" || x.map_run.is_some() {
        return None;
    }
    let (stopped, keep) = (x.stopped?, keep?);
    let args = ExpireArgs { execution: format!("{}:{}", x.machine, x.name), stopped_ms: stopped.timestamp_millis() };
    let mut job = NewJob::of(&args).ok()?;
    job.run_after = Some(stopped + chrono::Duration::from_std(keep).ok()?);
    Some(job)
}

/// Runs `workflow.expire` jobs.
pub struct ExpireWorker {
    workflows: Workflows,
}

impl ExpireWorker {
    /// A worker over `workflows`.
    pub fn new(workflows: Workflows) -> Self {
        Self { workflows }
    }
}

#[async_trait]
impl Worker for ExpireWorker {
    type Args = ExpireArgs;

    async fn work(&self, a: ExpireArgs, _: &JobRecord, _: &JobContext) -> Result<Value, JobError> {
        let retry = |e: strato_store::StoreError| JobError::Retryable(e.to_string());
        let w = &self.workflows;
        let mut tx = w.store().begin().await.map_err(retry)?;
        let Some(doc) = tx.documents().get_for_update(EXEC_DOC, &a.execution).await.map_err(retry)? else {
            return Ok(json!({"deleted": false}));
        };
        let x: ExecutionRecord = decode(&doc).map_err(|e| JobError::Permanent(e.to_string()))?;
        // Redriven since (running again, or ended later): that end has its own expiry.
        if x.status == "RUNNING" || x.stopped.map(|t| t.timestamp_millis()) != Some(a.stopped_ms) {
            return Ok(json!({"deleted": false}));
        }
        let prefix = format!("{}#", a.execution);
        let mut n = 0;
        // Map Runs first: their children are found through this execution's frames.
        for run in &x.map_runs {
            n += w.delete_map_run(&mut tx, run).await.map_err(|e| JobError::Retryable(e.to_string()))?;
        }
        for kind in [crate::durable::FRAME_DOC, crate::durable::EVENTS_DOC] {
            n += tx.documents().delete_prefix(kind, &prefix).await.map_err(retry)?;
        }
        n += tx
            .documents()
            .delete_prefix(crate::durable::TOKEN_DOC, &crate::durable::token_prefix(&a.execution))
            .await
            .map_err(retry)?;
        tx.documents().delete(EXEC_DOC, &a.execution).await.map_err(retry)?;
        tx.commit().await.map_err(retry)?;
        Ok(json!({"deleted": true, "documents": n + 1}))
    }
}

/// Metrics per state machine.
#[derive(Clone)]
pub(crate) struct WorkflowMetrics {
    /// Executions started, by `state_machine`.
    started: IntCounterVec,
    /// Executions ended, by `state_machine` and `status` (SUCCEEDED, FAILED, TIMED_OUT, ABORTED).
    ended: IntCounterVec,
    /// State transitions committed, by `state_machine`.
    transitions: IntCounterVec,
    /// Seconds from a frame's job picking it up to the commit of its states, by `state_machine`: the latency a
    /// transition adds.
    commit_latency: HistogramVec,
}

impl WorkflowMetrics {
    /// Registers the collectors in `registry`; `None` when they are registered there already (a second service
    /// in one process keeps counting in its own).
    pub(crate) fn new(registry: &prometheus::Registry) -> Option<Self> {
        let started = IntCounterVec::new(
            Opts::new("strato_workflow_executions_started_total", "Standard executions started"),
            &["state_machine"],
        )
        .ok()?;
        let ended = IntCounterVec::new(
            Opts::new("strato_workflow_executions_ended_total", "Standard executions ended, by status"),
            &["state_machine", "status"],
        )
        .ok()?;
        let transitions = IntCounterVec::new(
            Opts::new("strato_workflow_transitions_total", "States exited in standard executions"),
            &["state_machine"],
        )
        .ok()?;
        let commit_latency = HistogramVec::new(
            HistogramOpts::new(
                "strato_workflow_commit_seconds",
                "Time from a frame's job picking it up to the commit of the states it ran",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0]),
            &["state_machine"],
        )
        .ok()?;
        registry.register(Box::new(started.clone())).ok()?;
        registry.register(Box::new(ended.clone())).ok()?;
        registry.register(Box::new(transitions.clone())).ok()?;
        registry.register(Box::new(commit_latency.clone())).ok()?;
        Some(Self { started, ended, transitions, commit_latency })
    }

    pub(crate) fn started(&self, machine: &str) {
        self.started.with_label_values(&[machine]).inc();
    }

    pub(crate) fn ended(&self, machine: &str, status: &str) {
        self.ended.with_label_values(&[machine, status]).inc();
    }

    pub(crate) fn committed(&self, machine: &str, transitions: usize, seconds: f64) {
        self.transitions.with_label_values(&[machine]).inc_by(transitions as u64);
        self.commit_latency.with_label_values(&[machine]).observe(seconds);
    }
}
