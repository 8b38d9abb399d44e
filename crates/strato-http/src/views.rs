//! Response shapes of the native API, kept apart from stored records.

use chrono::{DateTime, Utc};
use serde::Serialize;
use strato_ml::Scored;
use strato_types::{
    ApiKeyRecord, AttemptEnd, DatasetRecord, JobAttempt, JobKind, JobRecord, JobStatus, ModelRecord,
    ModelVersionRecord, UsagePlan, UserQuestionRecord,
};
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetView {
    pub name: String,
    pub rows: i64,
    pub labels: Vec<String>,
    pub format: String,
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
}

impl From<DatasetRecord> for DatasetView {
    fn from(r: DatasetRecord) -> Self {
        Self {
            name: r.name,
            rows: r.rows,
            labels: r.labels,
            format: r.format,
            size_bytes: r.size_bytes,
            created_at: r.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct JobView {
    pub id: String,
    #[schema(value_type = JobKind)]
    pub kind: &'static str,
    #[schema(value_type = JobStatus)]
    pub status: &'static str,
    pub key: Option<String>,
    pub priority: i32,
    pub progress: i32,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    /// Attempts started so far (the `attempts` list has their history, on single-job responses).
    pub attempt_count: i32,
    pub max_attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
    pub cancel_requested: bool,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    pub timeout_secs: i64,
    pub run_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AttemptView {
    pub attempt: i32,
    pub worker: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    #[schema(value_type = AttemptEnd)]
    pub outcome: &'static str,
    pub error: Option<String>,
}

impl JobView {
    /// The view with the attempt history (single-job responses).
    pub fn with_attempts(j: JobRecord, attempts: Vec<JobAttempt>) -> Self {
        let mut v = Self::from(j);
        v.attempts = Some(
            attempts
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    worker: a.worker,
                    started_at: a.started_at,
                    finished_at: a.finished_at,
                    outcome: a.outcome.as_str(),
                    error: a.error,
                })
                .collect(),
        );
        v
    }
}

impl From<JobRecord> for JobView {
    fn from(j: JobRecord) -> Self {
        Self {
            id: j.id,
            kind: j.kind.as_str(),
            status: j.status.as_str(),
            key: j.key,
            priority: j.priority,
            progress: j.progress,
            error: j.error,
            result: j.result,
            attempt_count: j.attempts,
            max_attempts: j.max_attempts,
            attempts: None,
            cancel_requested: j.cancel_requested,
            dead_lettered_at: j.dead_lettered_at,
            timeout_secs: j.timeout_ms / 1000,
            run_after: j.run_after,
            created_at: j.created_at,
            updated_at: j.updated_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ModelSummaryView {
    pub id: String,
    pub active_version: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ModelRecord> for ModelSummaryView {
    fn from(m: ModelRecord) -> Self {
        Self { id: m.id, active_version: m.active_version, created_at: m.created_at, updated_at: m.updated_at }
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct VersionView {
    pub version: i64,
    pub active: bool,
    pub metrics: serde_json::Value,
    pub params: serde_json::Value,
    pub job_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ModelView {
    pub id: String,
    pub active_version: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub versions: Vec<VersionView>,
}

impl ModelView {
    pub(crate) fn new(model: ModelRecord, versions: Vec<ModelVersionRecord>) -> Self {
        let active = model.active_version;
        Self {
            versions: versions
                .into_iter()
                .map(|v| VersionView {
                    active: Some(v.version) == active,
                    version: v.version,
                    metrics: v.metrics,
                    params: v.params,
                    job_id: v.job_id,
                    created_at: v.created_at,
                })
                .collect(),
            id: model.id,
            active_version: active,
            created_at: model.created_at,
            updated_at: model.updated_at,
        }
    }
}

/// `GET /v1/datasets`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetList {
    pub datasets: Vec<DatasetView>,
}

/// A dataset as stored by `PUT /v1/datasets/{name}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct DatasetStored {
    pub name: String,
    pub rows: i64,
    pub labels: Vec<String>,
    /// `csv`, `jsonl`, `json` or `spacy`.
    pub format: String,
}

/// A training job accepted by `POST /v1/models`.
#[derive(Serialize, ToSchema)]
pub(crate) struct TrainAccepted {
    pub job_id: String,
    pub model_id: String,
    #[schema(value_type = JobStatus)]
    pub status: &'static str,
    /// Where to follow the job.
    pub status_url: String,
}

/// `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ModelList {
    pub models: Vec<ModelSummaryView>,
}

/// Ranked labels, one list per text.
#[derive(Serialize, ToSchema)]
pub(crate) struct PredictView {
    pub model_id: String,
    /// The version that answered.
    pub version: i64,
    pub predictions: Vec<Vec<Scored>>,
}

/// A list of jobs (`GET /v1/jobs`, `GET /v1/dlq`).
#[derive(Serialize, ToSchema)]
pub(crate) struct JobList {
    pub jobs: Vec<JobView>,
}

/// A job just submitted, with where to follow it.
#[derive(Serialize, ToSchema)]
pub(crate) struct SubmittedJob {
    #[serde(flatten)]
    pub job: JobView,
    pub status_url: String,
    /// The mentor being trained (mentor training only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentor: Option<String>,
}

impl SubmittedJob {
    pub(crate) fn new(job: JobRecord, mentor: Option<String>) -> Self {
        let status_url = format!("/v1/jobs/{}", job.id);
        Self { job: job.into(), status_url, mentor }
    }
}

/// The answer to `POST /v1/jobs/{id}/cancel`.
#[derive(Serialize, ToSchema)]
pub(crate) struct CancelView {
    #[serde(flatten)]
    pub job: JobView,
    /// `cancelled` (it had not started) or `requested` (the running attempt is told to stop).
    pub cancel: &'static str,
}

/// `GET /v1/mentors/{id}/user-questions`.
#[derive(Serialize, ToSchema)]
pub(crate) struct UserQuestionList {
    pub user_questions: Vec<UserQuestionRecord>,
}

/// An API key as shown to admins: never its secret or hash.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// `admin`, `editor` or `user`.
    pub role: String,
    pub models: Vec<String>,
    pub mentors: Vec<String>,
    pub plan: UsagePlan,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.clone(),
            models: k.models.clone(),
            mentors: k.mentors.clone(),
            plan: k.plan.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A new API key with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// Send it as `x-api-key`; only its SHA-256 is kept.
    pub secret: String,
}

/// `GET /v1/api-keys`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApiKeyList {
    pub api_keys: Vec<ApiKeyView>,
}
