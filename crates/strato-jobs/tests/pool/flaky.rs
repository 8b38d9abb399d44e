//! A job kind that exists only in this test: the whole of what a capability writes for a kind of its own. It is
//! registered with one line (`workers.add(FlakyWorker::default())`) and then runs, retries and dead-letters like
//! every other kind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, QueueName};

/// Fails its first `fail_first` attempts (retryably), or panics when asked to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlakyArgs {
    pub fail_first: i32,
    #[serde(default)]
    pub panic: bool,
}

impl JobArgs for FlakyArgs {
    const KIND: JobKind = JobKind::new("test.flaky");

    fn defaults() -> JobDefaults {
        JobDefaults {
            queue: QueueName::new("flaky"),
            timeout: Duration::from_secs(10),
            max_attempts: 3,
            ..JobDefaults::STANDARD
        }
    }
}

/// Runs `test.flaky` jobs and counts the attempts it saw.
#[derive(Default, Clone)]
pub struct FlakyWorker {
    pub attempts: Arc<AtomicUsize>,
}

#[async_trait]
impl Worker for FlakyWorker {
    type Args = FlakyArgs;

    async fn work(&self, args: FlakyArgs, job: &JobRecord, _: &JobContext) -> Result<serde_json::Value, JobError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if args.panic {
            panic!("flaky was asked to panic");
        }
        if job.attempts <= args.fail_first {
            return Err(JobError::Retryable(format!("flaky attempt {} failed as asked", job.attempts)));
        }
        Ok(serde_json::json!({"succeeded_on": job.attempts}))
    }
}
