//! `/v1/models`: train, list, show, delete, predict, activate.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use strato_ml::{Example, TrainParams};
use strato_service::{DataSource, TrainRequest};
use strato_types::ErrorCode;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::extract::{IdempotencyKey, JsonBody};
use crate::views::{ModelList, ModelSummaryView, ModelView, PredictView, TrainAccepted};
use crate::{ApiError, AppState};
use strato_types::{Action, ResourceRef};

/// One labelled text.
#[derive(Deserialize, ToSchema)]
pub(crate) struct InlineExample {
    text: String,
    label: String,
}

/// What to train: exactly one of `dataset` or `data`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"id": "greetings", "dataset": "demo"}))]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateModel {
    /// Model id (letters, digits, `-`, `_`, `.`).
    id: String,
    /// A stored dataset's name.
    dataset: Option<String>,
    /// Inline training data.
    data: Option<Vec<InlineExample>>,
    #[serde(default)]
    #[schema(value_type = Option<crate::views::TrainParamsSchema>)]
    params: Option<TrainParams>,
    /// Train a new version of an existing model.
    #[serde(default)]
    force_update: bool,
}

#[utoipa::path(post, path = "/v1/models", tag = "models", params(crate::extract::IdempotencyHeader), request_body = CreateModel,
    responses((status = 202, description = "Training job accepted", body = TrainAccepted),
              (status = 409, description = "The model exists (set force_update)", body = crate::error::ErrorBody)))]
/// Trains a model (a job).
pub(crate) async fn create(
    p: Principal,
    State(s): State<AppState>,
    IdempotencyKey(idempotency_key): IdempotencyKey,
    JsonBody(req): JsonBody<CreateModel>,
) -> Result<(StatusCode, Json<TrainAccepted>), ApiError> {
    p.may(Action::Edit, &ResourceRef::model(&req.id))?;
    let data =
        match (req.dataset, req.data) {
            (Some(name), None) => DataSource::Dataset(name),
            (None, Some(rows)) => DataSource::Inline(
                rows.into_iter().map(|r| Example { text: r.text, label: r.label, split: None }).collect(),
            ),
            _ => return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "give exactly one of \"dataset\" (a stored dataset's name) or \"data\" ([{\"text\",\"label\"}, ...])",
            )),
        };
    let meta = match &data {
        DataSource::Dataset(name) => json!({"dataset": name}),
        DataSource::Inline(rows) => json!({"inline_rows": rows.len()}),
    };
    let job = s
        .strato
        .models()
        .submit_training(TrainRequest {
            model_id: req.id.clone(),
            data,
            params: req.params.unwrap_or_default(),
            force_update: req.force_update,
            meta,
            idempotency_key,
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(TrainAccepted {
            status_url: format!("/v1/jobs/{}", job.id),
            job_id: job.id,
            model_id: req.id,
            status: job.status.as_str(),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, body = ModelList)))]
/// Lists the models the caller may use.
pub(crate) async fn list(p: Principal, State(s): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let models: Vec<ModelSummaryView> = s
        .strato
        .models()
        .list()
        .await?
        .into_iter()
        .filter(|m| p.can(Action::Use, &ResourceRef::model(&m.id)))
        .map(Into::into)
        .collect();
    Ok(Json(ModelList { models }))
}

#[utoipa::path(get, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "Model id", example = "demo")),
    responses((status = 200, body = ModelView)))]
/// A model with its versions.
pub(crate) async fn show(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelView>, ApiError> {
    p.may(Action::Use, &ResourceRef::model(&id))?;
    let d = s.strato.models().get(&id).await?;
    Ok(Json(ModelView::new(d.model, d.versions)))
}

#[utoipa::path(delete, path = "/v1/models/{id}", tag = "models", params(("id" = String, Path, description = "Model id", example = "scratch")),
    responses((status = 204, description = "Deleted with its versions and artifacts")))]
/// Deletes a model.
pub(crate) async fn delete(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.may(Action::Edit, &ResourceRef::model(&id))?;
    s.strato.models().delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/models/{id}/versions/{version}/activate", tag = "models",
    params(("id" = String, Path, description = "Model id", example = "demo"), ("version" = String, Path, description = "Version number")),
    responses((status = 200, body = ModelView)))]
/// Makes a version the one that answers predictions.
pub(crate) async fn activate(
    p: Principal,
    State(s): State<AppState>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Json<ModelView>, ApiError> {
    p.may(Action::Edit, &ResourceRef::model(&id))?;
    let version: i64 = version
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, format!("version must be a number, not {version:?}")))?;
    let d = s.strato.models().activate(&id, version).await?;
    Ok(Json(ModelView::new(d.model, d.versions)))
}

/// Exactly one of `text` or `texts`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"text": "good morning", "n_top": 2}))]
#[serde(deny_unknown_fields)]
pub(crate) struct PredictBody {
    text: Option<String>,
    texts: Option<Vec<String>>,
    /// Labels per text, best first (default 5).
    n_top: Option<usize>,
}

#[utoipa::path(post, path = "/v1/models/{id}/predict", tag = "models",
    params(("id" = String, Path, description = "Model id", example = "demo")), request_body = PredictBody,
    responses((status = 200, body = PredictView)))]
/// Ranks the model's labels for each text.
pub(crate) async fn predict(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PredictBody>,
) -> Result<Json<PredictView>, ApiError> {
    p.may(Action::Use, &ResourceRef::model(&id))?;
    let texts = match (body.text, body.texts) {
        (Some(t), None) => vec![t],
        (None, Some(ts)) if !ts.is_empty() => ts,
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "give exactly one of \"text\" (a string) or \"texts\" (a non-empty array of strings)",
            ))
        }
    };
    let p = s.strato.models().predict(&id, texts, body.n_top.unwrap_or(5)).await?;
    let predictions = p.predictions.into_iter().map(|row| row.into_iter().map(Into::into).collect()).collect();
    Ok(Json(PredictView { model_id: p.model_id, version: p.version, predictions }))
}
