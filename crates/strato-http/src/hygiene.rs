//! What every response gets whatever its route: a request id, secure headers, CORS, and one access-log line.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The request id header: taken from the client when it is sane, generated otherwise, always echoed back.
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route pattern a request matched, copied onto the response so the outer access log can name it.
#[derive(Clone)]
pub(crate) struct RouteLabel(pub String);

/// Who made a request, copied onto the response by the auth layer for the access log.
#[derive(Clone)]
pub(crate) struct PrincipalLabel(pub String);

/// A client's id is kept only when it is short printable ASCII, so it cannot forge log lines or grow them unbounded.
fn client_request_id(req: &Request) -> Option<String> {
    let v = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| v.to_string())
}

/// Outermost layer: assigns the request id, adds the secure headers, and logs one line per request.
pub(crate) async fn request_envelope(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = client_request_id(&req).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let id_value = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    req.headers_mut().insert(REQUEST_ID.clone(), id_value.clone());
    let method = req.method().clone();
    let mut res = next.run(req).await;

    let h = res.headers_mut();
    h.insert(REQUEST_ID.clone(), id_value);
    for (name, value) in SECURE_HEADERS {
        h.entry(*name).or_insert(HeaderValue::from_static(value));
    }
    if let Some(hsts) = &state.hsts {
        h.entry(header::STRICT_TRANSPORT_SECURITY).or_insert(hsts.clone());
    }

    let status = res.status().as_u16();
    let route = res.extensions().get::<RouteLabel>().map_or("(unmatched)", |r| r.0.as_str());
    if status >= 500 {
        report_to_sentry(method.as_str(), route, status, &id);
    }
    let principal = res.extensions().get::<PrincipalLabel>().map_or("-", |p| p.0.as_str());
    let elapsed = started.elapsed();
    state.observer.record(method.as_str(), route, status, elapsed, &id);
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(request_id = %id, %method, route, status, latency_ms, principal, "request");
    } else {
        tracing::info!(request_id = %id, %method, route, status, latency_ms, principal, "request");
    }
    res
}

/// Sends a 5xx to Sentry when a client is configured (`SENTRY_DSN`); a no-op otherwise. 503s that mean "busy" or
/// "retry later" are load, not bugs, and are left out.
fn report_to_sentry(method: &str, route: &str, status: u16, request_id: &str) {
    if status == 503 || sentry::Hub::current().client().is_none() {
        return;
    }
    sentry::with_scope(
        |scope| {
            scope.set_tag("route", route);
            scope.set_tag("method", method);
            scope.set_tag("status", status);
            scope.set_tag("request_id", request_id);
        },
        || sentry::capture_message(&format!("{method} {route} answered {status}"), sentry::Level::Error),
    );
}

/// A panicking handler becomes a JSON 500 (the panic itself is logged and, with Sentry on, reported by its hook).
pub(crate) fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    use axum::response::IntoResponse;
    crate::ApiError::new(strato_types::ErrorCode::Internal, "an internal error occurred; the server log has details")
        .into_response()
}

/// Headers every API response carries. The CSP forbids everything: API responses are data, never documents.
const SECURE_HEADERS: &[(&HeaderName, &str)] = &[
    (&header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (&header::X_FRAME_OPTIONS, "DENY"),
    (&header::REFERRER_POLICY, "no-referrer"),
    (&header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
    (&header::CACHE_CONTROL, "no-store"),
];

/// Swagger UI is a document: it may load its own scripts, styles (it sets some inline) and images (some are
/// `data:` URIs), and fetch the OpenAPI document and the API it tries out; nothing from elsewhere, never framed.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'none'";

/// Responses of `/docs` get the Swagger UI policy instead of the API's.
pub(crate) async fn docs_headers(mut res: Response) -> Response {
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    res
}

/// Admission: at most `max_concurrent_requests` in flight (503 `overloaded` beyond, never an unbounded queue) and
/// each one within `request_timeout` (503 `request_timeout`). Health and readiness probes are always admitted.
pub(crate) async fn admission(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    req: Request,
    next: Next,
) -> Response {
    use axum::response::IntoResponse;
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        let mut res = crate::ApiError::new(
            strato_types::ErrorCode::Overloaded,
            "the server is handling as many requests as it allows; retry in a moment",
        )
        .into_response();
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return res;
    };
    if crate::routes::files::is_transfer(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let limit = state.opts.request_timeout;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => crate::ApiError::new(
            strato_types::ErrorCode::RequestTimeout,
            format!(
                "the request took longer than {} s and was stopped; long work belongs in jobs",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
}

/// Inner (route) layer: records the matched route pattern for the access log.
pub(crate) async fn label_route(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let mut res = next.run(req).await;
    if let Some(route) = route {
        res.extensions_mut().insert(RouteLabel(route));
    }
    res
}

/// CORS for the configured origins; `None` when there are none (browsers then refuse cross-origin calls).
pub(crate) fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let any = origins.iter().any(|o| o == "*");
    let allow = if any {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-api-key"),
                HeaderName::from_static("idempotency-key"),
                REQUEST_ID.clone(),
            ])
            .expose_headers([
                REQUEST_ID.clone(),
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req_with_id(v: &str) -> Request {
        axum::http::Request::builder().header("x-request-id", v).body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn client_ids_are_kept_only_when_short_and_printable() {
        assert_eq!(client_request_id(&req_with_id("abc-123")).as_deref(), Some("abc-123"));
        assert_eq!(client_request_id(&req_with_id("has space")), None);
        assert_eq!(client_request_id(&req_with_id(&"x".repeat(129))), None);
    }

    #[test]
    fn no_origins_means_no_cors_layer() {
        assert!(cors(&[]).is_none());
        assert!(cors(&["https://app.example".into()]).is_some());
    }
}
