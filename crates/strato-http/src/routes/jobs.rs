//! `/v1/jobs` and `/v1/dlq`: the job facility.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use strato_service::Cancellation;
use strato_store::{EnqueueOutcome, JobFilter};
use strato_types::{ErrorCode, JobKind, JobStatus, NewJob};

use crate::auth::Principal;
use crate::extract::QueryParams;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::views::JobView;
use crate::{ApiError, AppState};

pub(crate) async fn show(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    p.may_see_job(&s.strato.job(&id).await?)?;
    let (job, attempts) = s.strato.job_with_attempts(&id).await?;
    Ok(Json(JobView::with_attempts(job, attempts)))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    key: Option<String>,
    limit: Option<i64>,
}

fn kinds() -> String {
    JobKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

fn parse_kind(v: &str) -> Result<JobKind, ApiError> {
    JobKind::parse(v).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidRequest, format!("unknown job kind {v:?}: use one of {}", kinds()))
    })
}

pub(crate) async fn list(
    p: Principal,
    State(s): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let kind = q.kind.as_deref().map(parse_kind).transpose()?;
    let filter = JobFilter { status, kind, key: q.key, limit: Some(q.limit.unwrap_or(100).clamp(1, 1000)) };
    let jobs: Vec<JobView> = s.strato.jobs(&filter).await?.into_iter().map(Into::into).collect();
    Ok(Json(json!({"jobs": jobs})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubmitJob {
    kind: String,
    #[serde(default)]
    payload: serde_json::Value,
    key: Option<String>,
    #[serde(default)]
    priority: i32,
    max_attempts: Option<i32>,
    timeout_secs: Option<u64>,
}

/// `POST /v1/jobs`: generic submission (the `noop` kind: queue drills and benchmarks).
pub(crate) async fn submit(
    p: Principal,
    State(s): State<AppState>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    JsonBody(req): JsonBody<SubmitJob>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    p.require_admin("submit jobs")?;
    let kind = parse_kind(&req.kind)?;
    let payload = if req.payload.is_null() { json!({}) } else { req.payload };
    let mut job = NewJob {
        key: req.key,
        priority: req.priority,
        idempotency_key,
        timeout: req.timeout_secs.map(std::time::Duration::from_secs),
        ..NewJob::new(kind, payload)
    };
    if let Some(n) = req.max_attempts {
        job.max_attempts = n;
    }
    let e = s.strato.submit_job(job).await?;
    let status = if e.outcome == EnqueueOutcome::Created { StatusCode::ACCEPTED } else { StatusCode::OK };
    let mut v = serde_json::to_value(JobView::from(e.job)).unwrap_or_default();
    v["status_url"] = json!(format!("/v1/jobs/{}", v["id"].as_str().unwrap_or_default()));
    Ok((status, Json(v)))
}

/// `POST /v1/jobs/{id}/cancel`.
pub(crate) async fn cancel(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    p.may_see_job(&s.strato.job(&id).await?)?;
    let (how, job) = s.strato.cancel_job(&id).await?;
    let mut v = serde_json::to_value(JobView::from(job)).unwrap_or_default();
    let (code, cancel) = match how {
        Cancellation::Cancelled => (StatusCode::OK, "cancelled"),
        Cancellation::Requested => (StatusCode::ACCEPTED, "requested"),
    };
    v["cancel"] = json!(cancel);
    Ok((code, Json(v)))
}

#[derive(Deserialize)]
pub(crate) struct DlqQuery {
    limit: Option<i64>,
}

/// `GET /v1/dlq`.
pub(crate) async fn dlq_list(
    p: Principal,
    State(s): State<AppState>,
    QueryParams(q): QueryParams<DlqQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    p.require_admin("read the dead-letter queue")?;
    let jobs: Vec<JobView> = s.strato.dead_letters(q.limit.unwrap_or(100)).await?.into_iter().map(Into::into).collect();
    Ok(Json(json!({"jobs": jobs})))
}

/// `GET /v1/dlq/{id}`.
pub(crate) async fn dlq_show(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    p.require_admin("read the dead-letter queue")?;
    let (job, attempts) = s.strato.dead_letter(&id).await?;
    Ok(Json(JobView::with_attempts(job, attempts)))
}

/// `POST /v1/dlq/{id}/replay`.
pub(crate) async fn dlq_replay(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    p.require_admin("replay dead-lettered jobs")?;
    Ok((StatusCode::ACCEPTED, Json(s.strato.replay_dead_letter(&id).await?.into())))
}

/// `DELETE /v1/dlq/{id}`.
pub(crate) async fn dlq_delete(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require_admin("delete dead-lettered jobs")?;
    s.strato.delete_dead_letter(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
