//! A state machine's definition: the States Language's JSON read into types, and checked as a whole — every
//! problem reported at once, each with a code, a message and its location (`/States/Name/Field`), as
//! `ValidateStateMachineDefinition` reports them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::choice::Rule;
use crate::path::{Query, ReferencePath};
use crate::{intrinsics, template};

/// One problem with a definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// AWS's code: `SCHEMA_VALIDATION_FAILED`, `MISSING_TRANSITION_TARGET`, `INVALID_JSON_DESCRIPTION`, ….
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Where: a JSON pointer into the definition.
    pub location: String,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value: `InputPath: null` differs from no
/// `InputPath` (serde reads both as `None` otherwise).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A retrier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Retrier {
    /// Error names it applies to (`States.ALL` for any).
    pub error_equals: Vec<String>,
    /// Seconds before the first retry (default 1).
    #[serde(default)]
    pub interval_seconds: Option<u64>,
    /// Retries at most (default 3; 0 never retries).
    #[serde(default)]
    pub max_attempts: Option<u64>,
    /// Multiplier of the interval per retry (default 2.0).
    #[serde(default)]
    pub backoff_rate: Option<f64>,
    /// Cap on the interval.
    #[serde(default)]
    pub max_delay_seconds: Option<u64>,
    /// `FULL` or `NONE` (default).
    #[serde(default)]
    pub jitter_strategy: Option<String>,
}

/// A catcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Catcher {
    /// Error names it applies to.
    pub error_equals: Vec<String>,
    /// The state to go to.
    pub next: String,
    /// Where the error output goes in the state input (default `$`).
    #[serde(default, deserialize_with = "present")]
    pub result_path: Option<Option<String>>,
    /// Variables to assign.
    #[serde(default)]
    pub assign: Option<Value>,
    /// JSONata output.
    #[serde(default)]
    pub output: Option<Value>,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The fields every state shares; most are optional per type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct State {
    /// `Pass`, `Task`, `Choice`, `Wait`, `Succeed`, `Fail`, `Parallel`, `Map`.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub end: Option<bool>,
    #[serde(default)]
    pub query_language: Option<String>,
    /// `null` discards the input.
    #[serde(default, deserialize_with = "present")]
    pub input_path: Option<Option<String>>,
    /// `null` outputs `{}`.
    #[serde(default, deserialize_with = "present")]
    pub output_path: Option<Option<String>>,
    /// `null` keeps the input unchanged.
    #[serde(default, deserialize_with = "present")]
    pub result_path: Option<Option<String>>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub result_selector: Option<Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub assign: Option<Value>,
    #[serde(default)]
    pub arguments: Option<Value>,
    #[serde(default)]
    pub output: Option<Value>,
    // Task
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub timeout_seconds_path: Option<String>,
    #[serde(default)]
    pub heartbeat_seconds: Option<u64>,
    #[serde(default)]
    pub heartbeat_seconds_path: Option<String>,
    #[serde(default)]
    pub credentials: Option<Value>,
    #[serde(default)]
    pub retry: Option<Vec<Retrier>>,
    #[serde(default)]
    pub catch: Option<Vec<Catcher>>,
    // Choice
    #[serde(default)]
    pub choices: Option<Vec<Value>>,
    #[serde(default)]
    pub default: Option<String>,
    // Wait
    #[serde(default)]
    pub seconds: Option<Value>,
    #[serde(default)]
    pub timestamp: Option<Value>,
    #[serde(default)]
    pub seconds_path: Option<String>,
    #[serde(default)]
    pub timestamp_path: Option<String>,
    // Fail
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub cause: Option<Value>,
    #[serde(default)]
    pub error_path: Option<String>,
    #[serde(default)]
    pub cause_path: Option<String>,
    // Parallel
    #[serde(default)]
    pub branches: Option<Vec<Machine>>,
    // Map
    #[serde(default)]
    pub items_path: Option<String>,
    #[serde(default)]
    pub items: Option<Value>,
    #[serde(default)]
    pub item_selector: Option<Value>,
    #[serde(default)]
    pub item_processor: Option<Processor>,
    #[serde(default)]
    pub iterator: Option<Machine>,
    #[serde(default)]
    pub max_concurrency: Option<u64>,
    #[serde(default)]
    pub max_concurrency_path: Option<String>,
    #[serde(default)]
    pub tolerated_failure_count: Option<u64>,
    #[serde(default)]
    pub tolerated_failure_percentage: Option<f64>,
    #[serde(default)]
    pub tolerated_failure_count_path: Option<String>,
    #[serde(default)]
    pub tolerated_failure_percentage_path: Option<String>,
    #[serde(default)]
    pub item_reader: Option<Value>,
    #[serde(default)]
    pub item_batcher: Option<Value>,
    #[serde(default)]
    pub result_writer: Option<Value>,
    #[serde(default)]
    pub label: Option<String>,
}

/// A Map's item processor: a machine and its processing mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Processor {
    #[serde(default)]
    pub processor_config: Option<Value>,
    pub start_at: String,
    pub states: BTreeMap<String, State>,
    #[serde(default)]
    pub comment: Option<String>,
}

impl Processor {
    /// The processor as a machine.
    pub fn machine(&self) -> Machine {
        Machine {
            start_at: self.start_at.clone(),
            states: self.states.clone(),
            comment: None,
            version: None,
            timeout_seconds: None,
            query_language: None,
        }
    }
}

/// A state machine (or a branch, or an item processor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Machine {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub query_language: Option<String>,
}

const TYPES: &[&str] = &["Pass", "Task", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"];

impl Machine {
    /// Parses and checks a definition; every problem at once.
    pub fn parse(text: &str) -> Result<Self, Vec<Diagnostic>> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            vec![Diagnostic {
                code: "INVALID_JSON_DESCRIPTION".into(),
                message: format!("the definition is not JSON: {e}"),
                location: String::new(),
            }]
        })?;
        Self::from_value(&value)
    }

    /// Checks a definition given as JSON.
    pub fn from_value(value: &Value) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        // Field-level problems first, state by state, so one typo does not hide the rest.
        schema(value, "", &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        let machine: Machine = serde_json::from_value(value.clone()).map_err(|e| {
            vec![Diagnostic {
                code: "SCHEMA_VALIDATION_FAILED".into(),
                message: e.to_string(),
                location: String::new(),
            }]
        })?;
        machine.check("", &mut problems);
        if problems.is_empty() {
            Ok(machine)
        } else {
            Err(problems)
        }
    }

    fn check(&self, at: &str, problems: &mut Vec<Diagnostic>) {
        let add = |problems: &mut Vec<Diagnostic>, code: &str, message: String, location: String| {
            problems.push(Diagnostic { code: code.into(), message, location });
        };
        if !self.states.contains_key(&self.start_at) {
            add(
                problems,
                "MISSING_TRANSITION_TARGET",
                format!("StartAt names {:?}, which is not a state", self.start_at),
                format!("{at}/StartAt"),
            );
        }
        for (name, s) in &self.states {
            let loc = format!("{at}/States/{name}");
            if name.is_empty() || name.chars().count() > 80 {
                add(
                    problems,
                    "SCHEMA_VALIDATION_FAILED",
                    format!("state name {name:?} must be 1 to 80 characters"),
                    loc.clone(),
                );
            }
            let terminal = matches!(s.kind.as_str(), "Succeed" | "Fail" | "Choice");
            if !terminal {
                match (&s.next, s.end) {
                    (Some(_), Some(true)) => add(
                        problems,
                        "SCHEMA_VALIDATION_FAILED",
                        "a state may have Next or End: true, not both".into(),
                        loc.clone(),
                    ),
                    (None, None | Some(false)) => add(
                        problems,
                        "SCHEMA_VALIDATION_FAILED",
                        "the state needs Next or End: true".into(),
                        loc.clone(),
                    ),
                    _ => {}
                }
            } else if s.next.is_some() || s.end.is_some() {
                add(
                    problems,
                    "SCHEMA_VALIDATION_FAILED",
                    format!("a {} state has neither Next nor End", s.kind),
                    loc.clone(),
                );
            }
            let mut targets: Vec<(String, &String)> = Vec::new();
            if let Some(n) = &s.next {
                targets.push((format!("{loc}/Next"), n));
            }
            if let Some(d) = &s.default {
                targets.push((format!("{loc}/Default"), d));
            }
            for (i, c) in s.catch.iter().flatten().enumerate() {
                targets.push((format!("{loc}/Catch[{i}]/Next"), &c.next));
            }
            let choice_nexts: Vec<(String, String)> = s
                .choices
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(i, c)| {
                    c.get("Next").and_then(Value::as_str).map(|n| (format!("{loc}/Choices[{i}]/Next"), n.to_string()))
                })
                .collect();
            for (l, t) in targets.iter().map(|(l, t)| (l.clone(), (*t).clone())).chain(choice_nexts) {
                if !self.states.contains_key(&t) {
                    add(problems, "MISSING_TRANSITION_TARGET", format!("{t:?} is not a state of this machine"), l);
                }
            }
            for (field, p) in [("InputPath", &s.input_path), ("OutputPath", &s.output_path)] {
                if let Some(Some(p)) = p {
                    if let Err(e) = Query::parse(p) {
                        add(problems, "SCHEMA_VALIDATION_FAILED", e.0, format!("{loc}/{field}"));
                    }
                }
            }
            if let Some(Some(p)) = &s.result_path {
                if let Err(e) = ReferencePath::parse(p) {
                    add(problems, "SCHEMA_VALIDATION_FAILED", e.0, format!("{loc}/ResultPath"));
                }
            }
            for (field, t) in [
                ("Parameters", &s.parameters),
                ("ResultSelector", &s.result_selector),
                ("ItemSelector", &s.item_selector),
            ] {
                if let Some(t) = t {
                    for e in template::check(t) {
                        add(problems, "SCHEMA_VALIDATION_FAILED", e, format!("{loc}/{field}"));
                    }
                }
            }
            for (field, p) in [
                ("ItemsPath", &s.items_path),
                ("SecondsPath", &s.seconds_path),
                ("TimestampPath", &s.timestamp_path),
                ("ErrorPath", &s.error_path),
                ("CausePath", &s.cause_path),
                ("TimeoutSecondsPath", &s.timeout_seconds_path),
                ("HeartbeatSecondsPath", &s.heartbeat_seconds_path),
            ] {
                if let Some(p) = p {
                    let ok = if intrinsics::is_call(p) {
                        intrinsics::parse(p).map(|_| ())
                    } else {
                        Query::parse(p).map(|_| ()).map_err(|e| e.0)
                    };
                    if let Err(e) = ok {
                        add(problems, "SCHEMA_VALIDATION_FAILED", e, format!("{loc}/{field}"));
                    }
                }
            }
            match s.kind.as_str() {
                "Task" if s.resource.is_none() => {
                    add(problems, "SCHEMA_VALIDATION_FAILED", "a Task state needs a Resource".into(), loc.clone())
                }
                "Choice" => {
                    let rules = s.choices.as_deref().unwrap_or_default();
                    if rules.is_empty() {
                        add(
                            problems,
                            "SCHEMA_VALIDATION_FAILED",
                            "a Choice state needs at least one rule in Choices".into(),
                            format!("{loc}/Choices"),
                        );
                    }
                    for (i, r) in rules.iter().enumerate() {
                        if r.get("Next").is_none() {
                            add(
                                problems,
                                "SCHEMA_VALIDATION_FAILED",
                                "a top-level choice rule needs Next".into(),
                                format!("{loc}/Choices[{i}]"),
                            );
                        }
                        if let Err(e) = Rule::parse(r, true) {
                            add(problems, "SCHEMA_VALIDATION_FAILED", e, format!("{loc}/Choices[{i}]"));
                        }
                    }
                }
                "Wait" => {
                    let given = [
                        s.seconds.is_some(),
                        s.timestamp.is_some(),
                        s.seconds_path.is_some(),
                        s.timestamp_path.is_some(),
                    ]
                    .iter()
                    .filter(|b| **b)
                    .count();
                    if given != 1 {
                        add(
                            problems,
                            "SCHEMA_VALIDATION_FAILED",
                            "a Wait state needs exactly one of Seconds, Timestamp, SecondsPath, TimestampPath".into(),
                            loc.clone(),
                        );
                    }
                }
                "Parallel" => match &s.branches {
                    Some(b) if !b.is_empty() => {
                        for (i, m) in b.iter().enumerate() {
                            m.check(&format!("{loc}/Branches[{i}]"), problems);
                        }
                    }
                    _ => add(
                        problems,
                        "SCHEMA_VALIDATION_FAILED",
                        "a Parallel state needs at least one branch".into(),
                        loc.clone(),
                    ),
                },
                "Map" => match (&s.item_processor, &s.iterator) {
                    (Some(p), None) => p.machine().check(&format!("{loc}/ItemProcessor"), problems),
                    (None, Some(m)) => m.check(&format!("{loc}/Iterator"), problems),
                    _ => add(
                        problems,
                        "SCHEMA_VALIDATION_FAILED",
                        "a Map state needs exactly one of ItemProcessor or Iterator".into(),
                        loc.clone(),
                    ),
                },
                _ => {}
            }
            for (kind, list) in [
                ("Retry", s.retry.as_ref().map(|r| r.iter().map(|r| &r.error_equals).collect::<Vec<_>>())),
                ("Catch", s.catch.as_ref().map(|c| c.iter().map(|c| &c.error_equals).collect())),
            ] {
                let Some(list) = list else { continue };
                if !matches!(s.kind.as_str(), "Task" | "Parallel" | "Map") {
                    add(
                        problems,
                        "SCHEMA_VALIDATION_FAILED",
                        format!("{kind} is only allowed in Task, Parallel and Map states"),
                        format!("{loc}/{kind}"),
                    );
                }
                for (i, errors) in list.iter().enumerate() {
                    let all = errors.iter().position(|e| e == "States.ALL");
                    if errors.is_empty() {
                        add(
                            problems,
                            "SCHEMA_VALIDATION_FAILED",
                            "ErrorEquals must name at least one error".into(),
                            format!("{loc}/{kind}[{i}]"),
                        );
                    }
                    if all.is_some() && (errors.len() > 1 || i + 1 != list.len()) {
                        add(
                            problems,
                            "SCHEMA_VALIDATION_FAILED",
                            "States.ALL must appear alone and in the last retrier or catcher".into(),
                            format!("{loc}/{kind}[{i}]/ErrorEquals"),
                        );
                    }
                }
            }
        }
        // Every state must be reachable from StartAt.
        let mut seen = BTreeSet::new();
        let mut stack = vec![self.start_at.clone()];
        while let Some(n) = stack.pop() {
            let Some(s) = self.states.get(&n) else { continue };
            if !seen.insert(n) {
                continue;
            }
            stack.extend(s.next.iter().cloned());
            stack.extend(s.default.iter().cloned());
            stack.extend(s.catch.iter().flatten().map(|c| c.next.clone()));
            stack.extend(
                s.choices.iter().flatten().filter_map(|c| c.get("Next").and_then(Value::as_str).map(String::from)),
            );
        }
        for name in self.states.keys().filter(|n| !seen.contains(*n)) {
            add(
                problems,
                "SCHEMA_VALIDATION_FAILED",
                format!("state {name:?} is not reachable from StartAt"),
                format!("{at}/States/{name}"),
            );
        }
    }
}

/// Field-level checks on the raw JSON: unknown types and fields, with their locations.
fn schema(v: &Value, at: &str, problems: &mut Vec<Diagnostic>) {
    let add = |problems: &mut Vec<Diagnostic>, message: String, location: String| {
        problems.push(Diagnostic { code: "SCHEMA_VALIDATION_FAILED".into(), message, location });
    };
    let Some(obj) = v.as_object() else {
        add(problems, "a state machine must be a JSON object".into(), at.to_string());
        return;
    };
    if !obj.get("StartAt").is_some_and(Value::is_string) {
        add(problems, "StartAt is required: the name of the first state".into(), format!("{at}/StartAt"));
    }
    let Some(states) = obj.get("States").and_then(Value::as_object) else {
        add(problems, "States is required: an object of states by name".into(), format!("{at}/States"));
        return;
    };
    for (name, s) in states {
        let loc = format!("{at}/States/{name}");
        let kind = s.get("Type").and_then(Value::as_str).unwrap_or_default();
        if !TYPES.contains(&kind) {
            add(problems, format!("Type {kind:?} is not one of {}", TYPES.join(", ")), format!("{loc}/Type"));
            continue;
        }
        if let Err(e) = serde_json::from_value::<State>(s.clone()) {
            add(problems, e.to_string(), loc.clone());
            continue;
        }
        for (field, nested) in [
            ("Branches", s.get("Branches")),
            ("Iterator", s.get("Iterator")),
            ("ItemProcessor", s.get("ItemProcessor")),
        ] {
            match (field, nested) {
                ("Branches", Some(Value::Array(b))) => {
                    for (i, m) in b.iter().enumerate() {
                        schema(m, &format!("{loc}/Branches[{i}]"), problems);
                    }
                }
                (_, Some(m @ Value::Object(_))) => schema(m, &format!("{loc}/{field}"), problems),
                _ => {}
            }
        }
    }
}
