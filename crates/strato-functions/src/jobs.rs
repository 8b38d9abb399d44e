//! Asynchronous (`Event`) invocations: durable jobs on the `functions` queue, retried as Lambda retries them
//! (twice by default, with backoff), dropped past their maximum event age, then dead-lettered with the event and
//! the error, and replayable like any dead letter.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, QueueName, ResourceRef};

use crate::service::{Functions, InvokeRequest};
use crate::FUNCTION;

/// Lambda's default maximum event age: six hours.
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);

/// An asynchronous invocation, as stored in its job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvokeEventArgs {
    /// The function.
    pub function: String,
    /// `$LATEST` or a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// The event, as sent (UTF-8 text).
    pub payload: String,
    /// The request id every attempt reports.
    pub request_id: String,
    /// The client context JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_context: Option<String>,
    /// The caller's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<serde_json::Value>,
    /// Seconds after which the event is dropped (to the dead-letter queue) instead of tried again.
    pub max_event_age_s: u64,
}

impl JobArgs for InvokeEventArgs {
    const KIND: JobKind = JobKind::new("function.invoke");

    fn defaults() -> JobDefaults {
        // One attempt and two retries, as Lambda; an attempt is bounded by the function's own timeout, so the
        // job's limit only has to cover the longest one (15 minutes) and a cold start.
        JobDefaults {
            queue: QueueName::new("functions"),
            timeout: Duration::from_secs(900 + 60),
            max_attempts: 3,
            priority: 0,
        }
    }

    fn resource(&self) -> Option<ResourceRef> {
        Some(ResourceRef::new(FUNCTION, &self.function))
    }
}

/// Runs asynchronous invocations.
pub struct InvokeEventWorker {
    functions: Functions,
}

impl InvokeEventWorker {
    /// A worker invoking through `functions`.
    pub fn new(functions: Functions) -> Self {
        Self { functions }
    }
}

#[async_trait]
impl Worker for InvokeEventWorker {
    type Args = InvokeEventArgs;

    async fn work(&self, a: InvokeEventArgs, job: &JobRecord, _: &JobContext) -> Result<serde_json::Value, JobError> {
        let age = (chrono::Utc::now() - job.created_at).to_std().unwrap_or_default();
        if age > Duration::from_secs(a.max_event_age_s) {
            return Err(JobError::Permanent(format!(
                "the event is {} s old, past its maximum age of {} s: dropped",
                age.as_secs(),
                a.max_event_age_s
            )));
        }
        let req = InvokeRequest {
            payload: a.payload.into_bytes().into(),
            qualifier: a.qualifier,
            client_context: a.client_context,
            identity: a.identity,
            request_id: Some(a.request_id),
            grants: None,
        };
        let r = self.functions.invoke(&a.function, req).await.map_err(|e| match e {
            crate::FunctionError::NotFound(_)
            | crate::FunctionError::Invalid(_)
            | crate::FunctionError::TooLarge(_) => JobError::Permanent(e.to_string()),
            e => JobError::Retryable(e.to_string()),
        })?;
        let body: serde_json::Value = serde_json::from_slice(&r.payload)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&r.payload).into_owned()));
        match r.function_error {
            None => Ok(serde_json::json!({"request_id": r.request_id, "version": r.executed_version, "result": body})),
            Some(kind) => Err(JobError::Retryable(format!("{kind}: {body}"))),
        }
    }
}
