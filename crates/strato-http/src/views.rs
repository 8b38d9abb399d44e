//! Response shapes of the native API, kept apart from stored records.

use serde::Serialize;
use strato_types::{DatasetRecord, JobAttempt, JobRecord, ModelRecord, ModelVersionRecord, Timestamp};

#[derive(Serialize)]
pub(crate) struct DatasetView {
    pub name: String,
    pub rows: i64,
    pub labels: Vec<String>,
    pub format: String,
    pub size_bytes: i64,
    pub created_at: Timestamp,
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

#[derive(Serialize)]
pub(crate) struct JobView {
    pub id: String,
    pub kind: &'static str,
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
    pub dead_lettered_at: Option<Timestamp>,
    pub timeout_secs: i64,
    pub run_after: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

#[derive(Serialize)]
pub(crate) struct AttemptView {
    pub attempt: i32,
    pub worker: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
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

#[derive(Serialize)]
pub(crate) struct ModelSummaryView {
    pub id: String,
    pub active_version: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<ModelRecord> for ModelSummaryView {
    fn from(m: ModelRecord) -> Self {
        Self { id: m.id, active_version: m.active_version, created_at: m.created_at, updated_at: m.updated_at }
    }
}

#[derive(Serialize)]
pub(crate) struct VersionView {
    pub version: i64,
    pub active: bool,
    pub metrics: serde_json::Value,
    pub params: serde_json::Value,
    pub job_id: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Serialize)]
pub(crate) struct ModelView {
    pub id: String,
    pub active_version: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
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
