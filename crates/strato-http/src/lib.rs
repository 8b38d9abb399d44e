//! Strato's HTTP API: the native `/v1` routes, the Albert-compatible routes, auth, and the one place errors become
//! responses.
//!
//! Handlers validate input, call [`strato_service::Strato`], and return views; they never touch storage directly.

mod auth;
mod error;
mod extract;
mod routes;
mod views;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use strato_service::Strato;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// HTTP-layer settings.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// When set, every request except `/healthz` needs `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions").field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>")).finish()
    }
}

/// Shared handler state.
#[derive(Clone)]
pub struct AppState {
    /// The service.
    pub strato: Strato,
    /// Settings.
    pub opts: Arc<HttpOptions>,
}

/// Builds the router with every route, the JSON 404/405 fallbacks, auth and tracing.
pub fn router(strato: Strato, opts: HttpOptions) -> Router {
    // Bodies beyond the dataset limit are refused while streaming; the handler turns that into a JSON 413.
    let limit = strato.options().max_dataset_bytes + 64 * 1024;
    let state = AppState { strato, opts: Arc::new(opts) };
    Router::new()
        .merge(routes::v1())
        .merge(routes::albert::routes())
        .merge(routes::mentorpal::routes())
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .route("/healthz", axum::routing::get(routes::health))
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
