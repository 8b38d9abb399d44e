//! The Step Functions JSON protocol (`POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` and
//! `application/x-amz-json-1.0` bodies), as the AWS CLI and boto3 send it. Errors are AWS's: 400 with
//! `{"__type", "message"}`. Grants decide as on every route: reading a state machine needs `read`, changing it
//! `edit`, running it `use`.
//!
//! Served so far: CreateStateMachine, DescribeStateMachine, ListStateMachines, UpdateStateMachine,
//! DeleteStateMachine, ValidateStateMachineDefinition, StartSyncExecution (express executions) and TestState.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};
use strato_http::auth::Principal;
use strato_http::CapabilityRoutes;
use strato_types::{Action, ResourceKind, ResourceRef};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::service::{StateMachine, WorkflowError, Workflows};

/// The resource kind grants name state machines by.
pub const STATE_MACHINE: ResourceKind = ResourceKind::new("state-machine");

/// The routes, over `workflows`.
pub fn routes(workflows: Workflows) -> CapabilityRoutes {
    api_routes().layer(Extension(workflows))
}

/// The routes without the workflows they serve: for the OpenAPI document.
pub fn api_routes() -> CapabilityRoutes {
    OpenApiRouter::new().routes(routes!(json_protocol))
}

/// An error in the JSON protocol's shape.
struct AwsJsonError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl AwsJsonError {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, kind, message: message.into() }
    }
}

impl IntoResponse for AwsJsonError {
    fn into_response(self) -> Response {
        let mut r = (self.status, json!({"__type": self.kind, "message": self.message}).to_string()).into_response();
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
        if let Ok(v) = HeaderValue::from_str(self.kind) {
            r.headers_mut().insert("x-amzn-errortype", v);
        }
        r
    }
}

impl From<WorkflowError> for AwsJsonError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::NotFound(k, m) | WorkflowError::Conflict(k, m) | WorkflowError::Invalid(k, m) => {
                Self::new(k, m)
            }
            WorkflowError::Internal(m) => {
                tracing::error!(error = %m, "a Step Functions call failed");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "InternalServerError",
                    message: "the service failed; see its log".into(),
                }
            }
        }
    }
}

fn ok(body: Value) -> Response {
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/x-amz-json-1.0"));
    r
}

fn epoch(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, AwsJsonError> {
    body.get(name).and_then(Value::as_str).ok_or_else(|| {
        AwsJsonError::new("ValidationException", format!("1 validation error detected: Value null at '{name}' failed to satisfy constraint: Member must not be null"))
    })
}

fn deny(p: &Principal, operation: &str, arn: &str) -> AwsJsonError {
    AwsJsonError {
        status: StatusCode::BAD_REQUEST,
        kind: "AccessDeniedException",
        message: format!("User: {} is not authorized to perform: states:{operation} on resource: {arn}", p.subject),
    }
}

fn describe(w: &Workflows, sm: &StateMachine) -> Value {
    json!({
        "stateMachineArn": w.arn(&sm.name),
        "name": sm.name,
        "status": "ACTIVE",
        "definition": sm.definition,
        "roleArn": sm.role_arn,
        "type": sm.kind,
        "creationDate": epoch(sm.created_at),
        "description": sm.description,
        "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
        "tracingConfiguration": {"enabled": false},
    })
}

#[utoipa::path(post, path = "/", tag = "step functions",
    params(("X-Amz-Target" = String, Header, description = "AWSStepFunctions.<Operation>")),
    request_body(content = serde_json::Value, content_type = "application/json",
        description = "The operation's input (AWS's clients send it as application/x-amz-json-1.0; both are taken)"),
    responses((status = 200, description = "The operation's result", body = serde_json::Value,
        content_type = "application/x-amz-json-1.0")))]
/// The Step Functions JSON protocol (the AWS CLI's and SDKs' `stepfunctions` client).
async fn json_protocol(
    Extension(w): Extension<Workflows>,
    p: Principal,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    dispatch(&w, &p, &headers, &body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn dispatch(w: &Workflows, p: &Principal, headers: &HeaderMap, body: &[u8]) -> Result<Response, AwsJsonError> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let Some(op) = target.strip_prefix("AWSStepFunctions.") else {
        return Err(AwsJsonError::new(
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not AWSStepFunctions.<Operation>"),
        ));
    };
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| AwsJsonError::new("SerializationException", format!("the body is not JSON: {e}")))?
    };
    if !body.is_object() {
        return Err(AwsJsonError::new("SerializationException", "the body must be a JSON object"));
    }
    let may = |action: Action, name: &str, operation: &str| -> Result<(), AwsJsonError> {
        if p.can(action, &ResourceRef::new(STATE_MACHINE, name)) {
            Ok(())
        } else {
            Err(deny(p, operation, &w.arn(name)))
        }
    };
    match op {
        "CreateStateMachine" => {
            let name = field(&body, "name")?;
            may(Action::Edit, name, op)?;
            let sm = w
                .create(
                    name,
                    field(&body, "definition")?,
                    body.get("roleArn").and_then(Value::as_str).unwrap_or_default(),
                    body.get("type").and_then(Value::as_str).unwrap_or("STANDARD"),
                    body.get("description").and_then(Value::as_str).unwrap_or_default(),
                )
                .await?;
            Ok(ok(json!({"stateMachineArn": w.arn(&sm.name), "creationDate": epoch(sm.created_at)})))
        }
        "DescribeStateMachine" => {
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Read, &name, op)?;
            Ok(ok(describe(w, &w.get(&name).await?)))
        }
        "ListStateMachines" => {
            let machines: Vec<Value> = w
                .list()
                .await?
                .iter()
                .filter(|sm| p.can(Action::Read, &ResourceRef::new(STATE_MACHINE, &sm.name)))
                .map(|sm| json!({"stateMachineArn": w.arn(&sm.name), "name": sm.name, "type": sm.kind, "creationDate": epoch(sm.created_at)}))
                .collect();
            Ok(ok(json!({"stateMachines": machines})))
        }
        "UpdateStateMachine" => {
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Edit, &name, op)?;
            let sm = w
                .update(
                    &name,
                    body.get("definition").and_then(Value::as_str),
                    body.get("roleArn").and_then(Value::as_str),
                )
                .await?;
            Ok(ok(json!({"updateDate": epoch(sm.updated_at.unwrap_or(sm.created_at))})))
        }
        "DeleteStateMachine" => {
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Edit, &name, op)?;
            w.delete(&name).await?;
            Ok(ok(json!({})))
        }
        "ValidateStateMachineDefinition" => {
            let definition = field(&body, "definition")?;
            Ok(ok(match w.validate(definition) {
                Ok(_) => json!({"result": "OK", "diagnostics": []}),
                Err(problems) => json!({"result": "FAIL", "diagnostics": problems.iter().map(|d| json!({
                    "severity": "ERROR", "code": d.code, "message": d.message, "location": d.location})).collect::<Vec<_>>()}),
            }))
        }
        "StartSyncExecution" => {
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Use, &name, op)?;
            let input_text = body.get("input").and_then(Value::as_str).unwrap_or("{}");
            let input: Value = serde_json::from_str(input_text).map_err(|e| {
                AwsJsonError::new("InvalidExecutionInput", format!("Invalid State Machine Execution Input: '{e}'"))
            })?;
            let identity = json!({"cognitoIdentityId": p.subject});
            let x = w.start_sync(&name, body.get("name").and_then(Value::as_str), input, Some(identity)).await?;
            let mut out = json!({
                "executionArn": x.arn, "stateMachineArn": w.arn(&name), "name": x.name,
                "startDate": epoch(x.started), "stopDate": epoch(x.stopped), "status": x.status,
                "input": input_text, "inputDetails": {"included": true},
                "billingDetails": {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": (x.stopped - x.started).num_milliseconds().max(100)},
            });
            if let Some(o) = x.output {
                out["output"] = json!(o.to_string());
                out["outputDetails"] = json!({"included": true});
            }
            if let Some(e) = x.error {
                out["error"] = json!(e.error);
                out["cause"] = json!(e.cause);
            }
            Ok(ok(out))
        }
        "TestState" => {
            let input_text = body.get("input").and_then(Value::as_str).unwrap_or("{}");
            let input: Value = serde_json::from_str(input_text).map_err(|e| {
                AwsJsonError::new("InvalidExecutionInput", format!("Invalid State Machine Execution Input: '{e}'"))
            })?;
            let identity = json!({"cognitoIdentityId": p.subject});
            let t = w.test_state(field(&body, "definition")?, input, Some(identity)).await?;
            let mut out = json!({"status": t.status});
            if let Some(o) = t.output {
                out["output"] = json!(o.to_string());
            }
            if let Some(n) = t.next_state {
                out["nextState"] = json!(n);
            }
            if let Some(e) = t.error {
                out["error"] = json!(e.error);
                out["cause"] = json!(e.cause);
            }
            Ok(ok(out))
        }
        other => Err(AwsJsonError::new("UnknownOperationException", format!("{other} is not supported yet"))),
    }
}
