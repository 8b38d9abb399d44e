//! `/v1/api-keys`: admins create, list and revoke API keys. The secret is shown once, at creation.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;

use crate::auth::Principal;
use crate::extract::JsonBody;
use crate::views::{ApiKeyList, ApiKeyView, CreateApiKey, CreatedApiKey};
use crate::{ApiError, AppState};

#[utoipa::path(post, path = "/v1/api-keys", tag = "api keys", request_body = CreateApiKey,
    responses((status = 201, description = "The key, with its secret shown this once", body = CreatedApiKey)))]
/// Creates an API key (admins).
pub(crate) async fn create(
    p: Principal,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    p.require_admin("create API keys")?;
    let (key, secret) = s.strato.keys().create(req.into()).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key: (&key).into(), secret })))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api keys", responses((status = 200, body = ApiKeyList)))]
/// Lists API keys, revoked ones included (admins).
pub(crate) async fn list(p: Principal, State(s): State<AppState>) -> Result<Json<ApiKeyList>, ApiError> {
    p.require_admin("list API keys")?;
    let api_keys: Vec<ApiKeyView> = s.strato.keys().list().await?.iter().map(Into::into).collect();
    Ok(Json(ApiKeyList { api_keys }))
}

#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api keys",
    params(("id" = String, Path, description = "Key id (`ak_…`)")),
    responses((status = 200, description = "The revoked key", body = ApiKeyView)))]
/// Revokes an API key at once (admins).
pub(crate) async fn revoke(
    p: Principal,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    p.require_admin("revoke API keys")?;
    Ok(Json((&s.strato.keys().revoke(&id).await?).into()))
}
