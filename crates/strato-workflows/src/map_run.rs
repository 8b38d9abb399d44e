//! Distributed Map: a Map state whose `ProcessorConfig.Mode` is `DISTRIBUTED` runs each item (or batch of items) as
//! a child execution of its own, `<machine>/<label>:<uuid>`, with its own history, under a *Map Run*
//! (`arn:…:mapRun:<machine>/<label>:<uuid>`) that `DescribeMapRun`, `ListMapRuns`, `UpdateMapRun` and
//! `ListExecutions(mapRunArn)` show. The parent's history gets `MapRunStarted`, then `MapRunSucceeded`, `MapRunFailed`
//! or `MapRunAborted` (and `MapRunRedriven`), and no `MapIteration*` events.
//!
//! The parent's Map frame keeps one *proxy* frame per child, as an inline Map keeps one frame per iteration: it holds
//! the item until its child starts, then the child's key, then the child's output or error, so the inline Map's
//! counting (tolerance, the next pending item, results in item order, redrive of what did not succeed) serves both.
//! A child locks only its own row: the children of a run commit side by side. The commit that ends a child queues
//! the parent's job with a `maprun:` check; that job, holding the parent's lock, copies the child's end into its proxy
//! and counts it. Locks are always taken parent first, then child.
//!
//! Children of an `EXPRESS` processor run as standard children here (durably, with a history): stronger than AWS's
//! at-most-once express children, and redriven rather than restarted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use strato_store::Tx;
use strato_types::NewJob;

use crate::durable::{
    self, decode, encode, frame_id, ExecutionRecord, Frame, FrameStatus, Numbering, EVENTS_DOC, EXEC_DOC, FRAME_DOC,
    ROOT,
};
use crate::error::StatesError;
use crate::history;
use crate::service::{WorkflowError, Workflows};

type Result<T> = std::result::Result<T, WorkflowError>;

/// Map Run records, by key (`<machine>/<label>:<uuid>`).
pub(crate) const MAP_RUN_DOC: &str = "sfn-map-run";

/// The job check that tells a parent one of its Map Run's children ended.
pub(crate) const CHECK: &str = "maprun:";

/// Counts of a Map Run's children (or of their items), as `DescribeMapRun` reports them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub pending: u64,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub aborted: u64,
    pub total: u64,
    pub results_written: u64,
}

impl Counts {
    fn json(&self) -> Value {
        json!({"pending": self.pending, "running": self.running, "succeeded": self.succeeded, "failed": self.failed,
            "timedOut": self.timed_out, "aborted": self.aborted, "total": self.total,
            "resultsWritten": self.results_written, "failuresNotRedrivable": 0, "pendingRedrive": 0})
    }

    /// A running child (of `n` items) ended with `status`.
    fn ended(&mut self, status: &str, n: u64) {
        self.running = self.running.saturating_sub(n);
        match status {
            "SUCCEEDED" => self.succeeded += n,
            "TIMED_OUT" => self.timed_out += n,
            "ABORTED" => self.aborted += n,
            _ => self.failed += n,
        }
    }

    /// A pending child (of `n` items) started.
    fn started(&mut self, n: u64) {
        self.pending = self.pending.saturating_sub(n);
        self.running += n;
    }
}

/// A Map Run, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapRunRecord {
    /// `<machine>/<label>:<uuid>` (its ARN's resource part).
    pub key: String,
    /// The parent execution and its Map frame, and the frame's run of the state it belongs to.
    pub execution: String,
    pub frame: String,
    pub generation: u64,
    /// `RUNNING`, `SUCCEEDED`, `FAILED` or `ABORTED`.
    pub status: String,
    pub started: DateTime<Utc>,
    #[serde(default)]
    pub stopped: Option<DateTime<Utc>>,
    /// As configured (0: no limit).
    pub max_concurrency: usize,
    pub tolerated_failure_count: u64,
    pub tolerated_failure_percentage: f64,
    /// Each child's input is `{"Items": [...]}` (an `ItemBatcher`).
    pub batched: bool,
    pub executions: Counts,
    pub items: Counts,
    #[serde(default)]
    pub redrive_count: u32,
    #[serde(default)]
    pub redrive_date: Option<DateTime<Utc>>,
}

/// A child execution's link to its Map Run and its proxy frame in the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapRunLink {
    /// The Map Run's key.
    pub run: String,
    /// The parent execution and the proxy frame's path.
    pub execution: String,
    pub frame: String,
}

/// The job that tells a Map Run's parent its child (`execution`) ended; `None` for other executions.
pub(crate) fn parent_job(x: &ExecutionRecord, execution: &str) -> Option<NewJob> {
    let link = x.map_run.as_ref()?;
    (x.status != "RUNNING")
        .then(|| durable::advance_job(&link.execution, &link.frame, Some(format!("{CHECK}{execution}")), None))
}

/// A UUID-shaped name derived from `seed` (a child's name is its run's and index's, so starting it again finds it).
fn uuid_of(seed: &str) -> String {
    let h = hex::encode(sha2::Sha256::digest(seed));
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The label of a Distributed Map state: its `Label`, or one derived from the definition and the state's place in it
/// (AWS generates a unique one; this one is also stable across executions).
pub(crate) fn label_of(label: Option<&str>, definition: &str, machine: &[(String, usize)], state: &str) -> String {
    match label {
        Some(l) => l.to_string(),
        None => {
            let place: Vec<String> = machine.iter().map(|(s, b)| format!("{s}:{b}")).collect();
            uuid_of(&format!("{definition}#{}#{state}", place.join("/")))
        }
    }
}

/// How many items a child's input carries.
fn items_in(batched: bool, input: &Value) -> u64 {
    if batched {
        input.get("Items").and_then(Value::as_array).map_or(0, |a| a.len() as u64)
    } else {
        1
    }
}

/// The error a child's end gives its item.
fn child_error(x: &ExecutionRecord) -> StatesError {
    let default = match x.status.as_str() {
        "TIMED_OUT" => "States.Timeout",
        "ABORTED" => "States.Aborted",
        _ => "States.TaskFailed",
    };
    StatesError::new(
        x.error.clone().unwrap_or_else(|| default.to_string()),
        x.cause.clone().unwrap_or_else(|| format!("the child execution {} is {}", x.name, x.status)),
    )
}

/// A Map Run's plan, as the Map state's start evaluated it.
pub(crate) struct Plan<'a> {
    pub label: String,
    pub inputs: Vec<Value>,
    pub machine: Vec<(String, usize)>,
    pub start_at: &'a str,
    pub limit: usize,
    pub max_concurrency: usize,
    pub tolerance: crate::interpreter::Tolerance,
    pub batched: bool,
}

impl Workflows {
    /// A Map Run's ARN.
    pub fn map_run_arn(&self, key: &str) -> String {
        format!("arn:aws:states:{}:{}:mapRun:{key}", self.region(), self.account())
    }

    /// The Map Run key a Map Run ARN names.
    pub fn map_run_of(&self, arn: &str) -> Result<String> {
        let prefix = format!("arn:aws:states:{}:{}:mapRun:", self.region(), self.account());
        match arn.strip_prefix(&prefix).and_then(|rest| rest.split_once(':')) {
            Some((ml, id)) if ml.contains('/') && !id.is_empty() && !id.contains(':') => Ok(format!("{ml}:{id}")),
            _ => Err(WorkflowError::Invalid(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            )),
        }
    }

    /// The definition a Map Run's child runs: its Map's `ItemProcessor`, as written in the parent's definition.
    pub async fn child_definition(&self, x: &ExecutionRecord) -> Result<String> {
        let key = format!("{}:{}", x.machine, x.name);
        let d = self.store().documents().get(FRAME_DOC, &frame_id(&key, ROOT)).await?;
        let root: Frame = match d {
            Some(d) => decode(&d)?,
            None => return Err(WorkflowError::Internal(format!("the execution {key} has no root frame"))),
        };
        let text = self.definition_of(x).await?;
        let mut v: Value = serde_json::from_str(&text)
            .map_err(|e| WorkflowError::Internal(format!("a stored definition does not parse: {e}")))?;
        for (state, branch) in &root.machine {
            let s = v["States"][state].take();
            v = match s.get("Branches") {
                Some(b) => b[*branch].clone(),
                None => s.get("ItemProcessor").or_else(|| s.get("Iterator")).cloned().unwrap_or(Value::Null),
            };
        }
        Ok(v.to_string())
    }

    /// One Map Run.
    pub async fn map_run(&self, key: &str) -> Result<MapRunRecord> {
        let d = self.store().documents().get(MAP_RUN_DOC, key).await?.ok_or_else(|| {
            WorkflowError::NotFound("ResourceNotFound", format!("Resource not found: '{}'", self.map_run_arn(key)))
        })?;
        decode(&d)
    }

    /// The Map Runs an execution started, oldest first.
    pub async fn map_runs(&self, execution: &str) -> Result<Vec<MapRunRecord>> {
        let x = self.execution(execution).await?;
        let mut out = Vec::new();
        for key in &x.map_runs {
            if let Some(d) = self.store().documents().get(MAP_RUN_DOC, key).await? {
                out.push(decode(&d)?);
            }
        }
        Ok(out)
    }

    /// A Map Run's child executions (those started so far), newest first as `ListExecutions` lists, with the items
    /// each carries.
    pub async fn map_run_children(&self, key: &str) -> Result<Vec<(ExecutionRecord, u64)>> {
        let run = self.map_run(key).await?;
        let docs = self.store().documents();
        let mut out = Vec::new();
        for (_, proxy) in
            proxies(&docs.list(FRAME_DOC, &frame_id(&run.execution, &format!("{}.", run.frame))).await?, &run)?
        {
            let Some(child) = proxy.child.as_deref() else { continue };
            if let Some(d) = docs.get(EXEC_DOC, child).await? {
                out.push((decode::<ExecutionRecord>(&d)?, items_in(run.batched, &proxy.input), proxy.index));
            }
        }
        out.sort_by(|a, b| b.0.started.cmp(&a.0.started).then(b.2.cmp(&a.2)));
        Ok(out.into_iter().map(|(x, items, _)| (x, items)).collect())
    }

    /// A Map Run's description, in `DescribeMapRun`'s shape.
    pub fn describe_map_run(&self, r: &MapRunRecord) -> Value {
        let epoch = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        let mut v = json!({
            "mapRunArn": self.map_run_arn(&r.key),
            "executionArn": self.execution_arn_of(&r.execution),
            "status": r.status,
            "startDate": epoch(r.started),
            "maxConcurrency": r.max_concurrency,
            "toleratedFailurePercentage": r.tolerated_failure_percentage,
            "toleratedFailureCount": r.tolerated_failure_count,
            "itemCounts": r.items.json(),
            "executionCounts": r.executions.json(),
            "redriveCount": r.redrive_count,
        });
        if let Some(t) = r.stopped {
            v["stopDate"] = json!(epoch(t));
        }
        if let Some(t) = r.redrive_date {
            v["redriveDate"] = json!(epoch(t));
        }
        v
    }

    /// `UpdateMapRun`: a running Map Run's concurrency and tolerated failures; a higher limit starts pending children
    /// now.
    pub async fn update_map_run(
        &self,
        key: &str,
        max_concurrency: Option<usize>,
        tolerated_count: Option<u64>,
        tolerated_percentage: Option<f64>,
    ) -> Result<()> {
        if let Some(p) = tolerated_percentage.filter(|p| !(0.0..=100.0).contains(p)) {
            return Err(WorkflowError::Invalid(
                "ValidationException",
                format!("1 validation error detected: Value '{p}' at 'toleratedFailurePercentage' failed to satisfy constraint: Member must have value between 0 and 100"),
            ));
        }
        let run = self.map_run(key).await?;
        let mut tx = self.store().begin().await?;
        let Some((_, x)) = durable::lock_execution(&mut tx, &run.execution).await? else {
            return Err(WorkflowError::NotFound(
                "ResourceNotFound",
                format!("Resource not found: '{}'", self.map_run_arn(key)),
            ));
        };
        let rdoc = tx.documents().get_for_update(MAP_RUN_DOC, key).await?.expect("the run was read");
        let mut run: MapRunRecord = decode(&rdoc)?;
        if run.status != "RUNNING" {
            return Err(WorkflowError::Invalid(
                "ValidationException",
                format!("Map Run '{}' is {} and cannot be updated", self.map_run_arn(key), run.status),
            ));
        }
        let fid = frame_id(&run.execution, &run.frame);
        let fdoc = tx.documents().get_for_update(FRAME_DOC, &fid).await?;
        let mut jobs = Vec::new();
        if let Some(fdoc) = fdoc {
            let mut f: Frame = decode(&fdoc)?;
            if let Some(c) = f.children.as_mut().filter(|c| c.generation == run.generation) {
                if let Some(m) = max_concurrency {
                    run.max_concurrency = m;
                    c.limit = if m == 0 { c.total.max(1) } else { m };
                }
                let mut t = c.tolerance.unwrap_or((None, None));
                if let Some(count) = tolerated_count {
                    run.tolerated_failure_count = count;
                    t.0 = Some(count as usize);
                }
                if let Some(p) = tolerated_percentage {
                    run.tolerated_failure_percentage = p;
                    t.1 = Some(p);
                }
                c.tolerance = Some(t);
                // Slots the new limit opened.
                let running = c.started - c.finished;
                let mut free = c.limit.saturating_sub(running);
                while free > 0 && c.started < c.total {
                    let next = c.started;
                    c.started += 1;
                    free -= 1;
                    let (execution, ppath) = (run.execution.clone(), format!("{}.{next}", run.frame));
                    self.start_pending(&mut tx, &x, &execution, &ppath, &mut run, &mut jobs).await?;
                }
                tx.documents().update(FRAME_DOC, &fid, fdoc.revision, &encode(&f)).await?;
            }
        }
        tx.documents().update(MAP_RUN_DOC, key, rdoc.revision, &encode(&run)).await?;
        for j in &jobs {
            tx.queue().enqueue(j).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts a Map Run for the Map frame `f` at `path` (in the commit that parks it): its record, `MapRunStarted`,
    /// a proxy frame per input and the first `limit` children. `false` when there was nothing to run (the run
    /// succeeded at once and the frame goes on).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start_map_run(
        &self,
        tx: &mut Tx,
        x: &mut ExecutionRecord,
        execution: &str,
        path: &str,
        f: &mut Frame,
        n: &mut Numbering,
        jobs: &mut Vec<NewJob>,
        plan: Plan<'_>,
    ) -> Result<bool> {
        let generation = f.last_event;
        let key = format!("{}/{}:{}", x.machine, plan.label, uuid::Uuid::new_v4());
        let total = plan.inputs.len();
        let items: u64 = plan.inputs.iter().map(|i| items_in(plan.batched, i)).sum();
        let mut run = MapRunRecord {
            key: key.clone(),
            execution: execution.to_string(),
            frame: path.to_string(),
            generation,
            status: "RUNNING".into(),
            started: n.at,
            stopped: None,
            max_concurrency: plan.max_concurrency,
            tolerated_failure_count: plan.tolerance.0.unwrap_or(0) as u64,
            tolerated_failure_percentage: plan.tolerance.1.unwrap_or(0.0),
            batched: plan.batched,
            executions: Counts { pending: total as u64, total: total as u64, ..Counts::default() },
            items: Counts { pending: items, total: items, ..Counts::default() },
            redrive_count: 0,
            redrive_date: None,
        };
        f.last_event = n.push(
            &history::with("MapRunStarted", "mapRunStartedEventDetails", json!({"mapRunArn": self.map_run_arn(&key)})),
            f.last_event,
        );
        x.map_runs.push(key.clone());
        tx.documents().delete_prefix(FRAME_DOC, &format!("{}.", frame_id(execution, path))).await?;
        for (i, input) in plan.inputs.into_iter().enumerate() {
            let mut proxy = Frame::new(plan.machine.clone(), i, generation, plan.start_at, input);
            proxy.status = FrameStatus::Pending;
            let ppath = format!("{path}.{i}");
            if i < plan.limit {
                self.start_run_child(tx, x, execution, &ppath, &mut proxy, &mut run, jobs).await?;
            }
            tx.documents().create(FRAME_DOC, &frame_id(execution, &ppath), &encode(&proxy)).await?;
        }
        let ran = total > 0;
        if !ran {
            run.status = "SUCCEEDED".into();
            run.stopped = Some(n.at);
            f.last_event = n.push(&history::bare("MapRunSucceeded"), f.last_event);
        }
        tx.documents().create(MAP_RUN_DOC, &key, &encode(&run)).await?;
        f.status = FrameStatus::Children;
        f.children = Some(durable::Children {
            total,
            started: plan.limit.min(total),
            finished: 0,
            failed: 0,
            first_error: None,
            limit: plan.limit,
            generation,
            // A distributed Map fails on its first failure past the threshold, which is 0 when none is set.
            tolerance: Some((Some(plan.tolerance.0.unwrap_or(0)), plan.tolerance.1)),
            run: Some(key),
        });
        Ok(ran)
    }

    /// Starts the child execution of the proxy frame at `ppath` (in the caller's transaction).
    #[allow(clippy::too_many_arguments)]
    async fn start_run_child(
        &self,
        tx: &mut Tx,
        parent: &ExecutionRecord,
        execution: &str,
        ppath: &str,
        proxy: &mut Frame,
        run: &mut MapRunRecord,
        jobs: &mut Vec<NewJob>,
    ) -> Result<()> {
        let (machine_label, run_id) = run.key.rsplit_once(':').expect("a map run key");
        let name = uuid_of(&format!("{run_id}#{}", proxy.index));
        let key = format!("{machine_label}:{name}");
        let input = proxy.input.to_string();
        let mut child = ExecutionRecord {
            identity: parent.identity.clone(),
            map_run: Some(MapRunLink {
                run: run.key.clone(),
                execution: execution.to_string(),
                frame: ppath.to_string(),
            }),
            ..ExecutionRecord::starting(machine_label, &name, &parent.definition, &parent.role_arn, &input)
        };
        let mut n = durable::numbering(&child);
        n.push(
            &history::with(
                "ExecutionStarted",
                "executionStartedEventDetails",
                json!({"input": input, "inputDetails": {"truncated": false}, "roleArn": child.role_arn}),
            ),
            0,
        );
        child.next_event = n.next;
        // A child starts with no variables: a Distributed Map's iterations cannot read their parent's.
        let root = Frame::new(proxy.machine.clone(), 0, 0, &proxy.state, proxy.input.clone());
        tx.documents().create(FRAME_DOC, &frame_id(&key, ROOT), &encode(&root)).await?;
        tx.documents().create(EVENTS_DOC, &format!("{key}#{:012}", 1), &json!({"events": n.out})).await?;
        tx.documents().create(EXEC_DOC, &key, &encode(&child)).await?;
        jobs.push(durable::advance_job(&key, ROOT, None, None));
        proxy.child = Some(key);
        proxy.status = FrameStatus::Running;
        let items = items_in(run.batched, &proxy.input);
        run.executions.started(1);
        run.items.started(items);
        Ok(())
    }

    /// Starts the pending proxy at `ppath`, if it is still pending.
    pub(crate) async fn start_pending(
        &self,
        tx: &mut Tx,
        parent: &ExecutionRecord,
        execution: &str,
        ppath: &str,
        run: &mut MapRunRecord,
        jobs: &mut Vec<NewJob>,
    ) -> Result<()> {
        let pid = frame_id(execution, ppath);
        let Some(pdoc) = tx.documents().get_for_update(FRAME_DOC, &pid).await? else { return Ok(()) };
        let mut proxy: Frame = decode(&pdoc)?;
        if proxy.status != FrameStatus::Pending {
            return Ok(());
        }
        self.start_run_child(tx, parent, execution, ppath, &mut proxy, run, jobs).await?;
        tx.documents().update(FRAME_DOC, &pid, pdoc.revision, &encode(&proxy)).await?;
        Ok(())
    }

    /// A child of a Map Run ended (the parent's job with a `maprun:` check): its end goes into its proxy frame and
    /// the Map counts it.
    pub(crate) async fn map_child_ended(&self, execution: &str, ppath: &str, child: &str) -> Result<()> {
        let mut tx = self.store().begin().await?;
        let Some((xdoc, mut x)) = durable::lock_execution(&mut tx, execution).await? else { return Ok(()) };
        if x.status != "RUNNING" {
            return Ok(());
        }
        let Some(cdoc) = tx.documents().get_for_update(EXEC_DOC, child).await? else { return Ok(()) };
        let c: ExecutionRecord = decode(&cdoc)?;
        let pid = frame_id(execution, ppath);
        let Some(pdoc) = tx.documents().get_for_update(FRAME_DOC, &pid).await? else { return Ok(()) };
        let mut proxy: Frame = decode(&pdoc)?;
        if c.status == "RUNNING" || proxy.status != FrameStatus::Running || proxy.child.as_deref() != Some(child) {
            return Ok(());
        }
        let Some(link) = c.map_run.as_ref() else { return Ok(()) };
        let Some(rdoc) = tx.documents().get_for_update(MAP_RUN_DOC, &link.run).await? else { return Ok(()) };
        let mut run: MapRunRecord = decode(&rdoc)?;
        // The Map frame must still be waiting for this run's children.
        let Some((parent_path, _)) = ppath.rsplit_once('.') else { return Ok(()) };
        let live = match tx.documents().get_for_update(FRAME_DOC, &frame_id(execution, parent_path)).await? {
            Some(d) => {
                let p: Frame = decode(&d)?;
                p.status == FrameStatus::Children
                    && p.children
                        .as_ref()
                        .is_some_and(|ch| ch.generation == proxy.generation && ch.run.as_deref() == Some(&run.key))
            }
            None => false,
        };
        if !live || run.status != "RUNNING" {
            return Ok(());
        }
        let result = if c.status == "SUCCEEDED" {
            proxy.status = FrameStatus::Succeeded;
            let out: Value = c.output.as_deref().and_then(|o| serde_json::from_str(o).ok()).unwrap_or(Value::Null);
            proxy.output = Some(out.clone());
            Ok(out)
        } else {
            let e = child_error(&c);
            proxy.status = FrameStatus::Failed;
            proxy.error = Some(e.clone());
            Err(e)
        };
        let items = items_in(run.batched, &proxy.input);
        run.executions.ended(&c.status, 1);
        run.items.ended(&c.status, items);
        let mut n = durable::numbering(&x);
        let mut jobs = Vec::new();
        tx.documents().update(FRAME_DOC, &pid, pdoc.revision, &encode(&proxy)).await?;
        self.child_ended(&mut tx, &mut n, &mut jobs, execution, parent_path, &proxy, result, &x, Some(&mut run))
            .await?;
        tx.documents().update(MAP_RUN_DOC, &run.key, rdoc.revision, &encode(&run)).await?;
        durable::close(&mut tx, execution, &xdoc, &mut x, n, None).await?;
        for j in &jobs {
            tx.queue().enqueue(j).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A Map Run ends (its last child ended, or a failure went past the threshold): its status and event; a failed
    /// run's running children are aborted.
    pub(crate) async fn end_map_run(
        &self,
        tx: &mut Tx,
        n: &mut Numbering,
        run: &mut MapRunRecord,
        failure: Option<&StatesError>,
        previous: u64,
    ) -> Result<u64> {
        run.stopped = Some(n.at);
        let id = match failure {
            None => {
                run.status = "SUCCEEDED".into();
                n.push(&history::bare("MapRunSucceeded"), previous)
            }
            Some(e) => {
                run.status = "FAILED".into();
                self.abort_children(tx, run).await?;
                n.push(
                    &history::with(
                        "MapRunFailed",
                        "mapRunFailedEventDetails",
                        json!({"error": e.error, "cause": e.cause}),
                    ),
                    previous,
                )
            }
        };
        Ok(id)
    }

    /// Aborts a run's running children (each gets `ExecutionAborted`); counted as aborted.
    async fn abort_children(&self, tx: &mut Tx, run: &mut MapRunRecord) -> Result<()> {
        let prefix = format!("{}.", frame_id(&run.execution, &run.frame));
        let docs = tx.documents().list(FRAME_DOC, &prefix).await?;
        for (_, proxy) in proxies(&docs, run)? {
            let (Some(child), FrameStatus::Running) = (proxy.child.as_deref(), proxy.status) else { continue };
            let Some((cdoc, mut c)) = durable::lock_execution(tx, child).await? else { continue };
            if c.status != "RUNNING" {
                continue;
            }
            let mut n = durable::numbering(&c);
            n.push(&history::with("ExecutionAborted", "executionAbortedEventDetails", json!({})), 0);
            c.status = "ABORTED".into();
            c.stopped = Some(n.at);
            let items = items_in(run.batched, &proxy.input);
            run.executions.ended("ABORTED", 1);
            run.items.ended("ABORTED", items);
            durable::close(tx, child, &cdoc, &mut c, n, self.history_ttl()).await?;
            self.finished(&c);
        }
        Ok(())
    }

    /// Aborts the execution's running Map Runs (all, or those under the frame path `under`): `MapRunAborted` in the
    /// parent, their running children aborted. For a parent that stops, times out or fails, or a Map whose branch
    /// was given up.
    pub(crate) async fn abort_map_runs(
        &self,
        tx: &mut Tx,
        x: &ExecutionRecord,
        n: &mut Numbering,
        under: Option<&str>,
    ) -> Result<()> {
        for key in &x.map_runs {
            let Some(rdoc) = tx.documents().get_for_update(MAP_RUN_DOC, key).await? else { continue };
            let mut run: MapRunRecord = decode(&rdoc)?;
            if run.status != "RUNNING" || under.is_some_and(|u| !run.frame.starts_with(u)) {
                continue;
            }
            self.abort_children(tx, &mut run).await?;
            run.status = "ABORTED".into();
            run.stopped = Some(n.at);
            n.push(&history::bare("MapRunAborted"), n.next.saturating_sub(1));
            tx.documents().update(MAP_RUN_DOC, key, rdoc.revision, &encode(&run)).await?;
        }
        Ok(())
    }

    /// Deletes a Map Run with its children's records and histories (its parent expires): how many documents.
    pub(crate) async fn delete_map_run(&self, tx: &mut Tx, key: &str) -> Result<u64> {
        let Some(rdoc) = tx.documents().get_for_update(MAP_RUN_DOC, key).await? else { return Ok(0) };
        let run: MapRunRecord = decode(&rdoc)?;
        let docs = tx.documents().list(FRAME_DOC, &format!("{}.", frame_id(&run.execution, &run.frame))).await?;
        let mut n = 0;
        for (_, proxy) in proxies(&docs, &run)? {
            let Some(child) = proxy.child.as_deref() else { continue };
            for kind in [FRAME_DOC, EVENTS_DOC] {
                n += tx.documents().delete_prefix(kind, &format!("{child}#")).await?;
            }
            n += tx.documents().delete_prefix(durable::TOKEN_DOC, &durable::token_prefix(child)).await?;
            tx.documents().delete(EXEC_DOC, child).await?;
            n += 1;
        }
        tx.documents().delete(MAP_RUN_DOC, key).await?;
        Ok(n + 1)
    }

    /// A redrive of the parent reruns a run's unsuccessful children (each redriven from where it failed); the run
    /// is running again, `MapRunRedriven` in the parent.
    pub(crate) async fn redrive_map_run(
        &self,
        tx: &mut Tx,
        n: &mut Numbering,
        key: &str,
        children: &[String],
    ) -> Result<Vec<NewJob>> {
        let Some(rdoc) = tx.documents().get_for_update(MAP_RUN_DOC, key).await? else { return Ok(Vec::new()) };
        let mut run: MapRunRecord = decode(&rdoc)?;
        let mut jobs = Vec::new();
        for child in children {
            jobs.extend(Box::pin(self.redrive_in(tx, child)).await?);
        }
        let rerun = |c: &mut Counts, n: u64| {
            c.running += n;
            c.failed = 0;
            c.timed_out = 0;
            c.aborted = 0;
        };
        let ex = run.executions.failed + run.executions.timed_out + run.executions.aborted;
        let it = run.items.failed + run.items.timed_out + run.items.aborted;
        rerun(&mut run.executions, ex);
        rerun(&mut run.items, it);
        run.status = "RUNNING".into();
        run.stopped = None;
        run.redrive_count += 1;
        run.redrive_date = Some(n.at);
        n.push(
            &history::with(
                "MapRunRedriven",
                "mapRunRedrivenEventDetails",
                json!({"mapRunArn": self.map_run_arn(key), "redriveCount": run.redrive_count}),
            ),
            n.next.saturating_sub(1),
        );
        tx.documents().update(MAP_RUN_DOC, key, rdoc.revision, &encode(&run)).await?;
        Ok(jobs)
    }
}

/// The proxy frames of `run` (direct children of its Map frame, of its generation), in item order.
fn proxies(docs: &[strato_store::Document], run: &MapRunRecord) -> Result<Vec<(String, Frame)>> {
    let depth = run.frame.matches('.').count() + 1;
    let mut out = Vec::new();
    for d in docs {
        let path = d.id.rsplit_once('#').map(|(_, p)| p).unwrap_or_default();
        if path.matches('.').count() != depth {
            continue;
        }
        let f: Frame = decode(d)?;
        if f.generation == run.generation {
            out.push((path.to_string(), f));
        }
    }
    out.sort_by_key(|(_, f)| f.index);
    Ok(out)
}
