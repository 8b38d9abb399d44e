//! Jobs as a general facility: look-up, listing, attempts, cancellation, the dead-letter queue and generic
//! submissions of the kinds that allow them.

use std::sync::Arc;

use strato_jobs::Workers;
use strato_store::{CancelOutcome, Enqueued, JobFilter, Store};
use strato_types::{ErrorCode, JobAttempt, JobKind, JobRecord, NewJob, StratoError};

use crate::{storage, Result};

/// What a cancel request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancellation {
    /// The job was queued and is now cancelled.
    Cancelled,
    /// The job is running; it stops at its handler's next check and then becomes cancelled.
    Requested,
}

fn not_found(id: &str) -> StratoError {
    StratoError::new(ErrorCode::JobNotFound, format!("job {id:?} not found"))
}

fn not_dead(id: &str) -> StratoError {
    StratoError::new(
        ErrorCode::DeadLetterNotFound,
        format!("job {id:?} is not in the dead-letter queue (GET /v1/dlq lists it)"),
    )
}

/// Longest time limit a submitted job may ask for.
const MAX_TIMEOUT_SECS: u64 = 86_400;

/// The job facility: every kind's jobs, the registry of kinds, the dead-letter queue.
#[derive(Clone)]
pub struct Jobs {
    store: Store,
    registry: Arc<Workers>,
}

impl Jobs {
    pub(crate) fn new(store: Store, registry: Arc<Workers>) -> Self {
        Self { store, registry }
    }

    /// The registered job kinds.
    pub fn registry(&self) -> &Arc<Workers> {
        &self.registry
    }

    /// One job.
    pub async fn get(&self, id: &str) -> Result<JobRecord> {
        self.store.queue().get(id).await.map_err(storage("reading the job failed"))?.ok_or_else(|| not_found(id))
    }

    /// One job with its attempt history.
    pub async fn with_attempts(&self, id: &str) -> Result<(JobRecord, Vec<JobAttempt>)> {
        let job = self.get(id).await?;
        let attempts = self.store.queue().attempts(id).await.map_err(storage("reading the job failed"))?;
        Ok((job, attempts))
    }

    /// Jobs matching a filter.
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        self.store.queue().list(filter).await.map_err(storage("listing jobs failed"))
    }

    /// Enqueues a job (the store wakes the workers).
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.store.queue().enqueue(job).await.map_err(storage("queueing the job failed"))
    }

    /// A job of `kind` with its registered defaults, for the generic route; refuses kinds that are not registered
    /// or that have routes of their own (training checks its data first), and payloads that are not the kind's.
    pub fn generic(&self, kind: &str, payload: serde_json::Value) -> Result<NewJob> {
        let generic: Vec<&str> = self.registry.generic_kinds().map(|k| k.as_str()).collect();
        let kind = JobKind::parse(kind)?;
        let Some(defaults) = self.registry.defaults(&kind) else {
            return Err(StratoError::new(
                ErrorCode::InvalidRequest,
                format!("unknown job kind {:?}: this route takes {}", kind.as_str(), generic.join(", ")),
            ));
        };
        if !self.registry.is_generic(&kind) {
            return Err(StratoError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "jobs of kind {:?} are submitted through their own routes (POST /v1/models, POST \
                     /v1/mentors/{{id}}/train, …), which check their input; this route takes {}",
                    kind.as_str(),
                    generic.join(", ")
                ),
            ));
        }
        let resource = match self.registry.check(&kind, &payload) {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                return Err(StratoError::new(
                    ErrorCode::InvalidRequest,
                    format!("\"payload\" is not a {kind} job's input: {e}"),
                ))
            }
            None => None,
        };
        Ok(NewJob { resource, ..NewJob::with_defaults(kind, payload, defaults) })
    }

    /// Submits a job through the generic route (built by [`Jobs::generic`], then adjusted by the caller).
    pub async fn submit(&self, job: NewJob) -> Result<Enqueued> {
        if !(1..=100).contains(&job.max_attempts) {
            return Err(StratoError::new(ErrorCode::InvalidRequest, "max_attempts must be between 1 and 100"));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&job.timeout.as_secs()) {
            return Err(StratoError::new(
                ErrorCode::InvalidRequest,
                format!("timeout_secs must be between 1 and {MAX_TIMEOUT_SECS} (a day)"),
            ));
        }
        self.enqueue(job).await
    }

    /// Cancels a job: queued jobs at once, running ones by request.
    pub async fn cancel(&self, id: &str) -> Result<(Cancellation, JobRecord)> {
        match self.store.queue().cancel(id).await.map_err(storage("cancelling the job failed"))? {
            CancelOutcome::Cancelled(j) => Ok((Cancellation::Cancelled, *j)),
            CancelOutcome::Requested(j) => Ok((Cancellation::Requested, *j)),
            CancelOutcome::AlreadyFinished(j) => Err(StratoError::new(
                ErrorCode::JobFinished,
                format!("job {id:?} already finished with status {}; nothing to cancel", j.status.as_str()),
            )),
            CancelOutcome::NotFound => Err(not_found(id)),
        }
    }

    /// Dead-letter queue entries, newest first.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<JobRecord>> {
        self.store.queue().dead_letters(limit.clamp(1, 1000)).await.map_err(storage("listing the DLQ failed"))
    }

    /// One dead-letter entry with its attempt history.
    pub async fn dead_letter(&self, id: &str) -> Result<(JobRecord, Vec<JobAttempt>)> {
        match self.with_attempts(id).await {
            Ok((j, a)) if j.dead_lettered_at.is_some() => Ok((j, a)),
            Ok(_) => Err(not_dead(id)),
            Err(e) if e.code == ErrorCode::JobNotFound => Err(not_dead(id)),
            Err(e) => Err(e),
        }
    }

    /// Re-queues a dead-lettered job with fresh attempts.
    pub async fn replay_dead_letter(&self, id: &str) -> Result<JobRecord> {
        self.store
            .queue()
            .replay_dead_letter(id)
            .await
            .map_err(storage("replaying the job failed"))?
            .ok_or_else(|| not_dead(id))
    }

    /// Deletes a dead-letter entry.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        if self.store.queue().delete_dead_letter(id).await.map_err(storage("deleting the DLQ entry failed"))? {
            Ok(())
        } else {
            Err(not_dead(id))
        }
    }

    /// Jobs per kind and status, for the queue-depth gauge.
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        self.store.queue().counts().await.map_err(storage("counting jobs failed"))
    }
}
