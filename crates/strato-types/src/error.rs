use std::fmt;

/// Stable, machine-readable error codes. Clients match on these strings: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body is not valid JSON or does not match the expected shape.
    InvalidJson,
    /// A request field is missing or has a bad value.
    InvalidRequest,
    /// A user-chosen name has characters outside the allowed set.
    InvalidName,
    /// A dataset could not be parsed; the message names the line or index.
    InvalidDataset,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The `Content-Type` is not one this route accepts.
    UnsupportedMediaType,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// No such route.
    RouteNotFound,
    /// No such model.
    ModelNotFound,
    /// No such model version.
    VersionNotFound,
    /// No such dataset.
    DatasetNotFound,
    /// No such job.
    JobNotFound,
    /// No such mentor.
    MentorNotFound,
    /// The mentor has no trained classifier yet.
    MentorNotTrained,
    /// No such user question (feedback id).
    FeedbackNotFound,
    /// No such entry in the dead-letter queue.
    DeadLetterNotFound,
    /// No such API key.
    ApiKeyNotFound,
    /// No such file (object) in storage.
    FileNotFound,
    /// No such resource of a capability's kind (a function, a workflow, …); the message names it.
    ResourceNotFound,
    /// The resource exists already, or changed meanwhile; the message says which and what to do.
    Conflict,
    /// The requested byte range starts past the end of the file.
    RangeNotSatisfiable,
    /// Presigned URLs are not available here (local storage needs `--public-url`).
    PresignUnavailable,
    /// Too many requests: the rate limit or the quota is used up (see `Retry-After`).
    RateLimited,
    /// The server is at its concurrent-request limit; retry shortly.
    Overloaded,
    /// The request took longer than the server's time limit; nothing more is done for it.
    RequestTimeout,
    /// The job already reached a final status (it cannot be cancelled).
    JobFinished,
    /// The model exists and the request did not ask to replace it.
    ModelExists,
    /// Missing or wrong credentials.
    Unauthorized,
    /// The credentials are fine but do not allow this.
    Forbidden,
    /// Credentials cannot be checked right now (the JWKS cannot be loaded).
    AuthUnavailable,
    /// The embedding model a classifier was trained with differs from the one loaded.
    EmbeddingModelMismatch,
    /// The data directory, database or object store refused a write (read-only, full, unreachable); nothing was
    /// changed — retry once the condition clears.
    StorageUnavailable,
    /// Something failed inside Strato; the server log has the cause chain.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidName => "invalid_name",
            Self::InvalidDataset => "invalid_dataset",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RouteNotFound => "route_not_found",
            Self::ModelNotFound => "model_not_found",
            Self::VersionNotFound => "version_not_found",
            Self::DatasetNotFound => "dataset_not_found",
            Self::JobNotFound => "job_not_found",
            Self::MentorNotFound => "mentor_not_found",
            Self::MentorNotTrained => "mentor_not_trained",
            Self::FeedbackNotFound => "feedback_not_found",
            Self::DeadLetterNotFound => "dead_letter_not_found",
            Self::ApiKeyNotFound => "api_key_not_found",
            Self::FileNotFound => "file_not_found",
            Self::ResourceNotFound => "resource_not_found",
            Self::Conflict => "conflict",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::PresignUnavailable => "presign_unavailable",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::RequestTimeout => "request_timeout",
            Self::JobFinished => "job_finished",
            Self::ModelExists => "model_exists",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::AuthUnavailable => "auth_unavailable",
            Self::EmbeddingModelMismatch => "embedding_model_mismatch",
            Self::StorageUnavailable => "storage_unavailable",
            Self::Internal => "internal",
        }
    }

    /// Whether the caller can fix it (4xx) rather than Strato (5xx). Jobs failing with a user error are not retried.
    pub fn is_user_error(self) -> bool {
        !matches!(
            self,
            Self::Internal
                | Self::StorageUnavailable
                | Self::AuthUnavailable
                | Self::Overloaded
                | Self::RequestTimeout
                | Self::PresignUnavailable
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a message that tells the user what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StratoError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

impl StratoError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// An internal error; the message should not leak internals beyond a short description.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}
