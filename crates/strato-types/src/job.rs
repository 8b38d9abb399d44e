use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Lifecycle of a job. `QUEUED → IN_PROGRESS → SUCCESS | FAILURE`.
///
/// # Warning
/// Stored as these strings in the job table: renaming a variant needs a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl JobStatus {
    /// Stored / wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Success => "SUCCESS",
            Self::Failure => "FAILURE",
        }
    }

    /// Parses the stored / wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "QUEUED" => Self::Queued,
            "IN_PROGRESS" => Self::InProgress,
            "SUCCESS" => Self::Success,
            "FAILURE" => Self::Failure,
            _ => return None,
        })
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure)
    }
}

/// What a job does; selects the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Train a text classifier version.
    TrainModel,
    /// Train a mentor's question classifier.
    TrainMentor,
}

impl JobKind {
    /// Stored / wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TrainModel => "train_model",
            Self::TrainMentor => "train_mentor",
        }
    }

    /// Parses the stored / wire form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "train_model" => Some(Self::TrainModel),
            "train_mentor" => Some(Self::TrainMentor),
            _ => None,
        }
    }
}

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
    /// How many times a retryable failure is retried before the job fails for good.
    pub max_attempts: i32,
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
}
