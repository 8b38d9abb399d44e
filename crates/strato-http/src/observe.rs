//! Observability: request metrics and slow-response alerts (fed by the access-log layer), `/metrics` in the
//! Prometheus text format, and `/readyz`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::auth::Principal;
use crate::{ApiError, AppState};

/// When a response counts as slow.
#[derive(Clone, Debug, Default)]
pub struct SlowOptions {
    /// Threshold for every route, in ms.
    pub default_ms: Option<u64>,
    /// Per-route thresholds (route pattern → ms), overriding the default.
    pub per_route: HashMap<String, u64>,
    /// Least time between two alerts for the same route.
    pub alert_every: Duration,
}

/// The HTTP layer's metrics and slow-response settings.
pub(crate) struct HttpObserver {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    slow: IntCounterVec,
    queue: IntGaugeVec,
    slow_opts: SlowOptions,
    alerter: Option<strato_service::Alerter>,
    last_alert: parking_lot::Mutex<HashMap<String, Instant>>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Names and labels are constants: a failure here is a bug the first router build shows.
    r.unwrap_or_else(|e| panic!("invalid metric definition: {e}"))
}

impl HttpObserver {
    pub fn new(slow_opts: SlowOptions, alerter: Option<strato_service::Alerter>) -> Self {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new("strato_http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        ));
        let latency = must(HistogramVec::new(
            HistogramOpts::new("strato_http_request_duration_seconds", "HTTP request latency")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0]),
            &["method", "route"],
        ));
        let slow = must(IntCounterVec::new(
            Opts::new("strato_http_slow_responses_total", "Responses slower than their route's threshold"),
            &["method", "route"],
        ));
        let queue = must(IntGaugeVec::new(
            Opts::new("strato_jobs", "Jobs in the store by kind and status (read at scrape time)"),
            &["kind", "status"],
        ));
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(slow.clone()),
            Box::new(queue.clone()),
        ] {
            must(registry.register(c));
        }
        Self { registry, requests, latency, slow, queue, slow_opts, alerter, last_alert: Default::default() }
    }

    /// Counts a finished request; warns, counts and (rate-limited) alerts when it was slow.
    pub fn record(&self, method: &str, route: &str, status: u16, latency: Duration, request_id: &str) {
        self.requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.latency.with_label_values(&[method, route]).observe(latency.as_secs_f64());
        let Some(threshold) = self.slow_opts.per_route.get(route).copied().or(self.slow_opts.default_ms) else {
            return;
        };
        let ms = latency.as_secs_f64() * 1000.0;
        if ms <= threshold as f64 {
            return;
        }
        self.slow.with_label_values(&[method, route]).inc();
        tracing::warn!(request_id, method, route, latency_ms = ms, threshold_ms = threshold, "slow response");
        if let Some(alerter) = &self.alerter {
            let mut last = self.last_alert.lock();
            let due = last.get(route).is_none_or(|t| t.elapsed() >= self.slow_opts.alert_every);
            if due {
                last.insert(route.to_string(), Instant::now());
                alerter.slow_response(method, route, ms, threshold, request_id);
            }
        }
    }
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
/// `GET /metrics`: the service's and the HTTP layer's metrics plus the queue depth, in Prometheus' text format.
pub(crate) async fn metrics(p: Principal, State(s): State<AppState>) -> Result<Response, ApiError> {
    if !p.public_route {
        p.require_admin("read metrics")?;
    }
    let obs = &s.observer;
    obs.queue.reset();
    for (kind, status, n) in s.strato.jobs().counts().await? {
        obs.queue.with_label_values(&[kind.as_str(), status.as_str()]).set(n);
    }
    let mut families = s.strato.metrics().registry.gather();
    families.extend(obs.registry.gather());
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .map_err(|e| ApiError::new(strato_types::ErrorCode::Internal, format!("cannot encode metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response())
}

/// Readiness and the checks behind it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    checks: ReadinessChecks,
}

/// Each dependency: `ok` or `failing`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ReadinessChecks {
    store: &'static str,
    blob_storage: &'static str,
    embedding_model: &'static str,
}

#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "Ready", body = Readiness), (status = 503, description = "Not ready", body = Readiness)))]
/// `GET /readyz`: 200 when the store and blob storage answer and the embedding model is loaded (or loads), 503
/// with the failing checks otherwise. No credentials needed, and no details beyond ok/failing.
pub(crate) async fn ready(State(s): State<AppState>) -> Response {
    let store = s.strato.jobs().counts().await.is_ok();
    let blobs = s.strato.blobs_reachable().await;
    let model = s.strato.embeddings().embedder().await.is_ok();
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    let body = Readiness {
        status: if store && blobs && model { "ready" } else { "not_ready" },
        checks: ReadinessChecks { store: word(store), blob_storage: word(blobs), embedding_model: word(model) },
    };
    let status = if store && blobs && model { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}
