//! Bearer-token auth for the whole API when an admin token is configured.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use strato_types::ErrorCode;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

pub(crate) async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(expected) = state.opts.admin_token.as_deref() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant-time: the comparison must not reveal how much of the token matched.
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        next.run(req).await
    } else {
        ApiError::new(ErrorCode::Unauthorized, "missing or wrong bearer token: send Authorization: Bearer <token>")
            .into_response()
    }
}
