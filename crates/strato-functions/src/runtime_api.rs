//! The Lambda Runtime API of one instance: `next`, `response`, `error` and `init/error` on a loopback listener of
//! its own, so an instance can only ever read and answer the invocations handed to it.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

/// Largest request or response payload (Lambda: 6 MB for synchronous invocations).
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// One invocation handed to an instance.
pub(crate) struct Delivery {
    pub id: String,
    pub payload: Bytes,
    pub deadline_ms: i64,
    pub arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    pub reply: oneshot::Sender<Reply>,
}

/// What the runtime answered.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `…/response`: the function's result.
    Response(Bytes),
    /// `…/error` or `init/error`: the error document and its type.
    Error { error_type: String, body: Bytes },
}

/// The state behind one instance's listener.
pub(crate) struct RuntimeApi {
    next: tokio::sync::Mutex<mpsc::Receiver<Delivery>>,
    current: parking_lot::Mutex<Option<(String, oneshot::Sender<Reply>)>>,
    init_error: parking_lot::Mutex<Option<oneshot::Sender<Reply>>>,
    /// When the runtime first asked for an invocation: its initialisation ended.
    pub ready_at: OnceLock<Instant>,
}

impl RuntimeApi {
    /// The API, the sender that hands it invocations, and the receiver of an initialisation error.
    pub fn new() -> (Arc<Self>, mpsc::Sender<Delivery>, oneshot::Receiver<Reply>) {
        let (tx, rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let api = Arc::new(Self {
            next: tokio::sync::Mutex::new(rx),
            current: parking_lot::Mutex::new(None),
            init_error: parking_lot::Mutex::new(Some(init_tx)),
            ready_at: OnceLock::new(),
        });
        (api, tx, init_rx)
    }

    /// Serves the API on `listener` until the task is aborted.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            // Bodies are read by the handlers with the payload limit, so an oversized answer is reported to the
            // invoker rather than dropped by a generic 413.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .fallback(|| async { runtime_error(StatusCode::NOT_FOUND, "InvalidRequest", "no such Runtime API route") })
            .with_state(self);
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the Runtime API listener stopped");
        }
    }
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (status, Json(json!({"errorMessage": message, "errorType": error_type}))).into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> Response {
    let _ = api.ready_at.set(Instant::now());
    let delivery = {
        let mut rx = api.next.lock().await;
        rx.recv().await
    };
    let Some(d) = delivery else {
        return runtime_error(StatusCode::GONE, "InstanceStopping", "this instance is being stopped");
    };
    // An invocation left unanswered by a runtime that asks for the next one fails now rather than at its deadline.
    *api.current.lock() = Some((d.id.clone(), d.reply));
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &d.id)
        .header("lambda-runtime-deadline-ms", d.deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", &d.arn)
        .header("lambda-runtime-trace-id", &d.trace_id);
    if let Some(c) = &d.client_context {
        r = r.header("lambda-runtime-client-context", c);
    }
    if let Some(c) = &d.cognito_identity {
        r = r.header("lambda-runtime-cognito-identity", c);
    }
    r.body(Body::from(d.payload)).unwrap_or_else(|_| {
        runtime_error(StatusCode::INTERNAL_SERVER_ERROR, "InvalidRequest", "the invocation could not be sent")
    })
}

/// The pending invocation, if `id` is it.
fn take(api: &RuntimeApi, id: &str) -> Option<oneshot::Sender<Reply>> {
    let mut cur = api.current.lock();
    match cur.as_ref() {
        Some((pending, _)) if pending == id => cur.take().map(|(_, tx)| tx),
        _ => None,
    }
}

async fn read_body(body: Body) -> Result<Bytes, ()> {
    axum::body::to_bytes(body, MAX_PAYLOAD_BYTES).await.map_err(|_| ())
}

async fn response(State(api): State<Arc<RuntimeApi>>, Path(id): Path<String>, body: Body) -> Response {
    let Some(tx) = take(&api, &id) else {
        return runtime_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "no pending invocation has this id");
    };
    match read_body(body).await {
        Ok(b) => {
            let _ = tx.send(Reply::Response(b));
            accepted()
        }
        Err(()) => {
            let msg =
                format!("Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes).");
            let body = json!({"errorMessage": msg, "errorType": "Function.ResponseSizeTooLarge"}).to_string();
            let _ = tx.send(Reply::Error { error_type: "Function.ResponseSizeTooLarge".into(), body: body.into() });
            runtime_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &msg)
        }
    }
}

fn error_type(headers: &HeaderMap) -> String {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("Unhandled")
        .to_string()
}

async fn error(State(api): State<Arc<RuntimeApi>>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let Some(tx) = take(&api, &id) else {
        return runtime_error(StatusCode::BAD_REQUEST, "InvalidRequestID", "no pending invocation has this id");
    };
    let body = read_body(body).await.unwrap_or_else(|()| Bytes::from_static(b"{\"errorMessage\":\"error too large\"}"));
    let _ = tx.send(Reply::Error { error_type: error_type(&headers), body });
    accepted()
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, headers: HeaderMap, body: Body) -> Response {
    let Some(tx) = api.init_error.lock().take() else {
        return runtime_error(StatusCode::FORBIDDEN, "InvalidStateTransition", "initialisation already reported");
    };
    let body = read_body(body).await.unwrap_or_else(|()| Bytes::from_static(b"{\"errorMessage\":\"error too large\"}"));
    let _ = tx.send(Reply::Error { error_type: error_type(&headers), body });
    accepted()
}
