//! Runs a state machine in memory (either query language, with variables): every state type, Choice, Wait, Parallel,
//! inline Map, Retry and Catch, with tasks handed to a [`TaskRunner`]. Express executions, `TestState` and the
//! conformance suite run here; standard executions reuse its state steps on the job queue.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::dataflow::Io;
use crate::definition::{Machine, Retrier, State};
use crate::error::StatesError;
use crate::path::{self, ReferencePath, Scope, Vars};

/// Largest state input or output (AWS: 256 KiB).
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Runs `Task` states' resources.
#[async_trait]
pub trait TaskRunner: Send + Sync {
    /// Runs `resource` with `input` (the state's effective parameters); the result, or the task's error.
    async fn run(&self, resource: &str, input: Value, context: &Value) -> Result<Value, StatesError>;

    /// Strato's files, for a Map's `ItemReader` and `ResultWriter` (none: they are refused).
    fn items(&self) -> Option<&crate::items::ItemStore> {
        None
    }
}

/// A runner with no resources: every Task fails (for machines without tasks).
pub struct NoTasks;

#[async_trait]
impl TaskRunner for NoTasks {
    async fn run(&self, resource: &str, _: Value, _: &Value) -> Result<Value, StatesError> {
        Err(StatesError::new("States.Runtime", format!("no task resource {resource:?} is available here")))
    }
}

/// Whether an error name is matched by a retrier's or catcher's `ErrorEquals`.
pub fn matches(error_equals: &[String], error: &str) -> bool {
    // The terminal errors are matched only by name: States.ALL and States.TaskFailed never retry or catch them.
    let terminal = matches!(error, "States.Runtime" | "States.DataLimitExceeded");
    error_equals.iter().any(|e| {
        e == error
            || (e == "States.ALL" && !terminal)
            // A wildcard for every error but a timeout.
            || (e == "States.TaskFailed" && !terminal && error != "States.Timeout")
    })
}

/// The delay before retry number `attempt` (0-based) of a retrier, without jitter.
pub fn retry_delay(r: &Retrier, attempt: u32) -> Duration {
    let interval = r.interval_seconds.unwrap_or(1) as f64;
    let rate = r.backoff_rate.unwrap_or(2.0);
    let mut secs = interval * rate.powi(attempt as i32);
    if let Some(max) = r.max_delay_seconds {
        secs = secs.min(max as f64);
    }
    if r.jitter_strategy.as_deref() == Some("FULL") {
        secs *= rand::random::<f64>();
    }
    Duration::from_secs_f64(secs.max(0.0))
}

pub(crate) fn size_check(v: &Value, what: &str) -> Result<(), StatesError> {
    let n = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0);
    if n > MAX_PAYLOAD {
        return Err(StatesError::data_limit(format!(
            "The state/task '{what}' returned a result with a size exceeding the maximum number of bytes service limit."
        )));
    }
    Ok(())
}

/// `InputPath` (or `OutputPath`): the selected part, `{}` for `null`, all of it when absent.
pub(crate) fn select(
    p: &Option<Option<String>>,
    v: &Value,
    context: &Value,
    vars: &Vars,
    field: &str,
) -> Result<Value, StatesError> {
    match p {
        None => Ok(v.clone()),
        Some(None) => Ok(json!({})),
        Some(Some(q)) => path::read(q, v, Scope::new(context, vars), field),
    }
}

/// `ResultPath`: the result placed into the state's raw input (`$` replaces it, `null` discards the result).
pub(crate) fn place(
    result_path: &Option<Option<String>>,
    raw_input: &Value,
    result: Value,
) -> Result<Value, StatesError> {
    match result_path {
        None => Ok(result),
        Some(None) => Ok(raw_input.clone()),
        Some(Some(p)) => {
            let rp = ReferencePath::parse(p).map_err(|e| StatesError::runtime(e.0))?;
            let mut out = raw_input.clone();
            rp.set(&mut out, result).map_err(|_| {
                StatesError::result_path(format!(
                    "Unable to apply ReferencePath {p} to input {}",
                    serde_json::to_string(raw_input).unwrap_or_default()
                ))
            })?;
            Ok(out)
        }
    }
}

/// The context object of one state.
pub(crate) fn state_context(base: &Value, name: &str, retry_count: u32) -> Value {
    let mut c = base.clone();
    c["State"] = json!({"Name": name, "EnteredTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "RetryCount": retry_count});
    c
}

/// Runs a machine to its end: the output, or the error it failed with. `vars` are the variables of the enclosing
/// scope (a Map iteration or a Parallel branch sees its parent's; what it assigns stays inside).
pub fn run<'a>(
    machine: &'a Machine,
    input: Value,
    context: &'a Value,
    vars: Vars,
    tasks: &'a dyn TaskRunner,
) -> futures::future::BoxFuture<'a, Result<Value, StatesError>> {
    Box::pin(async move {
        let mut name = machine.start_at.clone();
        let mut input = input;
        let mut vars = vars;
        loop {
            let state = machine
                .states
                .get(&name)
                .ok_or_else(|| StatesError::runtime(format!("state {name:?} does not exist")))?;
            let (output, next, assigned) = step(&name, state, input, context, &vars, tasks).await?;
            vars.extend(assigned);
            size_check(&output, &name)?;
            match next {
                Some(n) => {
                    name = n;
                    input = output;
                }
                None => return Ok(output),
            }
        }
    })
}

/// What one state did: its output, the next state (`None`: the machine ends) and the variables it assigned.
pub type Stepped = (Value, Option<String>, Vars);

/// Runs one state with `vars` (as they were when it was entered) in scope.
pub async fn step(
    name: &str,
    s: &State,
    raw: Value,
    base_context: &Value,
    vars: &Vars,
    tasks: &dyn TaskRunner,
) -> Result<Stepped, StatesError> {
    let context = state_context(base_context, name, 0);
    let next = if s.end == Some(true) { None } else { s.next.clone() };
    let io = Io::new(name, s, &context, vars);
    let (produced, next) = match s.kind.as_str() {
        "Pass" => (io.pass(&raw)?, next),
        "Succeed" => (io.output_of(&raw, None, s.output.as_ref())?, None),
        "Fail" => return Err(io.fail(&raw)),
        "Choice" => {
            let (produced, target) = io.choose(&raw)?;
            (produced, Some(target))
        }
        "Wait" => {
            tokio::time::sleep(io.wait_delay(&raw)?).await;
            (io.output_of(&raw, s.assign.as_ref(), s.output.as_ref())?, next)
        }
        "Task" | "Parallel" | "Map" => {
            let mut attempts: Vec<u32> = Vec::new();
            loop {
                let outcome = async {
                    let effective = io.effective(&raw)?;
                    let result = match s.kind.as_str() {
                        "Task" => {
                            let params = io.arguments(&raw, &effective, &context)?;
                            let resource = s.resource.as_deref().unwrap_or_default();
                            let call = tasks.run(resource, params, &context);
                            match io.timeout(&raw)? {
                                Some(t) => tokio::time::timeout(t, call).await.map_err(|_| timed_out(name))??,
                                None => call.await?,
                            }
                        }
                        "Parallel" => {
                            let params = io.arguments(&raw, &effective, &context)?;
                            let branches = s.branches.as_deref().unwrap_or_default();
                            let runs =
                                branches.iter().map(|b| run(b, params.clone(), base_context, vars.clone(), tasks));
                            let results = futures::future::join_all(runs).await;
                            Value::Array(results.into_iter().collect::<Result<Vec<_>, _>>()?)
                        }
                        _ => map(&io, &raw, base_context, tasks).await?,
                    };
                    io.finish(&raw, result)
                }
                .await;
                let error = match outcome {
                    Ok(p) => break (p, next),
                    Err(e) => e,
                };
                match on_error(&io, &mut attempts, &raw, error)? {
                    OnError::Retry(delay) => tokio::time::sleep(delay).await,
                    OnError::Caught(output, assigned, next) => break ((output, assigned), Some(next)),
                }
            }
        }
        other => return Err(StatesError::runtime(format!("state type {other:?} is not supported"))),
    };
    let (output, assigned) = produced;
    Ok((output, next, assigned))
}

/// `States.Timeout` for a task that ran past its `TimeoutSeconds`.
pub(crate) fn timed_out(name: &str) -> StatesError {
    StatesError::new("States.Timeout", format!("The task in state {name:?} timed out"))
}

/// What a failed Task, Parallel or Map does next.
#[derive(Debug)]
pub(crate) enum OnError {
    /// Run the state again after this delay.
    Retry(Duration),
    /// A catcher took it: the state's output, the variables it assigned, and the next state.
    Caught(Value, Vars, String),
}

/// Retry (the first retrier matching the error, while it has attempts left; `attempts` counts per retrier), then
/// Catch; `Err` when neither takes the error.
pub(crate) fn on_error(
    io: &Io<'_>,
    attempts: &mut Vec<u32>,
    raw: &Value,
    error: StatesError,
) -> Result<OnError, StatesError> {
    let retriers = io.s.retry.as_deref().unwrap_or_default();
    attempts.resize(retriers.len(), 0);
    if let Some(i) = retriers.iter().position(|r| matches(&r.error_equals, &error.error)) {
        if u64::from(attempts[i]) < retriers[i].max_attempts.unwrap_or(3) {
            let delay = retry_delay(&retriers[i], attempts[i]);
            attempts[i] += 1;
            return Ok(OnError::Retry(delay));
        }
    }
    let Some(c) = io.s.catch.iter().flatten().find(|c| matches(&c.error_equals, &error.error)) else {
        return Err(error);
    };
    let (output, assigned) = io.caught(c, raw, &error)?;
    Ok(OnError::Caught(output, assigned, c.next.clone()))
}

/// The machine each iteration of a Map state runs.
pub(crate) fn processor(s: &State) -> Result<Machine, StatesError> {
    match (&s.item_processor, &s.iterator) {
        (Some(p), _) => Ok(p.machine()),
        (None, Some(m)) => Ok(m.clone()),
        _ => Err(StatesError::runtime("a Map state needs ItemProcessor or Iterator")),
    }
}

/// Whether `failed` of `total` iterations are more than the Map tolerates.
pub(crate) fn map_exceeds_tolerance(tolerance: Tolerance, failed: usize, total: usize) -> bool {
    let tolerated_count = tolerance.0.unwrap_or(0);
    let tolerated_pct = tolerance.1.unwrap_or(0.0);
    failed > 0
        && !(failed <= tolerated_count || (total > 0 && (failed as f64) * 100.0 / (total as f64) <= tolerated_pct))
}

/// The error a Map fails with once its iterations failed past the tolerance: without a tolerance, the first failed
/// iteration's own.
pub(crate) fn map_failure(tolerance: Tolerance, first: StatesError) -> StatesError {
    if tolerance == (None, None) {
        return first;
    }
    StatesError::new("States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded")
}

/// A Map's tolerated failures: a count and a percentage, each when set.
pub(crate) type Tolerance = (Option<usize>, Option<f64>);

/// An inline Map: each item through the processor, at most `MaxConcurrency` at once, results in item order.
async fn map(io: &Io<'_>, raw: &Value, base_context: &Value, tasks: &dyn TaskRunner) -> Result<Value, StatesError> {
    let read = match &io.s.item_reader {
        Some(reader) => {
            let store = tasks.items().ok_or_else(|| StatesError::new("States.ItemReaderFailed", "no storage here"))?;
            Some(store.read(reader, &io.storage_params(raw, reader, "ItemReader")?).await?)
        }
        None => None,
    };
    let inputs = io.map_inputs(raw, read)?;
    let machine = processor(io.s)?;
    let limit = io.max_concurrency(raw, inputs.len())?;
    let tolerance = io.tolerance(raw)?;
    use futures::StreamExt;
    let results: Vec<Result<Value, StatesError>> =
        futures::stream::iter(inputs.into_iter().map(|i| run(&machine, i, base_context, io.vars.clone(), tasks)))
            .buffered(limit)
            .collect()
            .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if map_exceeds_tolerance(tolerance, failed, results.len()) {
        return Err(map_failure(tolerance, results.into_iter().find_map(Result::err).expect("a failed iteration")));
    }
    if let Some(writer) = &io.s.result_writer {
        let store = tasks.items().ok_or_else(|| StatesError::runtime("ResultWriter: no storage here"))?;
        let run = uuid::Uuid::new_v4().to_string();
        return store.write(&io.storage_params(raw, writer, "ResultWriter")?, &run, &run, &results).await;
    }
    Ok(Value::Array(
        results.into_iter().map(|r| r.unwrap_or_else(|e| json!({"Error": e.error, "Cause": e.cause}))).collect(),
    ))
}
