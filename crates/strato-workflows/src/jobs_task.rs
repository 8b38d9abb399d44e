//! Strato's own work as Task resources, so a workflow needs no glue code to retrain: `arn:aws:states:::strato:
//! trainModel` (`ModelId`, `Dataset` — a stored dataset's name —, `ForceUpdate`, default true: a new version) and
//! `…:strato:trainMentor` (`MentorId`) submit the training job and return `{JobId, Status}`; with `.sync` the task
//! waits for the job and returns `{JobId, Status, Result}`, or fails with `Strato.JobFailed` (the job's error as
//! the cause). A task's retry submits with the same idempotency key, so it never trains twice.
//!
//! Waiting holds no worker: the frame parks on a token, and a `workflow.await-job` job looks at the training job
//! every two seconds until it ends, then applies its end to the frame.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, JobStatus, NewJob, QueueName};

use crate::durable::Outcome;
use crate::error::StatesError;
use crate::service::Workflows;

/// The resources' common prefix.
pub const STRATO: &str = "arn:aws:states:::strato:";

/// How often a waiting task looks at its job.
const POLL: Duration = Duration::from_secs(2);

/// Whether a resource is one of Strato's jobs (any pattern).
pub fn is_job(resource: &str) -> bool {
    resource.strip_prefix(STRATO).is_some_and(|a| matches!(a.trim_end_matches(".sync"), "trainModel" | "trainMentor"))
}

/// Whether a Strato job resource waits for its job (`.sync`).
pub fn is_job_sync(resource: &str) -> bool {
    is_job(resource) && resource.ends_with(".sync")
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
        let strato = self.inner().service.get().ok_or_else(|| {
            StatesError::runtime(format!("{resource}: Strato's jobs are not available in this process"))
        })?;
        let text = |field: &str| -> Result<String, StatesError> {
            params
                .get(field)
                .and_then(Value::as_str)
                .map(String::from)
                .ok_or_else(|| StatesError::runtime(format!("{resource} needs Parameters.{field}, a string")))
        };
        let idempotency = Some(format!("sfn:{request_id}"));
        let action = resource.strip_prefix(STRATO).unwrap_or_default().trim_end_matches(".sync");
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
        let job = w.store().queue().get(&a.job).await.map_err(|e| JobError::Retryable(e.to_string()))?;
        let outcome = match job {
            None => Outcome::Error(StatesError::new("Strato.JobFailed", format!("job {} no longer exists", a.job))),
            Some(j) if !j.status.is_final() => {
                // Not yet: look again later (this job ends; the next one is due then).
                let next = await_job(&a, POLL)
                    .ok_or_else(|| JobError::Permanent("the watcher could not be encoded".into()))?;
                w.store().queue().enqueue(next).await.map_err(|e| JobError::Retryable(e.to_string()))?;
                return Ok(json!({"waiting": j.status.as_str()}));
            }
            Some(j) if j.status == JobStatus::Success => Outcome::Result(job_view(&j)),
            Some(j) => Outcome::Error(StatesError::new(
                "Strato.JobFailed",
                format!(
                    "job {} ({}) ended {}: {}",
                    j.id,
                    j.kind.as_str(),
                    j.status.as_str(),
                    j.error.unwrap_or_default()
                ),
            )),
        };
        let applied = w
            .resolve_token(&a.execution, &a.frame, &a.token, Some(outcome), Vec::new())
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        Ok(json!({"applied": applied}))
    }
}
