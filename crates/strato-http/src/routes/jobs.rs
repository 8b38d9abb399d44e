//! `/v1/jobs`.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use strato_store::JobFilter;
use strato_types::{ErrorCode, JobKind, JobStatus};

use crate::views::JobView;
use crate::{ApiError, AppState};

pub(crate) async fn show(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<JobView>, ApiError> {
    Ok(Json(s.strato.job(&id).await?.into()))
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = q
        .status
        .map(|v| {
            JobStatus::parse(&v.to_ascii_uppercase()).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("unknown status {v:?}: use QUEUED, IN_PROGRESS, SUCCESS or FAILURE"),
                )
            })
        })
        .transpose()?;
    let kind = q
        .kind
        .map(|v| {
            JobKind::parse(&v)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, format!("unknown kind {v:?}: use train_model")))
        })
        .transpose()?;
    let filter = JobFilter { status, kind, key: None, limit: Some(q.limit.unwrap_or(100).clamp(1, 1000)) };
    let jobs: Vec<JobView> = s.strato.jobs(&filter).await?.into_iter().map(Into::into).collect();
    Ok(Json(json!({"jobs": jobs})))
}
