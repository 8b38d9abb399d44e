//! Metadata and the durable job queue, behind one trait.
//!
//! [`MetaStore`] is what the service talks to. Two implementations pass the same conformance suite
//! (`tests/conformance.rs`):
//!
//! - [`SqliteStore`]: embedded, one file in the data dir (WAL). One process owns the queue;
//!   other processes' workers would only notice new jobs by polling.
//! - [`PgStore`]: PostgreSQL, for several processes sharing one queue. Claims use `FOR UPDATE SKIP LOCKED` plus a
//!   per-key advisory lock, and writes `NOTIFY` a channel that every store `LISTEN`s on, so
//!   [`MetaStore::job_signal`] wakes idle workers in all processes. [`PgStoreOptions::schema`] isolates
//!   deployments (and tests) sharing a database.
//!
//! Both write the queue's hot path (enqueue, claim, complete) by group commit: a process's concurrent requests share
//! one transaction (`batch`), which is what makes thousands of jobs per second possible on 2 cores.
//!
//! Every multi-row change happens in one transaction, so a failure never leaves partial state. Both backends keep
//! times as integer milliseconds and apply the numbered migrations in `migrations/<backend>/` at connect; a schema
//! change adds a file with the same number to both directories.

mod batch;
mod postgres;
mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use strato_types::{
    ApiKeyRecord, DatasetRecord, Grade, JobAttempt, JobKind, JobRecord, JobStatus, ModelRecord, ModelVersionRecord,
    NewJob, UserQuestionRecord,
};

pub use postgres::{PgStore, PgStoreOptions};
pub use sqlite::SqliteStore;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite batch writer's connection failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the database refused or could not take the request for a reason outside the request (read-only
    /// or full disk, I/O error, lost connection, server shutting down): the caller may retry later, and nothing
    /// was changed because every change is one transaction.
    pub fn is_unavailable(&self) -> bool {
        if let StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) = self {
            return sqlite_code_unavailable(i64::from(e.extended_code));
        }
        let StoreError::Database(e) = self else { return false };
        match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                true
            }
            sqlx::Error::Database(d) => {
                let code = d.code().unwrap_or_default();
                // SQLite codes are numbers. PostgreSQL SQLSTATEs: 08xxx connection, 53xxx insufficient resources
                // (disk full), 57Pxx shutdown, 25006 read-only transaction.
                if let Ok(n) = code.parse::<i64>() {
                    return sqlite_code_unavailable(n);
                }
                code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") || code == "25006"
            }
            _ => false,
        }
    }
}

/// SQLite result codes (extended codes keep the primary in the low byte) that mean "not now": BUSY 5, LOCKED 6,
/// NOMEM 7, READONLY 8, IOERR 10, FULL 13, CANTOPEN 14.
fn sqlite_code_unavailable(code: i64) -> bool {
    matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14)
}

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Outcome of asking to (re)train a model.
#[derive(Debug)]
pub enum TrainSubmission {
    /// The model row exists (or was created) and the job is queued (or an equal one already was).
    Queued(Box<Enqueued>),
    /// The model exists and `force` was false.
    ModelExists,
}

/// How an enqueue was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// A new job was queued.
    Created,
    /// A job with the same idempotency key exists; it is returned unchanged.
    Idempotent,
    /// A job of the same kind and key was still queued; it now carries the new payload and is returned.
    Coalesced,
}

/// A job returned by an enqueue, and how it came about.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The job.
    pub job: JobRecord,
    /// Whether it is new.
    pub outcome: EnqueueOutcome,
    /// On [`EnqueueOutcome::Coalesced`], the payload the new one replaced (so the caller can release what it
    /// referenced, e.g. an uploaded dataset blob).
    pub replaced_payload: Option<serde_json::Value>,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    /// The worker still holds the job; `cancel_requested` tells the handler to stop.
    Held {
        /// Someone asked to cancel the job.
        cancel_requested: bool,
    },
    /// The lease is gone (lapsed and taken over, or the job was finished elsewhere).
    Lost,
}

/// What recording a failed attempt did.
#[derive(Debug, Clone, PartialEq)]
pub enum FailOutcome {
    /// Queued again; runs after the backoff.
    Retrying,
    /// Failed for good without a retry (a permanent error).
    Failed,
    /// Attempts exhausted: the job is in the dead-letter queue.
    DeadLettered(Box<JobRecord>),
    /// A cancel was requested while the attempt ran: the job is `CANCELLED` instead of retried.
    Cancelled,
    /// The worker no longer held the job; nothing changed.
    LeaseLost,
}

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum CancelOutcome {
    /// The job was queued and is now `CANCELLED`.
    Cancelled(Box<JobRecord>),
    /// The job is running; its handler was asked to stop and the job becomes `CANCELLED` when it does.
    Requested(Box<JobRecord>),
    /// The job had already finished; nothing changed.
    AlreadyFinished(Box<JobRecord>),
    /// No such job.
    NotFound,
}

/// What the periodic lease reaper did.
#[derive(Debug, Default, Clone)]
pub struct Reaped {
    /// Jobs whose last attempt's lease lapsed with no attempts left: now in the dead-letter queue.
    pub dead_lettered: Vec<JobRecord>,
    /// Jobs whose lease lapsed after a cancel request: now `CANCELLED`.
    pub cancelled: usize,
}

/// Outcome of [`MetaStore::add_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddVersion {
    /// Added and activated with this number.
    Added(i64),
    /// The model was deleted meanwhile.
    ModelMissing,
    /// The fencing job's lease is no longer held by the worker.
    LeaseLost,
}

/// A stored mentor document.
#[derive(Debug, Clone)]
pub struct MentorRow {
    /// The mentor JSON.
    pub body: serde_json::Value,
    /// Increases on every change that affects answering.
    pub revision: i64,
    /// Creation time.
    pub created_at: strato_types::Timestamp,
    /// Last change.
    pub updated_at: strato_types::Timestamp,
}

/// Filter for user-question listings.
#[derive(Debug, Default, Clone)]
pub struct UserQuestionFilter {
    /// Only this answer type.
    pub answer_type: Option<strato_types::AnswerType>,
    /// Only questions not graded yet.
    pub ungraded: bool,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

/// Filter for job listings.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this kind.
    pub kind: Option<JobKind>,
    /// Only this key.
    pub key: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

/// Metadata and queue operations.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Inserts or replaces a dataset record; returns the replaced one.
    async fn put_dataset(&self, rec: &DatasetRecord) -> Result<Option<DatasetRecord>>;
    /// One dataset.
    async fn get_dataset(&self, name: &str) -> Result<Option<DatasetRecord>>;
    /// All datasets by name.
    async fn list_datasets(&self) -> Result<Vec<DatasetRecord>>;
    /// Deletes a dataset record; returns it.
    async fn delete_dataset(&self, name: &str) -> Result<Option<DatasetRecord>>;

    /// One model.
    async fn get_model(&self, id: &str) -> Result<Option<ModelRecord>>;
    /// All models by id.
    async fn list_models(&self) -> Result<Vec<ModelRecord>>;
    /// Versions of a model, oldest first.
    async fn list_versions(&self, model_id: &str) -> Result<Vec<ModelVersionRecord>>;
    /// One version.
    async fn get_version(&self, model_id: &str, version: i64) -> Result<Option<ModelVersionRecord>>;
    /// In one transaction: refuse if the model exists and `force` is false; else create/update the model row
    /// (keeping its active version) and enqueue the training job (idempotency and coalescing as
    /// [`MetaStore::enqueue`]) — already claimed by `claimed_by` when given, so the caller runs it itself.
    async fn submit_training(
        &self,
        model_id: &str,
        meta: &serde_json::Value,
        force: bool,
        job: NewJob,
        claimed_by: Option<(&str, Duration)>,
    ) -> Result<TrainSubmission>;
    /// In one transaction: add the next version of a model and make it active. With a `fence` (job id, worker),
    /// nothing changes unless that worker still holds that job's lease, so an attempt that lost its lease can never
    /// publish a version beside the attempt that replaced it.
    async fn add_version(
        &self,
        model_id: &str,
        blob_key: &str,
        metrics: &serde_json::Value,
        params: &serde_json::Value,
        fence: Option<(&str, &str)>,
    ) -> Result<AddVersion>;
    /// Creates the model row if it does not exist (no version yet).
    async fn ensure_model(&self, model_id: &str, meta: &serde_json::Value) -> Result<()>;
    /// Makes a version active; false when the model or version does not exist.
    async fn activate_version(&self, model_id: &str, version: i64) -> Result<bool>;
    /// Deletes a model and its versions; returns what was deleted.
    async fn delete_model(&self, model_id: &str) -> Result<Option<(ModelRecord, Vec<ModelVersionRecord>)>>;

    /// Creates or replaces a mentor document; returns its new revision.
    async fn put_mentor(&self, id: &str, body: &serde_json::Value) -> Result<i64>;
    /// One mentor.
    async fn get_mentor(&self, id: &str) -> Result<Option<MentorRow>>;
    /// Ids of all mentors.
    async fn list_mentor_ids(&self) -> Result<Vec<String>>;
    /// Deletes a mentor and its user questions; returns whether it existed.
    async fn delete_mentor(&self, id: &str) -> Result<bool>;
    /// The mentor's revision and the active version of model `model_id`, in one read (the per-request staleness
    /// check); `None` when the mentor does not exist.
    async fn mentor_state(&self, id: &str, model_id: &str) -> Result<Option<(i64, Option<i64>)>>;
    /// Records a question a user asked.
    async fn insert_user_question(&self, q: &UserQuestionRecord) -> Result<()>;
    /// A mentor's user questions, newest first.
    async fn list_user_questions(&self, mentor_id: &str, f: &UserQuestionFilter) -> Result<Vec<UserQuestionRecord>>;
    /// One user question.
    async fn get_user_question(&self, id: &str) -> Result<Option<UserQuestionRecord>>;
    /// Grades a user question and bumps its mentor's revision, in one transaction; returns the updated record.
    async fn grade_user_question(&self, id: &str, grade: &Grade) -> Result<Option<UserQuestionRecord>>;
    /// A mentor's graded user questions.
    async fn graded_user_questions(&self, mentor_id: &str) -> Result<Vec<UserQuestionRecord>>;

    /// Enqueues a job: returns the existing job when its idempotency key was seen, or the queued job of the same
    /// kind and key when `coalesce` is set (replacing its payload); else a new `QUEUED` job. Wakes workers.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;
    /// Enqueues a job already claimed by `worker`, so no other worker picks it up (the CLI runs jobs itself).
    async fn enqueue_claimed(&self, job: NewJob, worker: &str, lease: Duration) -> Result<JobRecord>;
    /// One job.
    async fn get_job(&self, id: &str) -> Result<Option<JobRecord>>;
    /// Every attempt of a job, oldest first.
    async fn job_attempts(&self, id: &str) -> Result<Vec<JobAttempt>>;
    /// Jobs, newest first.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>>;
    /// Claims the next runnable job: queued and due, or in progress with a lapsed lease and attempts left. Highest
    /// priority first, then oldest; a job whose key has another job running under a live lease waits (one
    /// training per model or mentor at a time). Records the attempt (closing a lapsed one as `lease_expired`).
    async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<JobRecord>>;
    /// Extends the lease and records progress.
    async fn heartbeat(&self, id: &str, worker: &str, lease: Duration, progress: Option<i32>) -> Result<Heartbeat>;
    /// Marks success; false (and no change) when `worker` no longer holds the job.
    async fn complete(&self, id: &str, worker: &str, result: &serde_json::Value) -> Result<bool>;
    /// [`MetaStore::complete`], then [`MetaStore::claim`] for the same worker: a worker's "done, what's next". The
    /// batching stores send both at once, so they share a transaction (the completion applied first).
    async fn complete_and_claim(
        &self,
        id: &str,
        worker: &str,
        result: &serde_json::Value,
        lease: Duration,
    ) -> Result<(bool, Option<JobRecord>)> {
        let done = self.complete(id, worker, result).await?;
        Ok((done, self.claim(worker, lease).await?))
    }
    /// Records a failed attempt (`timed_out` says why it ended): back to `QUEUED` after `retry_in` when attempts
    /// remain and a delay is given; `FAILURE` at once when no delay is given (permanent error); `FAILURE` in the
    /// dead-letter queue when a retryable error exhausted the attempts; `CANCELLED` when a cancel was requested.
    async fn fail(
        &self,
        id: &str,
        worker: &str,
        error: &str,
        retry_in: Option<Duration>,
        timed_out: bool,
    ) -> Result<FailOutcome>;
    /// Gives a job back to the queue without counting against its attempts (the worker is shutting down); a job
    /// with a pending cancel request becomes `CANCELLED` instead. False when `worker` no longer holds it.
    async fn release(&self, id: &str, worker: &str) -> Result<bool>;
    /// Cancels a job: at once when queued, by request when running (see [`MetaStore::finish_cancelled`]).
    async fn cancel_job(&self, id: &str) -> Result<CancelOutcome>;
    /// Marks a running job `CANCELLED` after its handler stopped on a cancel request; false when `worker` no
    /// longer holds it.
    async fn finish_cancelled(&self, id: &str, worker: &str) -> Result<bool>;
    /// Moves jobs whose lease lapsed with no attempts left to the dead-letter queue, and lapsed jobs with a cancel
    /// request to `CANCELLED`. Idempotent; any process may run it.
    async fn reap_expired_leases(&self) -> Result<Reaped>;
    /// Dead-letter queue entries, newest first.
    async fn list_dead_letters(&self, limit: i64) -> Result<Vec<JobRecord>>;
    /// Re-queues a dead-lettered job with fresh attempts (its history is kept); `None` when it is not in the
    /// dead-letter queue.
    async fn replay_dead_letter(&self, id: &str) -> Result<Option<JobRecord>>;
    /// Removes a job from the dead-letter queue and deletes it; false when it is not there.
    async fn delete_dead_letter(&self, id: &str) -> Result<bool>;
    /// Deletes finished jobs (and dead-letter entries) that finished before `cutoff`, with their attempts; returns
    /// how many.
    async fn delete_finished_before(&self, cutoff: strato_types::Timestamp) -> Result<u64>;
    /// Milliseconds until the earliest queued job becomes due, if any is waiting (lets idle workers sleep exactly).
    async fn next_due_in(&self) -> Result<Option<Duration>>;
    /// Notified whenever a job may have become claimable: by this process's own writes, and — where the backend
    /// can tell (PostgreSQL `LISTEN/NOTIFY`) — by other processes' writes. Workers wait on it instead of polling.
    fn job_signal(&self) -> std::sync::Arc<tokio::sync::Notify>;

    // API keys and usage.
    /// Stores a new API key.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()>;
    /// Every key, revoked ones included, newest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// The key whose secret hashes to `secret_hash`, revoked or not.
    async fn api_key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>>;
    /// Marks a key revoked (once; a second revoke keeps the first time); `None` when there is no such key.
    async fn revoke_api_key(&self, id: &str, at: strato_types::Timestamp) -> Result<Option<ApiKeyRecord>>;
    /// Counts one request for `subject` in the quota window starting at `window_start` (ms), unless `limit` requests
    /// were already counted there: `Some(count)` with the new count, or `None` when the quota is used up. Atomic
    /// across processes sharing the database.
    async fn take_usage(&self, subject: &str, window_start: i64, limit: u64) -> Result<Option<u64>>;
    /// Forgets usage windows that started before `cutoff` (ms).
    async fn delete_usage_before(&self, cutoff: i64) -> Result<u64>;
    /// How many jobs there are per kind and status (dead-lettered jobs count as `DEAD_LETTER`).
    async fn job_counts(&self) -> Result<Vec<(String, String, i64)>>;
    /// Waits for in-flight writes (a batch's transaction) to finish and closes the connections; later calls fail.
    /// Call it last, at shutdown.
    async fn close(&self) {}
}

/// Rebuilds an API key from its stored columns (grants and plan are JSON text in both backends).
#[allow(clippy::too_many_arguments, reason = "one argument per stored column")]
pub(crate) fn api_key_from_columns(
    id: String,
    name: String,
    secret_hash: String,
    role: String,
    grants: &str,
    plan: &str,
    created_at: i64,
    revoked_at: Option<i64>,
) -> Result<ApiKeyRecord> {
    use chrono::TimeZone;
    #[derive(serde::Deserialize)]
    struct Grants {
        #[serde(default)]
        models: Vec<String>,
        #[serde(default)]
        mentors: Vec<String>,
    }
    let g: Grants = serde_json::from_str(grants).map_err(|e| StoreError::Corrupt(format!("api key grants: {e}")))?;
    let plan = serde_json::from_str(plan).map_err(|e| StoreError::Corrupt(format!("api key plan: {e}")))?;
    let ts = |ms: i64| chrono::Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    Ok(ApiKeyRecord {
        id,
        name,
        secret_hash,
        role,
        models: g.models,
        mentors: g.mentors,
        plan,
        created_at: ts(created_at),
        revoked_at: revoked_at.map(ts),
    })
}

/// The JSON text stored for a key's grants and plan.
pub(crate) fn api_key_documents(key: &ApiKeyRecord) -> (String, String) {
    let grants = serde_json::json!({"models": key.models, "mentors": key.mentors}).to_string();
    (grants, serde_json::to_string(&key.plan).unwrap_or_else(|_| "{}".into()))
}
