use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Lifecycle of a job. `QUEUED → IN_PROGRESS → SUCCESS | FAILURE | CANCELLED`; a failed attempt with attempts
/// left goes back to `QUEUED` (after a backoff). A job that exhausted its attempts is `FAILURE` with
/// `dead_lettered_at` set: it sits in the dead-letter queue until replayed or deleted.
///
/// # Warning
/// Stored as these strings in the job table: renaming a variant needs a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for a worker.
    Queued,
    /// Claimed by a worker holding a lease.
    InProgress,
    /// Finished; `result` is set.
    Success,
    /// Finished with an error; `error` is set.
    Failure,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobStatus {
    /// Stored / wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses the stored / wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "QUEUED" => Self::Queued,
            "IN_PROGRESS" => Self::InProgress,
            "SUCCESS" => Self::Success,
            "FAILURE" => Self::Failure,
            "CANCELLED" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure | Self::Cancelled)
    }
}

/// What a job does; selects the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Train a text classifier version.
    TrainModel,
    /// Train a mentor's question classifier.
    TrainMentor,
    /// Does nothing, or sleeps / fails as its payload asks (`{"sleep_ms", "fail": "retryable"|"permanent"}`):
    /// queue benchmarks and drills of the retry, timeout and dead-letter paths.
    Noop,
}

impl JobKind {
    /// Stored / wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrainModel => "train_model",
            Self::TrainMentor => "train_mentor",
            Self::Noop => "noop",
        }
    }

    /// Every kind, for listings and error messages.
    pub const ALL: [JobKind; 3] = [Self::TrainModel, Self::TrainMentor, Self::Noop];

    /// How long one attempt may run before it is stopped and counted as a (retryable) failure.
    pub fn default_timeout(self) -> std::time::Duration {
        std::time::Duration::from_secs(match self {
            Self::TrainModel => 2 * 3600,
            Self::TrainMentor => 3600,
            Self::Noop => 300,
        })
    }

    /// Parses the stored / wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "train_model" => Some(Self::TrainModel),
            "train_mentor" => Some(Self::TrainMentor),
            "noop" => Some(Self::Noop),
            _ => None,
        }
    }
}

/// Attempts a job gets unless its submitter says otherwise (SQS's `maxReceiveCount` in the seeds).
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Handler selector.
    pub kind: JobKind,
    /// Handler input, JSON.
    pub payload: serde_json::Value,
    /// Jobs with the same key are about the same resource (e.g. `model:tc-01`).
    pub key: Option<String>,
    /// Higher runs first; FIFO within a priority.
    pub priority: i32,
    /// Attempts before the job goes to the dead-letter queue.
    pub max_attempts: i32,
    /// Client-chosen key: submitting again with the same key returns the first job instead of a new one.
    pub idempotency_key: Option<String>,
    /// When set and a job of the same kind and key is still queued, that job is returned (its payload replaced by
    /// this one's) instead of queueing a duplicate.
    pub coalesce: bool,
    /// Per-attempt time limit; `None` is the kind's default.
    pub timeout: Option<std::time::Duration>,
}

impl NewJob {
    /// A job with default priority, attempts and timeout, no key.
    pub fn new(kind: JobKind, payload: serde_json::Value) -> Self {
        Self {
            kind,
            payload,
            key: None,
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            idempotency_key: None,
            coalesce: false,
            timeout: None,
        }
    }

    /// The attempt time limit in force.
    pub fn timeout_or_default(&self) -> std::time::Duration {
        self.timeout.unwrap_or_else(|| self.kind.default_timeout())
    }
}

/// A job row as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id (UUID v7: sortable by creation).
    pub id: String,
    /// Handler selector.
    pub kind: JobKind,
    /// Current status.
    pub status: JobStatus,
    /// Handler input.
    pub payload: serde_json::Value,
    /// Resource key.
    pub key: Option<String>,
    /// Priority.
    pub priority: i32,
    /// Progress 0–100.
    pub progress: i32,
    /// Error message of the last failed attempt.
    pub error: Option<String>,
    /// Handler output on success.
    pub result: Option<serde_json::Value>,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Worker that holds the lease, while in progress.
    pub lease_owner: Option<String>,
    /// When the lease lapses; after that another worker may claim the job.
    pub lease_expires_at: Option<Timestamp>,
    /// Not claimable before this time (backoff).
    pub run_after: Timestamp,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// First claim.
    pub started_at: Option<Timestamp>,
    /// Reached a final status.
    pub finished_at: Option<Timestamp>,
    /// Per-attempt time limit, milliseconds.
    pub timeout_ms: i64,
    /// The submitter's idempotency key.
    pub idempotency_key: Option<String>,
    /// Cancellation was asked for while the job ran; the handler stops at its next check.
    pub cancel_requested: bool,
    /// When the job entered the dead-letter queue (it exhausted its attempts); `None` when it is not there.
    pub dead_lettered_at: Option<Timestamp>,
}

/// How one attempt of a job ended.
///
/// # Warning
/// Stored as these strings in the attempts table: renaming a variant needs a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptEnd {
    /// Still running (or its worker vanished and the lease has not been noticed as lapsed yet).
    Running,
    /// The handler succeeded.
    Succeeded,
    /// The handler failed (error recorded).
    Failed,
    /// The attempt ran past the kind's time limit.
    TimedOut,
    /// The worker stopped renewing its lease (crash, lost machine); another attempt took over.
    LeaseExpired,
    /// Handed back to the queue by a worker shutting down; does not count against the attempts.
    Released,
    /// Stopped because the job was cancelled.
    Cancelled,
}

impl AttemptEnd {
    /// Stored / wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::LeaseExpired => "lease_expired",
            Self::Released => "released",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "timed_out" => Self::TimedOut,
            "lease_expired" => Self::LeaseExpired,
            "released" => Self::Released,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// One attempt of a job: who ran it, when, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobAttempt {
    /// 1-based attempt number (a released attempt's number is reused by the next one).
    pub attempt: i32,
    /// Worker id.
    pub worker: String,
    /// Claim time.
    pub started_at: Timestamp,
    /// End time; `None` while running.
    pub finished_at: Option<Timestamp>,
    /// How it ended.
    pub outcome: AttemptEnd,
    /// Error message of a failed attempt.
    pub error: Option<String>,
}
