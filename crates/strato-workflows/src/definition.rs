//! A state machine's definition: the States Language's JSON read into types, and checked as a whole — every
//! problem reported at once, each with a code, a message and its location (`/States/Name/Field`), as
//! `ValidateStateMachineDefinition` reports them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::choice::Rule;
use crate::path::{Query, ReferencePath};
use crate::{intrinsics, jsonata, template};

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
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
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
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub input_path: Option<Option<String>>,
    /// `null` outputs `{}`.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub output_path: Option<Option<String>>,
    /// `null` keeps the input unchanged.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
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
    pub timeout_seconds: Option<Value>,
    #[serde(default)]
    pub timeout_seconds_path: Option<String>,
    #[serde(default)]
    pub heartbeat_seconds: Option<Value>,
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
    pub max_concurrency: Option<Value>,
    #[serde(default)]
    pub max_concurrency_path: Option<String>,
    #[serde(default)]
    pub tolerated_failure_count: Option<Value>,
    #[serde(default)]
    pub tolerated_failure_percentage: Option<Value>,
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

/// What is wrong with a Map's `ProcessorConfig`, if anything (AWS: `Mode` `INLINE` or `DISTRIBUTED`; a distributed
/// one needs `ExecutionType` `STANDARD` or `EXPRESS`).
fn processor_config_problem(config: Option<&Value>) -> Option<String> {
    let c = config?;
    let Some(c) = c.as_object() else { return Some("ProcessorConfig must be an object".into()) };
    let mode = match c.get("Mode") {
        None => "INLINE",
        Some(Value::String(m)) if m == "INLINE" || m == "DISTRIBUTED" => m.as_str(),
        Some(other) => return Some(format!("ProcessorConfig.Mode must be INLINE or DISTRIBUTED, not {other}")),
    };
    match (mode, c.get("ExecutionType")) {
        ("DISTRIBUTED", None) => {
            Some("a DISTRIBUTED Map needs ProcessorConfig.ExecutionType (STANDARD or EXPRESS)".into())
        }
        (_, Some(Value::String(t))) if t == "STANDARD" || t == "EXPRESS" => None,
        (_, Some(other)) => Some(format!("ProcessorConfig.ExecutionType must be STANDARD or EXPRESS, not {other}")),
        _ => None,
    }
}

/// What is wrong with a Map's `Label`, if anything (AWS's rule: at most 40 characters, none of whitespace, wildcards,
/// brackets, the characters in `: ; , \ | ^ ~ $ # % & " and a backquote, or control characters).
fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() || label.chars().count() > 40 {
        return Some(format!("the Label {label:?} must be 1 to 40 characters"));
    }
    let bad = label.chars().find(|c| {
        c.is_whitespace()
            || "?*<>{}[]:;,\\|^~$#%&`\"".contains(*c)
            || ('\u{0}'..='\u{1f}').contains(c)
            || ('\u{7f}'..='\u{9f}').contains(c)
    });
    bad.map(|c| format!("the Label {label:?} contains {c:?}, which a label may not"))
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

impl State {
    /// Whether this is a Map in distributed mode (its iterations are child executions).
    pub fn distributed(&self) -> bool {
        self.item_processor
            .as_ref()
            .and_then(|p| p.processor_config.as_ref())
            .and_then(|c| c.get("Mode"))
            .and_then(Value::as_str)
            == Some("DISTRIBUTED")
    }
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

    /// Checks a definition given as JSON; every state's `QueryLanguage` is resolved (the machine's when the state
    /// names none).
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
        let mut machine = machine;
        let top = machine.query_language.clone();
        if let Some(l) = top.as_deref().filter(|l| !matches!(*l, "JSONPath" | "JSONata")) {
            problems.push(Diagnostic {
                code: "SCHEMA_VALIDATION_FAILED".into(),
                message: format!("QueryLanguage {l:?} is not JSONPath or JSONata"),
                location: "/QueryLanguage".into(),
            });
        }
        machine.inherit_language(top.as_deref().unwrap_or("JSONPath"), &mut problems, "");
        machine.check("", &mut problems);
        machine.check_scopes(&BTreeSet::new(), "", &mut problems);
        let mut labels = Vec::new();
        machine.labels("", &mut labels);
        let mut seen = BTreeSet::new();
        for (label, location) in labels {
            if let Some(message) = label_problem(&label) {
                problems.push(Diagnostic { code: "SCHEMA_VALIDATION_FAILED".into(), message, location });
            } else if !seen.insert(label.clone()) {
                problems.push(Diagnostic {
                    code: "SCHEMA_VALIDATION_FAILED".into(),
                    message: format!("the Label {label:?} is used by another Map state; labels must be unique"),
                    location,
                });
            }
        }
        if problems.is_empty() {
            Ok(machine)
        } else {
            Err(problems)
        }
    }

    /// Gives every state without a `QueryLanguage` the machine's (nested machines too); a JSONPath state in a
    /// JSONata machine is a problem, as AWS has it.
    fn inherit_language(&mut self, top: &str, problems: &mut Vec<Diagnostic>, at: &str) {
        for (name, s) in self.states.iter_mut() {
            let loc = format!("{at}/States/{name}");
            match s.query_language.as_deref() {
                None => s.query_language = Some(top.to_string()),
                Some("JSONPath") if top == "JSONata" => problems.push(Diagnostic {
                    code: "SCHEMA_VALIDATION_FAILED".into(),
                    message: "a state cannot use JSONPath when the state machine's QueryLanguage is JSONata".into(),
                    location: format!("{loc}/QueryLanguage"),
                }),
                Some("JSONPath" | "JSONata") => {}
                Some(other) => problems.push(Diagnostic {
                    code: "SCHEMA_VALIDATION_FAILED".into(),
                    message: format!("QueryLanguage {other:?} is not JSONPath or JSONata"),
                    location: format!("{loc}/QueryLanguage"),
                }),
            }
            for (i, b) in s.branches.iter_mut().flatten().enumerate() {
                b.inherit_language(top, problems, &format!("{loc}/Branches[{i}]"));
            }
            if let Some(m) = s.iterator.as_mut() {
                m.inherit_language(top, problems, &format!("{loc}/Iterator"));
            }
            if let Some(p) = s.item_processor.as_mut() {
                let mut m = p.machine();
                m.inherit_language(top, problems, &format!("{loc}/ItemProcessor"));
                p.states = m.states;
            }
        }
    }

    /// Variables of inner scopes (Map iterations, Parallel branches) must not share a name with one of an outer
    /// scope: a scope's names are those any of its states assign (a Map's or Parallel's own `Assign` and catchers
    /// are in the outer scope).
    fn check_scopes(&self, outer: &BTreeSet<String>, at: &str, problems: &mut Vec<Diagnostic>) {
        let mut here = BTreeSet::new();
        for (name, s) in &self.states {
            let jsonata = s.query_language.as_deref() == Some("JSONata");
            let assigns = s
                .assign
                .iter()
                .chain(s.catch.iter().flatten().filter_map(|c| c.assign.as_ref()))
                .chain(s.choices.iter().flatten().filter_map(|r| r.get("Assign")));
            for a in assigns {
                for k in a.as_object().into_iter().flat_map(|o| o.keys()) {
                    let var = if jsonata { k.as_str() } else { k.strip_suffix(".$").unwrap_or(k) };
                    if outer.contains(var) {
                        problems.push(Diagnostic {
                            code: "SCHEMA_VALIDATION_FAILED".into(),
                            message: format!(
                                "the variable {var:?} is assigned in an outer scope; a Map iteration or Parallel branch \
                                 may read it but not assign it (use another name, or return the value in its output)"
                            ),
                            location: format!("{at}/States/{name}/Assign"),
                        });
                    }
                    here.insert(var.to_string());
                }
            }
        }
        let all: BTreeSet<String> = outer.union(&here).cloned().collect();
        for (name, s) in &self.states {
            let loc = format!("{at}/States/{name}");
            for (i, b) in s.branches.iter().flatten().enumerate() {
                b.check_scopes(&all, &format!("{loc}/Branches[{i}]"), problems);
            }
            if let Some(m) = &s.iterator {
                m.check_scopes(&all, &format!("{loc}/Iterator"), problems);
            }
            if let Some(p) = &s.item_processor {
                // A Distributed Map's iterations are executions of their own: they see no outer variables.
                let outer = if s.distributed() { BTreeSet::new() } else { all.clone() };
                p.machine().check_scopes(&outer, &format!("{loc}/ItemProcessor"), problems);
            }
        }
    }

    /// Every Distributed Map's `Label` with its location (nested machines too).
    fn labels(&self, at: &str, out: &mut Vec<(String, String)>) {
        for (name, s) in &self.states {
            let loc = format!("{at}/States/{name}");
            if let Some(l) = &s.label {
                out.push((l.clone(), format!("{loc}/Label")));
            }
            for (i, b) in s.branches.iter().flatten().enumerate() {
                b.labels(&format!("{loc}/Branches[{i}]"), out);
            }
            if let Some(m) = &s.iterator {
                m.labels(&format!("{loc}/Iterator"), out);
            }
            if let Some(p) = &s.item_processor {
                p.machine().labels(&format!("{loc}/ItemProcessor"), out);
            }
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
            check_language(s, &loc, problems);
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
                        if s.query_language.as_deref() == Some("JSONata") {
                            let condition_ok = match r.get("Condition") {
                                Some(Value::Bool(_)) => true,
                                Some(Value::String(c)) => jsonata::expression(c).is_some(),
                                _ => false,
                            };
                            if !condition_ok {
                                add(
                                    problems,
                                    "SCHEMA_VALIDATION_FAILED",
                                    "a JSONata choice rule needs Condition: a boolean or a {% %} expression".into(),
                                    format!("{loc}/Choices[{i}]"),
                                );
                            }
                        } else if let Err(e) = Rule::parse(r, true) {
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
                    (Some(p), None) => {
                        if let Some(message) = processor_config_problem(p.processor_config.as_ref()) {
                            add(
                                problems,
                                "SCHEMA_VALIDATION_FAILED",
                                message,
                                format!("{loc}/ItemProcessor/ProcessorConfig"),
                            );
                        }
                        p.machine().check(&format!("{loc}/ItemProcessor"), problems)
                    }
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

/// Fields only JSONPath states take, and fields only JSONata states take.
const JSONPATH_ONLY: &[&str] = &[
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "ItemsPath",
    "SecondsPath",
    "TimestampPath",
    "ErrorPath",
    "CausePath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
];
const JSONATA_ONLY: &[&str] = &["Arguments", "Output", "Items"];

/// Whether a variable name may be assigned: a letter or `_`, then letters, digits and `_`, at most 80 characters,
/// and not the reserved `states`.
pub fn valid_variable(name: &str) -> bool {
    name != "states"
        && name.len() <= 80
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A state's fields checked against its query language: the other language's fields, JSONata expressions that do
/// not parse, `Assign` names and templates, number fields that are neither numbers nor (JSONata) expressions.
fn check_language(s: &State, loc: &str, problems: &mut Vec<Diagnostic>) {
    let jsonata = s.query_language.as_deref() == Some("JSONata");
    let mut add = |message: String, location: String| {
        problems.push(Diagnostic { code: "SCHEMA_VALIDATION_FAILED".into(), message, location });
    };
    let present: Vec<&str> = {
        let v = serde_json::to_value(s).unwrap_or_default();
        let obj = v.as_object().cloned().unwrap_or_default();
        [JSONPATH_ONLY, JSONATA_ONLY, &["Result"]]
            .concat()
            .into_iter()
            .filter(|f| {
                obj.get(*f).is_some_and(|v| !v.is_null())
                    || (*f == "InputPath" && s.input_path.is_some())
                    || (*f == "OutputPath" && s.output_path.is_some())
                    || (*f == "ResultPath" && s.result_path.is_some())
            })
            .collect()
    };
    let (forbidden, language) = if jsonata { (JSONPATH_ONLY, "JSONata") } else { (JSONATA_ONLY, "JSONPath") };
    let kind = s.kind.as_str();
    for (field, given, allowed) in [
        ("Assign", s.assign.is_some(), !matches!(kind, "Succeed" | "Fail")),
        ("Output", s.output.is_some(), kind != "Fail"),
        ("Arguments", s.arguments.is_some(), matches!(kind, "Task" | "Parallel")),
        ("Items", s.items.is_some(), kind == "Map"),
    ] {
        if given && !allowed {
            add(format!("a {kind} state cannot have {field}"), format!("{loc}/{field}"));
        }
    }
    if jsonata {
        // Where `$states.result` and `$states.errorOutput` exist: a Task's, Parallel's or Map's `Output` and
        // `Assign`, and a catcher's.
        let has_result = matches!(kind, "Task" | "Parallel" | "Map");
        let mut fields: Vec<(String, &Value, bool)> = vec![];
        for (field, v) in [("Output", &s.output), ("Assign", &s.assign)] {
            if let Some(v) = v {
                fields.push((field.into(), v, has_result));
            }
        }
        for (field, v) in [
            ("Arguments", &s.arguments),
            ("Items", &s.items),
            ("ItemSelector", &s.item_selector),
            ("Error", &s.error),
            ("Cause", &s.cause),
            ("Seconds", &s.seconds),
            ("Timestamp", &s.timestamp),
            ("TimeoutSeconds", &s.timeout_seconds),
            ("HeartbeatSeconds", &s.heartbeat_seconds),
            ("MaxConcurrency", &s.max_concurrency),
            ("ToleratedFailureCount", &s.tolerated_failure_count),
            ("ToleratedFailurePercentage", &s.tolerated_failure_percentage),
        ] {
            if let Some(v) = v {
                fields.push((field.into(), v, false));
            }
        }
        for (i, r) in s.choices.iter().flatten().enumerate() {
            for f in ["Condition", "Output", "Assign"] {
                if let Some(v) = r.get(f) {
                    fields.push((format!("Choices[{i}]/{f}"), v, false));
                }
            }
        }
        for (field, v, result_ok) in fields {
            for e in expression_problems(v, result_ok, false) {
                add(e, format!("{loc}/{field}"));
            }
        }
        for (i, c) in s.catch.iter().flatten().enumerate() {
            for (f, v) in [("Output", &c.output), ("Assign", &c.assign)] {
                for e in v.iter().flat_map(|v| expression_problems(v, false, true)) {
                    add(e, format!("{loc}/Catch[{i}]/{f}"));
                }
            }
        }
    }
    for f in present.iter().filter(|f| forbidden.contains(f) || (jsonata && **f == "Result")) {
        add(format!("the field {f} is not supported in {language} states"), format!("{loc}/{f}"));
    }
    let mut assigns: Vec<(String, &Value)> = s.assign.iter().map(|a| (format!("{loc}/Assign"), a)).collect();
    for (i, c) in s.catch.iter().flatten().enumerate() {
        if let Some(a) = &c.assign {
            assigns.push((format!("{loc}/Catch[{i}]/Assign"), a));
        }
        if jsonata {
            if c.result_path.is_some() {
                add("the field ResultPath is not supported in JSONata states".into(), format!("{loc}/Catch[{i}]"));
            }
        } else if c.output.is_some() {
            add("the field Output is not supported in JSONPath states".into(), format!("{loc}/Catch[{i}]"));
        }
    }
    for (i, r) in s.choices.iter().flatten().enumerate() {
        if let Some(a) = r.get("Assign") {
            assigns.push((format!("{loc}/Choices[{i}]/Assign"), a));
        }
        for field in ["Condition", "Output"] {
            if !jsonata && r.get(field).is_some() {
                add(format!("the field {field} is not supported in JSONPath states"), format!("{loc}/Choices[{i}]"));
            }
        }
    }
    for (at, a) in assigns {
        let Some(obj) = a.as_object() else {
            add("Assign must be an object of variable names and values".into(), at);
            continue;
        };
        for k in obj.keys() {
            let name = if jsonata { k.as_str() } else { k.strip_suffix(".$").unwrap_or(k) };
            if !valid_variable(name) {
                add(
                    format!("{name:?} is not a valid variable name: a letter or _, then letters, digits or _ (not the reserved \"states\")"),
                    at.clone(),
                );
            }
        }
        // JSONata's expressions were checked with the state's other fields above.
        if !jsonata {
            for e in template::check(a) {
                add(e, at.clone());
            }
        }
    }
    for (field, v) in [
        ("TimeoutSeconds", &s.timeout_seconds),
        ("HeartbeatSeconds", &s.heartbeat_seconds),
        ("MaxConcurrency", &s.max_concurrency),
        ("ToleratedFailureCount", &s.tolerated_failure_count),
        ("ToleratedFailurePercentage", &s.tolerated_failure_percentage),
        ("Seconds", &s.seconds),
    ] {
        let Some(v) = v else { continue };
        let ok = match v {
            Value::Number(n) => n.as_f64().is_some_and(|n| n >= 0.0),
            Value::String(t) => jsonata && jsonata::expression(t).is_some(),
            _ => false,
        };
        if !ok {
            let what = if jsonata { "a non-negative number or a {% %} expression" } else { "a non-negative number" };
            add(format!("{field} must be {what}"), format!("{loc}/{field}"));
        }
    }
}

/// JSONata strings of a field that AWS refuses: an expression that does not parse, a `{%` without its `%}` (or the
/// reverse), `$states.result` or `$states.errorOutput` where the field cannot see them, and `$` or `$$` at an
/// expression's top level (there is no input document: `$states.input` is the input).
fn expression_problems(v: &Value, result_ok: bool, error_ok: bool) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::String(t) => {
            if t.starts_with("{%") != t.ends_with("%}") || (t.starts_with("{%") && t.len() < 4) {
                out.push(format!(
                    "{t:?} must start with {{% and end with %}} (no spaces outside them) to be a JSONata expression"
                ));
                return out;
            }
            let Some(e) = jsonata::expression(t) else { return out };
            out.extend(jsonata::check(v));
            if !result_ok && e.contains("$states.result") {
                out.push(format!(
                    "{t:?}: $states.result is only available in the Output and Assign of Task, Parallel and Map states"
                ));
            }
            if !error_ok && e.contains("$states.errorOutput") {
                out.push(format!("{t:?}: $states.errorOutput is only available in a Catch's Output and Assign"));
            }
            if let Some(why) = top_level_dollar(e) {
                out.push(format!("{t:?}: {why}"));
            }
        }
        Value::Object(m) => m.values().for_each(|v| out.extend(expression_problems(v, result_ok, error_ok))),
        Value::Array(a) => a.iter().for_each(|v| out.extend(expression_problems(v, result_ok, error_ok))),
        _ => {}
    }
    out
}

/// `$` or `$$` at the top level of an expression (outside brackets, parentheses, braces and strings).
fn top_level_dollar(e: &str) -> Option<&'static str> {
    let chars: Vec<char> = e.chars().collect();
    let (mut depth, mut quote) = (0i32, None::<char>);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (quote, c) {
            (Some(q), '\\') if q != '`' => i += 1,
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth -= 1,
            (None, '$') if chars.get(i + 1) == Some(&'$') => {
                return Some("$$ cannot be used in Step Functions' JSONata (use $states.context)")
            }
            (None, '$') if depth == 0 && !chars.get(i + 1).is_some_and(|n| n.is_alphanumeric() || *n == '_') => {
                return Some("$ cannot be used at the top level of an expression (use $states.input)")
            }
            _ => {}
        }
        i += 1;
    }
    None
}
