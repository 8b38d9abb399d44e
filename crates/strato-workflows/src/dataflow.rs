//! A state's data flow in either query language, shared by the in-memory interpreter and durable executions.
//!
//! JSONPath: `InputPath` → `Parameters` → the work → `ResultSelector` → `Assign` (its `$` is the selected result)
//! → `ResultPath` → `OutputPath`. JSONata: `Arguments` (default: the state input) → the work → `Output` (default:
//! the result, or the input for states without one) and `Assign`, both evaluated with the variables as they were
//! when the state was entered, so a state's own assignments are seen from the next state on.

use std::time::Duration;

use serde_json::{json, Value};

use crate::choice::Rule;
use crate::definition::{Catcher, State};
use crate::error::StatesError;
use crate::interpreter::{self, MAX_PAYLOAD};
use crate::jsonata::{self, Bindings};
use crate::path::{self, Scope, Vars};
use crate::template;

/// One state about to run: its definition, the context object, and the variables in scope.
#[derive(Clone, Copy)]
pub struct Io<'a> {
    /// The state's name.
    pub name: &'a str,
    /// Its definition.
    pub s: &'a State,
    /// The context object (`$$`, `$states.context`).
    pub context: &'a Value,
    /// Variables as they were when the state was entered.
    pub vars: &'a Vars,
}

/// What a state produced: its output and the variables it assigned.
pub type Produced = (Value, Vars);

impl<'a> Io<'a> {
    /// A state's I/O.
    pub fn new(name: &'a str, s: &'a State, context: &'a Value, vars: &'a Vars) -> Self {
        Self { name, s, context, vars }
    }

    /// Whether the state uses JSONata (its own `QueryLanguage`, inherited from the machine's at parse time).
    pub fn jsonata(&self) -> bool {
        self.s.query_language.as_deref() == Some("JSONata")
    }

    /// A field's value is not what the state needs: `States.QueryEvaluationError` when JSONata computed it,
    /// `States.Runtime` when a JSONPath selected it.
    fn bad_value(&self, cause: String) -> StatesError {
        if self.jsonata() {
            StatesError::new(jsonata::QUERY_ERROR, cause)
        } else {
            StatesError::runtime(cause)
        }
    }

    fn scope(&self) -> Scope<'_> {
        Scope::new(self.context, self.vars)
    }

    fn bindings(&self, input: &Value) -> Bindings<'a> {
        Bindings::new(input, self.context, self.vars)
    }

    /// The effective input: `InputPath` applied (JSONPath), the raw input (JSONata).
    pub fn effective(&self, raw: &Value) -> Result<Value, StatesError> {
        if self.jsonata() {
            return Ok(raw.clone());
        }
        interpreter::select(&self.s.input_path, raw, self.context, self.vars, "InputPath")
    }

    /// A Task's or Parallel's input: `Parameters` on the effective input (JSONPath), `Arguments` (JSONata; the
    /// state input without it). `context` is the context object the fields see (a callback's carries its token).
    pub fn arguments(&self, raw: &Value, effective: &Value, context: &Value) -> Result<Value, StatesError> {
        if self.jsonata() {
            return match &self.s.arguments {
                Some(a) => jsonata::eval(a, &Bindings::new(raw, context, self.vars), "Arguments"),
                None => Ok(raw.clone()),
            };
        }
        match &self.s.parameters {
            Some(p) => template::apply(p, effective, Scope::new(context, self.vars)),
            None => Ok(effective.clone()),
        }
    }

    /// The variables `assign` sets: JSONPath templates on `dollar` (`$`), or JSONata with these bindings.
    fn assign(&self, assign: Option<&Value>, dollar: &Value, b: &Bindings<'_>) -> Result<Vars, StatesError> {
        let Some(assign) = assign else { return Ok(Vars::new()) };
        let values = if self.jsonata() {
            jsonata::eval(assign, b, "Assign")?
        } else {
            template::apply(assign, dollar, self.scope())?
        };
        let Value::Object(vars) = values else {
            return Err(StatesError::runtime("Assign must be an object of variable names and values"));
        };
        let size = serde_json::to_vec(&vars).map(|v| v.len()).unwrap_or(0);
        if size > MAX_PAYLOAD {
            return Err(StatesError::data_limit(format!(
                "The variables assigned by the state '{}' are {size} bytes, over the 256 KiB limit",
                self.name
            )));
        }
        Ok(vars)
    }

    /// The output and assignments of a Task, Parallel or Map from its result.
    pub fn finish(&self, raw: &Value, result: Value) -> Result<Produced, StatesError> {
        if self.jsonata() {
            let b = self.bindings(raw).with_result(&result);
            let assigned = self.assign(self.s.assign.as_ref(), &result, &b)?;
            let out = match &self.s.output {
                Some(o) => jsonata::eval(o, &b, "Output")?,
                None => result,
            };
            return Ok((out, assigned));
        }
        // `Assign` runs beside `ResultSelector`: its `$` is the raw result.
        let assigned = self.assign(self.s.assign.as_ref(), &result, &self.bindings(raw))?;
        let selected = match &self.s.result_selector {
            Some(t) => template::apply(t, &result, self.scope())?,
            None => result,
        };
        let placed = interpreter::place(&self.s.result_path, raw, selected)?;
        Ok((interpreter::select(&self.s.output_path, &placed, self.context, self.vars, "OutputPath")?, assigned))
    }

    /// A Pass state's output and assignments.
    pub fn pass(&self, raw: &Value) -> Result<Produced, StatesError> {
        if self.jsonata() {
            return self.output_of(raw, self.s.assign.as_ref(), self.s.output.as_ref());
        }
        let effective = self.effective(raw)?;
        let result = match (&self.s.result, &self.s.parameters) {
            (Some(r), _) => r.clone(),
            (None, Some(p)) => template::apply(p, &effective, self.scope())?,
            (None, None) => effective,
        };
        self.finish(raw, result)
    }

    /// The output and assignments of a state without a result (Wait, Succeed, a Choice's rule): `OutputPath` on
    /// the effective input, or JSONata's `Output` (default: the input).
    pub fn output_of(
        &self,
        raw: &Value,
        assign: Option<&Value>,
        output: Option<&Value>,
    ) -> Result<Produced, StatesError> {
        if self.jsonata() {
            let b = self.bindings(raw);
            let assigned = self.assign(assign, raw, &b)?;
            let out = match output {
                Some(o) => jsonata::eval(o, &b, "Output")?,
                None => raw.clone(),
            };
            return Ok((out, assigned));
        }
        let effective = self.effective(raw)?;
        let assigned = self.assign(assign, &effective, &self.bindings(raw))?;
        Ok((interpreter::select(&self.s.output_path, &effective, self.context, self.vars, "OutputPath")?, assigned))
    }

    /// A Choice state: the matched rule's (or the default's) next state, with the output and assignments.
    pub fn choose(&self, raw: &Value) -> Result<(Produced, String), StatesError> {
        let effective = self.effective(raw)?;
        for (i, rule) in self.s.choices.iter().flatten().enumerate() {
            let holds = if self.jsonata() {
                let condition = rule.get("Condition").cloned().unwrap_or(Value::Null);
                match jsonata::eval(&condition, &self.bindings(raw), &format!("Choices[{i}]/Condition"))? {
                    Value::Bool(b) => b,
                    other => {
                        return Err(StatesError::new(
                            jsonata::QUERY_ERROR,
                            format!(
                                "The Condition of Choices[{i}] of the state '{}' returned {other}, not a boolean",
                                self.name
                            ),
                        ))
                    }
                }
            } else {
                Rule::parse(rule, true).map_err(StatesError::runtime)?.holds(&effective, self.scope())?
            };
            if holds {
                let next = rule.get("Next").and_then(Value::as_str).unwrap_or_default().to_string();
                return Ok((self.output_of(raw, rule.get("Assign"), rule.get("Output"))?, next));
            }
        }
        match &self.s.default {
            Some(d) => Ok((self.output_of(raw, self.s.assign.as_ref(), self.s.output.as_ref())?, d.clone())),
            None => Err(StatesError::no_choice(self.name)),
        }
    }

    /// A Fail state's error.
    pub fn fail(&self, raw: &Value) -> StatesError {
        let text = |lit: &Option<Value>, path_field: &Option<String>, field: &str| -> Result<String, StatesError> {
            let v = match (path_field, lit) {
                (Some(p), _) if crate::intrinsics::is_call(p) => {
                    let call = crate::intrinsics::parse(p).map_err(StatesError::intrinsic)?;
                    crate::intrinsics::eval(&call, raw, self.scope())?
                }
                (Some(p), _) => path::read(p, raw, self.scope(), &format!("{field}Path"))?,
                (None, Some(v)) if self.jsonata() => jsonata::eval(v, &self.bindings(raw), field)?,
                (None, Some(v)) => v.clone(),
                (None, None) => return Ok(String::new()),
            };
            match v {
                Value::String(s) => Ok(s),
                other => {
                    Err(self.bad_value(format!("The {field} of the state '{}' is {other}, not a string", self.name)))
                }
            }
        };
        let error = match text(&self.s.error, &self.s.error_path, "Error") {
            Ok(e) => e,
            Err(e) => return e,
        };
        match text(&self.s.cause, &self.s.cause_path, "Cause") {
            Ok(cause) => StatesError::new(error, cause),
            Err(e) => e,
        }
    }

    /// A number field that JSONata may compute (`TimeoutSeconds`, `MaxConcurrency`, …), or its JSONPath `*Path`.
    fn number(
        &self,
        raw: &Value,
        v: &Option<Value>,
        path: &Option<String>,
        field: &str,
    ) -> Result<Option<f64>, StatesError> {
        let value = match (v, path) {
            (Some(v), _) if self.jsonata() => jsonata::eval(v, &self.bindings(raw), field)?,
            (Some(v), _) => v.clone(),
            (None, Some(p)) => path::read(p, &self.effective(raw)?, self.scope(), &format!("{field}Path"))?,
            (None, None) => return Ok(None),
        };
        value.as_f64().filter(|n| *n >= 0.0).map(Some).ok_or_else(|| {
            self.bad_value(format!("The {field} of the state '{}' is {value}, not a non-negative number", self.name))
        })
    }

    /// A Task's `TimeoutSeconds`.
    pub fn timeout(&self, raw: &Value) -> Result<Option<Duration>, StatesError> {
        Ok(self
            .number(raw, &self.s.timeout_seconds, &self.s.timeout_seconds_path, "TimeoutSeconds")?
            .map(Duration::from_secs_f64))
    }

    /// A Task's `HeartbeatSeconds`.
    pub fn heartbeat(&self, raw: &Value) -> Result<Option<u64>, StatesError> {
        Ok(self
            .number(raw, &self.s.heartbeat_seconds, &self.s.heartbeat_seconds_path, "HeartbeatSeconds")?
            .map(|n| n as u64))
    }

    /// How long a Wait state waits.
    pub fn wait_delay(&self, raw: &Value) -> Result<Duration, StatesError> {
        let until = |t: &str| -> Result<Duration, StatesError> {
            let at = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| self.bad_value(format!("The Timestamp {t:?} is not an RFC 3339 timestamp")))?;
            Ok((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default())
        };
        if let Some(secs) = self.number(raw, &self.s.seconds, &self.s.seconds_path, "Seconds")? {
            if self.jsonata() && (secs.fract() != 0.0 || secs > 99_999_999.0) {
                return Err(self.bad_value(format!("Seconds must be an integer from 0 to 99999999, not {secs}")));
            }
            return Ok(Duration::from_secs_f64(secs));
        }
        let stamp = match (&self.s.timestamp, &self.s.timestamp_path) {
            (Some(v), _) if self.jsonata() => jsonata::eval(v, &self.bindings(raw), "Timestamp")?,
            (Some(v), _) => v.clone(),
            (None, Some(p)) => path::read(p, &self.effective(raw)?, self.scope(), "TimestampPath")?,
            (None, None) => {
                return Err(StatesError::runtime("a Wait state needs Seconds, Timestamp, SecondsPath or TimestampPath"))
            }
        };
        until(stamp.as_str().ok_or_else(|| self.bad_value(format!("The Timestamp {stamp} is not a string")))?)
    }

    /// A field of a Map's `ItemReader` or `ResultWriter` as evaluated for this state: its `Parameters` (JSONPath,
    /// on the effective input) or `Arguments` (JSONata).
    pub fn storage_params(&self, raw: &Value, config: &Value, what: &str) -> Result<Value, StatesError> {
        let empty = Value::Object(Default::default());
        if self.jsonata() {
            let a = config.get("Arguments").unwrap_or(&empty);
            return jsonata::eval(a, &self.bindings(raw), &format!("{what}/Arguments"));
        }
        let p = config.get("Parameters").unwrap_or(&empty);
        template::apply(p, &self.effective(raw)?, self.scope())
    }

    /// A Map state's iteration inputs: the items (`read` from an `ItemReader`, or `ItemsPath` / `Items`), each
    /// through `ItemSelector`, then grouped by `ItemBatcher`.
    pub fn map_inputs(&self, raw: &Value, read: Option<Vec<Value>>) -> Result<Vec<Value>, StatesError> {
        let effective = self.effective(raw)?;
        let items = if let Some(read) = read {
            Value::Array(read)
        } else if self.jsonata() {
            match &self.s.items {
                Some(v) => jsonata::eval(v, &self.bindings(raw), "Items")?,
                None => raw.clone(),
            }
        } else {
            match &self.s.items_path {
                Some(p) => path::read(p, &effective, self.scope(), "ItemsPath")?,
                None => effective.clone(),
            }
        };
        let Value::Array(items) = items else {
            return Err(self.bad_value(format!(
                "Map state {:?}: the items are not an array, got {}",
                self.name,
                serde_json::to_string(&items).unwrap_or_default()
            )));
        };
        let selector = self.s.item_selector.as_ref().or(self.s.parameters.as_ref());
        let Some(selector) = selector else { return self.batch(raw, items) };
        let mut inputs = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let mut c = self.context.clone();
            c["Map"] = json!({"Item": {"Index": i, "Value": item, "Source": "STATE_DATA"}});
            inputs.push(if self.jsonata() {
                jsonata::eval(selector, &Bindings::new(raw, &c, self.vars), "ItemSelector")?
            } else {
                template::apply(selector, &effective, Scope::new(&c, self.vars))?
            });
        }
        self.batch(raw, inputs)
    }

    /// `ItemBatcher`: the items grouped into batches, with `BatchInput` evaluated on the state.
    fn batch(&self, raw: &Value, items: Vec<Value>) -> Result<Vec<Value>, StatesError> {
        let Some(batcher) = &self.s.item_batcher else { return Ok(items) };
        let batch_input = match batcher.get("BatchInput") {
            None => None,
            Some(b) if self.jsonata() => Some(jsonata::eval(b, &self.bindings(raw), "ItemBatcher/BatchInput")?),
            Some(b) => Some(template::apply(b, &self.effective(raw)?, self.scope())?),
        };
        crate::items::batch(items, batcher, batch_input)
    }

    /// `MaxConcurrency` (0: all at once).
    pub fn max_concurrency(&self, raw: &Value, total: usize) -> Result<usize, StatesError> {
        let n = self.number(raw, &self.s.max_concurrency, &self.s.max_concurrency_path, "MaxConcurrency")?;
        Ok(match n.unwrap_or(0.0) as usize {
            0 => total.max(1),
            n => n,
        })
    }

    /// `ToleratedFailureCount` and `ToleratedFailurePercentage` (each `None` when not set).
    pub fn tolerance(&self, raw: &Value) -> Result<(Option<usize>, Option<f64>), StatesError> {
        let count = self.number(
            raw,
            &self.s.tolerated_failure_count,
            &self.s.tolerated_failure_count_path,
            "ToleratedFailureCount",
        )?;
        let pct = self.number(
            raw,
            &self.s.tolerated_failure_percentage,
            &self.s.tolerated_failure_percentage_path,
            "ToleratedFailurePercentage",
        )?;
        Ok((count.map(|c| c as usize), pct))
    }

    /// A catcher's output and assignments from the error: JSONPath places `{Error, Cause}` at its `ResultPath`
    /// (`$` by default) and `Assign` sees it as `$`; JSONata's `Output` (default: the error output) and `Assign`
    /// see it as `$states.errorOutput`.
    pub fn caught(&self, c: &Catcher, raw: &Value, error: &StatesError) -> Result<Produced, StatesError> {
        let error_output = json!({"Error": error.error, "Cause": error.cause});
        if self.jsonata() {
            let b = self.bindings(raw).with_error_output(&error_output);
            let assigned = self.assign(c.assign.as_ref(), &error_output, &b)?;
            let out = match &c.output {
                Some(o) => jsonata::eval(o, &b, "Output")?,
                None => error_output,
            };
            return Ok((out, assigned));
        }
        let assigned = self.assign(c.assign.as_ref(), &error_output, &self.bindings(raw))?;
        let rp = Some(c.result_path.clone().unwrap_or_else(|| Some("$".to_string())));
        Ok((interpreter::place(&rp, raw, error_output)?, assigned))
    }
}
