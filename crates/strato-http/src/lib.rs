//! Strato's HTTP API: the native `/v1` routes, the Albert- and MentorPal-compatible routes, the gateway
//! (authentication, authorization, rate limits and quotas, request ids, secure headers, CORS, access log), and the
//! one place errors become responses.
//!
//! Each route module exports its router (`routes()`); a capability crate does the same and hands its router to
//! [`router_with`], behind the same gateway. Handlers check the caller's [`auth::Principal`] (`p.may(action,
//! resource)`), call a part of [`strato_service::Strato`] (`s.strato.models().predict(…)`), and return views
//! (`views.rs`); they never touch storage directly.

pub mod auth;
mod error;
mod extract;
mod hygiene;
pub mod limits;
pub mod observe;
mod openapi;
mod routes;
mod strict;
mod views;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::Router;
use strato_service::Strato;

pub use error::{aws_error, status_of as error_status, ApiError, ErrorBody};
/// The core's extractors, whose rejections are JSON errors: capabilities' routes use them too.
pub use extract::{JsonBody, QueryParams};
pub use routes::files::{requested_range, stream_response};

/// HTTP-layer settings.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Credentials and grants.
    pub auth: auth::AuthOptions,
    /// Origins browsers may call from (`*` for any); none by default.
    pub cors_origins: Vec<String>,
    /// `Strict-Transport-Security: max-age=<secs>` on every response, for deployments behind TLS.
    pub hsts_max_age: Option<u64>,
    /// Rate limits and quotas.
    pub limits: limits::LimitOptions,
    /// Slow-response thresholds.
    pub slow: observe::SlowOptions,
    /// Where slow-response alerts go (the jobs' alert webhook).
    pub alerter: Option<strato_service::Alerter>,
    /// Largest body for JSON routes; dataset uploads, mentor imports and inline training data get the service's
    /// dataset limit instead.
    pub max_json_bytes: usize,
    /// Requests in flight at once; more get 503 `overloaded`.
    pub max_concurrent_requests: usize,
    /// Longest a request may take.
    pub request_timeout: std::time::Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            auth: Default::default(),
            cors_origins: Vec::new(),
            hsts_max_age: None,
            limits: Default::default(),
            slow: Default::default(),
            alerter: None,
            max_json_bytes: 2 << 20,
            max_concurrent_requests: 1024,
            request_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// Shared handler state: one `Arc`, since axum clones it for every extractor and layer of every request.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;
    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    /// The service.
    pub strato: Strato,
    /// Settings.
    pub opts: Arc<HttpOptions>,
    pub(crate) auth: Arc<auth::Auth>,
    pub(crate) limits: Arc<limits::Limits>,
    pub(crate) observer: Arc<observe::HttpObserver>,
    pub(crate) hsts: Option<HeaderValue>,
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
}

/// A capability's routes: handlers over [`AppState`], described for the OpenAPI document.
pub type CapabilityRoutes = utoipa_axum::router::OpenApiRouter<AppState>;

/// The OpenAPI document of the core's routes (as [`router`] serves it at `/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi_document_with(Vec::new())
}

/// The OpenAPI document of the core's routes and capabilities' (as [`router_with`] serves it).
pub fn openapi_document_with(capabilities: Vec<CapabilityRoutes>) -> utoipa::openapi::OpenApi {
    let authenticated = capabilities.into_iter().fold(routes::authenticated(0), |all, c| all.merge(c));
    let (_, doc) = authenticated.merge(routes::open()).split_for_parts();
    openapi::finish(doc)
}

/// Builds the router: every route, the JSON 404/405 fallbacks, and the gateway layers.
pub fn router(strato: Strato, opts: HttpOptions) -> Router {
    router_with(strato, opts, Vec::new())
}

/// [`router`], with capabilities' routes behind the same gateway (credentials, grants, limits) and in the same
/// OpenAPI document.
pub fn router_with(strato: Strato, opts: HttpOptions, capabilities: Vec<CapabilityRoutes>) -> Router {
    // Bodies beyond the route's limit are refused while streaming; the handler turns that into a JSON 413.
    let dataset_limit = strato.options().max_dataset_bytes + 64 * 1024;
    let json_limit = opts.max_json_bytes.max(1024);
    let hsts = opts.hsts_max_age.and_then(|s| HeaderValue::from_str(&format!("max-age={s}; includeSubDomains")).ok());
    let cors = hygiene::cors(&opts.cors_origins);
    let auth = Arc::new(auth::Auth::new(opts.auth.clone()));
    let limits = Arc::new(limits::Limits::new(opts.limits.clone()));
    let observer = Arc::new(observe::HttpObserver::new(opts.slow.clone(), opts.alerter.clone()));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(opts.max_concurrent_requests.max(1)));
    let state =
        AppState(Arc::new(SharedState { strato, opts: Arc::new(opts), auth, limits, observer, hsts, in_flight }));
    let authenticated = capabilities.into_iter().fold(routes::authenticated(dataset_limit), |all, c| all.merge(c));
    let (authenticated, doc) = authenticated.split_for_parts();
    let (open, open_doc) = routes::open().split_for_parts();
    let doc = openapi::finish(doc.merge_from(open_doc));
    let docs: Router<AppState> = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", doc).into();
    let app = authenticated
        // Route layers see the matched route: the public-route check and the access log need it. The last added
        // runs first: who calls, then how much they may.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), limits::enforce))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .merge(open)
        .merge(docs.layer(axum::middleware::map_response(hygiene::docs_headers)))
        .route_layer(axum::middleware::from_fn(hygiene::label_route))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(hygiene::panic_response))
        .layer(axum::middleware::from_fn_with_state(state.clone(), hygiene::admission));
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.layer(axum::middleware::from_fn_with_state(state.clone(), hygiene::request_envelope)).with_state(state)
}
