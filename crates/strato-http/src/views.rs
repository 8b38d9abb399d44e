//! Response shapes of the native API, kept apart from stored records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strato_types::{
    ApiKeyRecord, AttemptEnd, DatasetRecord, Grant, JobAttempt, JobRecord, JobStatus, Media, ModelRecord,
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
    /// What the job does (`train_model`, `train_mentor`, `noop`, or a capability's kind).
    #[schema(pattern = "^[a-z][a-z0-9_.-]{0,63}$", example = "noop")]
    pub kind: String,
    /// The queue it waits in.
    #[schema(example = "default")]
    pub queue: String,
    #[schema(value_type = JobStatus)]
    pub status: &'static str,
    pub key: Option<String>,
    /// The resource it works on (`model:<id>`, `mentor:<id>`, …).
    pub resource: Option<String>,
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
            kind: j.kind.into(),
            queue: j.queue.into(),
            status: j.status.as_str(),
            key: j.key,
            resource: j.resource.map(|r| r.to_string()),
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
    pub predictions: Vec<Vec<ScoredView>>,
}

/// A label and its probability.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScoredView {
    /// Label.
    pub label: String,
    /// Probability.
    pub score: f32,
}

impl From<strato_ml::Scored> for ScoredView {
    fn from(s: strato_ml::Scored) -> Self {
        Self { label: s.label, score: s.score }
    }
}

/// Training parameters (what `params` of a training request accepts; every field has a default). Documents
/// `strato_ml::TrainParams`, which reads the body.
#[derive(ToSchema)]
#[allow(dead_code)] // the body is read as `TrainParams`; this type describes it
pub(crate) struct TrainParamsSchema {
    /// Inverse L2 strength (default 10).
    #[schema(rename = "C", exclusive_minimum = 0.0)]
    c: Option<f64>,
    /// `"balanced"` weights classes inversely to their frequency.
    class_weight: Option<String>,
    /// Optimiser iteration cap (default 500).
    #[schema(minimum = 1)]
    max_iter: Option<usize>,
    /// Stop when the largest gradient component falls below this (default 1e-4).
    #[schema(exclusive_minimum = 0.0)]
    tol: Option<f64>,
    /// Fraction held out per label for validation when the dataset has no `split` column (default 0.1).
    #[schema(minimum = 0.0, exclusive_maximum = 1.0)]
    val_fraction: Option<f64>,
    /// Seed of the validation split (default 42).
    seed: Option<u64>,
}

/// The answer to a user's question.
#[derive(Serialize, ToSchema)]
pub(crate) struct AnswerView {
    /// The question as asked.
    pub question: String,
    /// Id of the question answered ("" for off-topic).
    pub question_id: String,
    /// Id of the answer given.
    pub answer_id: String,
    /// Transcript.
    pub answer_text: String,
    /// Markdown transcript.
    pub answer_markdown_text: String,
    /// Media by use.
    pub answer_media: AnswerMediaView,
    /// External video ids.
    pub external_video_ids: serde_json::Value,
    /// Probability that the answer is right, in [0, 1]; 1 for exact matches.
    pub confidence: f64,
    /// Id of the recorded user question, for grading.
    pub feedback_id: String,
    /// Which classifier answered.
    pub classifier: String,
    /// The predicted answer no longer exists or is not answerable.
    pub answer_missing: bool,
    /// EXACT, PARAPHRASE, CLASSIFIER or OFF_TOPIC.
    pub answer_type: strato_types::AnswerType,
}

/// Media of an answer by use, as MentorPal clients expect.
#[derive(Serialize, ToSchema)]
pub(crate) struct AnswerMediaView {
    /// Video for the web.
    pub web_media: Option<Media>,
    /// Video for phones.
    pub mobile_media: Option<Media>,
    /// Subtitles.
    pub vtt_media: Option<Media>,
}

impl From<strato_service::AnswerResult> for AnswerView {
    fn from(a: strato_service::AnswerResult) -> Self {
        Self {
            question: a.question,
            question_id: a.question_id,
            answer_id: a.answer_id,
            answer_text: a.answer_text,
            answer_markdown_text: a.answer_markdown_text,
            answer_media: AnswerMediaView {
                web_media: a.answer_media.web_media,
                mobile_media: a.answer_media.mobile_media,
                vtt_media: a.answer_media.vtt_media,
            },
            external_video_ids: a.external_video_ids,
            confidence: a.confidence,
            feedback_id: a.feedback_id,
            classifier: a.classifier,
            answer_missing: a.answer_missing,
            answer_type: a.answer_type,
        }
    }
}

/// A suggested follow-up question.
#[derive(Serialize, ToSchema)]
pub(crate) struct FollowupView {
    /// The question.
    pub question: String,
    /// Kind of entity it is about: person, organization, acronym, place or family.
    #[serde(rename = "entityType")]
    pub entity_type: &'static str,
    /// The template it came from.
    pub template: String,
}

impl From<strato_service::Followup> for FollowupView {
    fn from(f: strato_service::Followup) -> Self {
        Self { question: f.question, entity_type: f.entity_type.as_str(), template: f.template }
    }
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

/// A key to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKey {
    /// What the key is for.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// `admin`, `editor` or `user` (default).
    #[serde(default)]
    #[schema(pattern = "^(admin|editor|user)$")]
    pub role: Option<String>,
    /// Models it may use (`*`: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Mentors it may use (`*`: all).
    #[serde(default)]
    pub mentors: Vec<String>,
    /// Grants over any resource kind: `{"kind", "id" (a pattern, `*` for any run of characters), "actions"}`,
    /// capped by the role.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// Its limits; unset fields take the server's defaults.
    #[serde(default)]
    pub plan: UsagePlan,
}

impl From<CreateApiKey> for strato_service::NewApiKey {
    fn from(k: CreateApiKey) -> Self {
        Self { name: k.name, role: k.role, models: k.models, mentors: k.mentors, grants: k.grants, plan: k.plan }
    }
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
    pub grants: Vec<Grant>,
    pub plan: UsagePlan,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// A SigV4 access key's id (`strato access-keys create`); absent for `x-api-key` keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.clone(),
            models: k.models.clone(),
            mentors: k.mentors.clone(),
            grants: k.grants.clone(),
            plan: k.plan.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            access_key_id: k.access_key_id.clone(),
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
