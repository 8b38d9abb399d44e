//! `/v1/datasets`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::Principal;
use crate::extract::body_error;
use crate::views::DatasetView;
use crate::{ApiError, AppState};

pub(crate) async fn put(
    p: Principal,
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    p.require_editor("upload datasets")?;
    let body = body.map_err(body_error)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let rec = s.strato.put_dataset(&name, ct, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": rec.name, "rows": rec.rows, "labels": rec.labels, "format": rec.format})),
    ))
}

pub(crate) async fn list(p: Principal, State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    p.require_editor("list datasets")?;
    let all: Vec<DatasetView> = s.strato.list_datasets().await?.into_iter().map(Into::into).collect();
    Ok(Json(json!({"datasets": all})))
}

pub(crate) async fn download(
    p: Principal,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    p.require_editor("download datasets")?;
    let d = s.strato.dataset_file(&name).await?;
    Ok(([(header::CONTENT_TYPE, d.content_type)], d.bytes).into_response())
}

pub(crate) async fn delete(
    p: Principal,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require_editor("delete datasets")?;
    s.strato.delete_dataset(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
