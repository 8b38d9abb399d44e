//! Standard executions as the Step Functions API sees them: start, describe, list, history, stop, redrive, and the
//! answers to task tokens. They run in `durable.rs`.

use chrono::Utc;
use serde_json::{json, Value};

use crate::durable::{
    self, close, decode, encode, frame_id, lock_execution, numbering, ExecutionRecord, Frame, FrameStatus, Outcome,
    DEFINITION_DOC, EVENTS_DOC, EXEC_DOC, FRAME_DOC, ROOT, TOKEN_DOC,
};
use crate::error::StatesError;
use crate::history;
use crate::service::{execution_name, WorkflowError, Workflows};

type Result<T> = std::result::Result<T, WorkflowError>;

/// Largest execution input (AWS: 256 KiB).
const MAX_INPUT: usize = 256 * 1024;

/// A page of history events.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The events, in AWS's shape.
    pub events: Vec<Value>,
    /// Where the next page starts.
    pub next_token: Option<String>,
}

/// A page of executions.
#[derive(Debug, Clone)]
pub struct ExecutionPage {
    /// The executions, newest first.
    pub executions: Vec<ExecutionRecord>,
    /// Where the next page starts.
    pub next_token: Option<String>,
}

/// One page of `items` from the position a `next` token names, `max` long (0: 100, at most 1000), and the token
/// of the page after it.
pub(crate) fn page<T: Clone>(items: &[T], max: usize, next: Option<&str>) -> Result<(Vec<T>, Option<String>)> {
    let start = match next {
        Some(t) => t.parse::<usize>().map_err(|_| invalid_token(t))?,
        None => 0,
    };
    let max = if max == 0 { 100 } else { max.min(1000) };
    let end = (start + max).min(items.len());
    let next_token = (end < items.len()).then(|| end.to_string());
    Ok((items.get(start..end).map(<[_]>::to_vec).unwrap_or_default(), next_token))
}

impl Workflows {
    /// Starts a standard execution: committed (its `ExecutionStarted` event, its root frame and the job that runs
    /// it) before this returns. Starting again with the same name and input while it runs returns it; otherwise a
    /// name is used once.
    pub async fn start_execution(
        &self,
        machine: &str,
        name: Option<&str>,
        input: &str,
        identity: Option<Value>,
    ) -> Result<ExecutionRecord> {
        self.start_execution_with(machine, name, input, identity, None).await
    }

    /// [`Workflows::start_execution`], linked to the `.sync` task that waits for it.
    pub(crate) async fn start_execution_with(
        &self,
        machine: &str,
        name: Option<&str>,
        input: &str,
        identity: Option<Value>,
        parent: Option<crate::nested::ParentLink>,
    ) -> Result<ExecutionRecord> {
        // `machine` may carry a version or an alias (`<machine>:<qualifier>`): the execution runs that version.
        let resolved = self.resolve(machine).await?;
        let sm = resolved.machine;
        let machine = sm.name.as_str();
        if sm.kind != "STANDARD" {
            return Err(WorkflowError::Invalid(
                "StateMachineTypeNotSupported",
                "Express state machines run with StartSyncExecution".into(),
            ));
        }
        let name = execution_name(name)?;
        if input.len() > MAX_INPUT {
            return Err(WorkflowError::Invalid(
                "InvalidExecutionInput",
                format!("Invalid State Machine Execution Input: the input is {} bytes, over 262144", input.len()),
            ));
        }
        let value: Value = serde_json::from_str(input).map_err(|e| {
            WorkflowError::Invalid("InvalidExecutionInput", format!("Invalid State Machine Execution Input: '{e}'"))
        })?;
        let parsed = self.validate(&sm.definition).map_err(|_| {
            WorkflowError::Internal(format!("the stored definition of {machine:?} no longer validates"))
        })?;
        let hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(sm.definition.as_bytes()))
        };
        let key = format!("{machine}:{name}");
        let x = ExecutionRecord {
            identity,
            version_arn: resolved.version_arn,
            alias_arn: resolved.alias_arn,
            parent,
            ..ExecutionRecord::starting(machine, &name, &hash, &sm.role_arn, input)
        };
        let now = x.started;
        let x = ExecutionRecord {
            timeout_at: parsed.timeout_seconds.map(|t| now + chrono::Duration::seconds(t as i64)),
            ..x
        };
        let mut tx = self.store().begin().await?;
        if let Some(existing) = tx.documents().get_for_update(EXEC_DOC, &key).await? {
            let e: ExecutionRecord = decode(&existing)?;
            if e.status == "RUNNING" && e.input == input {
                return Ok(e);
            }
            return Err(WorkflowError::Conflict(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{}'", self.execution_arn(machine, &name)),
            ));
        }
        if tx.documents().get_for_update(DEFINITION_DOC, &hash).await?.is_none() {
            tx.documents().create(DEFINITION_DOC, &hash, &json!({"definition": sm.definition})).await?;
        }
        let mut x = x;
        let mut n = numbering(&x);
        n.push(
            &history::with(
                "ExecutionStarted",
                "executionStartedEventDetails",
                json!({"input": input, "inputDetails": {"truncated": false}, "roleArn": sm.role_arn}),
            ),
            0,
        );
        // The first state's events follow the start with previousEventId 0, as AWS records them.
        let root = Frame::new(Vec::new(), 0, 0, &parsed.start_at, value);
        let exists = || {
            WorkflowError::Conflict(
                "ExecutionAlreadyExists",
                format!("Execution Already Exists: '{}'", self.execution_arn(machine, &name)),
            )
        };
        let fdoc = tx.documents().create(FRAME_DOC, &frame_id(&key, ROOT), &encode(&root)).await?.ok_or_else(exists)?;
        let xdoc = tx.documents().create(EXEC_DOC, &key, &encode(&x)).await?.ok_or_else(exists)?;
        close(&mut tx, &key, &xdoc, &mut x, n, self.history_ttl()).await?;
        // This process runs the first states right after the commit when it has a free slot (see
        // `durable::Workflows::first_states`); the job, due a little later, carries them on if it could not.
        // Otherwise a worker runs them from the start.
        let slot = self.inner().first_states.clone().try_acquire_owned().ok();
        let job = match slot {
            Some(_) => {
                let fallback = now + chrono::Duration::from_std(durable::FIRST_STATES_FALLBACK).expect("a short delay");
                durable::advance_job(&key, ROOT, Some(durable::FIRST.into()), Some(fallback))
            }
            None => durable::advance_job(&key, ROOT, None, None),
        };
        let fallback = tx.queue().enqueue(&job).await?.job.id;
        if let Some(at) = x.timeout_at {
            tx.queue().enqueue(&durable::advance_job(&key, ROOT, Some("execution-timeout".into()), Some(at))).await?;
        }
        tx.commit().await?;
        if let Some(m) = self.metrics() {
            m.started(machine);
        }
        tracing::info!(execution = %key, "execution started");
        if let Some(slot) = slot {
            self.first_states(key, x.clone(), root, fdoc.revision, fallback, slot);
        }
        Ok(x)
    }

    /// The definition an execution runs (the one it started with).
    pub async fn definition_of(&self, x: &ExecutionRecord) -> Result<String> {
        let d = self
            .store()
            .documents()
            .get(DEFINITION_DOC, &x.definition)
            .await?
            .ok_or_else(|| WorkflowError::Internal(format!("definition {} is missing", x.definition)))?;
        Ok(d.body.get("definition").and_then(Value::as_str).unwrap_or_default().to_string())
    }

    /// One execution.
    pub async fn execution(&self, key: &str) -> Result<ExecutionRecord> {
        let d = self.store().documents().get(EXEC_DOC, key).await?.ok_or_else(|| missing_execution(self, key))?;
        decode(&d)
    }

    /// A state machine's executions, newest first, optionally of one status; `max` per page (0: 100).
    pub async fn list_executions(
        &self,
        machine: &str,
        status: Option<&str>,
        max: usize,
        next: Option<&str>,
    ) -> Result<ExecutionPage> {
        self.get(machine).await?;
        let mut all: Vec<ExecutionRecord> = Vec::new();
        for d in self.store().documents().list(EXEC_DOC, &format!("{machine}:")).await? {
            let x: ExecutionRecord = decode(&d)?;
            if x.machine == machine && status.is_none_or(|s| s == x.status) {
                all.push(x);
            }
        }
        all.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.name.cmp(&a.name)));
        let (executions, next_token) = page(&all, max, next)?;
        Ok(ExecutionPage { executions, next_token })
    }

    /// An execution's history events, oldest first (or newest first), `max` per page (0: 100).
    pub async fn history(
        &self,
        key: &str,
        reverse: bool,
        include_data: bool,
        max: usize,
        next: Option<&str>,
    ) -> Result<HistoryPage> {
        self.execution(key).await?;
        let mut events: Vec<Value> = Vec::new();
        for d in self.store().documents().list(EVENTS_DOC, &format!("{key}#")).await? {
            if let Some(Value::Array(chunk)) = d.body.get("events") {
                events.extend(chunk.iter().cloned());
            }
        }
        events.sort_by_key(|e| e["id"].as_u64().unwrap_or(0));
        if reverse {
            events.reverse();
        }
        let (events, next_token) = page(&events, max, next)?;
        let events = if include_data { events } else { events.into_iter().map(history::without_data).collect() };
        Ok(HistoryPage { events, next_token })
    }

    /// Stops a running execution (`ExecutionAborted`); its waiting tasks' tokens stop being accepted.
    pub async fn stop_execution(&self, key: &str, error: Option<&str>, cause: Option<&str>) -> Result<ExecutionRecord> {
        let mut tx = self.store().begin().await?;
        let (xdoc, mut x) = lock_execution(&mut tx, key).await?.ok_or_else(|| missing_execution(self, key))?;
        if x.status != "RUNNING" {
            return Ok(x);
        }
        let mut n = numbering(&x);
        let mut details = json!({});
        if let Some(e) = error {
            details["error"] = json!(e);
        }
        if let Some(c) = cause {
            details["cause"] = json!(c);
        }
        // Its Map Runs stop with it (their running children aborted).
        self.abort_map_runs(&mut tx, &x, &mut n, None).await?;
        n.push(&history::with("ExecutionAborted", "executionAbortedEventDetails", details), n.next.saturating_sub(1));
        x.status = "ABORTED".into();
        x.error = error.map(String::from);
        x.cause = cause.map(String::from);
        x.stopped = Some(n.at);
        close(&mut tx, key, &xdoc, &mut x, n, self.history_ttl()).await?;
        tx.commit().await?;
        self.finished(&x);
        Ok(x)
    }

    /// Redrives a failed, aborted or timed-out execution from where it stopped: the failed state runs again, and
    /// of a Parallel or Map only the branches and iterations that did not succeed (of a Distributed Map, its child
    /// executions that did not succeed are redriven).
    pub async fn redrive_execution(&self, key: &str) -> Result<ExecutionRecord> {
        let mut tx = self.store().begin().await?;
        if let Some(d) = tx.documents().get_for_update(EXEC_DOC, key).await? {
            let x: ExecutionRecord = decode(&d)?;
            if let Some(link) = &x.map_run {
                return Err(WorkflowError::Invalid(
                    "ExecutionNotRedrivable",
                    format!(
                        "Execution is a child of the Map Run '{}': redrive its parent execution '{}'",
                        self.map_run_arn(&link.run),
                        self.execution_arn_of(&link.execution)
                    ),
                ));
            }
        }
        let jobs = self.redrive_in(&mut tx, key).await?;
        let x: ExecutionRecord =
            decode(&tx.documents().get_for_update(EXEC_DOC, key).await?.ok_or_else(|| missing_execution(self, key))?)?;
        for j in &jobs {
            tx.queue().enqueue(j).await?;
        }
        tx.commit().await?;
        Ok(x)
    }

    /// The redrive of `key` inside the caller's transaction (a Map Run's child's within its parent's): the jobs
    /// that start it again.
    pub(crate) async fn redrive_in(&self, tx: &mut strato_store::Tx, key: &str) -> Result<Vec<strato_types::NewJob>> {
        let (xdoc, mut x) = lock_execution(tx, key).await?.ok_or_else(|| missing_execution(self, key))?;
        if !matches!(x.status.as_str(), "FAILED" | "ABORTED" | "TIMED_OUT") {
            return Err(WorkflowError::Invalid(
                "ExecutionNotRedrivable",
                format!("Execution is {} and cannot be redriven", x.status),
            ));
        }
        let frames = tx.documents().list(FRAME_DOC, &format!("{key}#")).await?;
        let mut by_path: std::collections::BTreeMap<String, (strato_store::Document, Frame)> = Default::default();
        for d in frames {
            let path = d.id.rsplit_once('#').map(|(_, p)| p.to_string()).unwrap_or_default();
            let f: Frame = decode(&d)?;
            by_path.insert(path, (d, f));
        }
        let mut jobs = Vec::new();
        let mut changed: Vec<(String, i64, Frame)> = Vec::new();
        let mut runs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        redrive_frame(ROOT, &by_path, &mut changed, &mut jobs, &mut runs);
        if changed.is_empty() {
            return Err(WorkflowError::Invalid(
                "ExecutionNotRedrivable",
                "Execution has nothing left to redrive".to_string(),
            ));
        }
        x.redrive_count += 1;
        let mut n = numbering(&x);
        n.push(
            &history::with(
                "ExecutionRedriven",
                "executionRedrivenEventDetails",
                json!({"redriveCount": x.redrive_count}),
            ),
            0,
        );
        x.status = "RUNNING".into();
        x.stopped = None;
        x.error = None;
        x.cause = None;
        x.output = None;
        x.redrive_date = Some(n.at);
        if let Some(t) = x.timeout_at {
            // The timeout counts again from the redrive.
            x.timeout_at = Some(n.at + (t - x.started).max(chrono::Duration::zero()));
        }
        for (path, revision, f) in &changed {
            tx.documents().update(FRAME_DOC, &frame_id(key, path), *revision, &encode(f)).await?;
        }
        let mut out: Vec<strato_types::NewJob> =
            jobs.iter().map(|path| durable::advance_job(key, path, None, None)).collect();
        for (run, children) in &runs {
            out.extend(self.redrive_map_run(tx, &mut n, run, children).await?);
        }
        close(tx, key, &xdoc, &mut x, n, self.history_ttl()).await?;
        if let Some(at) = x.timeout_at {
            out.push(durable::advance_job(key, ROOT, Some("execution-timeout".into()), Some(at)));
        }
        Ok(out)
    }

    /// The execution and frame a task token belongs to.
    async fn token_target(&self, token: &str) -> Result<(String, String)> {
        if token.is_empty() || token.len() > 1024 {
            return Err(WorkflowError::Invalid("InvalidToken", format!("Invalid Token: '{token}'")));
        }
        let d = self.store().documents().get(TOKEN_DOC, token).await?.ok_or_else(|| {
            WorkflowError::NotFound("TaskDoesNotExist", "Task Does Not Exist: the task token is unknown".into())
        })?;
        let execution = d.body.get("execution").and_then(Value::as_str).unwrap_or_default().to_string();
        let frame = d.body.get("frame").and_then(Value::as_str).unwrap_or_default().to_string();
        Ok((execution, frame))
    }

    /// `SendTaskSuccess`: the callback task's result.
    pub async fn send_task_success(&self, token: &str, output: &str) -> Result<()> {
        let value: Value = serde_json::from_str(output)
            .map_err(|e| WorkflowError::Invalid("InvalidOutput", format!("Invalid Output: '{e}'")))?;
        let (execution, frame) = self.token_target(token).await?;
        self.answer(&execution, &frame, token, Outcome::Result(value)).await
    }

    /// `SendTaskFailure`: the callback task's error.
    pub async fn send_task_failure(&self, token: &str, error: &str, cause: &str) -> Result<()> {
        let (execution, frame) = self.token_target(token).await?;
        self.answer(&execution, &frame, token, Outcome::Error(StatesError::new(error, cause))).await
    }

    /// `SendTaskHeartbeat`: the callback task is still alive.
    pub async fn send_task_heartbeat(&self, token: &str) -> Result<()> {
        let (execution, path) = self.token_target(token).await?;
        let mut tx = self.store().begin().await?;
        let Some((_, x)) = lock_execution(&mut tx, &execution).await? else { return Err(timed_out_token()) };
        let fid = frame_id(&execution, &path);
        let fdoc = tx.documents().get_for_update(FRAME_DOC, &fid).await?.ok_or_else(timed_out_token)?;
        let mut f: Frame = decode(&fdoc)?;
        if x.status != "RUNNING" || f.status != FrameStatus::Waiting || f.token.as_deref() != Some(token) {
            return Err(timed_out_token());
        }
        if let Some((h, _)) = f.heartbeat {
            f.heartbeat = Some((h, Utc::now()));
            tx.documents().update(FRAME_DOC, &fid, fdoc.revision, &encode(&f)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn answer(&self, execution: &str, frame: &str, token: &str, outcome: Outcome) -> Result<()> {
        if self.resolve_token(execution, frame, token, Some(outcome), Vec::new()).await? {
            Ok(())
        } else {
            // The execution ended, the task timed out, or the token was answered already.
            Err(timed_out_token())
        }
    }

    /// An execution ended: logged, and a failure reported like a dead letter.
    pub(crate) fn finished(&self, x: &ExecutionRecord) {
        if let Some(m) = self.metrics() {
            m.ended(&x.machine, &x.status);
        }
        match x.status.as_str() {
            "SUCCEEDED" => tracing::info!(execution = %x.name, machine = %x.machine, "execution succeeded"),
            status => tracing::warn!(
                execution = %x.name, machine = %x.machine, status, error = x.error.as_deref().unwrap_or(""),
                "execution did not succeed"
            ),
        }
    }
}

fn timed_out_token() -> WorkflowError {
    WorkflowError::Invalid("TaskTimedOut", "Task Timed Out: 'Provided task does not exist anymore'".into())
}

fn invalid_token(t: &str) -> WorkflowError {
    WorkflowError::Invalid("InvalidToken", format!("Invalid Token: '{t}'"))
}

fn missing_execution(w: &Workflows, key: &str) -> WorkflowError {
    let (m, n) = key.split_once(':').unwrap_or((key, ""));
    WorkflowError::NotFound("ExecutionDoesNotExist", format!("Execution Does Not Exist: '{}'", w.execution_arn(m, n)))
}

/// Resets a frame that did not succeed so it runs its failed state again; of its children, only those that did not
/// succeed. Collects the frames changed, the paths whose jobs must start, and per Map Run the child executions to
/// redrive.
fn redrive_frame(
    path: &str,
    frames: &std::collections::BTreeMap<String, (strato_store::Document, Frame)>,
    changed: &mut Vec<(String, i64, Frame)>,
    jobs: &mut Vec<String>,
    runs: &mut std::collections::BTreeMap<String, Vec<String>>,
) {
    let Some((doc, f)) = frames.get(path) else { return };
    if matches!(f.status, FrameStatus::Succeeded | FrameStatus::Pending) {
        return;
    }
    let mut f = f.clone();
    if let Some(child) = f.child.clone() {
        // A Map Run's item: its child execution is redriven; the proxy waits for it again.
        let parent = path.rsplit_once('.').map_or(ROOT, |(p, _)| p);
        let run = frames.get(parent).and_then(|(_, p)| p.children.as_ref()).and_then(|c| c.run.clone());
        if let Some(run) = run {
            runs.entry(run).or_default().push(child);
        }
        f.status = FrameStatus::Running;
        f.output = None;
        f.error = None;
        changed.push((path.to_string(), doc.revision, f));
        return;
    }
    f.restart_state();
    f.output = None;
    f.error = None;
    if let Some(c) = f.children.as_mut() {
        // Children of this state's run: the succeeded keep their results, the others run again.
        let prefix = format!("{path}.");
        let mut succeeded = 0;
        let mut rerun = 0;
        for (p, (_, child)) in frames.range(prefix.clone()..) {
            if !p.starts_with(&prefix) {
                break;
            }
            if p[prefix.len()..].contains('.') || child.generation != c.generation {
                continue;
            }
            match child.status {
                FrameStatus::Succeeded => succeeded += 1,
                FrameStatus::Pending => {}
                _ => {
                    rerun += 1;
                    redrive_frame(p, frames, changed, jobs, runs);
                }
            }
        }
        c.finished = succeeded;
        c.failed = 0;
        c.first_error = None;
        if rerun == 0 && succeeded == c.total {
            f.outcome = Some(Outcome::ChildrenDone);
            f.status = FrameStatus::Running;
            jobs.push(path.to_string());
        } else {
            f.status = FrameStatus::Children;
        }
    } else {
        f.status = FrameStatus::Running;
        f.entered = false;
        jobs.push(path.to_string());
    }
    changed.push((path.to_string(), doc.revision, f));
}
