//! Runs a state machine in memory (JSONPath states): the data flow of every state type, Choice, Wait, Parallel,
//! inline Map, Retry and Catch, with tasks handed to a [`TaskRunner`]. Express executions, `TestState` and the
//! conformance suite run here; standard executions reuse its state steps on the job queue.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::choice::Rule;
use crate::definition::{Catcher, Machine, Retrier, State};
use crate::error::StatesError;
use crate::path::{self, ReferencePath};
use crate::template;

/// Largest state input or output (AWS: 256 KiB).
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// Runs `Task` states' resources.
#[async_trait]
pub trait TaskRunner: Send + Sync {
    /// Runs `resource` with `input` (the state's effective parameters); the result, or the task's error.
    async fn run(&self, resource: &str, input: Value, context: &Value) -> Result<Value, StatesError>;
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
    field: &str,
) -> Result<Value, StatesError> {
    match p {
        None => Ok(v.clone()),
        Some(None) => Ok(json!({})),
        Some(Some(q)) => path::read(q, v, context, field),
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

/// Runs a machine to its end: the output, or the error it failed with.
pub fn run<'a>(
    machine: &'a Machine,
    input: Value,
    context: &'a Value,
    tasks: &'a dyn TaskRunner,
) -> futures::future::BoxFuture<'a, Result<Value, StatesError>> {
    Box::pin(async move {
        let mut name = machine.start_at.clone();
        let mut input = input;
        loop {
            let state = machine
                .states
                .get(&name)
                .ok_or_else(|| StatesError::runtime(format!("state {name:?} does not exist")))?;
            let (output, next) = step(&name, state, input, context, tasks).await?;
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

/// Runs one state: its output and the next state (`None`: the machine ends).
pub async fn step(
    name: &str,
    s: &State,
    raw: Value,
    base_context: &Value,
    tasks: &dyn TaskRunner,
) -> Result<(Value, Option<String>), StatesError> {
    let context = state_context(base_context, name, 0);
    let next = if s.end == Some(true) { None } else { s.next.clone() };
    match s.kind.as_str() {
        "Pass" => {
            let effective = select(&s.input_path, &raw, &context, "InputPath")?;
            let result = match (&s.result, &s.parameters) {
                (Some(r), _) => r.clone(),
                (None, Some(p)) => template::apply(p, &effective, &context)?,
                (None, None) => effective,
            };
            let placed = place(&s.result_path, &raw, result)?;
            Ok((select(&s.output_path, &placed, &context, "OutputPath")?, next))
        }
        "Succeed" => {
            let effective = select(&s.input_path, &raw, &context, "InputPath")?;
            Ok((select(&s.output_path, &effective, &context, "OutputPath")?, None))
        }
        "Fail" => {
            let text = |lit: &Option<Value>,
                        path_field: &Option<String>,
                        field: &str|
             -> Result<Option<String>, StatesError> {
                if let Some(p) = path_field {
                    let v = if crate::intrinsics::is_call(p) {
                        let call = crate::intrinsics::parse(p).map_err(StatesError::intrinsic)?;
                        crate::intrinsics::eval(&call, &raw, &context)?
                    } else {
                        path::read(p, &raw, &context, field)?
                    };
                    return match v {
                        Value::String(s) => Ok(Some(s)),
                        other => {
                            Err(StatesError::runtime(format!("The {field} {p} resolved to {other}, not a string")))
                        }
                    };
                }
                Ok(lit.as_ref().and_then(|v| v.as_str()).map(String::from))
            };
            let error = text(&s.error, &s.error_path, "ErrorPath")?.unwrap_or_default();
            let cause = text(&s.cause, &s.cause_path, "CausePath")?.unwrap_or_default();
            Err(StatesError::new(error, cause))
        }
        "Choice" => {
            let effective = select(&s.input_path, &raw, &context, "InputPath")?;
            for rule in s.choices.iter().flatten() {
                let parsed = Rule::parse(rule, true).map_err(StatesError::runtime)?;
                if parsed.holds(&effective, &context)? {
                    let target = rule.get("Next").and_then(Value::as_str).map(String::from);
                    return Ok((select(&s.output_path, &effective, &context, "OutputPath")?, target));
                }
            }
            match &s.default {
                Some(d) => Ok((select(&s.output_path, &effective, &context, "OutputPath")?, Some(d.clone()))),
                None => Err(StatesError::no_choice(name)),
            }
        }
        "Wait" => {
            let effective = select(&s.input_path, &raw, &context, "InputPath")?;
            let delay = wait_delay(s, &effective, &context)?;
            tokio::time::sleep(delay).await;
            Ok((select(&s.output_path, &effective, &context, "OutputPath")?, next))
        }
        "Task" | "Parallel" | "Map" => {
            let effective = select(&s.input_path, &raw, &context, "InputPath")?;
            let mut attempts: Vec<u32> = Vec::new();
            loop {
                let outcome = async {
                    let result = match s.kind.as_str() {
                        "Task" => {
                            let params = parameters(s, &effective, &context)?;
                            let resource = s.resource.as_deref().unwrap_or_default();
                            let call = tasks.run(resource, params, &context);
                            match task_timeout(s, &effective, &context)? {
                                Some(t) => tokio::time::timeout(t, call).await.map_err(|_| timed_out(name))??,
                                None => call.await?,
                            }
                        }
                        "Parallel" => {
                            let params = parameters(s, &effective, &context)?;
                            let branches = s.branches.as_deref().unwrap_or_default();
                            let runs = branches.iter().map(|b| run(b, params.clone(), base_context, tasks));
                            let results = futures::future::join_all(runs).await;
                            Value::Array(results.into_iter().collect::<Result<Vec<_>, _>>()?)
                        }
                        _ => map(name, s, &effective, &context, base_context, tasks).await?,
                    };
                    finish(s, &raw, result, &context)
                }
                .await;
                let error = match outcome {
                    Ok(v) => return Ok((v, next)),
                    Err(e) => e,
                };
                match on_error(s, &mut attempts, &raw, error)? {
                    OnError::Retry(delay) => tokio::time::sleep(delay).await,
                    OnError::Caught(output, next) => return Ok((output, Some(next))),
                }
            }
        }
        other => Err(StatesError::runtime(format!("state type {other:?} is not supported"))),
    }
}

/// A Task's (or Parallel's) effective parameters: `Parameters` applied, or the effective input.
pub(crate) fn parameters(s: &State, effective: &Value, context: &Value) -> Result<Value, StatesError> {
    match &s.parameters {
        Some(p) => template::apply(p, effective, context),
        None => Ok(effective.clone()),
    }
}

/// A Task's, Parallel's or Map's result through `ResultSelector`, `ResultPath` and `OutputPath`.
pub(crate) fn finish(s: &State, raw: &Value, result: Value, context: &Value) -> Result<Value, StatesError> {
    let selected = match &s.result_selector {
        Some(t) => template::apply(t, &result, context)?,
        None => result,
    };
    let placed = place(&s.result_path, raw, selected)?;
    select(&s.output_path, &placed, context, "OutputPath")
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
    /// A catcher took it: the state's output and the next state.
    Caught(Value, String),
}

/// Retry (the first retrier matching the error, while it has attempts left; `attempts` counts per retrier), then
/// Catch; `Err` when neither takes the error.
pub(crate) fn on_error(
    s: &State,
    attempts: &mut Vec<u32>,
    raw: &Value,
    error: StatesError,
) -> Result<OnError, StatesError> {
    let retriers = s.retry.as_deref().unwrap_or_default();
    attempts.resize(retriers.len(), 0);
    if let Some(i) = retriers.iter().position(|r| matches(&r.error_equals, &error.error)) {
        if u64::from(attempts[i]) < retriers[i].max_attempts.unwrap_or(3) {
            let delay = retry_delay(&retriers[i], attempts[i]);
            attempts[i] += 1;
            return Ok(OnError::Retry(delay));
        }
    }
    let (output, next) = catch(s.catch.as_deref(), raw, error)?;
    Ok(OnError::Caught(output, next.expect("a catcher names its next state")))
}

/// The first catcher matching the error: the error output placed in the raw input, and where to go.
fn catch(
    catchers: Option<&[Catcher]>,
    raw: &Value,
    error: StatesError,
) -> Result<(Value, Option<String>), StatesError> {
    let Some(c) = catchers.into_iter().flatten().find(|c| matches(&c.error_equals, &error.error)) else {
        return Err(error);
    };
    let output = json!({"Error": error.error, "Cause": error.cause});
    let rp = match &c.result_path {
        None => Some(Some("$".to_string())),
        Some(p) => Some(p.clone()),
    };
    Ok((place(&rp, raw, output)?, Some(c.next.clone())))
}

fn number_at(p: &str, input: &Value, context: &Value, field: &str) -> Result<f64, StatesError> {
    let v = path::read(p, input, context, field)?;
    v.as_f64()
        .filter(|n| *n >= 0.0)
        .ok_or_else(|| StatesError::runtime(format!("The {field} {p} resolved to {v}, not a non-negative number")))
}

pub(crate) fn task_timeout(s: &State, input: &Value, context: &Value) -> Result<Option<Duration>, StatesError> {
    if let Some(t) = s.timeout_seconds {
        return Ok(Some(Duration::from_secs(t)));
    }
    match &s.timeout_seconds_path {
        Some(p) => Ok(Some(Duration::from_secs_f64(number_at(p, input, context, "TimeoutSecondsPath")?))),
        None => Ok(None),
    }
}

/// How long a Wait state waits.
pub fn wait_delay(s: &State, input: &Value, context: &Value) -> Result<Duration, StatesError> {
    let until = |t: &str| -> Result<Duration, StatesError> {
        let at = chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|_| StatesError::runtime(format!("The Timestamp {t:?} is not an RFC 3339 timestamp")))?;
        Ok((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default())
    };
    if let Some(v) = &s.seconds {
        return v
            .as_u64()
            .map(Duration::from_secs)
            .ok_or_else(|| StatesError::runtime("Seconds must be a non-negative integer"));
    }
    if let Some(Value::String(t)) = &s.timestamp {
        return until(t);
    }
    if let Some(p) = &s.seconds_path {
        return Ok(Duration::from_secs_f64(number_at(p, input, context, "SecondsPath")?));
    }
    if let Some(p) = &s.timestamp_path {
        let v = path::read(p, input, context, "TimestampPath")?;
        return until(
            v.as_str()
                .ok_or_else(|| StatesError::runtime(format!("The TimestampPath {p} resolved to {v}, not a string")))?,
        );
    }
    Err(StatesError::runtime("a Wait state needs Seconds, Timestamp, SecondsPath or TimestampPath"))
}

/// A Map state's iterations: each item's input (after `ItemSelector`/`Parameters`) and the processor they run.
pub(crate) fn map_inputs(
    name: &str,
    s: &State,
    effective: &Value,
    context: &Value,
) -> Result<(Vec<Value>, Machine), StatesError> {
    let items = match &s.items_path {
        Some(p) => path::read(p, effective, context, "ItemsPath")?,
        None => effective.clone(),
    };
    let Value::Array(items) = items else {
        return Err(StatesError::runtime(format!(
            "Map state {name:?}: the ItemsPath did not select an array, got {}",
            serde_json::to_string(&items).unwrap_or_default()
        )));
    };
    let machine = processor(s)?;
    let selector = s.item_selector.as_ref().or(s.parameters.as_ref());
    let mut inputs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut c = context.clone();
        c["Map"] = json!({"Item": {"Index": i, "Value": item}});
        inputs.push(match selector {
            Some(t) => template::apply(t, effective, &c)?,
            None => item.clone(),
        });
    }
    Ok((inputs, machine))
}

/// The machine each iteration of a Map state runs.
pub(crate) fn processor(s: &State) -> Result<Machine, StatesError> {
    match (&s.item_processor, &s.iterator) {
        (Some(p), _) => Ok(p.machine()),
        (None, Some(m)) => Ok(m.clone()),
        _ => Err(StatesError::runtime("a Map state needs ItemProcessor or Iterator")),
    }
}

/// How many of a Map's iterations run at once (`MaxConcurrency` 0: all).
pub(crate) fn map_concurrency(s: &State, total: usize) -> usize {
    match s.max_concurrency.unwrap_or(0) {
        0 => total.max(1),
        n => n as usize,
    }
}

/// Whether `failed` of `total` iterations are more than the Map tolerates.
pub(crate) fn map_exceeds_tolerance(s: &State, failed: usize, total: usize) -> bool {
    let tolerated_count = s.tolerated_failure_count.unwrap_or(0) as usize;
    let tolerated_pct = s.tolerated_failure_percentage.unwrap_or(0.0);
    failed > 0
        && !(failed <= tolerated_count || (total > 0 && (failed as f64) * 100.0 / (total as f64) <= tolerated_pct))
}

/// The error a Map fails with once its iterations failed past the tolerance: without a tolerance, the first failed
/// iteration's own.
pub(crate) fn map_failure(s: &State, first: StatesError) -> StatesError {
    if s.tolerated_failure_count.is_none() && s.tolerated_failure_percentage.is_none() {
        return first;
    }
    StatesError::new("States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded")
}

/// An inline Map: each item through the processor, at most `MaxConcurrency` at once, results in item order.
async fn map(
    name: &str,
    s: &State,
    effective: &Value,
    context: &Value,
    base_context: &Value,
    tasks: &dyn TaskRunner,
) -> Result<Value, StatesError> {
    let (inputs, machine) = map_inputs(name, s, effective, context)?;
    let limit = map_concurrency(s, inputs.len());
    use futures::StreamExt;
    let results: Vec<Result<Value, StatesError>> =
        futures::stream::iter(inputs.into_iter().map(|i| run(&machine, i, base_context, tasks)))
            .buffered(limit)
            .collect()
            .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if map_exceeds_tolerance(s, failed, results.len()) {
        return Err(map_failure(s, results.into_iter().find_map(Result::err).expect("a failed iteration")));
    }
    Ok(Value::Array(
        results.into_iter().map(|r| r.unwrap_or_else(|e| json!({"Error": e.error, "Cause": e.cause}))).collect(),
    ))
}
