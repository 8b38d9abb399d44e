//! Strato's own work as Task resources, so a workflow needs no glue code: `arn:aws:states:::strato:trainModel`
//! (`ModelId`, `Dataset` — a stored dataset's name —, `ForceUpdate`, default true: a new version) and
//! `…:strato:trainMentor` (`MentorId`) submit the training job, and any capability adds its own job kinds
//! ([`Workflows::register_job_resource`]: the media steps' `…:strato:media.transcodeWeb` and the like). A task
//! returns `{JobId, Status}`; with `.sync` it waits for the job and returns `{JobId, Status, Result}`, or fails with
//! `Strato.JobFailed` (the job's error as the cause). A task's retry submits with the same idempotency key, so it
//! never runs the job twice.
//!
//! Waiting holds no worker: the frame parks on a token. The job's end wakes it at once: the worker pool announces
//! the end ([`Workflows::end_hook`]) and the task's waiter (a document per job) applies it to the frame. A
//! `workflow.await-job` job also looks at the job when it is submitted and every few seconds after, for ends the
//! pool does not announce (a job cancelled while queued, a lease reaped into the dead-letter queue, a process that
//! died between the end and the announcement).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, JobStatus, NewJob, QueueName};

use crate::durable::Outcome;
use crate::error::StatesError;
use crate::service::{WorkflowError, Workflows};

/// The resources' common prefix.
pub const STRATO: &str = "arn:aws:states:::strato:";

/// How often a waiting task looks at its job, beside the announcement of its end.
const POLL: Duration = Duration::from_secs(5);

/// Documents: the task waiting on a job, by job id (an [`AwaitJobArgs`]).
const WAITER_DOC: &str = "sfn-job-waiter";

/// The built-in resources, which need the service.
const TRAINING: [&str; 2] = ["trainModel", "trainMentor"];

/// Builds the job a registered resource runs from the task's parameters (the idempotency key is set by the caller).
pub type BuildJob = Arc<dyn Fn(&Value) -> Result<NewJob, StatesError> + Send + Sync>;

/// Job resources registered by capabilities, by action (`media.transcodeWeb`).
#[derive(Default)]
pub(crate) struct JobResources(std::sync::RwLock<BTreeMap<String, BuildJob>>);

/// A resource's action: `trainModel` of `arn:aws:states:::strato:trainModel.sync`.
fn action(resource: &str) -> Option<&str> {
    resource.strip_prefix(STRATO).map(|a| a.trim_end_matches(".sync"))
}

/// What a task reports of a job.
pub(crate) fn job_view(job: &JobRecord) -> Value {
    let mut v = json!({"JobId": job.id, "Status": job.status.as_str()});
    if let Some(r) = &job.result {
        v["Result"] = r.clone();
    }
    v
}

/// A submission's refusal as the task's error: `Strato.NotFound` (dataset, model or mentor), `Strato.ServiceException`
/// (Strato's side), `Strato.InvalidRequest` (anything else the request got wrong).
fn task_error(e: strato_types::StratoError) -> StatesError {
    use strato_types::ErrorCode;
    let name = match e.code {
        c if c.as_str().ends_with("not_found") => "Strato.NotFound",
        ErrorCode::Internal | ErrorCode::StorageUnavailable => "Strato.ServiceException",
        _ => "Strato.InvalidRequest",
    };
    StatesError::new(name, e.message)
}

impl Workflows {
    /// Whether a resource is one of Strato's jobs (any pattern).
    pub fn is_job(&self, resource: &str) -> bool {
        action(resource).is_some_and(|a| {
            TRAINING.contains(&a) || self.inner().job_resources.0.read().map(|m| m.contains_key(a)).unwrap_or(false)
        })
    }

    /// Whether a Strato job resource waits for its job (`.sync`).
    pub fn is_job_sync(&self, resource: &str) -> bool {
        self.is_job(resource) && resource.ends_with(".sync")
    }

    /// Makes `arn:aws:states:::strato:<action>[.sync]` a Task resource that runs the job `build` makes from the
    /// task's parameters. Register the job's kind with [`Workflows::end_hook`] too, so `.sync` tasks wake at its end.
    pub fn register_job_resource(&self, action: &str, build: BuildJob) {
        if let Ok(mut m) = self.inner().job_resources.0.write() {
            m.insert(action.to_string(), build);
        }
    }

    /// The worker pool's announcement of a job's end (`Workers::on_end`): the task waiting on it, if any, resumes.
    pub fn end_hook(&self) -> strato_jobs::EndHook {
        let w = self.clone();
        Arc::new(move |id: &str, _: &JobKind| {
            let (w, id) = (w.clone(), id.to_string());
            tokio::spawn(async move {
                if let Err(e) = w.job_ended(&id).await {
                    tracing::warn!(job = %id, error = %e, "a waiting task could not hear of its job's end; its watcher will");
                }
            });
        })
    }

    /// Applies the end of job `id` to the task waiting on it.
    async fn job_ended(&self, id: &str) -> Result<(), WorkflowError> {
        let Some(doc) = self.store().documents().get(WAITER_DOC, id).await? else { return Ok(()) };
        let Ok(args) = serde_json::from_value::<AwaitJobArgs>(doc.body) else { return Ok(()) };
        if apply_end(self, &args).await?.is_some() {
            self.store().documents().delete(WAITER_DOC, id).await?;
        }
        Ok(())
    }

    /// Records that a task waits on a job (the announcement of the job's end looks it up).
    pub(crate) async fn wait_for_job(&self, args: &AwaitJobArgs) -> Result<(), WorkflowError> {
        let body = serde_json::to_value(args).unwrap_or_default();
        Ok(self.store().documents().create(WAITER_DOC, &args.job, &body).await.map(|_| ())?)
    }

    /// Whether the machine a start names (`<machine>[:<qualifier>]`) runs Strato's own jobs: starting it takes an
    /// administrator, since its tasks train models and mentors with the service's authority.
    pub async fn runs_strato_jobs(&self, target: &str) -> Result<bool, crate::service::WorkflowError> {
        Ok(self.resolve(target).await?.machine.definition.contains(STRATO))
    }

    /// Lets Task states submit Strato's own jobs (training) to this service.
    pub fn use_service(&self, strato: strato_service::Strato) {
        let _ = self.inner().service.set(strato);
    }

    /// Submits the job a Strato resource names, with `request_id` as its idempotency key.
    pub(crate) async fn submit_job(
        &self,
        resource: &str,
        params: &Value,
        request_id: &str,
    ) -> Result<JobRecord, StatesError> {
        let text = |field: &str| -> Result<String, StatesError> {
            params
                .get(field)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| StatesError::runtime(format!("{resource} needs Parameters.{field}, a string")))
        };
        let idempotency = Some(format!("sfn:{request_id}"));
        let action = action(resource).unwrap_or_default();
        let registered = self.inner().job_resources.0.read().ok().and_then(|m| m.get(action).cloned());
        if let Some(build) = registered {
            let mut job = build(params)?;
            job.idempotency_key = idempotency;
            let queued = self.store().queue().enqueue(job).await;
            return queued.map(|e| e.job).map_err(|e| StatesError::new("Strato.ServiceException", e.to_string()));
        }
        let strato = self.inner().service.get().ok_or_else(|| {
            StatesError::runtime(format!("{resource}: Strato's jobs are not available in this process"))
        })?;
        match action {
            "trainModel" => {
                let req = strato_service::TrainRequest {
                    model_id: text("ModelId")?,
                    data: strato_service::DataSource::Dataset(text("Dataset")?),
                    params: Default::default(),
                    force_update: params.get("ForceUpdate").and_then(Value::as_bool).unwrap_or(true),
                    meta: json!({"started_by": "workflow"}),
                    idempotency_key: idempotency,
                };
                strato.models().submit_training(req).await.map_err(task_error)
            }
            "trainMentor" => {
                strato.mentors().submit_training(&text("MentorId")?, idempotency).await.map_err(task_error)
            }
            other => Err(StatesError::runtime(format!("{STRATO}{other} is not one of Strato's task resources"))),
        }
    }
}

/// The `workflow.await-job` job: a `.sync` Strato task's job, watched for its end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwaitJobArgs {
    /// The job.
    pub job: String,
    /// The execution, frame and token of the task that waits.
    pub execution: String,
    pub frame: String,
    pub token: String,
}

impl JobArgs for AwaitJobArgs {
    const KIND: JobKind = JobKind::new("workflow.await-job");

    fn defaults() -> JobDefaults {
        JobDefaults {
            queue: QueueName::new("workflows"),
            timeout: Duration::from_secs(60),
            max_attempts: 10,
            priority: 0,
        }
    }
}

/// The watcher of `job` for a task waiting on `token`, due `after` from now.
pub(crate) fn await_job(args: &AwaitJobArgs, after: Duration) -> Option<NewJob> {
    let mut job = NewJob::of(args).ok()?;
    job.run_after = Some(chrono::Utc::now() + chrono::Duration::from_std(after).ok()?);
    Some(job)
}

/// Runs `workflow.await-job` jobs.
pub struct AwaitJobWorker {
    workflows: Workflows,
}

impl AwaitJobWorker {
    /// A worker over `workflows`.
    pub fn new(workflows: Workflows) -> Self {
        Self { workflows }
    }
}

#[async_trait]
impl Worker for AwaitJobWorker {
    type Args = AwaitJobArgs;

    async fn work(&self, a: AwaitJobArgs, _: &JobRecord, _: &JobContext) -> Result<Value, JobError> {
        let w = &self.workflows;
        match apply_end(w, &a).await.map_err(|e| JobError::Retryable(e.to_string()))? {
            Some(applied) => {
                let _ = w.store().documents().delete(WAITER_DOC, &a.job).await;
                Ok(json!({"applied": applied}))
            }
            None => {
                // Not yet: look again later (this job ends; the next one is due then).
                let next = await_job(&a, POLL)
                    .ok_or_else(|| JobError::Permanent("the watcher could not be encoded".into()))?;
                w.store().queue().enqueue(next).await.map_err(|e| JobError::Retryable(e.to_string()))?;
                Ok(json!({"waiting": true}))
            }
        }
    }
}

/// Applies the job's end to the waiting task: `None` while the job runs, else whether the task took it (a task
/// that already heard, or that was stopped, ignores it).
async fn apply_end(w: &Workflows, a: &AwaitJobArgs) -> Result<Option<bool>, WorkflowError> {
    let job = w.store().queue().get(&a.job).await?;
    let outcome = match job {
        None => Outcome::Error(StatesError::new("Strato.JobFailed", format!("job {} no longer exists", a.job))),
        Some(j) if !j.status.is_final() => return Ok(None),
        Some(j) if j.status == JobStatus::Success => Outcome::Result(job_view(&j)),
        Some(j) => Outcome::Error(StatesError::new(
            "Strato.JobFailed",
            format!("job {} ({}) ended {}: {}", j.id, j.kind.as_str(), j.status.as_str(), j.error.unwrap_or_default()),
        )),
    };
    w.resolve_token(&a.execution, &a.frame, &a.token, Some(outcome), Vec::new()).await.map(Some)
}
