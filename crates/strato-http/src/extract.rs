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
pub(crate) struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_error)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON with an error that says where it broke.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidJson, "the request body is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_data() { ErrorCode::InvalidRequest } else { ErrorCode::InvalidJson };
        // The path names the field to fix (`params.C`, `data[3].label`); "." is the whole body.
        if inner.is_data() && path != "." {
            ApiError::new(code, format!("invalid request body at `{path}`: {inner}"))
        } else {
            ApiError::new(code, format!("invalid request body: {inner}"))
        }
    })?;
    Ok(value)
}

/// Query parameters whose rejection is our JSON error, naming the parameter.
pub(crate) struct QueryParams<T>(pub T);

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
