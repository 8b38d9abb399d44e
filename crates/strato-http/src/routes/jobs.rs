//! `/v1/jobs` and `/v1/dlq`: the job facility.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use strato_service::Cancellation;
use strato_store::{EnqueueOutcome, JobFilter};
use strato_types::{ErrorCode, JobKind, JobStatus, QueueName};

use crate::auth::Principal;
use crate::extract::QueryParams;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::views::{CancelView, JobList, JobView, SubmittedJob};
use crate::{ApiError, AppState};

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job with its attempts", body = JobView)))]
/// A job and its attempt history.
pub(crate) async fn show(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    p.may_see_job(&s.strato.jobs().get(&id).await?)?;
    let (job, attempts) = s.strato.jobs().with_attempts(&id).await?;
    Ok(Json(JobView::with_attempts(job, attempts)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// QUEUED, IN_PROGRESS, SUCCESS, FAILURE or CANCELLED (any case).
    #[param(value_type = Option<JobStatus>)]
    status: Option<String>,
    /// A job kind such as `noop` or `train_model`.
    #[param(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    kind: Option<String>,
    /// Jobs in this queue.
    #[param(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    queue: Option<String>,
    /// Jobs with this key.
    key: Option<String>,
    /// At most this many, newest first (1-1000, default 100).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery), responses((status = 200, body = JobList)))]
/// Lists jobs (admins).
pub(crate) async fn list(
    p: Principal,
    State(s): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    p.require_admin("list jobs")?;
    let status = q
        .status
        .map(|v| {
            JobStatus::parse(&v.to_ascii_uppercase()).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown status {v:?}: use QUEUED, IN_PROGRESS, SUCCESS, FAILURE or CANCELLED"),
                )
            })
        })
        .transpose()?;
    let kind = q.kind.as_deref().map(JobKind::parse).transpose()?;
    let queue = q.queue.as_deref().map(QueueName::parse).transpose()?;
    let filter = JobFilter { status, kind, queue, key: q.key, limit: Some(q.limit.unwrap_or(100).clamp(1, 1000)) };
    let jobs: Vec<JobView> = s.strato.jobs().list(&filter).await?.into_iter().map(Into::into).collect();
    Ok(Json(JobList { jobs }))
}

/// A job to run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitJob {
    /// The job kind: one whose input this route can check (`noop`: queue drills); training has its own routes.
    #[schema(example = "noop")]
    kind: String,
    /// The kind's input.
    #[serde(default)]
    payload: serde_json::Value,
    /// The queue to wait in (default: the kind's).
    #[schema(pattern = "^[a-z][a-z0-9_.-]{0,63}$")]
    queue: Option<String>,
    /// Jobs with the same key run one at a time, in order.
    key: Option<String>,
    /// Higher runs first.
    #[serde(default)]
    priority: Option<i32>,
    /// Not before this time (RFC 3339): a scheduled job.
    run_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Attempts before the job is dead-lettered.
    #[schema(minimum = 1, maximum = 100)]
    max_attempts: Option<i32>,
    /// Seconds an attempt may run.
    #[schema(minimum = 1, maximum = 86400)]
    timeout_secs: Option<u64>,
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", params(crate::extract::IdempotencyHeader), request_body = SubmitJob,
    responses((status = 202, description = "Queued", body = SubmittedJob),
              (status = 200, description = "An earlier submission with the same Idempotency-Key", body = SubmittedJob)))]
/// `POST /v1/jobs`: generic submission of the kinds that allow it (`noop`: queue drills and benchmarks), now or
/// at `run_after`.
pub(crate) async fn submit(
    p: Principal,
    State(s): State<AppState>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    JsonBody(req): JsonBody<SubmitJob>,
) -> Result<(StatusCode, Json<SubmittedJob>), ApiError> {
    p.require_admin("submit jobs")?;
    let payload = if req.payload.is_null() { json!({}) } else { req.payload };
    let mut job = s.strato.jobs().generic(&req.kind, payload)?;
    job.key = req.key;
    job.idempotency_key = idempotency_key;
    job.run_after = req.run_after;
    if let Some(q) = req.queue {
        job.queue = QueueName::parse(&q)?;
    }
    if let Some(n) = req.priority {
        job.priority = n;
    }
    if let Some(t) = req.timeout_secs {
        job.timeout = std::time::Duration::from_secs(t);
    }
    if let Some(n) = req.max_attempts {
        job.max_attempts = n;
    }
    let e = s.strato.jobs().submit(job).await?;
    let status = if e.outcome == EnqueueOutcome::Created { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(SubmittedJob::new(e.job, None))))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "Cancelled before it ran", body = CancelView),
              (status = 202, description = "Running: the attempt is told to stop", body = CancelView),
              (status = 409, description = "Already finished", body = crate::error::ErrorBody)))]
/// `POST /v1/jobs/{id}/cancel`.
pub(crate) async fn cancel(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CancelView>), ApiError> {
    p.may_see_job(&s.strato.jobs().get(&id).await?)?;
    let (how, job) = s.strato.jobs().cancel(&id).await?;
    let (code, cancel) = match how {
        Cancellation::Cancelled => (StatusCode::OK, "cancelled"),
        Cancellation::Requested => (StatusCode::ACCEPTED, "requested"),
    };
    Ok((code, Json(CancelView { job: job.into(), cancel })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DlqQuery {
    /// At most this many, newest first (default 100).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/dlq", tag = "dead-letter queue", params(DlqQuery), responses((status = 200, body = JobList)))]
/// `GET /v1/dlq`.
pub(crate) async fn dlq_list(
    p: Principal,
    State(s): State<AppState>,
    QueryParams(q): QueryParams<DlqQuery>,
) -> Result<Json<JobList>, ApiError> {
    p.require_admin("read the dead-letter queue")?;
    let jobs: Vec<JobView> =
        s.strato.jobs().dead_letters(q.limit.unwrap_or(100)).await?.into_iter().map(Into::into).collect();
    Ok(Json(JobList { jobs }))
}

#[utoipa::path(get, path = "/v1/dlq/{id}", tag = "dead-letter queue", params(("id" = String, Path, description = "Job id")), responses((status = 200, body = JobView)))]
/// `GET /v1/dlq/{id}`.
pub(crate) async fn dlq_show(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    p.require_admin("read the dead-letter queue")?;
    let (job, attempts) = s.strato.jobs().dead_letter(&id).await?;
    Ok(Json(JobView::with_attempts(job, attempts)))
}

#[utoipa::path(post, path = "/v1/dlq/{id}/replay", tag = "dead-letter queue", params(("id" = String, Path, description = "Job id")),
    responses((status = 202, description = "Queued again with fresh attempts", body = JobView)))]
/// `POST /v1/dlq/{id}/replay`.
pub(crate) async fn dlq_replay(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    p.require_admin("replay dead-lettered jobs")?;
    Ok((StatusCode::ACCEPTED, Json(s.strato.jobs().replay_dead_letter(&id).await?.into())))
}

#[utoipa::path(delete, path = "/v1/dlq/{id}", tag = "dead-letter queue", params(("id" = String, Path, description = "Job id")), responses((status = 204, description = "Deleted")))]
/// `DELETE /v1/dlq/{id}`.
pub(crate) async fn dlq_delete(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require_admin("delete dead-lettered jobs")?;
    s.strato.jobs().delete_dead_letter(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
