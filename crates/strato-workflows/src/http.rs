//! Strato's own routes for workflows, beside the Step Functions protocol: `/v1/state-machines…` (create, list, show,
//! change, delete, start and list executions) and `/v1/executions/{machine}/{execution}…` (describe, history, stop,
//! redrive), in the OpenAPI document, with Strato's JSON errors.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strato_http::auth::Principal;
use strato_http::{ApiError, JsonBody, QueryParams};
use strato_types::{Action, ErrorCode, ResourceRef, StratoError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::STATE_MACHINE;
use crate::durable::ExecutionRecord;
use crate::service::{StateMachine, Workflows};

/// The native routes.
pub(crate) fn routes() -> strato_http::CapabilityRoutes {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(start, executions))
        .routes(routes!(describe))
        .routes(routes!(history))
        .routes(routes!(stop))
        .routes(routes!(redrive))
        .routes(routes!(map_runs))
}

fn resource(name: &str) -> ResourceRef {
    ResourceRef::new(STATE_MACHINE, name)
}

fn api(e: crate::service::WorkflowError) -> ApiError {
    ApiError(StratoError::from(e))
}

/// A state machine.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StateMachineView {
    /// Its name.
    pub name: String,
    /// Its ARN (the Step Functions API's name for it).
    pub arn: String,
    /// `STANDARD` (durable) or `EXPRESS` (in memory).
    #[serde(rename = "type")]
    pub kind: String,
    /// The Amazon States Language definition.
    #[schema(value_type = Object)]
    pub definition: Value,
    /// The role ARN AWS clients send (kept and shown only).
    pub role_arn: String,
    /// Free text.
    pub description: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

fn view(w: &Workflows, sm: StateMachine) -> StateMachineView {
    StateMachineView {
        arn: w.arn(&sm.name),
        definition: serde_json::from_str(&sm.definition).unwrap_or(Value::String(sm.definition.clone())),
        name: sm.name,
        kind: sm.kind,
        role_arn: sm.role_arn,
        description: sm.description,
        created_at: sm.created_at,
        updated_at: sm.updated_at,
    }
}

/// A state machine's kind.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    /// Durable executions on the job queue.
    Standard,
    /// Executions run in memory by the request that starts them.
    Express,
}

/// A new state machine.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// 1-80 characters: letters, digits, `-` and `_` (no whitespace, brackets, wildcards or `:`).
    #[schema(example = "scratch")]
    pub name: String,
    /// The Amazon States Language definition.
    #[schema(value_type = Object, example = json!({"StartAt": "Hello", "States": {"Hello": {"Type": "Pass", "End": true}}}))]
    pub definition: serde_json::Map<String, Value>,
    /// `STANDARD` (default) or `EXPRESS`.
    #[serde(default, rename = "type")]
    pub kind: Option<Kind>,
    /// Kept and shown only.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

#[utoipa::path(post, path = "/v1/state-machines", tag = "workflows", request_body = CreateBody,
    responses((status = 201, description = "Created", body = StateMachineView)))]
/// Creates a state machine; its definition is checked whole first (every problem reported at once).
async fn create(
    Extension(w): Extension<Workflows>,
    p: Principal,
    JsonBody(b): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<StateMachineView>), ApiError> {
    p.may(Action::Edit, &resource(&b.name))?;
    let kind = match b.kind.unwrap_or(Kind::Standard) {
        Kind::Standard => "STANDARD",
        Kind::Express => "EXPRESS",
    };
    let definition = Value::Object(b.definition).to_string();
    let sm = w
        .create(
            &b.name,
            &definition,
            b.role_arn.as_deref().unwrap_or_default(),
            kind,
            b.description.as_deref().unwrap_or_default(),
        )
        .await
        .map_err(api)?;
    Ok((StatusCode::CREATED, Json(view(&w, sm))))
}

#[utoipa::path(get, path = "/v1/state-machines", tag = "workflows",
    responses((status = 200, description = "The state machines the caller may read", body = Vec<StateMachineView>)))]
/// Lists the state machines the caller may read.
async fn list(Extension(w): Extension<Workflows>, p: Principal) -> Result<Json<Vec<StateMachineView>>, ApiError> {
    let all = w.list().await.map_err(api)?;
    Ok(Json(all.into_iter().filter(|sm| p.can(Action::Read, &resource(&sm.name))).map(|sm| view(&w, sm)).collect()))
}

#[utoipa::path(get, path = "/v1/state-machines/{name}", tag = "workflows",
    params(("name" = String, Path, description = "State machine name", example = "demo")),
    responses((status = 200, description = "The state machine", body = StateMachineView)))]
/// One state machine.
async fn show(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<StateMachineView>, ApiError> {
    p.may(Action::Read, &resource(&name))?;
    Ok(Json(view(&w, w.get(&name).await.map_err(api)?)))
}

/// Changes to a state machine (absent fields are kept).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// A new definition; running executions keep the one they started with.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub definition: Option<serde_json::Map<String, Value>>,
    /// A new role ARN.
    #[serde(default)]
    pub role_arn: Option<String>,
}

#[utoipa::path(patch, path = "/v1/state-machines/{name}", tag = "workflows",
    params(("name" = String, Path, description = "State machine name", example = "demo")), request_body = PatchBody,
    responses((status = 200, description = "Updated", body = StateMachineView)))]
/// Changes a state machine's definition or role.
async fn update(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<PatchBody>,
) -> Result<Json<StateMachineView>, ApiError> {
    p.may(Action::Edit, &resource(&name))?;
    let definition = b.definition.map(|d| Value::Object(d).to_string());
    Ok(Json(view(&w, w.update(&name, definition.as_deref(), b.role_arn.as_deref()).await.map_err(api)?)))
}

#[utoipa::path(delete, path = "/v1/state-machines/{name}", tag = "workflows",
    params(("name" = String, Path, description = "State machine name", example = "scratch")),
    responses((status = 204, description = "Deleted, with its versions and aliases")))]
/// Deletes a state machine (its executions' records stay readable until they expire).
async fn delete(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.may(Action::Edit, &resource(&name))?;
    w.get(&name).await.map_err(api)?;
    w.delete(&name).await.map_err(api)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An execution.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionView {
    /// Its ARN.
    pub arn: String,
    /// The state machine.
    pub state_machine: String,
    /// Its name (unique per state machine).
    pub name: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT` or `ABORTED`.
    pub status: String,
    /// The input (any JSON value, as AWS allows).
    #[schema(value_type = Value)]
    pub input: Value,
    /// The output, once it succeeded (any JSON value).
    #[schema(value_type = Option<Value>)]
    pub output: Option<Value>,
    /// The error name, once it failed.
    pub error: Option<String>,
    /// The error's cause.
    pub cause: Option<String>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub stopped_at: Option<DateTime<Utc>>,
    /// How many times it was redriven.
    pub redrive_count: u32,
    /// The version it runs, when started through a version or an alias.
    pub version_arn: Option<String>,
    /// The Map Run it is a child of (a Distributed Map's item; its state machine is `<machine>/<label>`).
    pub map_run_arn: Option<String>,
}

fn execution_view(w: &Workflows, x: ExecutionRecord) -> ExecutionView {
    ExecutionView {
        arn: w.execution_arn(&x.machine, &x.name),
        input: serde_json::from_str(&x.input).unwrap_or(Value::Null),
        output: x.output.as_deref().and_then(|o| serde_json::from_str(o).ok()),
        state_machine: x.machine,
        name: x.name,
        status: x.status,
        error: x.error,
        cause: x.cause,
        started_at: x.started,
        stopped_at: x.stopped,
        redrive_count: x.redrive_count,
        version_arn: x.version_arn,
        map_run_arn: x.map_run.map(|l| w.map_run_arn(&l.run)),
    }
}

/// An execution to start.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// Its name (default: a new UUID); starting the same name with the same input while it runs returns it.
    #[serde(default)]
    pub name: Option<String>,
    /// The input (default `{}`): any JSON value, as AWS allows.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub input: Option<Value>,
    /// A published version's number or an alias's name to run instead of the latest definition.
    #[serde(default)]
    pub qualifier: Option<String>,
}

#[utoipa::path(post, path = "/v1/state-machines/{name}/executions", tag = "workflows",
    params(("name" = String, Path, description = "State machine name", example = "demo")), request_body = StartBody,
    responses((status = 201, description = "Started (a standard execution runs on; an express one has ended)", body = ExecutionView)))]
/// Starts an execution: a standard machine's is committed before this answers and runs on the job queue; an express
/// machine's runs to its end in this request.
async fn start(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<StartBody>,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    p.may(Action::Use, &resource(&name))?;
    let target = match &b.qualifier {
        Some(q) if q.is_empty() || q.contains(':') => {
            return Err(ApiError::new(ErrorCode::InvalidRequest, "qualifier is a version number or an alias name"))
        }
        Some(q) => format!("{name}:{q}"),
        None => name.clone(),
    };
    if w.runs_strato_jobs(&target).await.map_err(api)? {
        p.require_admin("start a state machine whose tasks run Strato's jobs (training)")?;
    }
    let input = b.input.unwrap_or_else(|| Value::Object(Default::default()));
    let identity = serde_json::json!({"cognitoIdentityId": p.subject});
    let sm = w.resolve(&target).await.map_err(api)?;
    if sm.machine.kind == "EXPRESS" {
        let x = w.start_sync(&target, b.name.as_deref(), input.clone(), Some(identity)).await.map_err(api)?;
        let (error, cause) = x.error.map(|e| (e.error, e.cause)).unzip();
        return Ok((
            StatusCode::CREATED,
            Json(ExecutionView {
                arn: x.arn,
                state_machine: name,
                name: x.name,
                status: x.status.to_string(),
                input,
                output: x.output,
                error,
                cause,
                started_at: x.started,
                stopped_at: Some(x.stopped),
                redrive_count: 0,
                version_arn: sm.version_arn,
                map_run_arn: None,
            }),
        ));
    }
    let x = w.start_execution(&target, b.name.as_deref(), &input.to_string(), Some(identity)).await.map_err(api)?;
    Ok((StatusCode::CREATED, Json(execution_view(&w, x))))
}

/// An execution's status.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Running or waiting.
    Running,
    /// Ended with an output.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ran past its `TimeoutSeconds`.
    TimedOut,
    /// Stopped.
    Aborted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
            Self::Aborted => "ABORTED",
        }
    }
}

/// A page of a listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only executions of this status.
    pub status: Option<Status>,
    /// At most this many (default 100, at most 1000).
    #[param(maximum = 1000)]
    pub limit: Option<u16>,
    /// Where the page starts: the `next` of the page before.
    pub next: Option<String>,
}

/// A page of executions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionList {
    /// Newest first.
    pub executions: Vec<ExecutionView>,
    /// The next page's `next`, when there is one.
    pub next: Option<String>,
}

fn limit(l: Option<u16>) -> Result<usize, ApiError> {
    match l {
        Some(n) if n > 1000 => Err(ApiError::new(ErrorCode::InvalidRequest, "limit is at most 1000")),
        n => Ok(n.unwrap_or(0) as usize),
    }
}

#[utoipa::path(get, path = "/v1/state-machines/{name}/executions", tag = "workflows",
    params(("name" = String, Path, description = "State machine name", example = "demo"), ListQuery),
    responses((status = 200, description = "A page of the state machine's standard executions", body = ExecutionList)))]
/// A state machine's standard executions, newest first.
async fn executions(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ExecutionList>, ApiError> {
    p.may(Action::Read, &resource(&name))?;
    let page = w
        .list_executions(&name, q.status.map(Status::as_str), limit(q.limit)?, q.next.as_deref())
        .await
        .map_err(api)?;
    Ok(Json(ExecutionList {
        executions: page.executions.into_iter().map(|x| execution_view(&w, x)).collect(),
        next: page.next_token,
    }))
}

async fn execution_of(
    w: &Workflows,
    p: &Principal,
    machine: &str,
    name: &str,
    action: Action,
) -> Result<String, ApiError> {
    // A Map Run's child (`<machine>/<label>`) is its state machine's.
    p.may(action, &resource(machine.split_once('/').map_or(machine, |(m, _)| m)))?;
    let key = format!("{machine}:{name}");
    w.execution(&key).await.map_err(api)?;
    Ok(key)
}

#[utoipa::path(get, path = "/v1/executions/{machine}/{execution}", tag = "workflows",
    params(("machine" = String, Path, description = "State machine name", example = "demo"),
        ("execution" = String, Path, description = "Execution name", example = "demo")),
    responses((status = 200, description = "The execution", body = ExecutionView)))]
/// One standard execution.
async fn describe(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path((machine, execution)): Path<(String, String)>,
) -> Result<Json<ExecutionView>, ApiError> {
    let key = execution_of(&w, &p, &machine, &execution, Action::Read).await?;
    Ok(Json(execution_view(&w, w.execution(&key).await.map_err(api)?)))
}

/// Which events.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Newest first.
    pub reverse: Option<bool>,
    /// At most this many (default 100, at most 1000).
    #[param(maximum = 1000)]
    pub limit: Option<u16>,
    /// Where the page starts: the `next` of the page before.
    pub next: Option<String>,
}

/// A page of history events, in the Step Functions API's shapes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    /// `ExecutionStarted`, `PassStateEntered`, … with their ids and details.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// The next page's `next`, when there is one.
    pub next: Option<String>,
}

#[utoipa::path(get, path = "/v1/executions/{machine}/{execution}/history", tag = "workflows",
    params(("machine" = String, Path, description = "State machine name", example = "demo"),
        ("execution" = String, Path, description = "Execution name", example = "demo"), HistoryQuery),
    responses((status = 200, description = "A page of events", body = HistoryView)))]
/// An execution's history, oldest first.
async fn history(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path((machine, execution)): Path<(String, String)>,
    QueryParams(q): QueryParams<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let key = execution_of(&w, &p, &machine, &execution, Action::Read).await?;
    let page =
        w.history(&key, q.reverse.unwrap_or(false), true, limit(q.limit)?, q.next.as_deref()).await.map_err(api)?;
    Ok(Json(HistoryView { events: page.events, next: page.next_token }))
}

/// Why it is stopped.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopBody {
    /// An error name to record.
    #[serde(default)]
    pub error: Option<String>,
    /// A cause to record.
    #[serde(default)]
    pub cause: Option<String>,
}

#[utoipa::path(post, path = "/v1/executions/{machine}/{execution}/stop", tag = "workflows",
    params(("machine" = String, Path, description = "State machine name", example = "demo"),
        ("execution" = String, Path, description = "Execution name", example = "demo")), request_body = StopBody,
    responses((status = 200, description = "Stopped (ABORTED)", body = ExecutionView)))]
/// Stops a running execution; its waiting tasks' tokens stop being accepted.
async fn stop(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path((machine, execution)): Path<(String, String)>,
    JsonBody(b): JsonBody<StopBody>,
) -> Result<Json<ExecutionView>, ApiError> {
    let key = execution_of(&w, &p, &machine, &execution, Action::Use).await?;
    let x = w.stop_execution(&key, b.error.as_deref(), b.cause.as_deref()).await.map_err(api)?;
    Ok(Json(execution_view(&w, x)))
}

#[utoipa::path(post, path = "/v1/executions/{machine}/{execution}/redrive", tag = "workflows",
    params(("machine" = String, Path, description = "State machine name", example = "demo"),
        ("execution" = String, Path, description = "Execution name", example = "demo")),
    responses((status = 200, description = "Running again from what failed", body = ExecutionView)))]
/// Redrives a failed, timed-out or stopped execution: the failed state runs again, and of a Parallel or Map only
/// the branches and iterations that did not succeed.
async fn redrive(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path((machine, execution)): Path<(String, String)>,
) -> Result<Json<ExecutionView>, ApiError> {
    let key = execution_of(&w, &p, &machine, &execution, Action::Use).await?;
    Ok(Json(execution_view(&w, w.redrive_execution(&key).await.map_err(api)?)))
}

#[utoipa::path(get, path = "/v1/executions/{machine}/{execution}/map-runs", tag = "workflows",
    params(("machine" = String, Path, description = "State machine name", example = "demo"),
        ("execution" = String, Path, description = "Execution name", example = "demo")),
    responses((status = 200, description = "Its Map Runs, oldest first, as DescribeMapRun shows them",
        body = Vec<Object>)))]
/// The Map Runs (Distributed Map states) an execution started: status, settings and counts of their child
/// executions and items. The children are executions of `<machine>/<label>`.
async fn map_runs(
    Extension(w): Extension<Workflows>,
    p: Principal,
    Path((machine, execution)): Path<(String, String)>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let key = execution_of(&w, &p, &machine, &execution, Action::Read).await?;
    let runs = w.map_runs(&key).await.map_err(api)?;
    Ok(Json(runs.iter().map(|r| w.describe_map_run(r)).collect()))
}
