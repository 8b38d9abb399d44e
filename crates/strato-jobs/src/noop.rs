//! The `noop` job kind: the queue's own drill and benchmark load.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord};

use crate::{JobContext, JobError, Worker};

/// A `noop` job's payload; every field is optional and unknown fields are ignored, so any JSON object is one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoopArgs {
    /// Sleep this long, stopping early when asked to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
    /// `"permanent"` fails every attempt for good; any other value fails it retryably.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<serde_json::Value>,
    /// Only the first N attempts fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_attempts: Option<i64>,
}

impl JobArgs for NoopArgs {
    const KIND: JobKind = JobKind::new("noop");
    const GENERIC_SUBMIT: bool = true;

    fn defaults() -> JobDefaults {
        JobDefaults { timeout: Duration::from_secs(300), ..JobDefaults::STANDARD }
    }
}

/// Runs `noop` jobs.
pub struct NoopWorker;

#[async_trait]
impl Worker for NoopWorker {
    type Args = NoopArgs;

    async fn work(&self, p: NoopArgs, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        if let Some(ms) = p.sleep_ms {
            let until = tokio::time::Instant::now() + Duration::from_millis(ms);
            while tokio::time::Instant::now() < until {
                if ctx.should_stop() {
                    return Err(JobError::Retryable("stopped before it finished sleeping".into()));
                }
                tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(20))).await;
            }
        }
        let failing = match p.fail_attempts {
            Some(n) => i64::from(job.attempts) <= n,
            None => true,
        };
        match p.fail.as_ref().and_then(|f| f.as_str()) {
            Some("permanent") if failing => {
                Err(JobError::Permanent(format!("noop failed as asked (attempt {})", job.attempts)))
            }
            Some(_) if failing => Err(JobError::Retryable(format!("noop failed as asked (attempt {})", job.attempts))),
            _ => Ok(json!({"ok": true, "attempt": job.attempts})),
        }
    }
}
