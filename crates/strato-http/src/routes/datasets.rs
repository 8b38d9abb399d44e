//! `/v1/datasets`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::Principal;
use crate::extract::body_error;
use crate::views::{DatasetList, DatasetStored, DatasetView};
use crate::{ApiError, AppState};

#[utoipa::path(put, path = "/v1/datasets/{name}", tag = "datasets", params(("name" = String, Path, description = "Dataset name (letters, digits, `-`, `_`, `.`)", example = "demo")),
    request_body(description = "Rows of text and label: CSV with a header `text,label[,split]`, JSON lines, or a JSON \
        array of `{\"text\",\"label\"}` or spaCy `{\"text\",\"cats\"}` objects. Errors name the line to fix.",
        content((String = "text/csv"), (String = "application/x-ndjson"), ([crate::routes::models::InlineExample] = "application/json"))),
    responses((status = 201, body = DatasetStored), (status = 415, description = "Unsupported Content-Type", body = crate::error::ErrorBody)))]
/// Stores a dataset, replacing one of the same name; nothing is stored when it is invalid.
pub(crate) async fn put(
    p: Principal,
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DatasetStored>), ApiError> {
    p.require_editor("upload datasets")?;
    let body = body.map_err(body_error)?;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let rec = s.strato.datasets().put(&name, ct, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(DatasetStored { name: rec.name, rows: rec.rows, labels: rec.labels, format: rec.format }),
    ))
}

#[utoipa::path(get, path = "/v1/datasets", tag = "datasets", responses((status = 200, body = DatasetList)))]
/// Lists stored datasets.
pub(crate) async fn list(p: Principal, State(s): State<AppState>) -> Result<Json<DatasetList>, ApiError> {
    p.require_editor("list datasets")?;
    let datasets: Vec<DatasetView> = s.strato.datasets().list().await?.into_iter().map(Into::into).collect();
    Ok(Json(DatasetList { datasets }))
}

#[utoipa::path(get, path = "/v1/datasets/{name}", tag = "datasets", params(("name" = String, Path, description = "Dataset name (letters, digits, `-`, `_`, `.`)", example = "demo")),
    responses((status = 200, description = "The file as uploaded",
        content((String = "text/csv"), (String = "application/x-ndjson"), ([crate::routes::models::InlineExample] = "application/json")))))]
/// Downloads a dataset as uploaded.
pub(crate) async fn download(
    p: Principal,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    p.require_editor("download datasets")?;
    let d = s.strato.datasets().file(&name).await?;
    Ok(([(header::CONTENT_TYPE, d.content_type)], d.bytes).into_response())
}

#[utoipa::path(delete, path = "/v1/datasets/{name}", tag = "datasets", params(("name" = String, Path, description = "Dataset name (letters, digits, `-`, `_`, `.`)", example = "scratch")),
    responses((status = 204, description = "Deleted")))]
/// Deletes a dataset.
pub(crate) async fn delete(
    p: Principal,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.require_editor("delete datasets")?;
    s.strato.datasets().delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
