//! Nested workflows: `arn:aws:states:::states:startExecution` starts another state machine's execution (the
//! response: its ARN and start date); `.sync` waits for it to end and returns its description (`Input`/`Output` as
//! JSON text), `.sync:2` the same with them as JSON; `.waitForTaskToken` starts it and waits for the token.
//!
//! A `.sync` parent parks on a token, as a callback task; the child's record links back to it, and the commit that
//! ends the child queues the parent frame's job with a `child:` check, which applies the child's end to the parent.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;

use crate::durable::ExecutionRecord;
use crate::error::StatesError;
use crate::service::{WorkflowError, Workflows};

type Result<T> = std::result::Result<T, WorkflowError>;

/// The resource that starts a nested execution (with or without a pattern suffix).
pub const START_EXECUTION: &str = "arn:aws:states:::states:startExecution";

/// A `.sync` child's link to the task that waits for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParentLink {
    /// The parent execution (`<machine>:<name>`).
    pub execution: String,
    /// The parent's frame.
    pub frame: String,
    /// The token the parent's task waits on.
    pub token: String,
    /// `.sync:2` (JSON input and output) rather than `.sync` (JSON text).
    pub json: bool,
}

/// Whether a resource waits for a nested execution to end (`.sync`, `.sync:2`).
pub fn is_sync(resource: &str) -> bool {
    resource.strip_prefix(START_EXECUTION).is_some_and(|p| p == ".sync" || p == ".sync:2")
}

/// Whether a resource starts a nested execution (any pattern).
pub fn is_start(resource: &str) -> bool {
    resource.strip_prefix(START_EXECUTION).is_some_and(|p| matches!(p, "" | ".sync" | ".sync:2" | ".waitForTaskToken"))
}

fn millis(t: chrono::DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The job that tells a `.sync` parent its child (`execution`) ended; `None` for an execution nobody waits for.
pub(crate) fn parent_job(x: &ExecutionRecord, execution: &str) -> Option<strato_types::NewJob> {
    let link = x.parent.as_ref()?;
    (x.status != "RUNNING")
        .then(|| crate::durable::advance_job(&link.execution, &link.frame, Some(format!("child:{execution}")), None))
}

impl Workflows {
    /// Starts a nested execution from a task's parameters (`StateMachineArn`, `Input`, `Name`) with the parent's
    /// identity. `request_id` names it when `Name` is absent, so a task's retry after a crash finds the execution
    /// its cut-off attempt started instead of starting another.
    pub(crate) async fn start_child(
        &self,
        parent: &ExecutionRecord,
        params: &Value,
        request_id: &str,
        link: Option<ParentLink>,
    ) -> std::result::Result<ExecutionRecord, StatesError> {
        let arn = params.get("StateMachineArn").and_then(Value::as_str).ok_or_else(|| {
            StatesError::runtime("states:startExecution needs Parameters.StateMachineArn, a state machine's ARN")
        })?;
        let (machine, qualifier) =
            self.qualified_of(arn).map_err(|e| StatesError::new("StepFunctions.InvalidArnException", e.to_string()))?;
        let target = qualifier.map_or(machine.clone(), |q| format!("{machine}:{q}"));
        let input = match params.get("Input") {
            None => "{}".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let name = match params.get("Name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => {
                let h = hex::encode(sha2::Sha256::digest(request_id.as_bytes()));
                format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
            }
        };
        let started = self.start_execution_with(&target, Some(&name), &input, parent.identity.clone(), link).await;
        match started {
            Ok(x) => Ok(x),
            // Started already by this task's earlier attempt (same name, same input): that one is the child.
            Err(WorkflowError::Conflict(..)) => match self.execution(&format!("{machine}:{name}")).await {
                Ok(x) if x.input == input => Ok(x),
                _ => Err(StatesError::new(
                    "StepFunctions.ExecutionAlreadyExistsException",
                    format!("Execution Already Exists: '{}'", self.execution_arn(&machine, &name)),
                )),
            },
            Err(WorkflowError::NotFound(_, m)) => {
                Err(StatesError::new("StepFunctions.StateMachineDoesNotExistException", m))
            }
            Err(e @ WorkflowError::Invalid(..)) => {
                Err(StatesError::new("StepFunctions.InvalidExecutionInputException", e.to_string()))
            }
            Err(e) => Err(StatesError::new("StepFunctions.SdkClientException", e.to_string())),
        }
    }

    /// `startExecution`'s response: the child's ARN and start date.
    pub(crate) fn started_response(&self, x: &ExecutionRecord) -> Value {
        json!({"ExecutionArn": self.execution_arn(&x.machine, &x.name), "StartDate": millis(x.started)})
    }

    /// A child's description as `.sync` (`json` false: input and output as JSON text) or `.sync:2` returns it.
    fn child_description(&self, x: &ExecutionRecord, json_io: bool) -> Value {
        let text_or_json = |t: &str| if json_io { serde_json::from_str(t).unwrap_or(Value::Null) } else { json!(t) };
        let mut d = json!({
            "ExecutionArn": self.execution_arn(&x.machine, &x.name),
            "Input": text_or_json(&x.input),
            "InputDetails": {"Included": true},
            "Name": x.name,
            "StartDate": millis(x.started),
            "StateMachineArn": self.arn(&x.machine),
            "Status": x.status,
        });
        if let Some(o) = &x.output {
            d["Output"] = text_or_json(o);
            d["OutputDetails"] = json!({"Included": true});
        }
        if let Some(t) = x.stopped {
            d["StopDate"] = json!(millis(t));
        }
        if let Some(e) = &x.error {
            d["Error"] = json!(e);
        }
        if let Some(c) = &x.cause {
            d["Cause"] = json!(c);
        }
        d
    }

    /// A `.sync` child ended: its parent's task gets its description (succeeded) or fails with
    /// `States.TaskFailed` and the description as the cause, as AWS's do.
    pub(crate) async fn child_ended_check(&self, child: &str) -> Result<()> {
        let x = self.execution(child).await?;
        let Some(link) = x.parent.clone() else { return Ok(()) };
        if x.status == "RUNNING" {
            return Ok(());
        }
        let d = self.child_description(&x, link.json);
        let outcome = if x.status == "SUCCEEDED" {
            crate::durable::Outcome::Result(d)
        } else {
            crate::durable::Outcome::Error(StatesError::new("States.TaskFailed", d.to_string()))
        };
        self.resolve_token(&link.execution, &link.frame, &link.token, Some(outcome), Vec::new()).await?;
        Ok(())
    }
}
