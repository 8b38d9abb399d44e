//! `/v1/api-keys`: admins create, list and revoke API keys. The secret is shown once, at creation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use strato_service::NewApiKey;
use strato_types::ApiKeyRecord;

use crate::auth::Principal;
use crate::extract::JsonBody;
use crate::{ApiError, AppState};

/// A key as shown to admins: never its secret or hash.
pub(crate) fn view(k: &ApiKeyRecord) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "role": k.role,
        "models": k.models,
        "mentors": k.mentors,
        "plan": k.plan,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    })
}

pub(crate) async fn create(
    p: Principal,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<NewApiKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require_admin("create API keys")?;
    let (key, secret) = s.strato.create_api_key(req).await?;
    let mut v = view(&key);
    v["secret"] = json!(secret);
    Ok((StatusCode::CREATED, Json(v)))
}

pub(crate) async fn list(p: Principal, State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    p.require_admin("list API keys")?;
    let keys: Vec<Value> = s.strato.api_keys().await?.iter().map(view).collect();
    Ok(Json(json!({"api_keys": keys})))
}

pub(crate) async fn revoke(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require_admin("revoke API keys")?;
    Ok(Json(view(&s.strato.revoke_api_key(&id).await?)))
}
