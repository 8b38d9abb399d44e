//! Route table: one file per resource. Every route is registered with its OpenAPI description (`routes!`), so the
//! document at `/openapi.json` cannot miss one.

pub(crate) mod albert;
mod datasets;
pub(crate) mod files;
mod jobs;
mod keys;
pub(crate) mod mentorpal;
mod mentors;
pub(crate) mod models;

use axum::Json;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::AppState;

/// Routes behind the gateway's credentials check: the native `/v1` API, `/metrics`, and the compatibility APIs.
pub(crate) fn authenticated(dataset_limit: usize) -> OpenApiRouter<AppState> {
    // Routes whose bodies are datasets (uploads, imports, inline training data, whole mentors) take the dataset
    // limit; every other JSON body the smaller default. Their GET and DELETE share the path but have no body.
    let big = || axum::extract::DefaultBodyLimit::max(dataset_limit);
    OpenApiRouter::new()
        .routes(routes!(datasets::list))
        .routes(routes!(datasets::put, datasets::download, datasets::delete).layer(big()))
        .routes(routes!(models::create, models::list).layer(big()))
        .routes(routes!(models::show, models::delete))
        .routes(routes!(models::predict))
        .routes(routes!(models::activate))
        .routes(routes!(mentors::put, mentors::show, mentors::delete).layer(big()))
        .routes(routes!(mentors::import).layer(big()))
        .routes(routes!(mentors::training_data))
        .routes(routes!(mentors::train))
        .routes(routes!(mentors::answer))
        .routes(routes!(mentors::user_questions))
        .routes(routes!(mentors::grade))
        .routes(routes!(jobs::list, jobs::submit))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::dlq_list))
        .routes(routes!(jobs::dlq_show, jobs::dlq_delete))
        .routes(routes!(jobs::dlq_replay))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(crate::observe::metrics))
        .merge(files::routes())
        .merge(albert::routes())
        .merge(mentorpal::routes())
}

/// Routes anyone may call: liveness, readiness, and the presigned URLs (the signature is the credential).
pub(crate) fn open() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(crate::observe::ready)).merge(files::presigned_routes())
}

/// The process is up.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok`.
    status: &'static str,
    /// Strato's version.
    version: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, body = Health)))]
/// Liveness: the process answers.
pub(crate) async fn health() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}
