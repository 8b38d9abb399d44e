//! Route table: one file per resource.

pub(crate) mod albert;
mod datasets;
mod jobs;
mod keys;
pub(crate) mod mentorpal;
mod mentors;
mod models;

use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;

/// Native `/v1` routes.
pub(crate) fn v1(dataset_limit: usize) -> Router<AppState> {
    // Routes whose bodies are datasets (uploads, imports, inline training data, whole mentors) take the dataset
    // limit; every other JSON body the smaller default.
    let big = || axum::extract::DefaultBodyLimit::max(dataset_limit);
    Router::new()
        .route("/v1/datasets", get(datasets::list))
        .route("/v1/datasets/{name}", put(datasets::put).layer(big()).get(datasets::download).delete(datasets::delete))
        .route("/v1/models", post(models::create).layer(big()).get(models::list))
        .route("/v1/models/{id}", get(models::show).delete(models::delete))
        .route("/v1/models/{id}/predict", post(models::predict))
        .route("/v1/models/{id}/versions/{version}/activate", post(models::activate))
        .route("/v1/mentors/{id}", put(mentors::put).layer(big()).get(mentors::show).delete(mentors::delete))
        .route("/v1/mentors/{id}/import", post(mentors::import).layer(big()))
        .route("/v1/mentors/{id}/trainingdata", get(mentors::training_data))
        .route("/v1/mentors/{id}/train", post(mentors::train))
        .route("/v1/mentors/{id}/answer", get(mentors::answer))
        .route("/v1/mentors/{id}/user-questions", get(mentors::user_questions))
        .route("/v1/user-questions/{feedback_id}/grade", put(mentors::grade))
        .route("/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::show))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/dlq", get(jobs::dlq_list))
        .route("/v1/dlq/{id}", get(jobs::dlq_show).delete(jobs::dlq_delete))
        .route("/v1/dlq/{id}/replay", post(jobs::dlq_replay))
        .route("/v1/api-keys", post(keys::create).get(keys::list))
        .route("/v1/api-keys/{id}", axum::routing::delete(keys::revoke))
        .route("/metrics", get(crate::observe::metrics))
}

pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
