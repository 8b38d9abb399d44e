//! The `noop` job kind: the queue's own drill and benchmark load.

use std::time::Duration;

use serde_json::json;
use strato_types::JobRecord;

use crate::{JobContext, JobError};

/// Runs a `noop` job. Payload (all optional): `sleep_ms` (sleeps, stopping early when asked to), `fail`
/// (`"retryable"` or `"permanent"`: every attempt fails so), `fail_attempts` (only the first N attempts fail).
pub async fn run_noop(job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
    let p = &job.payload;
    if let Some(ms) = p.get("sleep_ms").and_then(|v| v.as_u64()) {
        let until = tokio::time::Instant::now() + Duration::from_millis(ms);
        while tokio::time::Instant::now() < until {
            if ctx.should_stop() {
                return Err(JobError::Retryable("stopped before it finished sleeping".into()));
            }
            tokio::time::sleep_until(until.min(tokio::time::Instant::now() + Duration::from_millis(20))).await;
        }
    }
    let failing = match p.get("fail_attempts").and_then(|v| v.as_i64()) {
        Some(n) => i64::from(job.attempts) <= n,
        None => true,
    };
    match p.get("fail").and_then(|v| v.as_str()) {
        Some("permanent") if failing => {
            Err(JobError::Permanent(format!("noop failed as asked (attempt {})", job.attempts)))
        }
        Some(_) if failing => Err(JobError::Retryable(format!("noop failed as asked (attempt {})", job.attempts))),
        _ => Ok(json!({"ok": true, "attempt": job.attempts})),
    }
}
