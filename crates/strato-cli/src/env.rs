//! Every environment variable the `strato` binary reads, named once (UV's `EnvVars`): the options' `env = …`, the
//! code that reads one directly, and the README's configuration table all use these names.

/// Names of environment variables.
pub struct EnvVars;

impl EnvVars {
    pub const STRATO_ACCESS_POLICY: &str = "STRATO_ACCESS_POLICY";
    pub const STRATO_ADDR: &str = "STRATO_ADDR";
    pub const STRATO_ADMIN_TOKEN: &str = "STRATO_ADMIN_TOKEN";
    pub const STRATO_ALERT_WEBHOOK_URL: &str = "STRATO_ALERT_WEBHOOK_URL";
    pub const STRATO_ANONYMOUS_RATE_LIMIT: &str = "STRATO_ANONYMOUS_RATE_LIMIT";
    pub const STRATO_ANONYMOUS_RATE_LIMIT_BURST: &str = "STRATO_ANONYMOUS_RATE_LIMIT_BURST";
    pub const STRATO_BATCH_MAX_QUEUED: &str = "STRATO_BATCH_MAX_QUEUED";
    pub const STRATO_BATCH_MAX_TEXTS: &str = "STRATO_BATCH_MAX_TEXTS";
    pub const STRATO_BATCH_MAX_TOKENS: &str = "STRATO_BATCH_MAX_TOKENS";
    pub const STRATO_BATCH_WAIT_US: &str = "STRATO_BATCH_WAIT_US";
    pub const STRATO_CORS_ORIGINS: &str = "STRATO_CORS_ORIGINS";
    pub const STRATO_DAILY_QUOTA: &str = "STRATO_DAILY_QUOTA";
    pub const STRATO_DATABASE_URL: &str = "STRATO_DATABASE_URL";
    pub const STRATO_DATA_DIR: &str = "STRATO_DATA_DIR";
    pub const STRATO_EMBEDDING_CACHE_SIZE: &str = "STRATO_EMBEDDING_CACHE_SIZE";
    pub const STRATO_EMBEDDING_MODEL: &str = "STRATO_EMBEDDING_MODEL";
    pub const STRATO_EMBEDDING_PRECISION: &str = "STRATO_EMBEDDING_PRECISION";
    pub const STRATO_FUNCTIONS_IDLE_TIMEOUT: &str = "STRATO_FUNCTIONS_IDLE_TIMEOUT";
    pub const STRATO_FUNCTIONS_MAX_INSTANCES: &str = "STRATO_FUNCTIONS_MAX_INSTANCES";
    pub const STRATO_FUNCTIONS_PYTHON: &str = "STRATO_FUNCTIONS_PYTHON";
    pub const STRATO_FFMPEG: &str = "STRATO_FFMPEG";
    pub const STRATO_FFPROBE: &str = "STRATO_FFPROBE";
    pub const STRATO_MEDIA_THREADS: &str = "STRATO_MEDIA_THREADS";
    pub const STRATO_MEDIA_TIMEOUT: &str = "STRATO_MEDIA_TIMEOUT";
    pub const STRATO_MEDIA_TRANSFER_HOSTS: &str = "STRATO_MEDIA_TRANSFER_HOSTS";
    pub const STRATO_WHISPER_LANGUAGE: &str = "STRATO_WHISPER_LANGUAGE";
    pub const STRATO_WHISPER_MODEL: &str = "STRATO_WHISPER_MODEL";
    pub const STRATO_FUNCTIONS_RIE_FUNCTION: &str = "STRATO_FUNCTIONS_RIE_FUNCTION";
    pub const STRATO_FUNCTIONS_USER: &str = "STRATO_FUNCTIONS_USER";
    pub const STRATO_HSTS_MAX_AGE: &str = "STRATO_HSTS_MAX_AGE";
    pub const STRATO_INSECURE_NO_AUTH: &str = "STRATO_INSECURE_NO_AUTH";
    pub const STRATO_JOB_LEASE_SECS: &str = "STRATO_JOB_LEASE_SECS";
    pub const STRATO_JOB_TTL: &str = "STRATO_JOB_TTL";
    pub const STRATO_JWKS_FILE: &str = "STRATO_JWKS_FILE";
    pub const STRATO_JWKS_URL: &str = "STRATO_JWKS_URL";
    pub const STRATO_JWT_AUDIENCE: &str = "STRATO_JWT_AUDIENCE";
    pub const STRATO_JWT_GROUP_CLAIMS: &str = "STRATO_JWT_GROUP_CLAIMS";
    pub const STRATO_JWT_ISSUER: &str = "STRATO_JWT_ISSUER";
    pub const STRATO_JWT_LEEWAY_SECS: &str = "STRATO_JWT_LEEWAY_SECS";
    pub const STRATO_JWT_MENTOR_CLAIMS: &str = "STRATO_JWT_MENTOR_CLAIMS";
    pub const STRATO_JWT_ROLE_CLAIMS: &str = "STRATO_JWT_ROLE_CLAIMS";
    pub const STRATO_JWT_SECRET: &str = "STRATO_JWT_SECRET";
    pub const STRATO_JWT_SUBJECT_CLAIMS: &str = "STRATO_JWT_SUBJECT_CLAIMS";
    pub const STRATO_LOG: &str = "STRATO_LOG";
    pub const STRATO_LOG_FORMAT: &str = "STRATO_LOG_FORMAT";
    pub const STRATO_MAX_CONCURRENT_REQUESTS: &str = "STRATO_MAX_CONCURRENT_REQUESTS";
    pub const STRATO_MAX_DATASET_BYTES: &str = "STRATO_MAX_DATASET_BYTES";
    pub const STRATO_MAX_FILE_BYTES: &str = "STRATO_MAX_FILE_BYTES";
    pub const STRATO_MAX_JSON_BYTES: &str = "STRATO_MAX_JSON_BYTES";
    pub const STRATO_PUBLIC_ROUTES: &str = "STRATO_PUBLIC_ROUTES";
    pub const STRATO_PUBLIC_URL: &str = "STRATO_PUBLIC_URL";
    pub const STRATO_QUEUES: &str = "STRATO_QUEUES";
    pub const STRATO_QUOTA_WINDOW: &str = "STRATO_QUOTA_WINDOW";
    pub const STRATO_RATE_LIMIT: &str = "STRATO_RATE_LIMIT";
    pub const STRATO_RATE_LIMIT_BURST: &str = "STRATO_RATE_LIMIT_BURST";
    pub const STRATO_REQUEST_TIMEOUT: &str = "STRATO_REQUEST_TIMEOUT";
    pub const STRATO_SECRETS_KEY: &str = "STRATO_SECRETS_KEY";
    pub const STRATO_SIGNING_KEY: &str = "STRATO_SIGNING_KEY";
    pub const STRATO_SLOW_RESPONSE_MS: &str = "STRATO_SLOW_RESPONSE_MS";
    pub const STRATO_SLOW_ROUTES: &str = "STRATO_SLOW_ROUTES";
    pub const STRATO_STORAGE: &str = "STRATO_STORAGE";
    pub const STRATO_WORKERS: &str = "STRATO_WORKERS";
    pub const STRATO_WORKFLOWS_HTTP_ALLOW: &str = "STRATO_WORKFLOWS_HTTP_ALLOW";
    /// The log filter when `STRATO_LOG` is unset.
    pub const RUST_LOG: &str = "RUST_LOG";
    /// Where errors and panics are reported (a Sentry DSN).
    pub const SENTRY_DSN: &str = "SENTRY_DSN";
}
