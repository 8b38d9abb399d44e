//! [`Workflows`]: state machines kept as documents in the store, express executions run in memory by the
//! interpreter, and Task states calling Strato's functions as Lambda's integrations do.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_functions::{FunctionError, Functions, InvokeRequest};
use strato_store::{Document, Store};

use crate::definition::{Diagnostic, Machine};
use crate::error::StatesError;
use crate::interpreter::{self, TaskRunner};

const MACHINE_DOC: &str = "state-machine";

/// What went wrong with a workflow operation, as the Step Functions API names it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WorkflowError {
    /// `StateMachineDoesNotExist`, `ExecutionDoesNotExist`, ….
    #[error("{1}")]
    NotFound(&'static str, String),
    /// `StateMachineAlreadyExists`, ….
    #[error("{1}")]
    Conflict(&'static str, String),
    /// `InvalidDefinition`, `InvalidName`, `InvalidArn`, `ValidationException`, ….
    #[error("{1}")]
    Invalid(&'static str, String),
    /// Strato's side failed.
    #[error("{0}")]
    Internal(String),
}

impl From<strato_store::StoreError> for WorkflowError {
    fn from(e: strato_store::StoreError) -> Self {
        Self::Internal(format!("the metadata store: {e}"))
    }
}

type Result<T> = std::result::Result<T, WorkflowError>;

/// A state machine as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateMachine {
    /// Its name.
    pub name: String,
    /// The definition, as given.
    pub definition: String,
    /// The role ARN clients send (kept and shown only).
    #[serde(default)]
    pub role_arn: String,
    /// `STANDARD` or `EXPRESS`.
    pub kind: String,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    #[serde(default)]
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A finished express execution.
#[derive(Debug, Clone)]
pub struct SyncExecution {
    /// Its ARN.
    pub arn: String,
    /// Its name.
    pub name: String,
    /// `SUCCEEDED`, `FAILED` or `TIMED_OUT`.
    pub status: &'static str,
    /// The output (succeeded).
    pub output: Option<Value>,
    /// The error (failed).
    pub error: Option<StatesError>,
    /// When it started and stopped.
    pub started: chrono::DateTime<chrono::Utc>,
    pub stopped: chrono::DateTime<chrono::Utc>,
}

/// Workflows: state machines and their executions.
#[derive(Clone)]
pub struct Workflows(Arc<Inner>);

pub(crate) struct Inner {
    store: Store,
    functions: Functions,
    region: String,
    account: String,
    /// Parsed definitions (and their sub-machines) of durable executions.
    pub(crate) machines: crate::durable::MachineCache,
    /// What `http:invoke` tasks may call.
    http: std::sync::RwLock<crate::http_task::HttpTasks>,
    /// How long an ended execution's records are kept (the job TTL; `None`: forever).
    pub(crate) keep_history: std::sync::RwLock<Option<std::time::Duration>>,
    /// The service, for Task states that run Strato's own jobs (set once it is open).
    pub(crate) service: std::sync::OnceLock<strato_service::Strato>,
    /// Strato's files (Map's `ItemReader` and `ResultWriter`), once the service's storage is known.
    items: std::sync::OnceLock<crate::items::ItemStore>,
    /// Told when a commit queues an activity task, so `GetActivityTask` answers without waiting for its next look.
    pub(crate) activity_queued: tokio::sync::Notify,
    /// Metrics per state machine, once registered with the service's.
    pub(crate) metrics: std::sync::OnceLock<crate::failures::WorkflowMetrics>,
    /// New executions whose first states this process runs at once (beyond these, a start goes to the queue).
    pub(crate) first_states: Arc<tokio::sync::Semaphore>,
    /// Capabilities' jobs as Task resources.
    pub(crate) job_resources: crate::jobs_task::JobResources,
}

impl From<WorkflowError> for strato_types::StratoError {
    /// Strato's native routes answer with Strato's error codes (the Step Functions protocol keeps AWS's names).
    fn from(e: WorkflowError) -> Self {
        use strato_types::ErrorCode;
        let code = match &e {
            WorkflowError::NotFound(..) => ErrorCode::ResourceNotFound,
            WorkflowError::Conflict(..) => ErrorCode::Conflict,
            WorkflowError::Invalid("InvalidName", _) => ErrorCode::InvalidName,
            WorkflowError::Invalid(..) => ErrorCode::InvalidRequest,
            WorkflowError::Internal(_) => ErrorCode::Internal,
        };
        strato_types::StratoError::new(code, e.to_string())
    }
}

/// Step Functions' names: 1-80 characters, none of whitespace, brackets, wildcards, or special characters.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.chars().count() > 80
        || name.chars().any(|c| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c));
    if bad {
        return Err(WorkflowError::Invalid("InvalidName", format!("Invalid Name: '{name}'")));
    }
    Ok(())
}

/// An execution's name: the one given (checked), or a new UUID.
pub(crate) fn execution_name(given: Option<&str>) -> Result<String> {
    match given {
        Some(n) => {
            validate_name(n)?;
            Ok(n.to_string())
        }
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

impl Workflows {
    /// Workflows over the store, calling `functions` for Lambda tasks.
    pub fn new(store: Store, functions: Functions) -> Self {
        let region = functions.options().region.clone();
        let account = functions.options().account.clone();
        Self(Arc::new(Inner {
            store,
            functions,
            region,
            account,
            machines: Default::default(),
            http: Default::default(),
            items: Default::default(),
            service: Default::default(),
            keep_history: std::sync::RwLock::new(Some(strato_jobs::DEFAULT_JOB_TTL)),
            activity_queued: Default::default(),
            metrics: Default::default(),
            first_states: Arc::new(tokio::sync::Semaphore::new(crate::durable::FIRST_STATES_AT_ONCE)),
            job_resources: Default::default(),
        }))
    }

    /// Counts executions and transitions per state machine into `registry` (the service's `/metrics`).
    pub fn observe(&self, registry: &prometheus::Registry) {
        if let Some(m) = crate::failures::WorkflowMetrics::new(registry) {
            let _ = self.0.metrics.set(m);
        }
    }

    /// Lets `http:invoke` tasks call these hosts (`host` or `host:port`; `*`: any); none by default.
    pub fn allow_http(&self, hosts: Vec<String>) {
        *self.0.http.write().unwrap_or_else(|e| e.into_inner()) = crate::http_task::HttpTasks::new(hosts);
    }

    /// Keeps an ended execution's history this long (`None`: forever); the job TTL by default.
    pub fn keep_history_for(&self, keep: Option<std::time::Duration>) {
        *self.0.keep_history.write().unwrap_or_else(|e| e.into_inner()) = keep;
    }

    pub(crate) fn history_ttl(&self) -> Option<std::time::Duration> {
        *self.0.keep_history.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives Map's `ItemReader` and `ResultWriter` the service's files.
    pub fn use_storage(&self, blobs: strato_blob::BlobStore) {
        let _ = self.0.items.set(crate::items::ItemStore::new(blobs));
    }

    pub(crate) fn items(&self) -> Option<&crate::items::ItemStore> {
        self.0.items.get()
    }

    /// HTTP tasks as allowed now.
    pub(crate) fn http_tasks(&self) -> crate::http_task::HttpTasks {
        self.0.http.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn metrics(&self) -> Option<&crate::failures::WorkflowMetrics> {
        self.0.metrics.get()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// The metadata store.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The functions Task states call.
    pub fn functions(&self) -> &Functions {
        &self.0.functions
    }

    /// The region ARNs name.
    pub fn region(&self) -> String {
        self.0.region.clone()
    }

    /// The account ARNs name.
    pub fn account(&self) -> String {
        self.0.account.clone()
    }

    /// A standard execution's ARN.
    pub fn execution_arn(&self, machine: &str, name: &str) -> String {
        format!("arn:aws:states:{}:{}:execution:{machine}:{name}", self.0.region, self.0.account)
    }

    /// The ARN of the execution `<machine>:<name>`.
    pub fn execution_arn_of(&self, key: &str) -> String {
        let (m, n) = key.split_once(':').unwrap_or((key, ""));
        self.execution_arn(m, n)
    }

    /// The execution (`<machine>:<name>`) an execution ARN names.
    pub fn execution_of(&self, arn: &str) -> Result<String> {
        let prefix = format!("arn:aws:states:{}:{}:execution:", self.0.region, self.0.account);
        match arn.strip_prefix(&prefix).and_then(|rest| rest.split_once(':')) {
            Some((m, n)) if !m.is_empty() && !n.is_empty() && !n.contains(':') => Ok(format!("{m}:{n}")),
            _ => Err(WorkflowError::Invalid(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            )),
        }
    }

    /// A state machine's ARN.
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:states:{}:{}:stateMachine:{name}", self.0.region, self.0.account)
    }

    /// The name a state machine ARN names.
    pub fn name_of(&self, arn: &str) -> Result<String> {
        let prefix = format!("arn:aws:states:{}:{}:stateMachine:", self.0.region, self.0.account);
        match arn.strip_prefix(&prefix) {
            Some(name) if !name.is_empty() && !name.contains(':') => Ok(name.to_string()),
            _ => Err(WorkflowError::Invalid(
                "InvalidArn",
                format!("Invalid Arn: 'Resource type not valid in this context: {arn}'"),
            )),
        }
    }

    /// Checks a definition: every problem at once.
    pub fn validate(&self, definition: &str) -> std::result::Result<Machine, Vec<Diagnostic>> {
        Machine::parse(definition)
    }

    fn machine_of(&self, d: &Document) -> Result<StateMachine> {
        serde_json::from_value(d.body.clone())
            .map_err(|e| WorkflowError::Internal(format!("stored state machine {:?} is unreadable: {e}", d.id)))
    }

    /// Creates a state machine.
    pub async fn create(
        &self,
        name: &str,
        definition: &str,
        role_arn: &str,
        kind: &str,
        description: &str,
    ) -> Result<StateMachine> {
        validate_name(name)?;
        if !matches!(kind, "STANDARD" | "EXPRESS") {
            return Err(WorkflowError::Invalid(
                "ValidationException",
                format!("type {kind:?} must be STANDARD or EXPRESS"),
            ));
        }
        self.validate(definition).map_err(invalid_definition)?;
        let sm = StateMachine {
            name: name.into(),
            definition: definition.into(),
            role_arn: role_arn.into(),
            kind: kind.into(),
            created_at: chrono::Utc::now(),
            updated_at: None,
            description: description.into(),
        };
        let body = serde_json::to_value(&sm).map_err(|e| WorkflowError::Internal(e.to_string()))?;
        match self.0.store.documents().create(MACHINE_DOC, name, &body).await? {
            Some(_) => Ok(sm),
            None => Err(WorkflowError::Conflict(
                "StateMachineAlreadyExists",
                format!("State Machine Already Exists: '{}'", self.arn(name)),
            )),
        }
    }

    /// One state machine.
    pub async fn get(&self, name: &str) -> Result<StateMachine> {
        let d = self.0.store.documents().get(MACHINE_DOC, name).await?.ok_or_else(|| self.missing(name))?;
        self.machine_of(&d)
    }

    fn missing(&self, name: &str) -> WorkflowError {
        WorkflowError::NotFound(
            "StateMachineDoesNotExist",
            format!("State Machine Does Not Exist: '{}'", self.arn(name)),
        )
    }

    /// Every state machine, by name.
    pub async fn list(&self) -> Result<Vec<StateMachine>> {
        let docs = self.0.store.documents().list(MACHINE_DOC, "").await?;
        docs.iter().map(|d| self.machine_of(d)).collect()
    }

    /// Changes a state machine's definition or role.
    pub async fn update(&self, name: &str, definition: Option<&str>, role_arn: Option<&str>) -> Result<StateMachine> {
        if let Some(d) = definition {
            self.validate(d).map_err(invalid_definition)?;
        }
        for _ in 0..5 {
            let current = self.0.store.documents().get(MACHINE_DOC, name).await?.ok_or_else(|| self.missing(name))?;
            let mut sm = self.machine_of(&current)?;
            if let Some(d) = definition {
                sm.definition = d.into();
            }
            if let Some(r) = role_arn {
                sm.role_arn = r.into();
            }
            sm.updated_at = Some(chrono::Utc::now());
            let body = serde_json::to_value(&sm).map_err(|e| WorkflowError::Internal(e.to_string()))?;
            if self.0.store.documents().update(MACHINE_DOC, name, current.revision, &body).await?.is_some() {
                return Ok(sm);
            }
        }
        Err(WorkflowError::Conflict(
            "ConflictException",
            format!("state machine {name:?} is being changed by someone else"),
        ))
    }

    /// Deletes a state machine (deleting one that does not exist succeeds, as AWS's does).
    pub async fn delete(&self, name: &str) -> Result<()> {
        self.0.store.documents().delete(MACHINE_DOC, name).await?;
        self.delete_versions_and_aliases(name).await
    }

    /// Runs an express execution to its end, in memory (at most once; nothing is stored).
    pub async fn start_sync(
        &self,
        name: &str,
        execution: Option<&str>,
        input: Value,
        identity: Option<Value>,
    ) -> Result<SyncExecution> {
        // `name` may carry a version or an alias (`<machine>:<qualifier>`).
        let sm = self.resolve(name).await?.machine;
        let name = sm.name.as_str();
        if sm.kind != "EXPRESS" {
            return Err(WorkflowError::Invalid(
                "StateMachineTypeNotSupported",
                "This operation is not supported by this type of state machine".into(),
            ));
        }
        let machine = self.validate(&sm.definition).map_err(invalid_definition)?;
        let exec_name = execution_name(execution)?;
        let arn = format!(
            "arn:aws:states:{}:{}:express:{name}:{exec_name}:{}",
            self.0.region,
            self.0.account,
            uuid::Uuid::new_v4()
        );
        let started = chrono::Utc::now();
        let context = json!({
            "Execution": {"Id": arn, "Input": input, "Name": exec_name, "RoleArn": sm.role_arn,
                "StartTime": started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)},
            "StateMachine": {"Id": self.arn(name), "Name": name},
        });
        let runner = FunctionTasks::new(self.0.functions.clone(), identity, None)
            .with_http(self.http_tasks())
            .with_items(self.items().cloned());
        let run = interpreter::run(&machine, input, &context, crate::path::Vars::new(), &runner);
        let outcome = match machine.timeout_seconds {
            Some(t) => tokio::time::timeout(std::time::Duration::from_secs(t), run).await.ok(),
            None => Some(run.await),
        };
        let stopped = chrono::Utc::now();
        let (status, output, error) = match outcome {
            None => ("TIMED_OUT", None, Some(StatesError::new("States.Timeout", "The execution timed out"))),
            Some(Ok(out)) => ("SUCCEEDED", Some(out), None),
            Some(Err(e)) => ("FAILED", None, Some(e)),
        };
        Ok(SyncExecution { arn, name: exec_name, status, output, error, started, stopped })
    }
}

/// What `TestState` reports of one state run in isolation.
#[derive(Debug, Clone)]
pub struct TestedState {
    /// `SUCCEEDED`, `FAILED` or `CAUGHT_ERROR`.
    pub status: &'static str,
    /// The state's output (succeeded or caught).
    pub output: Option<Value>,
    /// The next state, if the machine would go on.
    pub next_state: Option<String>,
    /// The error (failed or caught).
    pub error: Option<StatesError>,
}

impl Workflows {
    /// Runs one state (its definition alone) on `input` with `variables` in scope, as `TestState` does: Task states
    /// call Strato's functions.
    pub async fn test_state(
        &self,
        definition: &str,
        input: Value,
        variables: crate::path::Vars,
        identity: Option<Value>,
    ) -> Result<TestedState> {
        let state: crate::definition::State = serde_json::from_str(definition)
            .map_err(|e| WorkflowError::Invalid("InvalidDefinition", format!("Invalid State Definition: '{e}'")))?;
        // Checked as the only state of a machine, with its transitions pointing at placeholders.
        let mut states = std::collections::BTreeMap::new();
        let mut targets: Vec<String> = state.next.iter().chain(state.default.iter()).cloned().collect();
        targets.extend(state.catch.iter().flatten().map(|c| c.next.clone()));
        targets.extend(
            state.choices.iter().flatten().filter_map(|c| c.get("Next").and_then(Value::as_str).map(String::from)),
        );
        for t in &targets {
            states.insert(t.clone(), serde_json::from_value(json!({"Type": "Succeed"})).expect("a Succeed state"));
        }
        states.insert("State".to_string(), state.clone());
        let machine = Machine {
            start_at: "State".into(),
            states,
            comment: None,
            version: None,
            timeout_seconds: None,
            query_language: None,
        };
        let checked =
            Machine::from_value(&serde_json::to_value(&machine).map_err(|e| WorkflowError::Internal(e.to_string()))?)
                .map_err(invalid_definition)?;
        // The state as given (a round trip through JSON would read its absent paths as `null`), with its query
        // language resolved.
        let mut state = state;
        state.query_language = checked.states["State"].query_language.clone();
        let context = json!({"Execution": {"Id": "test-state", "Input": input, "Name": "test-state"}, "StateMachine": {"Id": "test-state", "Name": "test-state"}});
        let runner = FunctionTasks::new(self.0.functions.clone(), identity, None)
            .with_http(self.http_tasks())
            .with_items(self.items().cloned());
        let caught_before = state.catch.is_some();
        Ok(match interpreter::step("State", &state, input, &context, &variables, &runner).await {
            Ok((output, next, _)) => {
                // A caught error leaves its {"Error", "Cause"} in the output and goes to the catcher's Next.
                let caught = caught_before
                    && next.as_ref().is_some_and(|n| {
                        state.catch.iter().flatten().any(|c| &c.next == n) && Some(n) != state.next.as_ref()
                    });
                TestedState {
                    status: if caught { "CAUGHT_ERROR" } else { "SUCCEEDED" },
                    output: Some(output),
                    next_state: next,
                    error: None,
                }
            }
            Err(e) => TestedState { status: "FAILED", output: None, next_state: None, error: Some(e) },
        })
    }
}

fn invalid_definition(problems: Vec<Diagnostic>) -> WorkflowError {
    let text: Vec<String> = problems.iter().map(|p| format!("{}: {} at {}", p.code, p.message, p.location)).collect();
    WorkflowError::Invalid("InvalidDefinition", format!("Invalid State Machine Definition: '{}'", text.join(", ")))
}

/// Task states calling Strato's functions: a function ARN (the result is the function's response), or
/// `arn:aws:states:::lambda:invoke` (the result is Lambda's response envelope).
pub struct FunctionTasks {
    functions: Functions,
    identity: Option<Value>,
    /// The invocation's request id: a durable task's idempotency token, the same for every attempt of one task.
    request_id: Option<String>,
    /// `http:invoke` tasks' allow-list and client (none: refused).
    http: Option<crate::http_task::HttpTasks>,
    /// Strato's files, for Map's `ItemReader` and `ResultWriter`.
    items: Option<crate::items::ItemStore>,
}

impl FunctionTasks {
    /// Tasks run as `identity`, each invocation carrying `request_id` when given.
    pub fn new(functions: Functions, identity: Option<Value>, request_id: Option<String>) -> Self {
        Self { functions, identity, request_id, http: None, items: None }
    }

    /// With Map's `ItemReader` and `ResultWriter` on these files.
    pub fn with_items(mut self, items: Option<crate::items::ItemStore>) -> Self {
        self.items = items;
        self
    }

    /// With `http:invoke` tasks allowed to call what `http` allows.
    pub fn with_http(mut self, http: crate::http_task::HttpTasks) -> Self {
        self.http = Some(http);
        self
    }
}

/// The function a Lambda ARN names, with its qualifier.
fn function_of(arn: &str) -> Option<(String, Option<String>)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name] => Some((name.to_string(), None)),
        ["arn", _, "lambda", _, _, "function", name, q] => Some((name.to_string(), Some(q.to_string()))),
        [name] if !name.is_empty() => Some((name.to_string(), None)),
        [name, q] => Some((name.to_string(), Some(q.to_string()))),
        _ => None,
    }
}

impl FunctionTasks {
    async fn invoke(&self, function: &str, payload: &Value) -> std::result::Result<(Value, String), StatesError> {
        let (name, qualifier) = function_of(function)
            .ok_or_else(|| StatesError::runtime(format!("{function:?} does not name a function")))?;
        let req = InvokeRequest {
            payload: serde_json::to_vec(payload).unwrap_or_default().into(),
            qualifier,
            identity: self.identity.clone(),
            request_id: self.request_id.clone(),
            ..Default::default()
        };
        let r = self.functions.invoke(&name, req).await.map_err(|e| match e {
            FunctionError::NotFound(m) => StatesError::new("Lambda.ResourceNotFoundException", m),
            FunctionError::Throttled(m) => StatesError::new("Lambda.TooManyRequestsException", m),
            FunctionError::TooLarge(m) => StatesError::new("Lambda.RequestTooLargeException", m),
            e => StatesError::new("Lambda.ServiceException", e.to_string()),
        })?;
        let body: Value = serde_json::from_slice(&r.payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.payload).into()));
        if r.function_error.is_some() {
            // Lambda's rule: the handler's errorType is the error, its whole error document the cause.
            let error = body.get("errorType").and_then(Value::as_str).unwrap_or("Lambda.Unknown").to_string();
            return Err(StatesError::new(error, String::from_utf8_lossy(&r.payload)));
        }
        Ok((body, r.executed_version))
    }
}

#[async_trait]
impl TaskRunner for FunctionTasks {
    fn items(&self) -> Option<&crate::items::ItemStore> {
        self.items.as_ref()
    }

    async fn run(&self, resource: &str, input: Value, _: &Value) -> std::result::Result<Value, StatesError> {
        if resource == "arn:aws:states:::lambda:invoke" {
            let function = input
                .get("FunctionName")
                .and_then(Value::as_str)
                .ok_or_else(|| StatesError::runtime("arn:aws:states:::lambda:invoke needs Parameters.FunctionName"))?;
            let payload = input.get("Payload").cloned().unwrap_or(json!({}));
            let (body, version) = self.invoke(function, &payload).await?;
            return Ok(json!({"ExecutedVersion": version, "Payload": body, "StatusCode": 200,
                "SdkHttpMetadata": {"HttpStatusCode": 200}, "SdkResponseMetadata": {}}));
        }
        if resource.starts_with("arn:aws:lambda:") {
            return Ok(self.invoke(resource, &input).await?.0);
        }
        if resource.starts_with(crate::jobs_task::STRATO) {
            return Err(StatesError::runtime(format!(
                "{resource} needs a standard execution: express executions and TestState run in memory"
            )));
        }
        if resource == crate::http_task::HTTP_INVOKE {
            return match &self.http {
                Some(h) => h.invoke(&input).await,
                None => Err(StatesError::runtime("http:invoke is not available here")),
            };
        }
        if crate::nested::is_start(resource) {
            return Err(StatesError::runtime(format!(
                "{resource} needs a standard execution: express executions and TestState run in memory"
            )));
        }
        if crate::activities::activity_of(resource).is_some() {
            return Err(StatesError::runtime(format!(
                "the activity {resource:?} needs a standard execution: express executions and TestState run in memory \
                 and cannot wait for a worker"
            )));
        }
        Err(StatesError::new(
            "States.Runtime",
            format!("resource {resource:?} is not supported yet: use a Lambda function ARN or arn:aws:states:::lambda:invoke"),
        ))
    }
}
