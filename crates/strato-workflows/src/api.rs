//! The Step Functions JSON protocol (`POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` and
//! `application/x-amz-json-1.0` bodies), as the AWS CLI and boto3 send it. Errors are AWS's: 400 with
//! `{"__type", "message"}`. Grants decide as on every route: reading a state machine needs `read`, changing it
//! `edit`, running it `use`.
//!
//! Served: CreateStateMachine, DescribeStateMachine, ListStateMachines, UpdateStateMachine, DeleteStateMachine,
//! ValidateStateMachineDefinition, StartExecution, DescribeExecution, DescribeStateMachineForExecution,
//! ListExecutions, GetExecutionHistory, StopExecution, RedriveExecution, SendTaskSuccess/Failure/Heartbeat,
//! StartSyncExecution (express executions), TestState, activities, versions and aliases, and Distributed Map's
//! DescribeMapRun, ListMapRuns and UpdateMapRun.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};
use strato_http::auth::Principal;
use strato_http::CapabilityRoutes;
use strato_types::{Action, ResourceKind, ResourceRef};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::durable::ExecutionRecord;
use crate::service::{StateMachine, WorkflowError, Workflows};

/// The resource kind grants name state machines by.
pub const STATE_MACHINE: ResourceKind = ResourceKind::new("state-machine");

/// The resource kind grants name activities by (`use` polls for their tasks).
pub const ACTIVITY: ResourceKind = ResourceKind::new("activity");

/// The routes, over `workflows`.
pub fn routes(workflows: Workflows) -> CapabilityRoutes {
    api_routes().layer(Extension(workflows))
}

/// The routes without the workflows they serve: for the OpenAPI document.
pub fn api_routes() -> CapabilityRoutes {
    OpenApiRouter::new().routes(routes!(json_protocol)).merge(crate::http::routes())
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

/// A list operation's answer: the items under `field`, and `nextToken` when there is a next page.
fn listed(field: &str, items: Value, next: Option<String>) -> Response {
    let mut out = json!({ field: items });
    if let Some(t) = next {
        out["nextToken"] = json!(t);
    }
    ok(out)
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

fn version_description(body: &Value) -> &str {
    body.get("versionDescription").and_then(Value::as_str).unwrap_or_default()
}

/// The machine and number a version ARN names.
fn version_of(w: &Workflows, arn: &str) -> Result<(String, u64), AwsJsonError> {
    match w.qualified_of(arn)? {
        (name, Some(q)) => q.parse().map(|n| (name, n)).map_err(|_| not_a("version", arn)),
        _ => Err(not_a("version", arn)),
    }
}

/// The machine and alias name an alias ARN names.
fn alias_of(w: &Workflows, arn: &str) -> Result<(String, String), AwsJsonError> {
    match w.qualified_of(arn)? {
        (name, Some(q)) if q.parse::<u64>().is_err() => Ok((name, q)),
        _ => Err(not_a("alias", arn)),
    }
}

fn not_a(what: &str, arn: &str) -> AwsJsonError {
    AwsJsonError::new("InvalidArn", format!("Invalid Arn: '{arn}' is not a state machine {what} ARN"))
}

/// `routingConfiguration`: the machine its versions belong to, and the routes.
fn routing_of(w: &Workflows, body: &Value) -> Result<Option<(String, Vec<crate::versions::Route>)>, AwsJsonError> {
    let Some(list) = body.get("routingConfiguration") else { return Ok(None) };
    let list = list
        .as_array()
        .ok_or_else(|| AwsJsonError::new("ValidationException", "routingConfiguration must be a list"))?;
    let mut machine: Option<String> = None;
    let mut routes = Vec::new();
    for r in list {
        let (name, version) = version_of(w, field(r, "stateMachineVersionArn")?)?;
        if machine.as_ref().is_some_and(|m| *m != name) {
            return Err(AwsJsonError::new("ValidationException", "an alias routes to versions of one state machine"));
        }
        let weight = r
            .get("weight")
            .and_then(Value::as_u64)
            .filter(|w| *w <= 100)
            .ok_or_else(|| AwsJsonError::new("ValidationException", "each route needs a weight from 0 to 100"))?;
        machine = Some(name);
        routes.push(crate::versions::Route { version, weight: weight as u32 });
    }
    let machine =
        machine.ok_or_else(|| AwsJsonError::new("ValidationException", "routingConfiguration must name a version"))?;
    Ok(Some((machine, routes)))
}

fn may_activity(p: &Principal, w: &Workflows, action: Action, name: &str, operation: &str) -> Result<(), AwsJsonError> {
    if p.can(action, &ResourceRef::new(ACTIVITY, name)) {
        Ok(())
    } else {
        Err(deny(p, operation, &w.activity_arn(name)))
    }
}

/// The state machine an execution key (`<machine>:<name>`, or a Map Run's child `<machine>/<label>:<name>`) or a
/// Map Run key belongs to.
fn machine_of(key: &str) -> &str {
    let m = key.split_once(':').map_or(key, |(m, _)| m);
    m.split_once('/').map_or(m, |(m, _)| m)
}

fn page_size(body: &Value) -> Result<usize, AwsJsonError> {
    match body.get("maxResults").and_then(Value::as_i64) {
        None => Ok(0),
        Some(n) if (0..=1000).contains(&n) => Ok(n as usize),
        Some(n) => Err(AwsJsonError::new(
            "ValidationException",
            format!("1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to 1000"),
        )),
    }
}

fn describe_execution(w: &Workflows, x: &ExecutionRecord) -> Value {
    let mut v = json!({
        "executionArn": w.execution_arn(&x.machine, &x.name),
        "stateMachineArn": w.arn(&x.machine),
        "name": x.name,
        "status": x.status,
        "startDate": epoch(x.started),
        "input": x.input,
        "inputDetails": {"included": true},
        "redriveCount": x.redrive_count,
    });
    if let Some(t) = x.stopped {
        v["stopDate"] = json!(epoch(t));
    }
    if let Some(o) = &x.output {
        v["output"] = json!(o);
        v["outputDetails"] = json!({"included": true});
    }
    if let Some(e) = &x.error {
        v["error"] = json!(e);
    }
    if let Some(c) = &x.cause {
        v["cause"] = json!(c);
    }
    if let Some(t) = x.redrive_date {
        v["redriveDate"] = json!(epoch(t));
    }
    if let Some(a) = &x.version_arn {
        v["stateMachineVersionArn"] = json!(a);
    }
    if let Some(a) = &x.alias_arn {
        v["stateMachineAliasArn"] = json!(a);
    }
    if let Some(link) = &x.map_run {
        v["mapRunArn"] = json!(w.map_run_arn(&link.run));
    }
    match x.status.as_str() {
        "FAILED" | "ABORTED" | "TIMED_OUT" if x.map_run.is_some() => {
            v["redriveStatus"] = json!("REDRIVABLE_BY_MAP_RUN")
        }
        "FAILED" | "ABORTED" | "TIMED_OUT" => v["redriveStatus"] = json!("REDRIVABLE"),
        s => {
            v["redriveStatus"] = json!("NOT_REDRIVABLE");
            v["redriveStatusReason"] = json!(format!("Execution is {s} and cannot be redriven"));
        }
    }
    v
}

/// `ListExecutions` with a `mapRunArn`: the Map Run's child executions, each with its `itemCount` and `mapRunArn`.
async fn list_children(
    w: &Workflows,
    p: &Principal,
    body: &Value,
    arn: &str,
    status: Option<&str>,
) -> Result<Response, AwsJsonError> {
    let key = w.map_run_of(arn)?;
    if !p.can(Action::Read, &ResourceRef::new(STATE_MACHINE, machine_of(&key))) {
        return Err(deny(p, "ListExecutions", arn));
    }
    let redrive = body.get("redriveFilter").and_then(Value::as_str);
    let mut children = w.map_run_children(&key).await?;
    children.retain(|(x, _)| {
        let status_ok = match status {
            None => true,
            // A redrive starts all of a run's unsuccessful children at once: none waits to be redriven.
            Some("PENDING_REDRIVE") => false,
            Some(s) => x.status == s,
        };
        let redrive_ok = match redrive {
            Some("REDRIVEN") => x.redrive_count > 0,
            Some("NOT_REDRIVEN") => x.redrive_count == 0,
            _ => true,
        };
        status_ok && redrive_ok
    });
    let (children, next) =
        crate::executions::page(&children, page_size(body)?, body.get("nextToken").and_then(Value::as_str))?;
    let items: Vec<Value> = children
        .iter()
        .map(|(x, items)| {
            let mut v = json!({"executionArn": w.execution_arn(&x.machine, &x.name), "stateMachineArn": w.arn(&x.machine),
                "name": x.name, "status": x.status, "startDate": epoch(x.started), "redriveCount": x.redrive_count,
                "itemCount": items, "mapRunArn": w.map_run_arn(&key)});
            if let Some(t) = x.stopped {
                v["stopDate"] = json!(epoch(t));
            }
            if let Some(t) = x.redrive_date {
                v["redriveDate"] = json!(epoch(t));
            }
            v
        })
        .collect();
    Ok(listed("executions", json!(items), next))
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
            let mut out = json!({"stateMachineArn": w.arn(&sm.name), "creationDate": epoch(sm.created_at)});
            if body.get("publish") == Some(&json!(true)) {
                let v = w.publish_version(&sm.name, version_description(&body)).await?;
                out["stateMachineVersionArn"] = json!(w.version_arn(&sm.name, v.number));
            }
            Ok(ok(out))
        }
        "DescribeStateMachine" => {
            let arn = field(&body, "stateMachineArn")?;
            let (name, qualifier) = w.qualified_of(arn)?;
            may(Action::Read, &name, op)?;
            Ok(ok(match qualifier {
                None => describe(w, &w.get(&name).await?),
                Some(q) => {
                    let n = q.parse::<u64>().map_err(|_| {
                        AwsJsonError::new("ValidationException", "DescribeStateMachine takes a state machine or version ARN; describe an alias with DescribeStateMachineAlias")
                    })?;
                    let v = w.version(&name, n).await?;
                    let mut d = describe(w, &v.machine);
                    d["stateMachineArn"] = json!(arn);
                    d["description"] = json!(v.description);
                    d["creationDate"] = json!(epoch(v.created_at));
                    d
                }
            }))
        }
        "PublishStateMachineVersion" => {
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Edit, &name, op)?;
            let v =
                w.publish_version(&name, body.get("description").and_then(Value::as_str).unwrap_or_default()).await?;
            Ok(ok(
                json!({"stateMachineVersionArn": w.version_arn(&name, v.number), "creationDate": epoch(v.created_at)}),
            ))
        }
        "ListStateMachineVersions" => {
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Read, &name, op)?;
            let all: Vec<Value> = w
                .list_versions(&name)
                .await?
                .iter()
                .map(|v| json!({"stateMachineVersionArn": w.version_arn(&name, v.number), "creationDate": epoch(v.created_at)}))
                .collect();
            let (page, next) =
                crate::executions::page(&all, page_size(&body)?, body.get("nextToken").and_then(Value::as_str))?;
            Ok(listed("stateMachineVersions", json!(page), next))
        }
        "DeleteStateMachineVersion" => {
            let (name, n) = version_of(w, field(&body, "stateMachineVersionArn")?)?;
            may(Action::Edit, &name, op)?;
            w.delete_version(&name, n).await?;
            Ok(ok(json!({})))
        }
        "CreateStateMachineAlias" => {
            let routing = routing_of(w, &body)?
                .ok_or_else(|| AwsJsonError::new("ValidationException", "routingConfiguration is required"))?;
            let name = routing.0;
            may(Action::Edit, &name, op)?;
            let a = w
                .create_alias(
                    &name,
                    field(&body, "name")?,
                    body.get("description").and_then(Value::as_str).unwrap_or_default(),
                    routing.1,
                )
                .await?;
            Ok(ok(json!({"stateMachineAliasArn": w.alias_arn(&name, &a.name), "creationDate": epoch(a.created_at)})))
        }
        "DescribeStateMachineAlias" => {
            let (name, alias) = alias_of(w, field(&body, "stateMachineAliasArn")?)?;
            may(Action::Read, &name, op)?;
            let a = w.alias(&name, &alias).await?;
            let mut out = json!({
                "stateMachineAliasArn": w.alias_arn(&name, &a.name), "name": a.name, "description": a.description,
                "routingConfiguration": a.routing.iter().map(|r| json!({"stateMachineVersionArn": w.version_arn(&name, r.version), "weight": r.weight})).collect::<Vec<_>>(),
                "creationDate": epoch(a.created_at),
            });
            if let Some(t) = a.updated_at {
                out["updateDate"] = json!(epoch(t));
            }
            Ok(ok(out))
        }
        "UpdateStateMachineAlias" => {
            let (name, alias) = alias_of(w, field(&body, "stateMachineAliasArn")?)?;
            may(Action::Edit, &name, op)?;
            let routing = match routing_of(w, &body)? {
                Some((machine, _)) if machine != name => {
                    return Err(AwsJsonError::new(
                        "ValidationException",
                        "an alias routes to versions of its own state machine only",
                    ))
                }
                r => r.map(|(_, r)| r),
            };
            let a = w.update_alias(&name, &alias, body.get("description").and_then(Value::as_str), routing).await?;
            Ok(ok(json!({"updateDate": epoch(a.updated_at.unwrap_or(a.created_at))})))
        }
        "DeleteStateMachineAlias" => {
            let (name, alias) = alias_of(w, field(&body, "stateMachineAliasArn")?)?;
            may(Action::Edit, &name, op)?;
            w.delete_alias(&name, &alias).await?;
            Ok(ok(json!({})))
        }
        "ListStateMachineAliases" => {
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Read, &name, op)?;
            let all: Vec<Value> = w
                .list_aliases(&name)
                .await?
                .iter()
                .map(|a| json!({"stateMachineAliasArn": w.alias_arn(&name, &a.name), "creationDate": epoch(a.created_at)}))
                .collect();
            let (page, next) =
                crate::executions::page(&all, page_size(&body)?, body.get("nextToken").and_then(Value::as_str))?;
            Ok(listed("stateMachineAliases", json!(page), next))
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
            let mut out = json!({"updateDate": epoch(sm.updated_at.unwrap_or(sm.created_at))});
            if body.get("publish") == Some(&json!(true)) {
                let v = w.publish_version(&name, version_description(&body)).await?;
                out["stateMachineVersionArn"] = json!(w.version_arn(&name, v.number));
            }
            Ok(ok(out))
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
            let (name, qualifier) = w.qualified_of(field(&body, "stateMachineArn")?)?;
            may(Action::Use, &name, op)?;
            let target = qualifier.map_or(name.clone(), |q| format!("{name}:{q}"));
            let input_text = body.get("input").and_then(Value::as_str).unwrap_or("{}");
            let input: Value = serde_json::from_str(input_text).map_err(|e| {
                AwsJsonError::new("InvalidExecutionInput", format!("Invalid State Machine Execution Input: '{e}'"))
            })?;
            let identity = json!({"cognitoIdentityId": p.subject});
            let x = w.start_sync(&target, body.get("name").and_then(Value::as_str), input, Some(identity)).await?;
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
            let variables = match body.get("variables").and_then(Value::as_str) {
                Some(text) => match serde_json::from_str::<Value>(text) {
                    Ok(Value::Object(vars)) => vars,
                    _ => {
                        return Err(AwsJsonError::new(
                            "ValidationException",
                            "variables must be a JSON object of variable names and values",
                        ))
                    }
                },
                None => Default::default(),
            };
            let identity = json!({"cognitoIdentityId": p.subject});
            let t = w.test_state(field(&body, "definition")?, input, variables, Some(identity)).await?;
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
        "StartExecution" => {
            let (name, qualifier) = w.qualified_of(field(&body, "stateMachineArn")?)?;
            may(Action::Use, &name, op)?;
            let input = body.get("input").and_then(Value::as_str).unwrap_or("{}");
            let identity = json!({"cognitoIdentityId": p.subject});
            let target = qualifier.map_or(name.clone(), |q| format!("{name}:{q}"));
            if w.runs_strato_jobs(&target).await? && p.require_admin("start").is_err() {
                return Err(deny(p, op, &w.arn(&name)));
            }
            let x = w.start_execution(&target, body.get("name").and_then(Value::as_str), input, Some(identity)).await?;
            Ok(ok(json!({"executionArn": w.execution_arn(&x.machine, &x.name), "startDate": epoch(x.started)})))
        }
        "DescribeExecution" => {
            let key = w.execution_of(field(&body, "executionArn")?)?;
            may(Action::Read, machine_of(&key), op)?;
            Ok(ok(describe_execution(w, &w.execution(&key).await?)))
        }
        "DescribeStateMachineForExecution" => {
            let key = w.execution_of(field(&body, "executionArn")?)?;
            may(Action::Read, machine_of(&key), op)?;
            let x = w.execution(&key).await?;
            let sm = w.get(machine_of(&key)).await?;
            let mut out = json!({"stateMachineArn": w.arn(&x.machine), "name": x.machine,
                "definition": w.definition_of(&x).await?,
                "roleArn": x.role_arn, "updateDate": epoch(sm.updated_at.unwrap_or(sm.created_at)),
                "loggingConfiguration": {"level": "OFF", "includeExecutionData": false},
                "tracingConfiguration": {"enabled": false}});
            if let Some(link) = &x.map_run {
                // A Map Run's child runs the Map's item processor, under the Map's label.
                out["definition"] = json!(w.child_definition(&x).await?);
                out["mapRunArn"] = json!(w.map_run_arn(&link.run));
                out["label"] = json!(x.machine.split_once('/').map_or("", |(_, l)| l));
            }
            Ok(ok(out))
        }
        "ListExecutions" => {
            let status = body.get("statusFilter").and_then(Value::as_str);
            let by_run = body.get("mapRunArn").and_then(Value::as_str);
            if by_run.is_some() == body.get("stateMachineArn").is_some() {
                return Err(AwsJsonError::new(
                    "ValidationException",
                    "Must provide a StateMachine ARN or MapRun ARN, not both",
                ));
            }
            if let Some(f) = body.get("redriveFilter").and_then(Value::as_str) {
                if !["REDRIVEN", "NOT_REDRIVEN"].contains(&f) {
                    return Err(AwsJsonError::new(
                        "ValidationException",
                        format!("1 validation error detected: Value '{f}' at 'redriveFilter' failed to satisfy constraint: Member must satisfy enum value set: [REDRIVEN, NOT_REDRIVEN]"),
                    ));
                }
            }
            if let Some(arn) = by_run {
                return list_children(w, p, &body, arn, status).await;
            }
            if status == Some("PENDING_REDRIVE") {
                return Err(AwsJsonError::new(
                    "ValidationException",
                    "The PENDING_REDRIVE status filter can only be used with a mapRunArn",
                ));
            }
            let name = w.name_of(field(&body, "stateMachineArn")?)?;
            may(Action::Read, &name, op)?;
            if let Some(s) = status {
                if !["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"].contains(&s) {
                    return Err(AwsJsonError::new(
                        "ValidationException",
                        format!("1 validation error detected: Value '{s}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [SUCCEEDED, TIMED_OUT, PENDING_REDRIVE, ABORTED, FAILED, RUNNING]"),
                    ));
                }
            }
            let page = w
                .list_executions(&name, status, page_size(&body)?, body.get("nextToken").and_then(Value::as_str))
                .await?;
            let items: Vec<Value> = page.executions.iter().map(|x| {
                let mut v = json!({"executionArn": w.execution_arn(&x.machine, &x.name), "stateMachineArn": w.arn(&x.machine),
                    "name": x.name, "status": x.status, "startDate": epoch(x.started), "redriveCount": x.redrive_count});
                if let Some(t) = x.stopped { v["stopDate"] = json!(epoch(t)); }
                if let Some(t) = x.redrive_date { v["redriveDate"] = json!(epoch(t)); }
                v
            }).collect();
            Ok(listed("executions", json!(items), page.next_token))
        }
        "DescribeMapRun" => {
            let key = w.map_run_of(field(&body, "mapRunArn")?)?;
            may(Action::Read, machine_of(&key), op)?;
            Ok(ok(w.describe_map_run(&w.map_run(&key).await?)))
        }
        "ListMapRuns" => {
            let key = w.execution_of(field(&body, "executionArn")?)?;
            may(Action::Read, machine_of(&key), op)?;
            let runs = w.map_runs(&key).await?;
            let (runs, next) =
                crate::executions::page(&runs, page_size(&body)?, body.get("nextToken").and_then(Value::as_str))?;
            let items: Vec<Value> = runs
                .iter()
                .map(|r| {
                    let mut v = json!({"executionArn": w.execution_arn_of(&r.execution), "mapRunArn": w.map_run_arn(&r.key),
                        "stateMachineArn": w.arn(r.key.rsplit_once(':').map_or(r.key.as_str(), |(m, _)| m)),
                        "startDate": epoch(r.started)});
                    if let Some(t) = r.stopped {
                        v["stopDate"] = json!(epoch(t));
                    }
                    v
                })
                .collect();
            Ok(listed("mapRuns", json!(items), next))
        }
        "UpdateMapRun" => {
            let key = w.map_run_of(field(&body, "mapRunArn")?)?;
            may(Action::Use, machine_of(&key), op)?;
            let number = |name: &str| -> Result<Option<f64>, AwsJsonError> {
                match body.get(name) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => match v.as_f64() {
                        Some(n) if n >= 0.0 => Ok(Some(n)),
                        _ => Err(AwsJsonError::new(
                            "ValidationException",
                            format!("1 validation error detected: Value '{v}' at '{name}' failed to satisfy constraint: Member must have value greater than or equal to 0"),
                        )),
                    },
                }
            };
            let concurrency = number("maxConcurrency")?.map(|n| n as usize);
            let count = number("toleratedFailureCount")?.map(|n| n as u64);
            let percentage = number("toleratedFailurePercentage")?;
            w.update_map_run(&key, concurrency, count, percentage).await?;
            Ok(ok(json!({})))
        }
        "GetExecutionHistory" => {
            let key = w.execution_of(field(&body, "executionArn")?)?;
            may(Action::Read, machine_of(&key), op)?;
            let page = w
                .history(
                    &key,
                    body.get("reverseOrder").and_then(Value::as_bool).unwrap_or(false),
                    body.get("includeExecutionData").and_then(Value::as_bool).unwrap_or(true),
                    page_size(&body)?,
                    body.get("nextToken").and_then(Value::as_str),
                )
                .await?;
            Ok(listed("events", json!(page.events), page.next_token))
        }
        "StopExecution" => {
            let key = w.execution_of(field(&body, "executionArn")?)?;
            may(Action::Use, machine_of(&key), op)?;
            let x = w
                .stop_execution(
                    &key,
                    body.get("error").and_then(Value::as_str),
                    body.get("cause").and_then(Value::as_str),
                )
                .await?;
            Ok(ok(json!({"stopDate": epoch(x.stopped.unwrap_or(x.started))})))
        }
        "RedriveExecution" => {
            let key = w.execution_of(field(&body, "executionArn")?)?;
            may(Action::Use, machine_of(&key), op)?;
            let x = w.redrive_execution(&key).await?;
            Ok(ok(json!({"redriveDate": epoch(x.redrive_date.unwrap_or(x.started))})))
        }
        // The task token is the capability (as a callback's worker holds nothing else of the execution): any
        // authenticated caller presenting it may answer.
        "SendTaskSuccess" => {
            w.send_task_success(field(&body, "taskToken")?, field(&body, "output")?).await?;
            Ok(ok(json!({})))
        }
        "SendTaskFailure" => {
            w.send_task_failure(
                field(&body, "taskToken")?,
                body.get("error").and_then(Value::as_str).unwrap_or_default(),
                body.get("cause").and_then(Value::as_str).unwrap_or_default(),
            )
            .await?;
            Ok(ok(json!({})))
        }
        "SendTaskHeartbeat" => {
            w.send_task_heartbeat(field(&body, "taskToken")?).await?;
            Ok(ok(json!({})))
        }
        "CreateActivity" => {
            let name = field(&body, "name")?;
            may_activity(p, w, Action::Edit, name, op)?;
            let a = w.create_activity(name).await?;
            Ok(ok(json!({"activityArn": w.activity_arn(&a.name), "creationDate": epoch(a.created_at)})))
        }
        "DescribeActivity" => {
            let name = w.activity_name(field(&body, "activityArn")?)?;
            may_activity(p, w, Action::Read, &name, op)?;
            let a = w.describe_activity(&name).await?;
            Ok(ok(json!({"activityArn": w.activity_arn(&a.name), "name": a.name, "creationDate": epoch(a.created_at)})))
        }
        "ListActivities" => {
            let all: Vec<Value> = w
                .list_activities()
                .await?
                .iter()
                .filter(|a| p.can(Action::Read, &ResourceRef::new(ACTIVITY, &a.name)))
                .map(|a| json!({"activityArn": w.activity_arn(&a.name), "name": a.name, "creationDate": epoch(a.created_at)}))
                .collect();
            let (page, next) =
                crate::executions::page(&all, page_size(&body)?, body.get("nextToken").and_then(Value::as_str))?;
            Ok(listed("activities", json!(page), next))
        }
        "DeleteActivity" => {
            let name = w.activity_name(field(&body, "activityArn")?)?;
            may_activity(p, w, Action::Edit, &name, op)?;
            w.delete_activity(&name).await?;
            Ok(ok(json!({})))
        }
        "GetActivityTask" => {
            let name = w.activity_name(field(&body, "activityArn")?)?;
            may_activity(p, w, Action::Use, &name, op)?;
            let worker = body.get("workerName").and_then(Value::as_str).unwrap_or_default();
            if worker.chars().count() > 80 {
                return Err(AwsJsonError::new("ValidationException", "workerName must be at most 80 characters"));
            }
            Ok(ok(match w.get_activity_task(&name, worker, crate::activities::POLL_WAIT).await? {
                Some((token, input)) => json!({"taskToken": token, "input": input.to_string()}),
                // No task within the wait: AWS answers with no token.
                None => json!({}),
            }))
        }
        other => Err(AwsJsonError::new("UnknownOperationException", format!("{other} is not supported yet"))),
    }
}
