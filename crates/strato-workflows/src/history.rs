//! History events in AWS's shapes (`GetExecutionHistory`): a type, its details field, and the ids that chain them.
//! Ids are given when the events are committed (see `durable.rs`); here they are built, numbered and filtered.

use serde_json::{json, Value};

use crate::error::StatesError;

/// An event before it has an id: its type and its details (field name and value).
#[derive(Debug, Clone)]
pub struct Pending {
    /// `PassStateEntered`, `TaskSucceeded`, ….
    pub kind: String,
    /// `("stateEnteredEventDetails", {...})`; `None` for events without details (`LambdaFunctionStarted`).
    pub details: Option<(&'static str, Value)>,
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The type names of a state's events (`Pass` → `PassStateEntered`).
pub fn entered(state_type: &str, name: &str, input: &Value) -> Pending {
    Pending {
        kind: format!("{state_type}StateEntered"),
        details: Some((
            "stateEnteredEventDetails",
            json!({"name": name, "input": text(input), "inputDetails": {"truncated": false}}),
        )),
    }
}

/// `<Type>StateExited` with the state's output and, as AWS records them, the variables it assigned (each value as
/// JSON text).
pub fn exited(state_type: &str, name: &str, output: &Value, assigned: &serde_json::Map<String, Value>) -> Pending {
    let mut details = json!({"name": name, "output": text(output), "outputDetails": {"truncated": false}});
    if !assigned.is_empty() {
        let vars: serde_json::Map<String, Value> =
            assigned.iter().map(|(k, v)| (k.clone(), Value::String(text(v)))).collect();
        details["assignedVariables"] = Value::Object(vars);
        details["assignedVariablesDetails"] = json!({"truncated": false});
    }
    Pending { kind: format!("{state_type}StateExited"), details: Some(("stateExitedEventDetails", details)) }
}

/// An event with no details.
pub fn bare(kind: &str) -> Pending {
    Pending { kind: kind.to_string(), details: None }
}

/// An event with details.
pub fn with(kind: &str, field: &'static str, details: Value) -> Pending {
    Pending { kind: kind.to_string(), details: Some((field, details)) }
}

/// How a Task state's resource shows in the history: a Lambda function named by its ARN gets `LambdaFunction*`
/// events, an integration (`arn:aws:states:::<service>:<action>[.pattern]`) `Task*` events.
#[derive(Debug, Clone)]
pub enum TaskEvents {
    /// `LambdaFunctionScheduled` …, with the function's ARN.
    Lambda(String),
    /// `ActivityScheduled` …, with the activity's ARN.
    Activity(String),
    /// `TaskScheduled` …, with the service and action.
    Service {
        /// `lambda`, `states`, `http`, ….
        resource_type: String,
        /// `invoke`, `invoke.waitForTaskToken`, ….
        resource: String,
    },
}

impl TaskEvents {
    /// The events a resource ARN gets.
    pub fn of(resource: &str) -> Self {
        if crate::activities::activity_of(resource).is_some() {
            return Self::Activity(resource.to_string());
        }
        if let Some(rest) = resource.strip_prefix("arn:aws:states:::") {
            let (service, action) = rest.split_once(':').unwrap_or((rest, ""));
            return Self::Service { resource_type: service.to_string(), resource: action.to_string() };
        }
        Self::Lambda(resource.to_string())
    }

    /// `*Scheduled`: what the task is given.
    pub fn scheduled(&self, region: &str, params: &Value, timeout: Option<u64>, heartbeat: Option<u64>) -> Pending {
        match self {
            Self::Lambda(arn) => {
                let mut d = json!({"resource": arn, "input": text(params), "inputDetails": {"truncated": false}});
                if let Some(t) = timeout {
                    d["timeoutInSeconds"] = json!(t);
                }
                with("LambdaFunctionScheduled", "lambdaFunctionScheduledEventDetails", d)
            }
            Self::Activity(arn) => {
                let mut d = json!({"resource": arn, "input": text(params), "inputDetails": {"truncated": false}});
                if let Some(t) = timeout {
                    d["timeoutInSeconds"] = json!(t);
                }
                if let Some(h) = heartbeat {
                    d["heartbeatInSeconds"] = json!(h);
                }
                with("ActivityScheduled", "activityScheduledEventDetails", d)
            }
            Self::Service { resource_type, resource } => {
                let mut d = json!({"resourceType": resource_type, "resource": resource, "region": region,
                    "parameters": text(params)});
                if let Some(t) = timeout {
                    d["timeoutInSeconds"] = json!(t);
                }
                if let Some(h) = heartbeat {
                    d["heartbeatInSeconds"] = json!(h);
                }
                with("TaskScheduled", "taskScheduledEventDetails", d)
            }
        }
    }

    /// `*Started`.
    pub fn started(&self) -> Pending {
        match self {
            Self::Lambda(_) => bare("LambdaFunctionStarted"),
            Self::Activity(_) => with("ActivityStarted", "activityStartedEventDetails", json!({})),
            Self::Service { resource_type, resource } => with(
                "TaskStarted",
                "taskStartedEventDetails",
                json!({"resourceType": resource_type, "resource": resource}),
            ),
        }
    }

    /// `TaskSubmitted`: a callback task's resource took the work (its response).
    pub fn submitted(&self, response: &Value) -> Option<Pending> {
        match self {
            Self::Lambda(_) | Self::Activity(_) => None,
            Self::Service { resource_type, resource } => Some(with(
                "TaskSubmitted",
                "taskSubmittedEventDetails",
                json!({"resourceType": resource_type, "resource": resource, "output": text(response),
                    "outputDetails": {"truncated": false}}),
            )),
        }
    }

    /// `*Succeeded` with the result.
    pub fn succeeded(&self, output: &Value) -> Pending {
        let out = json!({"output": text(output), "outputDetails": {"truncated": false}});
        match self {
            Self::Lambda(_) => with("LambdaFunctionSucceeded", "lambdaFunctionSucceededEventDetails", out),
            Self::Activity(_) => with("ActivitySucceeded", "activitySucceededEventDetails", out),
            Self::Service { resource_type, resource } => {
                let mut d = json!({"resourceType": resource_type, "resource": resource});
                d.as_object_mut().expect("an object").extend(out.as_object().expect("an object").clone());
                with("TaskSucceeded", "taskSucceededEventDetails", d)
            }
        }
    }

    /// `*Failed`, or `*TimedOut` for `States.Timeout` / `States.HeartbeatTimeout`.
    pub fn failed(&self, e: &StatesError) -> Pending {
        let timed_out = matches!(e.error.as_str(), "States.Timeout" | "States.HeartbeatTimeout");
        match self {
            Self::Lambda(_) => {
                let (kind, field) = if timed_out {
                    ("LambdaFunctionTimedOut", "lambdaFunctionTimedOutEventDetails")
                } else {
                    ("LambdaFunctionFailed", "lambdaFunctionFailedEventDetails")
                };
                with(kind, field, json!({"error": e.error, "cause": e.cause}))
            }
            Self::Activity(_) => {
                let (kind, field) = if timed_out {
                    ("ActivityTimedOut", "activityTimedOutEventDetails")
                } else {
                    ("ActivityFailed", "activityFailedEventDetails")
                };
                with(kind, field, json!({"error": e.error, "cause": e.cause}))
            }
            Self::Service { resource_type, resource } => {
                let (kind, field) = if timed_out {
                    ("TaskTimedOut", "taskTimedOutEventDetails")
                } else {
                    ("TaskFailed", "taskFailedEventDetails")
                };
                with(
                    kind,
                    field,
                    json!({"resourceType": resource_type, "resource": resource, "error": e.error, "cause": e.cause}),
                )
            }
        }
    }
}

/// An event as `GetExecutionHistory` returns it.
pub fn numbered(p: &Pending, id: u64, previous: u64, at: chrono::DateTime<chrono::Utc>) -> Value {
    let mut e = json!({"timestamp": at.timestamp_millis() as f64 / 1000.0, "type": p.kind, "id": id,
        "previousEventId": previous});
    if let Some((field, d)) = &p.details {
        e[*field] = d.clone();
    }
    e
}

/// An event without its execution data (`includeExecutionData: false`): inputs, outputs and parameters dropped.
pub fn without_data(mut e: Value) -> Value {
    if let Some(obj) = e.as_object_mut() {
        for (k, v) in obj.iter_mut() {
            if k.ends_with("EventDetails") {
                if let Some(d) = v.as_object_mut() {
                    for f in ["input", "output", "parameters", "inputDetails", "outputDetails"] {
                        d.remove(f);
                    }
                }
            }
        }
    }
    e
}
