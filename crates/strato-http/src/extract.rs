//! Extractors whose rejections are our JSON errors rather than axum's plain-text ones.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use strato_types::ErrorCode;

use crate::ApiError;

/// Maps a body-read failure (usually the size limit) to a JSON error.
pub(crate) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this route's limit: datasets, imports and inline training data up to \
             STRATO_MAX_DATASET_BYTES, other JSON bodies up to STRATO_MAX_JSON_BYTES",
        )
    } else {
        ApiError::new(ErrorCode::InvalidRequest, format!("cannot read the request body: {e}"))
    }
}

/// A JSON body; any `Content-Type` is accepted since older clients omit it.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON with an error that says where it broke: the syntax first (with line and column), then the shape
/// (with the field path; structs only from objects, see [`crate::strict`]).
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidJson, "the request body is empty; send a JSON object"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("invalid request body: {e}")))?;
    serde_path_to_error::deserialize(crate::strict::Strict(value)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // The path names the field to fix (`params.C`, `data[3].label`); "." is the whole body.
        if path != "." {
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid request body at `{path}`: {inner}"))
        } else {
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid request body: {inner}"))
        }
    })
}

/// Query parameters whose rejection is our JSON error, naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(QueryParams).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = if path == "." { String::new() } else { format!(" `{path}`") };
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid query parameter{at}: {inner}"))
        })
    }
}

/// The `Idempotency-Key` header, for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by `IdempotencyKey`; this type only describes it
pub(crate) struct IdempotencyHeader {
    /// 1-255 visible ASCII characters; a repeated submission with the same key returns the first job.
    #[param(rename = "Idempotency-Key", pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// The optional `Idempotency-Key` header: a repeat of a submit with the same key returns the first job.
pub(crate) struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get("idempotency-key") else { return Ok(Self(None)) };
        let bad = || {
            ApiError::new(
                ErrorCode::InvalidRequest,
                "Idempotency-Key must be 1-255 visible ASCII characters (a UUID is a good choice)",
            )
        };
        let s = v.to_str().map_err(|_| bad())?.trim();
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        Ok(Self(Some(s.to_string())))
    }
}
