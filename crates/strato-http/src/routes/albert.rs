//! The original Albert text-classification service's API, for its existing clients.
//!
//! Shapes follow the original Flask app: errors are `{"error": "..."}` with status 400, models are listed as the
//! DynamoDB items it stored (`{"key": "model", "sort": id, "data": {...}, "status"}`), and `GET /prediction` takes
//! its parameters from a JSON body (as the original did) or from the query string.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use strato_ml::TrainParams;
use strato_service::{DataSource, TrainRequest};
use strato_types::{ErrorCode, JobStatus, ModelRecord, StratoError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::QueryParams;
use crate::AppState;
use strato_types::{Action, ResourceRef};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, train)).routes(routes!(remove)).routes(routes!(predict))
}

/// `POST /models`: the original's training request.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // read as a JSON map, as the original did; this type documents it
pub(crate) struct AlbertTrain {
    /// Model id.
    id: String,
    /// Kept for the original's clients; datasets live in Strato.
    s3bucket: String,
    /// A stored dataset's name, or an object name whose stem is one (`data/intents.csv` → `intents`).
    training_object: String,
    /// Ignored (the original's spaCy model).
    spacy_model: Option<String>,
    /// Ignored.
    n_texts: Option<i64>,
    /// Ignored.
    n_iter: Option<i64>,
    /// Train a new version of an existing model (`true` or `"true"`).
    force_update: Option<bool>,
}

/// Training started.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlbertTrainStarted {
    /// `model training started`.
    status: String,
    /// The training job's id.
    task_id: String,
}

/// A model as the original's DynamoDB item.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlbertModel {
    /// Always `model`.
    key: String,
    /// The model id.
    sort: String,
    /// The training request's parameters.
    data: Value,
    /// `started`, `failed` or `trained`.
    status: String,
    active_version: Option<i64>,
}

/// The deleted model.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlbertDeleted {
    #[serde(rename = "Attributes")]
    attributes: AlbertModel,
}

/// `GET /prediction` parameters (also accepted as a JSON body, as the original read them).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct AlbertPredictQuery {
    /// Model id.
    model_id: String,
    /// Text to classify.
    text: String,
    /// Labels returned, best first (default 5).
    #[param(minimum = 1)]
    n_top: Option<usize>,
}

/// A prediction in the original's shape.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlbertPrediction {
    prediction_request: AlbertPredictionRequest,
    /// The training request's parameters.
    model: Value,
    /// `[label, probability]` pairs, best first.
    prediction: Vec<Vec<Value>>,
}

/// The request as understood.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlbertPredictionRequest {
    model_id: String,
    text: String,
    n_top: usize,
}

/// The original's error body (`{"error": "..."}`); the gateway's refusals keep the native detail.
#[derive(Serialize, ToSchema)]
pub(crate) struct AlbertError {
    error: AlbertErrorField,
}

/// A message, or the native error detail.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum AlbertErrorField {
    Message(String),
    #[allow(dead_code)] // written by `ApiError` (401, 403, 429, 503), described here
    Detail(crate::error::ErrorDetail),
}

fn compat_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(AlbertError { error: AlbertErrorField::Message(message.into()) })).into_response()
}

/// Internal failures keep the native shape's meaning but the original's body.
fn from_strato(e: StratoError) -> Response {
    let status = crate::error::status_of(e.code);
    let status = if status.is_server_error() { status } else { StatusCode::BAD_REQUEST };
    compat_error(status, e.message)
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[utoipa::path(post, path = "/models", tag = "albert", request_body = AlbertTrain,
    responses((status = 202, body = AlbertTrainStarted)))]
/// Trains a model from a stored dataset (the original Albert API).
async fn train(p: Principal, State(s): State<AppState>, body: Bytes) -> Response {
    let req: Option<serde_json::Map<String, Value>> = serde_json::from_slice(&body).ok();
    let Some(req) = req.filter(|r| ["id", "s3bucket", "training_object"].iter().all(|k| r.contains_key(*k))) else {
        return compat_error(StatusCode::BAD_REQUEST, "Required parameters not supplied");
    };
    let as_str = |k: &str| match &req[k] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (id, bucket, object) = (as_str("id"), as_str("s3bucket"), as_str("training_object"));
    if let Err(e) = p.may(Action::Edit, &ResourceRef::model(&id)) {
        return e.into_response();
    }
    // The original stored datasets as S3 objects; here they are datasets, found by the object's name or its stem.
    let stem = object.rsplit('/').next().unwrap_or(&object);
    let stem = stem.rsplit_once('.').map(|(a, _)| a).unwrap_or(stem).to_string();
    let mut dataset = None;
    for candidate in [object.clone(), stem] {
        if s.strato.datasets().get(&candidate).await.is_ok() {
            dataset = Some(candidate);
            break;
        }
    }
    let Some(dataset) = dataset else {
        return compat_error(
            StatusCode::BAD_REQUEST,
            format!("Training object {object} not found: upload it first with PUT /v1/datasets/{{name}}"),
        );
    };
    let meta = json!({
        "id": id,
        "s3bucket": bucket,
        "training_object": object,
        "spacy_model": req.get("spacy_model").cloned().unwrap_or(json!("")),
        "n_texts": req.get("n_texts").cloned().unwrap_or(json!(2000)),
        "n_iter": req.get("n_iter").cloned().unwrap_or(json!(20)),
    });
    let submitted = s
        .strato
        .models()
        .submit_training(TrainRequest {
            model_id: id,
            data: DataSource::Dataset(dataset),
            params: TrainParams::default(),
            force_update: truthy(req.get("force_update")),
            meta,
            idempotency_key: None,
        })
        .await;
    match submitted {
        Ok(job) => {
            let started = AlbertTrainStarted { status: "model training started".into(), task_id: job.id };
            (StatusCode::ACCEPTED, Json(started)).into_response()
        }
        Err(e) if e.code == ErrorCode::ModelExists => {
            compat_error(StatusCode::BAD_REQUEST, "Cannot update existing model. Use force_update:True")
        }
        Err(e) => from_strato(e),
    }
}

async fn item(s: &AppState, m: &ModelRecord) -> AlbertModel {
    let status = match s.strato.models().latest_job(&m.id).await.ok().flatten().map(|j| j.status) {
        Some(JobStatus::Queued | JobStatus::InProgress) => "started",
        Some(JobStatus::Failure) if m.active_version.is_none() => "failed",
        _ if m.active_version.is_some() => "trained",
        _ => "started",
    };
    AlbertModel {
        key: "model".into(),
        sort: m.id.clone(),
        data: m.meta.clone(),
        status: status.into(),
        active_version: m.active_version,
    }
}

#[utoipa::path(get, path = "/models", tag = "albert", responses((status = 200, body = [AlbertModel])))]
/// Lists models as the original's DynamoDB items.
async fn list(p: Principal, State(s): State<AppState>) -> Response {
    match s.strato.models().list().await {
        Ok(models) => {
            let mut items = Vec::with_capacity(models.len());
            for m in models.iter().filter(|m| p.can(Action::Use, &ResourceRef::model(&m.id))) {
                items.push(item(&s, m).await);
            }
            Json(items).into_response()
        }
        Err(e) => from_strato(e),
    }
}

#[utoipa::path(delete, path = "/models/{id}", tag = "albert", params(("id" = String, Path, description = "Model id")),
    responses((status = 200, body = AlbertDeleted)))]
/// Deletes a model.
async fn remove(p: Principal, State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if let Err(e) = p.may(Action::Edit, &ResourceRef::model(&id)) {
        return e.into_response();
    }
    let Ok(detail) = s.strato.models().get(&id).await else {
        return compat_error(StatusCode::BAD_REQUEST, "Requested Model ID does not exist");
    };
    let attributes = item(&s, &detail.model).await;
    match s.strato.models().delete(&id).await {
        Ok(_) => Json(AlbertDeleted { attributes }).into_response(),
        Err(e) if e.code == ErrorCode::ModelNotFound => {
            compat_error(StatusCode::BAD_REQUEST, "Requested Model ID does not exist")
        }
        Err(e) => from_strato(e),
    }
}

#[utoipa::path(get, path = "/prediction", tag = "albert", params(AlbertPredictQuery),
    responses((status = 200, body = AlbertPrediction)))]
/// Classifies a text (the original Albert API).
async fn predict(
    p: Principal,
    State(s): State<AppState>,
    QueryParams(query): QueryParams<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> Response {
    // The original read a JSON body on GET; query parameters are the friendlier alternative.
    let params: serde_json::Map<String, Value> = if body.is_empty() {
        query.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
    } else {
        match serde_json::from_slice(&body) {
            Ok(Value::Object(m)) => m,
            _ => return compat_error(StatusCode::BAD_REQUEST, "Required parameters not supplied"),
        }
    };
    let (Some(model_id), Some(text)) =
        (params.get("model_id").and_then(Value::as_str), params.get("text").and_then(Value::as_str))
    else {
        return compat_error(StatusCode::BAD_REQUEST, "Required parameters not supplied");
    };
    if let Err(e) = p.may(Action::Use, &ResourceRef::model(model_id)) {
        return e.into_response();
    }
    let n_top = match params.get("n_top") {
        None => Some(5),
        Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
        Some(Value::String(t)) => t.trim().parse().ok(),
        Some(_) => None,
    };
    let Some(n_top) = n_top.filter(|&n| n > 0) else {
        return compat_error(StatusCode::BAD_REQUEST, "Wrong parameters");
    };
    let meta = match s.strato.models().get(model_id).await {
        Ok(d) => d.model.meta,
        Err(e) if e.code == ErrorCode::ModelNotFound => {
            return compat_error(StatusCode::BAD_REQUEST, "Model ID does not exist")
        }
        Err(e) => return from_strato(e),
    };
    match s.strato.models().predict(model_id, vec![text.to_string()], n_top).await {
        Ok(p) => {
            let prediction = p.predictions[0].iter().map(|sc| vec![json!(sc.label), json!(sc.score)]).collect();
            let prediction_request = AlbertPredictionRequest { model_id: model_id.into(), text: text.into(), n_top };
            Json(AlbertPrediction { prediction_request, model: meta, prediction }).into_response()
        }
        Err(e) => from_strato(e),
    }
}
