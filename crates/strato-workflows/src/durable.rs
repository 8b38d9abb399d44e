//! Standard executions, run durably on the job queue.
//!
//! An execution is a tree of *frames*: the root runs the state machine; each Parallel branch and each Map iteration
//! is a child frame running its sub-machine. A frame is a document holding the state it is in, that state's raw
//! input, and what it waits for. A `workflow.advance` job drives one frame: it runs states in memory and commits at
//! the durability points — before a task is invoked and when its result arrives, when the frame parks (a Wait, a
//! retry's backoff, a task token, children to run) and when it ends. A commit is one transaction: the execution's
//! row locked first (so commits of one execution are serialised and event ids stay in order), the frame's revision
//! checked (a stale or duplicate job changes nothing), the history events appended, the frame written, and the jobs
//! that continue the work enqueued. Consecutive Pass/Choice states commit together (up to [`TRANSITIONS_PER_COMMIT`]),
//! so a chain of them costs one transaction, not one per state.
//!
//! A task's invocation is at-least-once (a crash between invoking and committing invokes it again, with the same
//! request id); no committed state is entered again. Waits and task tokens hold no worker: the frame's row and a job
//! due later are all they cost.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_jobs::{JobContext, JobError, Worker};
use strato_store::{Document, Tx};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, NewJob, QueueName};

use crate::activities::{activity_of, task_id, QueuedTask, ACTIVITY_TASK_DOC};
use crate::dataflow::{Io, Produced};
use crate::definition::{Machine, State};
use crate::error::StatesError;
use crate::history::{self, Pending, TaskEvents};
use crate::interpreter::{self, NoTasks, OnError, TaskRunner, Tolerance};
use crate::jobs_task;
use crate::nested;
use crate::path::Vars;
use crate::service::{FunctionTasks, WorkflowError, Workflows};

pub(crate) const EXEC_DOC: &str = "sfn-execution";
pub(crate) const FRAME_DOC: &str = "sfn-frame";
pub(crate) const EVENTS_DOC: &str = "sfn-events";
pub(crate) const DEFINITION_DOC: &str = "sfn-definition";
pub(crate) const TOKEN_DOC: &str = "sfn-token";

/// The root frame's path.
pub(crate) const ROOT: &str = "r";

/// Pass, Choice and zero-second Wait states run between two commits at most.
pub const TRANSITIONS_PER_COMMIT: usize = 500;

/// The check of a new execution's first job, due [`FIRST_STATES_FALLBACK`] after its start: it runs the root frame
/// only if the starting process did not get it going.
pub(crate) const FIRST: &str = "first";

/// How long a new execution's first job waits for the starting process to run its first states.
pub(crate) const FIRST_STATES_FALLBACK: std::time::Duration = std::time::Duration::from_secs(2);

/// How many new executions' first states a process runs side by side, as many as its `workflows` queue's workers:
/// a burst of starts beyond them goes to the queue, so one caller's starts still run in parallel.
pub(crate) const FIRST_STATES_AT_ONCE: usize = 8;

type Result<T> = std::result::Result<T, WorkflowError>;

/// A standard execution, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutionRecord {
    /// The state machine's name.
    pub machine: String,
    /// The execution's name.
    pub name: String,
    /// The definition it runs (the SHA-256 of its text; kept in its own document).
    pub definition: String,
    /// The role ARN the state machine had when it started.
    #[serde(default)]
    pub role_arn: String,
    /// The input, as given.
    pub input: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it stopped.
    #[serde(default)]
    pub stopped: Option<DateTime<Utc>>,
    /// Its output (succeeded).
    #[serde(default)]
    pub output: Option<String>,
    /// Its error and cause (failed, timed out, aborted).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
    /// How many times it was redriven, and when last.
    #[serde(default)]
    pub redrive_count: u32,
    #[serde(default)]
    pub redrive_date: Option<DateTime<Utc>>,
    /// The id the next history event gets.
    pub next_event: u64,
    /// When the execution times out (the machine's `TimeoutSeconds`).
    #[serde(default)]
    pub timeout_at: Option<DateTime<Utc>>,
    /// Who started it: Task states call functions as this caller.
    #[serde(default)]
    pub identity: Option<Value>,
    /// The version it runs, when started through a version or an alias.
    #[serde(default)]
    pub version_arn: Option<String>,
    /// The alias it was started through.
    #[serde(default)]
    pub alias_arn: Option<String>,
    /// The task of another execution that waits for this one to end (`states:startExecution.sync`).
    #[serde(default)]
    pub parent: Option<crate::nested::ParentLink>,
    /// The Map Run this execution is a child of (a Distributed Map's item).
    #[serde(default)]
    pub map_run: Option<crate::map_run::MapRunLink>,
    /// The Map Runs this execution started, oldest first.
    #[serde(default)]
    pub map_runs: Vec<String>,
}

impl ExecutionRecord {
    /// A new running execution of `machine` (with its definition's hash and role) named `name`, from now; no
    /// timeout, caller, version or parent yet.
    pub(crate) fn starting(machine: &str, name: &str, definition: &str, role_arn: &str, input: &str) -> Self {
        Self {
            machine: machine.to_string(),
            name: name.to_string(),
            definition: definition.to_string(),
            role_arn: role_arn.to_string(),
            input: input.to_string(),
            status: "RUNNING".into(),
            started: Utc::now(),
            stopped: None,
            output: None,
            error: None,
            cause: None,
            redrive_count: 0,
            redrive_date: None,
            next_event: 1,
            timeout_at: None,
            identity: None,
            version_arn: None,
            alias_arn: None,
            parent: None,
            map_run: None,
            map_runs: Vec::new(),
        }
    }
}

/// Where a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FrameStatus {
    /// A Map iteration not started yet (`MaxConcurrency`).
    Pending,
    /// A job is (or will be) running its states.
    Running,
    /// Parked until `wake_at` (a Wait, a retry's backoff) or a task token's answer.
    Waiting,
    /// Waiting for its children (Parallel branches, Map iterations).
    Children,
    /// Ended.
    Succeeded,
    Failed,
    /// Stopped because its parent no longer needs it.
    Aborted,
}

/// A result waiting to be applied to a frame's current state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Outcome {
    /// A task's result.
    Result(Value),
    /// A task's (or the children's) error.
    Error(StatesError),
    /// Every child ended within tolerance: collect their outputs.
    ChildrenDone,
}

/// A Parallel's or Map's children, as their parent counts them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Children {
    /// How many.
    pub total: usize,
    /// How many were started (in index order).
    pub started: usize,
    /// How many ended, and how many of those failed.
    pub finished: usize,
    pub failed: usize,
    /// The first failure.
    #[serde(default)]
    pub first_error: Option<StatesError>,
    /// At most this many run at once.
    pub limit: usize,
    /// Tells these children from an earlier run of the same state's (its `*StateStarted` event id).
    pub generation: u64,
    /// The Map's tolerated failures, evaluated when it started.
    #[serde(default)]
    pub tolerance: Option<Tolerance>,
    /// The Map Run whose child executions these are (a Distributed Map).
    #[serde(default)]
    pub run: Option<String>,
}

/// One frame of an execution: the root machine, a Parallel branch or a Map iteration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frame {
    /// The sub-machine it runs: (state, branch) steps from the root machine; empty for the root.
    pub machine: Vec<(String, usize)>,
    /// Its index among its parent's children.
    pub index: usize,
    /// The parent's [`Children::generation`] it belongs to.
    pub generation: u64,
    /// The state it is in, and that state's raw input.
    pub state: String,
    pub input: Value,
    pub status: FrameStatus,
    /// The state's `*StateEntered` event is recorded.
    pub entered: bool,
    /// The current Task's effective parameters, once scheduled (a retry schedules again).
    #[serde(default)]
    pub params: Option<Value>,
    /// Retries used, per retrier of the current state.
    #[serde(default)]
    pub attempts: Vec<u32>,
    /// `$$.State.RetryCount`.
    #[serde(default)]
    pub retry_count: u32,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// The task token a callback task waits on.
    #[serde(default)]
    pub token: Option<String>,
    /// The callback task's resource took the work (`TaskSubmitted`): a job that finds a token not yet submitted
    /// (its worker died between committing the token and invoking) invokes the resource again.
    #[serde(default)]
    pub submitted: bool,
    /// When a parked frame wakes.
    #[serde(default)]
    pub wake_at: Option<DateTime<Utc>>,
    /// A callback task's deadline (`TimeoutSeconds`), heartbeat interval and last heartbeat.
    #[serde(default)]
    pub deadline: Option<DateTime<Utc>>,
    #[serde(default)]
    pub heartbeat: Option<(u64, DateTime<Utc>)>,
    #[serde(default)]
    pub children: Option<Children>,
    /// The id of this frame's latest event (the next one's `previousEventId`).
    pub last_event: u64,
    /// The variables in scope (a branch's or an iteration's start as its parent's).
    #[serde(default)]
    pub vars: Vars,
    /// How it ended.
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<StatesError>,
    /// A Distributed Map's proxy frame: the child execution running its item.
    #[serde(default)]
    pub child: Option<String>,
}

impl Frame {
    pub(crate) fn new(machine: Vec<(String, usize)>, index: usize, generation: u64, state: &str, input: Value) -> Self {
        Self {
            machine,
            index,
            generation,
            state: state.to_string(),
            input,
            status: FrameStatus::Running,
            entered: false,
            params: None,
            attempts: Vec::new(),
            retry_count: 0,
            outcome: None,
            token: None,
            submitted: false,
            wake_at: None,
            deadline: None,
            heartbeat: None,
            children: None,
            last_event: 0,
            vars: Vars::new(),
            output: None,
            error: None,
            child: None,
        }
    }

    /// Moves on to `next` with `input`.
    fn move_to(&mut self, next: String, input: Value) {
        self.state = next;
        self.input = input;
        self.entered = false;
        self.restart_state();
        self.children = None;
    }

    /// Forgets the current state's progress (its task, retries, waits and answers), so it runs from its start.
    pub(crate) fn restart_state(&mut self) {
        self.params = None;
        self.attempts.clear();
        self.retry_count = 0;
        self.outcome = None;
        self.token = None;
        self.submitted = false;
        self.wake_at = None;
        self.deadline = None;
        self.heartbeat = None;
    }
}

/// A frame document's id.
pub(crate) fn frame_id(execution: &str, path: &str) -> String {
    format!("{execution}#{path}")
}

fn parent_path(path: &str) -> Option<&str> {
    path.rsplit_once('.').map(|(p, _)| p)
}

/// The `workflow.advance` job: drive one frame of an execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdvanceArgs {
    /// The execution (`<machine>:<name>`).
    pub execution: String,
    /// The frame's path (`r`, `r.0`, `r.0.3`).
    pub frame: String,
    /// A deadline to check instead: `execution-timeout`, or a task token whose timeout or heartbeat is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

impl JobArgs for AdvanceArgs {
    const KIND: JobKind = JobKind::new("workflow.advance");

    fn defaults() -> JobDefaults {
        // A job runs at most one task at a time, and a Lambda task at most 15 minutes.
        JobDefaults {
            queue: QueueName::new("workflows"),
            timeout: std::time::Duration::from_secs(960),
            max_attempts: 10,
            priority: 0,
        }
    }
}

pub(crate) fn advance_job(execution: &str, path: &str, check: Option<String>, at: Option<DateTime<Utc>>) -> NewJob {
    let args = AdvanceArgs { execution: execution.to_string(), frame: path.to_string(), check };
    let mut job = NewJob::of(&args).expect("advance arguments encode");
    // One frame is never driven by two jobs at once.
    job.key = Some(format!("sfn:{}", frame_id(execution, path)));
    // The queue keeps milliseconds: rounded up, a job never runs before the instant its frame waits for (rounded
    // down, it could run a fraction of a millisecond early, find nothing due, and leave the frame waiting forever).
    job.run_after = at.map(ceil_ms);
    job
}

/// `t` rounded up to the next whole millisecond.
fn ceil_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    let sub_ms = t.timestamp_subsec_nanos() % 1_000_000;
    if sub_ms == 0 {
        t
    } else {
        t + chrono::Duration::nanoseconds(i64::from(1_000_000 - sub_ms))
    }
}

/// Runs `workflow.advance` jobs.
pub struct AdvanceWorker {
    workflows: Workflows,
}

impl AdvanceWorker {
    /// A worker over `workflows`.
    pub fn new(workflows: Workflows) -> Self {
        Self { workflows }
    }
}

#[async_trait]
impl Worker for AdvanceWorker {
    type Args = AdvanceArgs;

    async fn work(&self, a: AdvanceArgs, _: &JobRecord, ctx: &JobContext) -> std::result::Result<Value, JobError> {
        self.workflows.advance(&a, ctx).await.map_err(|e| match e {
            WorkflowError::Internal(m) => JobError::Retryable(m),
            e => JobError::Permanent(e.to_string()),
        })?;
        Ok(Value::Null)
    }
}

/// What a frame does once its states up to a durability point have run.
enum After {
    /// Commit and keep going in this job.
    Go,
    /// Park until then (a Wait state, a retry's backoff).
    Wait(DateTime<Utc>),
    /// Park on a task token, then invoke the callback task's resource.
    Token { token: String, resource: String, params: Value, deadline: Option<DateTime<Utc>> },
    /// Start children: one per input, running `machine`, at most `limit` at once; a Distributed Map's as child
    /// executions under a Map Run.
    Spawn {
        map: bool,
        inputs: Vec<Value>,
        limit: usize,
        machines: Vec<Vec<(String, usize)>>,
        tolerance: Tolerance,
        run: Option<RunPlan>,
    },
    /// The frame ended.
    Done(std::result::Result<Value, StatesError>),
}

/// A Distributed Map's settings, as its state's start evaluated them.
struct RunPlan {
    label: String,
    max_concurrency: usize,
    batched: bool,
}

/// What a commit found.
enum Committed {
    /// Written; the job goes on with the frame.
    Go,
    /// Written; the frame is parked or ended.
    Parked,
    /// Someone else moved the execution or the frame on: nothing written.
    Stale,
}

/// Events being numbered inside a commit.
pub(crate) struct Numbering {
    pub(crate) next: u64,
    pub(crate) at: DateTime<Utc>,
    pub(crate) out: Vec<Value>,
}

impl Numbering {
    /// Gives `p` the next id, following `previous`; its id.
    pub(crate) fn push(&mut self, p: &Pending, previous: u64) -> u64 {
        let id = self.next;
        self.next += 1;
        self.out.push(history::numbered(p, id, previous, self.at));
        id
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(d: &Document) -> Result<T> {
    serde_json::from_value(d.body.clone())
        .map_err(|e| WorkflowError::Internal(format!("stored {} {:?} is unreadable: {e}", d.kind, d.id)))
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("workflow records encode")
}

fn is_callback(resource: &str) -> bool {
    resource.ends_with(".waitForTaskToken")
}

/// A deterministic request id for one task attempt: a retry after a crash reuses it.
fn request_id(execution: &str, path: &str, state: &str, entered: u64, retry: u32) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(format!("{execution}#{path}#{state}#{entered}#{retry}")));
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl Workflows {
    /// The machine a frame runs (cached per definition and path).
    pub(crate) async fn frame_machine(&self, definition: &str, path: &[(String, usize)]) -> Result<Arc<Machine>> {
        let key =
            format!("{definition}/{}", path.iter().map(|(s, b)| format!("{s}:{b}")).collect::<Vec<_>>().join("/"));
        if let Some(m) = self.inner().machines.lock().expect("machine cache").get(&key) {
            return Ok(m.clone());
        }
        let root = self.root_machine(definition).await?;
        let mut m: Machine = (*root).clone();
        for (state, branch) in path {
            let s = m
                .states
                .get(state)
                .ok_or_else(|| WorkflowError::Internal(format!("state {state:?} is not in the definition")))?;
            m = match s.kind.as_str() {
                "Parallel" => s.branches.as_ref().and_then(|b| b.get(*branch)).cloned().ok_or_else(|| {
                    WorkflowError::Internal(format!("Parallel state {state:?} has no branch {branch}"))
                })?,
                _ => interpreter::processor(s).map_err(|e| WorkflowError::Internal(e.cause))?,
            };
        }
        let m = Arc::new(m);
        self.inner().machines.lock().expect("machine cache").insert(key, m.clone());
        Ok(m)
    }

    async fn root_machine(&self, definition: &str) -> Result<Arc<Machine>> {
        if let Some(m) = self.inner().machines.lock().expect("machine cache").get(definition) {
            return Ok(m.clone());
        }
        let d = self
            .store()
            .documents()
            .get(DEFINITION_DOC, definition)
            .await?
            .ok_or_else(|| WorkflowError::Internal(format!("definition {definition} is missing")))?;
        let text = d.body.get("definition").and_then(Value::as_str).unwrap_or_default();
        let m = Arc::new(
            Machine::parse(text)
                .map_err(|_| WorkflowError::Internal(format!("stored definition {definition} does not parse")))?,
        );
        self.inner().machines.lock().expect("machine cache").insert(definition.to_string(), m.clone());
        Ok(m)
    }

    /// The context object's execution part.
    pub(crate) fn base_context(&self, x: &ExecutionRecord) -> Value {
        let input: Value = serde_json::from_str(&x.input).unwrap_or(Value::Null);
        json!({
            "Execution": {"Id": self.execution_arn(&x.machine, &x.name), "Input": input, "Name": x.name,
                "RoleArn": x.role_arn, "StartTime": x.started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "RedriveCount": x.redrive_count},
            "StateMachine": {"Id": self.arn(&x.machine), "Name": x.machine},
        })
    }

    /// Drives one frame until it parks or ends (one `workflow.advance` job).
    pub(crate) async fn advance(&self, a: &AdvanceArgs, ctx: &JobContext) -> Result<()> {
        let docs = self.store().documents();
        let fid = frame_id(&a.execution, &a.frame);
        loop {
            if ctx.should_stop() {
                return Err(WorkflowError::Internal("the worker is stopping; the frame goes on later".into()));
            }
            let Some(xdoc) = docs.get(EXEC_DOC, &a.execution).await? else { return Ok(()) };
            let x: ExecutionRecord = decode(&xdoc)?;
            if x.status != "RUNNING" {
                return Ok(());
            }
            match a.check.as_deref() {
                Some("execution-timeout") => return self.check_execution_timeout(&a.execution).await,
                // A `.sync` child of this frame's task ended.
                Some(c) if c.starts_with("child:") => return self.child_ended_check(&c["child:".len()..]).await,
                // A child execution of a Map Run ended.
                Some(c) if c.starts_with(crate::map_run::CHECK) => {
                    return self.map_child_ended(&a.execution, &a.frame, &c[crate::map_run::CHECK.len()..]).await
                }
                Some(FIRST) => {}
                // When the task timed out, the frame goes on (its error applied) in this job.
                Some(token) if !self.check_token_deadline(&a.execution, &a.frame, token).await? => return Ok(()),
                _ => {}
            }
            let Some(fdoc) = docs.get(FRAME_DOC, &fid).await? else { return Ok(()) };
            let mut frame: Frame = decode(&fdoc)?;
            let timer = frame.status == FrameStatus::Waiting && frame.token.is_none();
            if frame.child.is_some() || (a.check.as_deref() == Some(FIRST) && timer) {
                // A Distributed Map's item runs as its own execution: this frame only records it. A new execution
                // its starting process parked on a timer has that timer's job; anything else its starter left
                // (a task to invoke, a callback not yet called) this job takes on.
                return Ok(());
            }
            if let (FrameStatus::Waiting, Some(token), Some(params), false) =
                (frame.status, frame.token.clone(), frame.params.clone(), frame.submitted)
            {
                // The job that committed this token died before its resource took the work: invoke it again.
                let machine = self.frame_machine(&x.definition, &frame.machine).await?;
                let resource = machine.states.get(&frame.state).and_then(|s| s.resource.clone()).unwrap_or_default();
                let resource = resource.trim_end_matches(".waitForTaskToken").to_string();
                self.call_back(&x, &a.execution, &a.frame, &token, &resource, params).await?;
                return Ok(());
            }
            let now = Utc::now();
            if let (FrameStatus::Waiting, None, Some(at)) = (frame.status, &frame.token, frame.wake_at) {
                if at > now {
                    // Woken early (a clock a little behind another process's): this job ends, one due then goes on.
                    self.store().queue().enqueue(advance_job(&a.execution, &a.frame, None, Some(at))).await?;
                    return Ok(());
                }
            }
            let runnable = match frame.status {
                FrameStatus::Running => true,
                FrameStatus::Waiting => frame.token.is_none() && frame.wake_at.is_none_or(|t| t <= now),
                _ => false,
            };
            if !runnable {
                return Ok(());
            }
            let machine = self.frame_machine(&x.definition, &frame.machine).await?;
            let base = self.base_context(&x);
            let began = std::time::Instant::now();
            let mut events = Vec::new();
            let after = self.run_states(&machine, &mut frame, &mut events, &base, &x, &a.frame).await?;
            let token_call = match &after {
                // An activity's task is queued in the commit; a callback's resource is invoked after it.
                After::Token { token, resource, params, .. } if activity_of(resource).is_none() => {
                    Some((token.clone(), resource.clone(), params.clone()))
                }
                _ => None,
            };
            let exited = events.iter().filter(|e| e.kind.ends_with("StateExited")).count();
            let committed =
                self.commit(&a.execution, &a.frame, fdoc.revision, frame, events, after, &machine, None).await?;
            if let (Some(m), false) = (self.metrics(), matches!(committed, Committed::Stale)) {
                m.committed(&x.machine, exited, began.elapsed().as_secs_f64());
            }
            match committed {
                Committed::Go => continue,
                Committed::Stale => return Ok(()),
                Committed::Parked => {
                    if let Some((token, resource, params)) = token_call {
                        self.call_back(&x, &a.execution, &a.frame, &token, &resource, params).await?;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Runs a new execution's first states in the process that started it, right after the start committed, up to
    /// the first durability point (an end, a park, or a task to invoke), and commits them: a short workflow is done
    /// without waiting for the queue to hand its job to a worker. Tasks are never invoked here: a task to invoke
    /// (or a callback's resource to call) goes to a worker's job. Any failure leaves the start's own job, due
    /// [`FIRST_STATES_FALLBACK`] later, to carry the execution on.
    pub(crate) fn first_states(
        &self,
        execution: String,
        x: ExecutionRecord,
        root: Frame,
        revision: i64,
        fallback: String,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let w = self.clone();
        tokio::spawn(async move {
            if let Err(e) = w.try_first_states(&execution, &x, root, revision, &fallback).await {
                tracing::debug!(execution, error = %e, "the first states are left to a worker");
            }
            drop(slot);
        });
    }

    /// `x` and `frame` as the start committed them (the commit checks that nobody moved them since).
    async fn try_first_states(
        &self,
        execution: &str,
        x: &ExecutionRecord,
        mut frame: Frame,
        revision: i64,
        fallback: &str,
    ) -> Result<()> {
        let machine = self.frame_machine(&x.definition, &frame.machine).await?;
        let base = self.base_context(x);
        let began = std::time::Instant::now();
        let mut events = Vec::new();
        let after = self.run_states(&machine, &mut frame, &mut events, &base, x, ROOT).await?;
        let exited = events.iter().filter(|e| e.kind.ends_with("StateExited")).count();
        let committed = self.commit(execution, ROOT, revision, frame, events, after, &machine, Some(fallback)).await?;
        if let (Some(m), false) = (self.metrics(), matches!(committed, Committed::Stale)) {
            m.committed(&x.machine, exited, began.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Runs a frame's states in memory from where it is to the next durability point.
    async fn run_states(
        &self,
        machine: &Machine,
        f: &mut Frame,
        events: &mut Vec<Pending>,
        base: &Value,
        x: &ExecutionRecord,
        path: &str,
    ) -> Result<After> {
        let mut transitions = 0;
        loop {
            let name = f.state.clone();
            let Some(s) = machine.states.get(&name) else {
                return Ok(After::Done(Err(StatesError::runtime(format!("state {name:?} does not exist")))));
            };
            let context = interpreter::state_context(base, &name, f.retry_count);
            // The variables as the state was entered: what it assigns is seen from the next state on.
            let vars = f.vars.clone();
            let io = Io::new(&name, s, &context, &vars);
            let waking = std::mem::replace(&mut f.status, FrameStatus::Running) == FrameStatus::Waiting;
            if !f.entered {
                events.push(history::entered(&s.kind, &name, &f.input));
                f.entered = true;
            }
            match s.kind.as_str() {
                "Wait" => {
                    if !waking {
                        match io.wait_delay(&f.input) {
                            Err(e) => return Ok(After::Done(Err(e))),
                            Ok(d) if !d.is_zero() => {
                                let until = Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
                                return Ok(After::Wait(until));
                            }
                            Ok(_) => {}
                        }
                    }
                    match io.output_of(&f.input, s.assign.as_ref(), s.output.as_ref()) {
                        Ok((out, assigned)) => {
                            if let Some(after) = self.exit(&s.kind, &name, next_of(s), f, events, out, assigned) {
                                return Ok(after);
                            }
                        }
                        Err(e) => return Ok(After::Done(Err(e))),
                    }
                }
                "Pass" | "Choice" | "Succeed" | "Fail" => {
                    match interpreter::step(&name, s, f.input.clone(), base, &vars, &NoTasks).await {
                        Ok((out, next, assigned)) => {
                            if let Some(after) = self.exit(&s.kind, &name, next, f, events, out, assigned) {
                                return Ok(after);
                            }
                        }
                        Err(e) => return Ok(After::Done(Err(e))),
                    }
                    transitions += 1;
                    if transitions >= TRANSITIONS_PER_COMMIT {
                        return Ok(After::Go);
                    }
                }
                "Task" => {
                    let resource = s.resource.clone().unwrap_or_default();
                    // An integration's events name its action with the pattern (`invoke.waitForTaskToken`), as AWS's.
                    let task_events = TaskEvents::of(&resource);
                    if let Some(outcome) = f.outcome.take() {
                        let result = match outcome {
                            Outcome::Result(v) => {
                                events.push(task_events.succeeded(&v));
                                io.finish(&f.input, v)
                            }
                            Outcome::Error(e) => {
                                events.push(task_events.failed(&e));
                                Err(e)
                            }
                            Outcome::ChildrenDone => Err(StatesError::runtime("a Task state has no children")),
                        };
                        return Ok(self.settle(&io, f, events, result));
                    }
                    let activity = activity_of(&resource).is_some();
                    let sync = nested::is_sync(&resource) || self.is_job_sync(&resource);
                    if f.params.is_none() {
                        let token = (is_callback(&resource) || activity || sync)
                            .then(|| new_token(&format!("{}:{}", x.machine, x.name)));
                        let prepared = io.effective(&f.input).and_then(|eff| {
                            let timeout = io.timeout(&f.input)?;
                            let heartbeat = io.heartbeat(&f.input)?;
                            let c = task_context(&context, token.as_deref());
                            Ok((io.arguments(&f.input, &eff, &c)?, timeout, heartbeat))
                        });
                        let (params, timeout, heartbeat) = match prepared {
                            Ok(p) => p,
                            Err(e) => return Ok(self.settle(&io, f, events, Err(e))),
                        };
                        events.push(task_events.scheduled(
                            &self.region(),
                            &params,
                            timeout.map(|t| t.as_secs()),
                            heartbeat,
                        ));
                        // An activity's task starts when a worker takes it (`GetActivityTask`).
                        if !activity {
                            events.push(task_events.started());
                        }
                        if let Some(token) = token {
                            f.params = Some(params.clone());
                            let now = Utc::now();
                            f.deadline =
                                timeout.map(|t| now + chrono::Duration::from_std(t).unwrap_or(chrono::Duration::MAX));
                            f.heartbeat = heartbeat.map(|h| (h, now));
                            return Ok(After::Token {
                                token,
                                // A `.sync` resource keeps its pattern: the call back starts the child linked to it.
                                resource: resource.trim_end_matches(".waitForTaskToken").to_string(),
                                params,
                                deadline: f.deadline,
                            });
                        }
                        f.params = Some(params);
                        // Committed before the call, so the history shows a running task while it runs.
                        return Ok(After::Go);
                    }
                    let params = f.params.clone().unwrap_or(Value::Null);
                    let rid = request_id(&x.name, path, &name, f.last_event, f.retry_count);
                    let runner = FunctionTasks::new(self.functions().clone(), x.identity.clone(), Some(rid.clone()))
                        .with_http(self.http_tasks());
                    let call = async {
                        if resource == nested::START_EXECUTION {
                            let child = self.start_child(x, &params, &rid, None).await?;
                            return Ok(self.started_response(&child));
                        }
                        if self.is_job(&resource) {
                            return Ok(jobs_task::job_view(&self.submit_job(&resource, &params, &rid).await?));
                        }
                        runner.run(&resource, params, &context).await
                    };
                    let result = match io.timeout(&f.input) {
                        Ok(Some(t)) => match tokio::time::timeout(t, call).await {
                            Ok(r) => r,
                            Err(_) => Err(interpreter::timed_out(&name)),
                        },
                        Ok(None) => call.await,
                        Err(e) => Err(e),
                    };
                    f.outcome = Some(match result {
                        Ok(v) => Outcome::Result(v),
                        Err(e) => Outcome::Error(e),
                    });
                }
                "Parallel" | "Map" => {
                    let map = s.kind == "Map";
                    if let Some(outcome) = f.outcome.take() {
                        let result = match outcome {
                            Outcome::ChildrenDone => {
                                let outcomes = self.child_results(&x.machine, &x.name, path).await?;
                                events.push(history::bare(if map {
                                    "MapStateSucceeded"
                                } else {
                                    "ParallelStateSucceeded"
                                }));
                                let result = match (&s.result_writer, self.items()) {
                                    (Some(writer), Some(store)) => {
                                        // The map run's id (a Distributed Map's, or the execution, the state and
                                        // this run of it) and ARN.
                                        let (id, arn) = match f.children.as_ref().and_then(|c| c.run.as_deref()) {
                                            Some(key) => (
                                                key.rsplit_once(':').map_or(key, |(_, id)| id).to_string(),
                                                self.map_run_arn(key),
                                            ),
                                            None => {
                                                let id = format!("{}-{}-{}", x.name, name, f.last_event);
                                                (id.clone(), id)
                                            }
                                        };
                                        match io.storage_params(&f.input, writer, "ResultWriter") {
                                            Ok(p) => store.write(&p, &id, &arn, &outcomes).await,
                                            Err(e) => Err(e),
                                        }
                                    }
                                    (Some(_), None) => Err(StatesError::runtime("ResultWriter: no storage here")),
                                    (None, _) => Ok(Value::Array(
                                        outcomes
                                            .into_iter()
                                            .map(|r| r.unwrap_or_else(|e| json!({"Error": e.error, "Cause": e.cause})))
                                            .collect(),
                                    )),
                                };
                                result.and_then(|r| io.finish(&f.input, r))
                            }
                            Outcome::Error(e) => {
                                events.push(history::bare(if map { "MapStateFailed" } else { "ParallelStateFailed" }));
                                Err(e)
                            }
                            Outcome::Result(_) => {
                                Err(StatesError::runtime("a Parallel or Map state has no task result"))
                            }
                        };
                        return Ok(self.settle(&io, f, events, result));
                    }
                    let mut sub = f.machine.clone();
                    if map {
                        let read = match (&s.item_reader, self.items()) {
                            (None, _) => Ok(None),
                            (Some(reader), Some(store)) => match io.storage_params(&f.input, reader, "ItemReader") {
                                Ok(p) => store.read(reader, &p).await.map(Some),
                                Err(e) => Err(e),
                            },
                            (Some(_), None) => Err(StatesError::new("States.ItemReaderFailed", "no storage here")),
                        };
                        let planned = read.and_then(|read| io.map_inputs(&f.input, read)).and_then(|inputs| {
                            let limit = io.max_concurrency(&f.input, inputs.len())?;
                            let set = io.max_concurrency(&f.input, usize::MAX)?;
                            Ok((inputs, limit, io.tolerance(&f.input)?, if set == usize::MAX { 0 } else { set }))
                        });
                        let (inputs, limit, tolerance, max_concurrency) = match planned {
                            Ok(p) => p,
                            Err(e) => return Ok(self.settle(&io, f, events, Err(e))),
                        };
                        events.push(history::with(
                            "MapStateStarted",
                            "mapStateStartedEventDetails",
                            json!({"length": inputs.len()}),
                        ));
                        let run = s.distributed().then(|| RunPlan {
                            label: crate::map_run::label_of(s.label.as_deref(), &x.definition, &f.machine, &name),
                            max_concurrency,
                            batched: s.item_batcher.is_some(),
                        });
                        if inputs.is_empty() && run.is_none() {
                            f.outcome = Some(Outcome::ChildrenDone);
                            continue;
                        }
                        sub.push((name.clone(), 0));
                        return Ok(After::Spawn {
                            map,
                            machines: vec![sub; inputs.len()],
                            inputs,
                            limit,
                            tolerance,
                            run,
                        });
                    }
                    let params = match io.effective(&f.input).and_then(|eff| io.arguments(&f.input, &eff, &context)) {
                        Ok(p) => p,
                        Err(e) => return Ok(self.settle(&io, f, events, Err(e))),
                    };
                    events.push(history::bare("ParallelStateStarted"));
                    let n = s.branches.as_ref().map_or(0, Vec::len);
                    let machines = (0..n).map(|b| [sub.clone(), vec![(name.clone(), b)]].concat()).collect();
                    sub.clear();
                    return Ok(After::Spawn {
                        map,
                        inputs: vec![params; n],
                        limit: n.max(1),
                        machines,
                        tolerance: (None, None),
                        run: None,
                    });
                }
                other => {
                    return Ok(After::Done(Err(StatesError::runtime(format!("state type {other:?} is not supported")))))
                }
            }
        }
    }

    /// A state's output: `*StateExited`, then the next state (`None`: keep going in memory) or the frame's end.
    #[allow(clippy::too_many_arguments)]
    fn exit(
        &self,
        kind: &str,
        name: &str,
        next: Option<String>,
        f: &mut Frame,
        events: &mut Vec<Pending>,
        out: Value,
        assigned: Vars,
    ) -> Option<After> {
        if let Err(e) = interpreter::size_check(&out, name) {
            return Some(After::Done(Err(e)));
        }
        events.push(history::exited(kind, name, &out, &assigned));
        f.vars.extend(assigned);
        match next {
            Some(n) => {
                f.move_to(n, out);
                None
            }
            None => Some(After::Done(Ok(out))),
        }
    }

    /// A Task's, Parallel's or Map's result applied: on to the next state, a retry, a catcher, or the frame's end.
    fn settle(
        &self,
        io: &Io<'_>,
        f: &mut Frame,
        events: &mut Vec<Pending>,
        result: std::result::Result<Produced, StatesError>,
    ) -> After {
        let (s, name) = (io.s, io.name);
        let error = match result {
            Ok((out, assigned)) => {
                return self.exit(&s.kind, name, next_of(s), f, events, out, assigned).unwrap_or(After::Go)
            }
            Err(e) => e,
        };
        let mut attempts = std::mem::take(&mut f.attempts);
        let decision = interpreter::on_error(io, &mut attempts, &f.input, error);
        f.attempts = attempts;
        match decision {
            Ok(OnError::Retry(delay)) => {
                f.params = None;
                f.token = None;
                f.children = None;
                f.retry_count += 1;
                After::Wait(Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
            }
            Ok(OnError::Caught(out, assigned, next)) => {
                self.exit(&s.kind, name, Some(next), f, events, out, assigned).unwrap_or(After::Go)
            }
            Err(e) => After::Done(Err(e)),
        }
    }

    /// The outputs of a frame's children, in index order (a tolerated failure as its error).
    async fn child_results(
        &self,
        machine: &str,
        name: &str,
        path: &str,
    ) -> Result<Vec<std::result::Result<Value, StatesError>>> {
        let execution = format!("{machine}:{name}");
        let prefix = frame_id(&execution, &format!("{path}."));
        let depth = path.matches('.').count() + 1;
        let mut children: Vec<Frame> = Vec::new();
        for d in self.store().documents().list(FRAME_DOC, &prefix).await? {
            let p = d.id.rsplit_once('#').map(|(_, p)| p).unwrap_or_default();
            if p.matches('.').count() == depth {
                children.push(decode(&d)?);
            }
        }
        children.sort_by_key(|c| c.index);
        Ok(children
            .into_iter()
            .map(|c| match (c.output, c.error) {
                (Some(o), _) => Ok(o),
                (None, Some(e)) => Err(e),
                (None, None) => Ok(Value::Null),
            })
            .collect())
    }

    /// Commits a frame's progress (see the module's documentation). `first`: the commit of a new execution's first
    /// states by its starter, with the start's fallback job, which it withdraws (what is left to do gets a job of
    /// its own in the same transaction).
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        execution: &str,
        path: &str,
        revision: i64,
        mut f: Frame,
        events: Vec<Pending>,
        after: After,
        machine: &Machine,
        first: Option<&str>,
    ) -> Result<Committed> {
        let mut tx = self.store().begin().await?;
        let Some((xdoc, mut x)) = lock_execution(&mut tx, execution).await? else { return Ok(Committed::Stale) };
        if x.status != "RUNNING" {
            return Ok(Committed::Stale);
        }
        let fid = frame_id(execution, path);
        let Some(fdoc) = tx.documents().get_for_update(FRAME_DOC, &fid).await? else { return Ok(Committed::Stale) };
        if fdoc.revision != revision {
            return Ok(Committed::Stale);
        }
        let mut n = Numbering { next: x.next_event, at: Utc::now(), out: Vec::new() };
        let mut jobs = Vec::new();
        let mut queued_activity = false;
        if let Some(fallback) = first {
            if !tx.queue().withdraw(fallback).await? {
                // A worker took the fallback meanwhile: it carries the execution on.
                return Ok(Committed::Stale);
            }
            // A task to invoke or a callback to call is a worker's: the starter never invokes.
            let hand_over = match &after {
                After::Go => true,
                After::Token { resource, .. } => activity_of(resource).is_none(),
                _ => false,
            };
            if hand_over {
                jobs.push(advance_job(execution, path, None, None));
            }
        }
        // A child whose parent moved on (a sibling failed, the state was retried) stops here.
        if let Some(pp) = parent_path(path) {
            let parent = tx.documents().get_for_update(FRAME_DOC, &frame_id(execution, pp)).await?;
            let live = match &parent {
                Some(d) => {
                    let p: Frame = decode(d)?;
                    p.status == FrameStatus::Children
                        && p.children.as_ref().is_some_and(|c| c.generation == f.generation)
                }
                None => false,
            };
            if !live {
                f.status = FrameStatus::Aborted;
                tx.documents().update(FRAME_DOC, &fid, revision, &encode(&f)).await?;
                tx.commit().await?;
                return Ok(Committed::Stale);
            }
        }
        for p in &events {
            f.last_event = n.push(p, f.last_event);
        }
        let outcome = match after {
            After::Go => {
                f.status = FrameStatus::Running;
                Committed::Go
            }
            After::Wait(until) => {
                f.status = FrameStatus::Waiting;
                f.wake_at = Some(until);
                jobs.push(advance_job(execution, path, None, Some(until)));
                Committed::Parked
            }
            After::Token { token, deadline, resource, params } => {
                f.status = FrameStatus::Waiting;
                f.token = Some(token.clone());
                f.wake_at = None;
                let body = json!({"execution": execution, "frame": path});
                tx.documents().create(TOKEN_DOC, &token, &body).await?;
                if let Some(activity) = activity_of(&resource) {
                    let task = QueuedTask {
                        token: token.clone(),
                        input: params,
                        execution: execution.to_string(),
                        frame: path.to_string(),
                    };
                    tx.documents().create(ACTIVITY_TASK_DOC, &task_id(activity, &token), &encode(&task)).await?;
                    // Its "resource" (the queue) has the work: nothing to invoke again after a crash.
                    f.submitted = true;
                    queued_activity = true;
                }
                let check = match (deadline, f.heartbeat) {
                    (Some(d), Some((h, at))) => Some(d.min(at + chrono::Duration::seconds(h as i64))),
                    (Some(d), None) => Some(d),
                    (None, Some((h, at))) => Some(at + chrono::Duration::seconds(h as i64)),
                    (None, None) => None,
                };
                if let Some(at) = check {
                    jobs.push(advance_job(execution, path, Some(token), Some(at)));
                }
                Committed::Parked
            }
            After::Spawn { inputs, limit, machines, tolerance, run: Some(plan), .. } => {
                // Every item runs the same processor.
                let sub = machines.into_iter().next().unwrap_or_default();
                let start_at = machine
                    .states
                    .get(&f.state)
                    .and_then(|s| interpreter::processor(s).ok())
                    .map(|p| p.start_at)
                    .unwrap_or_default();
                let plan = crate::map_run::Plan {
                    label: plan.label,
                    inputs,
                    machine: sub,
                    start_at: &start_at,
                    limit,
                    max_concurrency: plan.max_concurrency,
                    tolerance,
                    batched: plan.batched,
                };
                if self.start_map_run(&mut tx, &mut x, execution, path, &mut f, &mut n, &mut jobs, plan).await? {
                    Committed::Parked
                } else {
                    f.status = FrameStatus::Running;
                    f.outcome = Some(Outcome::ChildrenDone);
                    Committed::Go
                }
            }
            After::Spawn { map, inputs, limit, machines, tolerance, run: None } => {
                let generation = f.last_event;
                tx.documents().delete_prefix(FRAME_DOC, &format!("{fid}.")).await?;
                let start_at: Vec<String> = machines
                    .iter()
                    .map(|m| {
                        let (state, branch) = m.last().expect("a child machine path");
                        let s = &machine.states[state];
                        if map {
                            interpreter::processor(s).map(|p| p.start_at).unwrap_or_default()
                        } else {
                            s.branches
                                .as_ref()
                                .and_then(|b| b.get(*branch))
                                .map(|b| b.start_at.clone())
                                .unwrap_or_default()
                        }
                    })
                    .collect();
                let total = inputs.len();
                for (i, input) in inputs.into_iter().enumerate() {
                    let mut child = Frame::new(machines[i].clone(), i, generation, &start_at[i], input);
                    // A branch or an iteration reads its parent's variables; what it assigns stays its own.
                    child.vars = f.vars.clone();
                    child.last_event = f.last_event;
                    if i < limit {
                        if map {
                            child.last_event =
                                n.push(&iteration_event("MapIterationStarted", &f.state, i), f.last_event);
                        }
                        jobs.push(advance_job(execution, &format!("{path}.{i}"), None, None));
                    } else {
                        child.status = FrameStatus::Pending;
                    }
                    tx.documents()
                        .create(FRAME_DOC, &frame_id(execution, &format!("{path}.{i}")), &encode(&child))
                        .await?;
                }
                f.status = FrameStatus::Children;
                f.children = Some(Children {
                    total,
                    started: limit.min(total),
                    finished: 0,
                    failed: 0,
                    first_error: None,
                    limit,
                    generation,
                    tolerance: Some(tolerance),
                    run: None,
                });
                Committed::Parked
            }
            After::Done(result) => {
                match &result {
                    Ok(out) => {
                        f.status = FrameStatus::Succeeded;
                        f.output = Some(out.clone());
                    }
                    Err(e) => {
                        f.status = FrameStatus::Failed;
                        f.error = Some(e.clone());
                    }
                }
                match parent_path(path) {
                    None => {
                        x.stopped = Some(n.at);
                        match result {
                            Ok(out) => {
                                let text = out.to_string();
                                n.push(
                                    &history::with(
                                        "ExecutionSucceeded",
                                        "executionSucceededEventDetails",
                                        json!({"output": text, "outputDetails": {"truncated": false}}),
                                    ),
                                    f.last_event,
                                );
                                x.status = "SUCCEEDED".into();
                                x.output = Some(text);
                            }
                            Err(e) => {
                                // A Map Run still running under a failed branch is given up with its execution.
                                self.abort_map_runs(&mut tx, &x, &mut n, None).await?;
                                n.push(
                                    &history::with(
                                        "ExecutionFailed",
                                        "executionFailedEventDetails",
                                        json!({"error": e.error, "cause": e.cause}),
                                    ),
                                    f.last_event,
                                );
                                x.status = "FAILED".into();
                                x.error = Some(e.error);
                                x.cause = Some(e.cause);
                            }
                        }
                        jobs.extend(crate::failures::failure_job(&x));
                        jobs.extend(crate::failures::expiry_job(&x, self.history_ttl()));
                        jobs.extend(nested::parent_job(&x, execution));
                        jobs.extend(crate::map_run::parent_job(&x, execution));
                        self.finished(&x);
                    }
                    Some(pp) => {
                        self.child_ended(&mut tx, &mut n, &mut jobs, execution, pp, &f, result, &x, None).await?;
                    }
                }
                Committed::Parked
            }
        };
        if !n.out.is_empty() {
            let first = n.out[0]["id"].as_u64().unwrap_or(0);
            tx.documents().create(EVENTS_DOC, &format!("{execution}#{first:012}"), &json!({"events": n.out})).await?;
        }
        x.next_event = n.next;
        tx.documents().update(EXEC_DOC, execution, xdoc.revision, &encode(&x)).await?;
        tx.documents().update(FRAME_DOC, &fid, revision, &encode(&f)).await?;
        for j in &jobs {
            tx.queue().enqueue(j).await?;
        }
        tx.commit().await?;
        if queued_activity {
            // Workers of this process long-polling GetActivityTask look now.
            self.inner().activity_queued.notify_waiters();
        }
        Ok(outcome)
    }

    /// A child frame ended (or a Map Run's child execution, counted in `run`): its parent counts it, and goes on (all
    /// done, or a failure past tolerance) or starts the next pending iteration.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn child_ended(
        &self,
        tx: &mut Tx,
        n: &mut Numbering,
        jobs: &mut Vec<NewJob>,
        execution: &str,
        pp: &str,
        f: &Frame,
        result: std::result::Result<Value, StatesError>,
        x: &ExecutionRecord,
        mut run: Option<&mut crate::map_run::MapRunRecord>,
    ) -> Result<()> {
        let pid = frame_id(execution, pp);
        let Some(pdoc) = tx.documents().get_for_update(FRAME_DOC, &pid).await? else { return Ok(()) };
        let mut parent: Frame = decode(&pdoc)?;
        let pmachine = self.frame_machine(&x.definition, &parent.machine).await?;
        let Some(ps) = pmachine.states.get(&parent.state) else { return Ok(()) };
        let map = ps.kind == "Map";
        if map && run.is_none() {
            let kind = if result.is_ok() { "MapIterationSucceeded" } else { "MapIterationFailed" };
            n.push(&iteration_event(kind, &parent.state, f.index), f.last_event);
        }
        let Some(c) = parent.children.as_mut() else { return Ok(()) };
        c.finished += 1;
        if let Err(e) = &result {
            c.failed += 1;
            if c.first_error.is_none() {
                c.first_error = Some(e.clone());
            }
        }
        let (total, finished, failed) = (c.total, c.finished, c.failed);
        // Frames from before tolerances were recorded take the state's literal ones.
        let tolerance = c.tolerance.unwrap_or_else(|| {
            let n = |v: &Option<Value>| v.as_ref().and_then(Value::as_f64);
            (n(&ps.tolerated_failure_count).map(|c| c as usize), n(&ps.tolerated_failure_percentage))
        });
        let failure = match (&result, map) {
            (Err(e), false) => Some(e.clone()),
            (Err(_), true) if interpreter::map_exceeds_tolerance(tolerance, failed, total) => {
                Some(interpreter::map_failure(tolerance, c.first_error.clone().expect("a failure was counted")))
            }
            _ => None,
        };
        if failure.is_some() || finished == total {
            if let Some(r) = run.as_deref_mut() {
                parent.last_event = self.end_map_run(tx, n, r, failure.as_ref(), parent.last_event).await?;
            } else if failure.is_some() {
                // Map Runs under the branches or iterations given up are given up too.
                self.abort_map_runs(tx, x, n, Some(&format!("{pp}."))).await?;
            }
        }
        if let Some(e) = failure {
            parent.outcome = Some(Outcome::Error(e));
            parent.status = FrameStatus::Running;
            jobs.push(advance_job(execution, pp, None, None));
        } else if finished == total {
            parent.outcome = Some(Outcome::ChildrenDone);
            parent.status = FrameStatus::Running;
            jobs.push(advance_job(execution, pp, None, None));
        } else if let (Some(r), true) = (run, c.started < total) {
            let next = c.started;
            c.started += 1;
            self.start_pending(tx, x, execution, &format!("{pp}.{next}"), r, jobs).await?;
        } else if c.started < total {
            // The next iteration takes the slot this one freed.
            let next = c.started;
            c.started += 1;
            let cid = frame_id(execution, &format!("{pp}.{next}"));
            if let Some(cdoc) = tx.documents().get_for_update(FRAME_DOC, &cid).await? {
                let mut child: Frame = decode(&cdoc)?;
                if child.status == FrameStatus::Pending {
                    child.status = FrameStatus::Running;
                    child.last_event =
                        n.push(&iteration_event("MapIterationStarted", &parent.state, next), parent.last_event);
                    tx.documents().update(FRAME_DOC, &cid, cdoc.revision, &encode(&child)).await?;
                    jobs.push(advance_job(execution, &format!("{pp}.{next}"), None, None));
                }
            }
        }
        tx.documents().update(FRAME_DOC, &pid, pdoc.revision, &encode(&parent)).await?;
        Ok(())
    }

    /// A callback task's resource invoked after its token was committed. Its failure fails the task; its response
    /// is recorded as `TaskSubmitted`.
    async fn call_back(
        &self,
        x: &ExecutionRecord,
        execution: &str,
        path: &str,
        token: &str,
        resource: &str,
        params: Value,
    ) -> Result<()> {
        let rid = request_id(&x.name, path, token, 0, 0);
        if self.is_job_sync(resource) {
            let job = match self.submit_job(resource, &params, &rid).await {
                Ok(j) => j,
                Err(e) => {
                    return self
                        .resolve_token(execution, path, token, Some(Outcome::Error(e)), Vec::new())
                        .await
                        .map(|_| ())
                }
            };
            // The waiter and the watcher first: a crash after them leaves a task that still hears of its job's end.
            let args = jobs_task::AwaitJobArgs {
                job: job.id.clone(),
                execution: execution.to_string(),
                frame: path.to_string(),
                token: token.to_string(),
            };
            self.wait_for_job(&args).await?;
            if let Some(j) = jobs_task::await_job(&args, std::time::Duration::ZERO) {
                self.store().queue().enqueue(j).await?;
            }
            let submitted = TaskEvents::of(resource).submitted(&jobs_task::job_view(&job)).into_iter().collect();
            return self.resolve_token(execution, path, token, None, submitted).await.map(|_| ());
        }
        if nested::is_start(resource) {
            // A nested execution: `.sync` links the child back to this task; `.waitForTaskToken` only starts it.
            let link = nested::is_sync(resource).then(|| nested::ParentLink {
                execution: execution.to_string(),
                frame: path.to_string(),
                token: token.to_string(),
                json: resource.ends_with(":2"),
            });
            let events = TaskEvents::of(&if link.is_some() {
                resource.to_string()
            } else {
                format!("{resource}.waitForTaskToken")
            });
            return match self.start_child(x, &params, &rid, link).await {
                Ok(child) => {
                    let submitted = events.submitted(&self.started_response(&child)).into_iter().collect();
                    self.resolve_token(execution, path, token, None, submitted).await.map(|_| ())
                }
                Err(e) => {
                    self.resolve_token(execution, path, token, Some(Outcome::Error(e)), Vec::new()).await.map(|_| ())
                }
            };
        }
        let runner =
            FunctionTasks::new(self.functions().clone(), x.identity.clone(), Some(rid)).with_http(self.http_tasks());
        let context = json!({"Task": {"Token": token}});
        match runner.run(resource, params, &context).await {
            Ok(response) => {
                let events = TaskEvents::of(&format!("{resource}.waitForTaskToken"));
                let submitted: Vec<Pending> = events.submitted(&response).into_iter().collect();
                self.resolve_token(execution, path, token, None, submitted).await?;
                Ok(())
            }
            Err(e) => self.resolve_token(execution, path, token, Some(Outcome::Error(e)), Vec::new()).await.map(|_| ()),
        }
    }

    /// Applies an answer to a frame waiting on `token` (and/or appends events while it still waits): `false` when
    /// the frame no longer waits on it.
    pub(crate) async fn resolve_token(
        &self,
        execution: &str,
        path: &str,
        token: &str,
        outcome: Option<Outcome>,
        events: Vec<Pending>,
    ) -> Result<bool> {
        let mut tx = self.store().begin().await?;
        let Some((xdoc, mut x)) = lock_execution(&mut tx, execution).await? else { return Ok(false) };
        let fid = frame_id(execution, path);
        let Some(fdoc) = tx.documents().get_for_update(FRAME_DOC, &fid).await? else { return Ok(false) };
        let mut f: Frame = decode(&fdoc)?;
        if x.status != "RUNNING" || f.status != FrameStatus::Waiting || f.token.as_deref() != Some(token) {
            return Ok(false);
        }
        let mut n = Numbering { next: x.next_event, at: Utc::now(), out: Vec::new() };
        for p in &events {
            f.last_event = n.push(p, f.last_event);
        }
        if outcome.is_none() {
            f.submitted = true;
        }
        if let Some(o) = outcome {
            f.outcome = Some(o);
            f.token = None;
            f.status = FrameStatus::Running;
            // The token's document stays: answering a spent token says TaskTimedOut, as AWS does, not "unknown".
            tx.queue().enqueue(&advance_job(execution, path, None, None)).await?;
        }
        if !n.out.is_empty() {
            close(&mut tx, execution, &xdoc, &mut x, n, None).await?;
        }
        tx.documents().update(FRAME_DOC, &fid, fdoc.revision, &encode(&f)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A callback task's deadline is due: `true` when it timed out (its error is now the frame's outcome).
    async fn check_token_deadline(&self, execution: &str, path: &str, token: &str) -> Result<bool> {
        let Some(fdoc) = self.store().documents().get(FRAME_DOC, &frame_id(execution, path)).await? else {
            return Ok(false);
        };
        let f: Frame = decode(&fdoc)?;
        if f.status != FrameStatus::Waiting || f.token.as_deref() != Some(token) {
            return Ok(false);
        }
        let now = Utc::now();
        let error = if f.deadline.is_some_and(|d| d <= now) {
            StatesError::new("States.Timeout", "The task timed out waiting for its task token")
        } else if let Some((h, _)) = f.heartbeat.filter(|(h, at)| *at + chrono::Duration::seconds(*h as i64) <= now) {
            StatesError::new("States.HeartbeatTimeout", format!("No heartbeat was sent for {h} seconds"))
        } else {
            // A heartbeat moved the deadline: check again then.
            let next = [f.deadline, f.heartbeat.map(|(h, at)| at + chrono::Duration::seconds(h as i64))]
                .into_iter()
                .flatten()
                .min();
            if let Some(at) = next {
                self.store().queue().enqueue(advance_job(execution, path, Some(token.to_string()), Some(at))).await?;
            }
            return Ok(false);
        };
        self.resolve_token(execution, path, token, Some(Outcome::Error(error)), Vec::new()).await
    }

    /// The execution's `TimeoutSeconds` is due.
    async fn check_execution_timeout(&self, execution: &str) -> Result<()> {
        let mut tx = self.store().begin().await?;
        let Some((xdoc, mut x)) = lock_execution(&mut tx, execution).await? else { return Ok(()) };
        if x.status != "RUNNING" || x.timeout_at.is_none_or(|t| t > Utc::now()) {
            return Ok(());
        }
        let mut n = Numbering { next: x.next_event, at: Utc::now(), out: Vec::new() };
        self.abort_map_runs(&mut tx, &x, &mut n, None).await?;
        let previous = n.next.saturating_sub(1);
        n.push(
            &history::with(
                "ExecutionTimedOut",
                "executionTimedOutEventDetails",
                json!({"error": "States.Timeout", "cause": "The execution ran past its TimeoutSeconds"}),
            ),
            previous,
        );
        x.status = "TIMED_OUT".into();
        x.error = Some("States.Timeout".into());
        x.cause = Some("The execution ran past its TimeoutSeconds".into());
        x.stopped = Some(n.at);
        close(&mut tx, execution, &xdoc, &mut x, n, self.history_ttl()).await?;
        if let Some(j) = crate::failures::failure_job(&x) {
            tx.queue().enqueue(&j).await?;
        }
        tx.commit().await?;
        self.finished(&x);
        Ok(())
    }
}

/// Appends `n`'s events and writes the execution (inside the caller's transaction).
pub(crate) async fn close(
    tx: &mut Tx,
    execution: &str,
    xdoc: &Document,
    x: &mut ExecutionRecord,
    n: Numbering,
    keep: Option<std::time::Duration>,
) -> Result<()> {
    if !n.out.is_empty() {
        let first = n.out[0]["id"].as_u64().unwrap_or(0);
        tx.documents().create(EVENTS_DOC, &format!("{execution}#{first:012}"), &json!({"events": n.out})).await?;
    }
    x.next_event = n.next;
    tx.documents().update(EXEC_DOC, execution, xdoc.revision, &encode(x)).await?;
    // An execution that ends here: the parent waiting for it hears of it, and its records expire.
    let parents = nested::parent_job(x, execution).into_iter().chain(crate::map_run::parent_job(x, execution));
    for j in parents.chain(crate::failures::expiry_job(x, keep)) {
        tx.queue().enqueue(&j).await?;
    }
    Ok(())
}

/// The execution's row, locked for the transaction.
pub(crate) async fn lock_execution(tx: &mut Tx, execution: &str) -> Result<Option<(Document, ExecutionRecord)>> {
    let Some(d) = tx.documents().get_for_update(EXEC_DOC, execution).await? else { return Ok(None) };
    let x = decode(&d)?;
    Ok(Some((d, x)))
}

/// A numbering for events appended to `x` now.
pub(crate) fn numbering(x: &ExecutionRecord) -> Numbering {
    Numbering { next: x.next_event, at: Utc::now(), out: Vec::new() }
}

/// Where a state goes when it succeeds (`None`: it ends its machine).
fn next_of(s: &State) -> Option<String> {
    if s.end == Some(true) {
        None
    } else {
        s.next.clone()
    }
}

fn iteration_event(kind: &str, state: &str, index: usize) -> Pending {
    let field = match kind {
        "MapIterationStarted" => "mapIterationStartedEventDetails",
        "MapIterationSucceeded" => "mapIterationSucceededEventDetails",
        "MapIterationFailed" => "mapIterationFailedEventDetails",
        _ => "mapIterationAbortedEventDetails",
    };
    history::with(kind, field, json!({"name": state, "index": index}))
}

/// The context object a Task's parameters see (`$$.Task.Token` for callback tasks).
fn task_context(context: &Value, token: Option<&str>) -> Value {
    let mut c = context.clone();
    if let Some(t) = token {
        c["Task"] = json!({"Token": t});
    }
    c
}

/// A new task token of `execution`: its [`token_prefix`], then 32 random bytes (URL-safe base64), so the
/// execution's tokens can be forgotten with it.
fn new_token(execution: &str) -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    format!("{}{}", token_prefix(execution), base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// What every task token of `execution` starts with: the execution's key in URL-safe base64 and a `.` (which that
/// alphabet lacks, so no other execution's prefix is a prefix of it).
pub(crate) fn token_prefix(execution: &str) -> String {
    use base64::Engine;
    format!("{}.", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(execution))
}

/// Parsed machines by definition hash (and sub-machine path).
pub(crate) type MachineCache = std::sync::Mutex<HashMap<String, Arc<Machine>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_round_up_to_the_queues_milliseconds() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T03:50:09.423897048Z").unwrap().with_timezone(&Utc);
        assert_eq!(ceil_ms(t).to_rfc3339(), "2026-12-07T03:50:09.424+00:00");
        let whole = DateTime::parse_from_rfc3339("2026-12-07T03:50:09.423Z").unwrap().with_timezone(&Utc);
        assert_eq!(ceil_ms(whole), whole);
        assert!(advance_job("m:x", "r", None, Some(t)).run_after.unwrap() >= t, "never due before the instant");
    }
}
