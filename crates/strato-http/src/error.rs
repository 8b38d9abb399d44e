//! The one mapping from error codes to HTTP statuses, and the JSON error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use strato_types::{ErrorCode, StratoError};

/// An error returned by a native route: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError(pub StratoError);

impl From<StratoError> for ApiError {
    fn from(e: StratoError) -> Self {
        Self(e)
    }
}

impl ApiError {
    /// Shorthand for a new error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(StratoError::new(code, message))
    }
}

/// The error body of native routes (and of the gateway's refusals on every route).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `model_not_found`, `invalid_request`, `rate_limited`.
    #[schema(example = "model_not_found")]
    code: &'static str,
    /// What to fix, for people.
    message: String,
}

/// HTTP status of each code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::InvalidJson | C::InvalidRequest | C::InvalidName | C::InvalidDataset => StatusCode::BAD_REQUEST,
        C::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        C::RouteNotFound
        | C::ModelNotFound
        | C::VersionNotFound
        | C::DatasetNotFound
        | C::JobNotFound
        | C::MentorNotFound
        | C::MentorNotTrained
        | C::FeedbackNotFound
        | C::DeadLetterNotFound
        | C::ApiKeyNotFound
        | C::FileNotFound
        | C::ResourceNotFound => StatusCode::NOT_FOUND,
        C::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        C::PresignUnavailable => StatusCode::NOT_IMPLEMENTED,
        C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        C::ModelExists | C::JobFinished | C::Conflict => StatusCode::CONFLICT,
        C::Unauthorized => StatusCode::UNAUTHORIZED,
        C::Forbidden => StatusCode::FORBIDDEN,
        C::AuthUnavailable | C::Overloaded | C::RequestTimeout => StatusCode::SERVICE_UNAVAILABLE,
        C::EmbeddingModelMismatch => StatusCode::CONFLICT,
        C::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        let body = Json(ErrorBody { error: ErrorDetail { code: self.0.code.as_str(), message: self.0.message } });
        if status == StatusCode::UNAUTHORIZED {
            return (status, [("www-authenticate", "Bearer")], body).into_response();
        }
        if self.0.code == ErrorCode::Overloaded {
            // The embedding queue and the admission limit both clear within a second or so.
            return (status, [("retry-after", "1")], body).into_response();
        }
        (status, body).into_response()
    }
}

pub(crate) async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, format!("no route for {}", uri.path()))
}

pub(crate) async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("{method} is not allowed on {}", uri.path()))
}

/// An error in the shape AWS's REST-JSON services (Lambda among them) answer with: the error's type in
/// `x-amzn-ErrorType`, which the AWS SDKs and CLI read, and `{"Type": "User", "message": …}`.
pub fn aws_error(status: axum::http::StatusCode, kind: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = (status, axum::Json(serde_json::json!({"Type": "User", "message": message}))).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(kind) {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}
