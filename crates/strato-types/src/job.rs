use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{ErrorCode, ResourceRef, StratoError, Timestamp};

/// Lifecycle of a job. `QUEUED → IN_PROGRESS → SUCCESS | FAILURE | CANCELLED`; a failed attempt with attempts
/// left goes back to `QUEUED` (after a backoff). A job that exhausted its attempts is `FAILURE` with
/// `dead_lettered_at` set: it sits in the dead-letter queue until replayed or deleted.
///
/// # Warning
/// Stored as these strings in the job table: renaming a variant needs a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// Waiting for a worker (or for its `run_after` time).
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

/// Whether `s` is a plain lower-case identifier: 1–64 of `[a-z0-9_.-]`, starting with a letter. Job kinds, queue
/// names and resource kinds are all of this form, so they can go into URLs, metric labels and log fields as they are.
pub(crate) const fn is_identifier(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 64 || !b[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 1;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.' || c == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// Declares a validated identifier newtype (job kinds, queue names, resource kinds): `const`-constructible from a
/// literal (checked at compile time), parsed with a clear error from user input, and read back from storage
/// as-is (a row written by a newer version must never fail to load).
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Cow<'static, str>);

        impl $name {
            /// A name from a literal; a name outside `[a-z][a-z0-9_.-]{0,63}` fails to compile in a `const`.
            pub const fn new(name: &'static str) -> Self {
                assert!(is_identifier(name), concat!("invalid ", $what, " name"));
                Self(Cow::Borrowed(name))
            }

            /// Parses a user-given name.
            pub fn parse(name: &str) -> Result<Self, StratoError> {
                if is_identifier(name) {
                    Ok(Self(Cow::Owned(name.to_string())))
                } else {
                    Err(StratoError::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            concat!("invalid ", $what, " {:?}: use 1-64 characters of a-z 0-9 _ . - starting with a letter"),
                            name
                        ),
                    ))
                }
            }

            /// The name as stored, unchecked: what a newer version wrote must load.
            pub fn from_stored(name: String) -> Self {
                Self(Cow::Owned(name))
            }

            /// The name.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = StratoError;
            fn try_from(s: String) -> Result<Self, StratoError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0.into_owned()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}
pub(crate) use identifier;

identifier!(
    /// What a job does: names the worker that runs it (`train_model`, `noop`, …). Kinds are registered by the
    /// capabilities that run them; the store keeps any kind, so jobs of a kind this process does not know (written
    /// by a newer version) are left alone rather than failing to load.
    JobKind,
    "job kind"
);

identifier!(
    /// A named queue. Each process runs a number of workers per queue, so long jobs of one queue (media,
    /// notebooks) never hold up another's (training).
    QueueName,
    "queue name"
);

impl QueueName {
    /// The queue of jobs that name no other.
    pub const DEFAULT: QueueName = QueueName::new("default");
}

impl Default for QueueName {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Attempts a job gets unless its kind or submitter says otherwise (SQS's `maxReceiveCount` in the seeds).
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;

/// How a job of a kind runs unless its submitter says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDefaults {
    /// The queue it waits in.
    pub queue: QueueName,
    /// How long one attempt may run before it is stopped and counted as a (retryable) failure.
    pub timeout: Duration,
    /// Attempts before the job goes to the dead-letter queue.
    pub max_attempts: i32,
    /// Higher runs first.
    pub priority: i32,
}

impl JobDefaults {
    /// The defaults of a kind that sets none: the default queue, an hour per attempt, five attempts, priority 0.
    pub const STANDARD: JobDefaults = JobDefaults {
        queue: QueueName::DEFAULT,
        timeout: Duration::from_secs(3600),
        max_attempts: DEFAULT_MAX_ATTEMPTS,
        priority: 0,
    };
}

impl Default for JobDefaults {
    fn default() -> Self {
        Self::STANDARD
    }
}

/// The typed arguments of a job kind, stored as the job's payload (River's `JobArgs`): the type names its kind
/// and that kind's defaults, so submitting is `NewJob::of(&args)` and the worker gets the same type back.
///
/// # Warning
/// Persisted as JSON in the job table: queued jobs written by an older version must still parse (add fields with
/// `#[serde(default)]`).
pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind's name, stored with each job.
    const KIND: JobKind;

    /// Whether the generic `POST /v1/jobs` may queue jobs of this kind with a caller's payload (checked against
    /// this type); kinds with routes of their own, which check their input first, say no.
    const GENERIC_SUBMIT: bool = false;

    /// Queue, time limit, attempts and priority of a job of this kind.
    fn defaults() -> JobDefaults {
        JobDefaults::STANDARD
    }

    /// The resource the job works on: whoever may edit it may see the job.
    fn resource(&self) -> Option<ResourceRef> {
        None
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Worker selector.
    pub kind: JobKind,
    /// Worker input, JSON.
    pub payload: serde_json::Value,
    /// The queue it waits in.
    pub queue: QueueName,
    /// Jobs with the same key are about the same resource (e.g. `model:tc-01`) and never run at the same time.
    pub key: Option<String>,
    /// The resource the job works on, for access checks.
    pub resource: Option<ResourceRef>,
    /// Higher runs first; among equals, the job due first.
    pub priority: i32,
    /// Attempts before the job goes to the dead-letter queue.
    pub max_attempts: i32,
    /// Client-chosen key: submitting again with the same key returns the first job instead of a new one.
    pub idempotency_key: Option<String>,
    /// When set and a job of the same kind and key is still queued, that job is returned (its payload replaced by
    /// this one's) instead of queueing a duplicate.
    pub coalesce: bool,
    /// Per-attempt time limit.
    pub timeout: Duration,
    /// Not claimable before this time (workflow waits, scheduled work); `None` is now.
    pub run_after: Option<Timestamp>,
}

impl NewJob {
    /// A job of `kind` with the standard defaults ([`JobDefaults::STANDARD`]) and no key.
    pub fn new(kind: JobKind, payload: serde_json::Value) -> Self {
        Self::with_defaults(kind, payload, &JobDefaults::STANDARD)
    }

    /// A job of `kind` with the given defaults.
    pub fn with_defaults(kind: JobKind, payload: serde_json::Value, d: &JobDefaults) -> Self {
        Self {
            kind,
            payload,
            queue: d.queue.clone(),
            key: None,
            resource: None,
            priority: d.priority,
            max_attempts: d.max_attempts,
            idempotency_key: None,
            coalesce: false,
            timeout: d.timeout,
            run_after: None,
        }
    }

    /// A job of `A`'s kind with its defaults, its resource, and `args` as the payload.
    pub fn of<A: JobArgs>(args: &A) -> Result<Self, StratoError> {
        let payload = serde_json::to_value(args)
            .map_err(|e| StratoError::internal(format!("encoding a {} job failed: {e}", A::KIND)))?;
        Ok(Self { resource: args.resource(), ..Self::with_defaults(A::KIND, payload, &A::defaults()) })
    }
}

/// A job row as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id (UUID v7: sortable by creation).
    pub id: String,
    /// Worker selector.
    pub kind: JobKind,
    /// The queue it waits in.
    pub queue: QueueName,
    /// Current status.
    pub status: JobStatus,
    /// Worker input.
    pub payload: serde_json::Value,
    /// Serialisation key.
    pub key: Option<String>,
    /// The resource the job works on.
    pub resource: Option<ResourceRef>,
    /// Priority.
    pub priority: i32,
    /// Progress 0–100.
    pub progress: i32,
    /// Error message of the last failed attempt.
    pub error: Option<String>,
    /// Worker output on success.
    pub result: Option<serde_json::Value>,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempt limit.
    pub max_attempts: i32,
    /// Worker that holds the lease, while in progress.
    pub lease_owner: Option<String>,
    /// When the lease lapses; after that another worker may claim the job.
    pub lease_expires_at: Option<Timestamp>,
    /// Not claimable before this time (scheduled, or backing off after a failure).
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
    /// Cancellation was asked for while the job ran; the worker stops at its next check.
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
    /// The worker succeeded.
    Succeeded,
    /// The worker failed (error recorded).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_on_parse_and_kept_as_stored() {
        for ok in ["noop", "train_model", "media.transcode-web", "a1"] {
            assert_eq!(JobKind::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Noop", "1abc", "a b", "a/b", "_x", &"x".repeat(65)] {
            assert_eq!(JobKind::parse(bad).unwrap_err().code, ErrorCode::InvalidRequest, "{bad}");
        }
        // Whatever a newer version stored loads as it is.
        assert_eq!(JobKind::from_stored("Some New Kind".into()).as_str(), "Some New Kind");
        let json = serde_json::to_string(&QueueName::new("media")).unwrap();
        assert_eq!(json, "\"media\"");
        assert!(serde_json::from_str::<QueueName>("\"Media\"").is_err());
    }

    #[derive(Serialize, Deserialize)]
    struct Transcode {
        video: String,
    }

    impl JobArgs for Transcode {
        const KIND: JobKind = JobKind::new("transcode");
        fn defaults() -> JobDefaults {
            JobDefaults { queue: QueueName::new("media"), max_attempts: 2, ..JobDefaults::STANDARD }
        }
        fn resource(&self) -> Option<ResourceRef> {
            Some(ResourceRef::new(crate::ResourceKind::new("video"), &self.video))
        }
    }

    #[test]
    fn typed_args_carry_their_kind_defaults_and_resource() {
        let j = NewJob::of(&Transcode { video: "v1".into() }).unwrap();
        assert_eq!((j.kind.as_str(), j.queue.as_str(), j.max_attempts), ("transcode", "media", 2));
        assert_eq!(j.timeout, JobDefaults::STANDARD.timeout);
        assert_eq!(j.payload, serde_json::json!({"video": "v1"}));
        assert_eq!(j.resource.unwrap().to_string(), "video:v1");
    }
}
