//! Jobs as a general facility: look-up, listing, attempts, cancellation, the dead-letter queue and generic
//! (noop) submissions.

use strato_store::{CancelOutcome, Enqueued, JobFilter};
use strato_types::{ErrorCode, JobAttempt, JobKind, JobRecord, NewJob, StratoError};

use crate::{storage, Result, Strato};

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

impl Strato {
    /// One job.
    pub async fn job(&self, id: &str) -> Result<JobRecord> {
        self.inner.store.get_job(id).await.map_err(storage("reading the job failed"))?.ok_or_else(|| not_found(id))
    }

    /// One job with its attempt history.
    pub async fn job_with_attempts(&self, id: &str) -> Result<(JobRecord, Vec<JobAttempt>)> {
        let job = self.job(id).await?;
        let attempts = self.inner.store.job_attempts(id).await.map_err(storage("reading the job failed"))?;
        Ok((job, attempts))
    }

    /// Jobs matching a filter.
    pub async fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>> {
        self.inner.store.list_jobs(filter).await.map_err(storage("listing jobs failed"))
    }

    /// Enqueues an arbitrary job (the store wakes the workers).
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.inner.store.enqueue(job).await.map_err(storage("queueing the job failed"))
    }

    /// Submits a job through the generic route. Only kinds whose payload needs no validation may come this way:
    /// training goes through the model and mentor routes, which check the data first.
    pub async fn submit_job(&self, job: NewJob) -> Result<Enqueued> {
        if job.kind != JobKind::Noop {
            return Err(StratoError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "jobs of kind {:?} are submitted through their own routes (POST /v1/models, POST \
                     /v1/mentors/{{id}}/train); this route takes \"noop\"",
                    job.kind.as_str()
                ),
            ));
        }
        if !(1..=100).contains(&job.max_attempts) {
            return Err(StratoError::new(ErrorCode::InvalidRequest, "max_attempts must be between 1 and 100"));
        }
        if job.timeout.is_some_and(|t| !(1..=MAX_TIMEOUT_SECS).contains(&t.as_secs())) {
            return Err(StratoError::new(
                ErrorCode::InvalidRequest,
                format!("timeout_secs must be between 1 and {MAX_TIMEOUT_SECS} (a day)"),
            ));
        }
        self.enqueue(job).await
    }

    /// Cancels a job: queued jobs at once, running ones by request.
    pub async fn cancel_job(&self, id: &str) -> Result<(Cancellation, JobRecord)> {
        match self.inner.store.cancel_job(id).await.map_err(storage("cancelling the job failed"))? {
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
        self.inner.store.list_dead_letters(limit.clamp(1, 1000)).await.map_err(storage("listing the DLQ failed"))
    }

    /// One dead-letter entry with its attempt history.
    pub async fn dead_letter(&self, id: &str) -> Result<(JobRecord, Vec<JobAttempt>)> {
        match self.job_with_attempts(id).await {
            Ok((j, a)) if j.dead_lettered_at.is_some() => Ok((j, a)),
            Ok(_) => Err(not_dead(id)),
            Err(e) if e.code == ErrorCode::JobNotFound => Err(not_dead(id)),
            Err(e) => Err(e),
        }
    }

    /// Re-queues a dead-lettered job with fresh attempts.
    pub async fn replay_dead_letter(&self, id: &str) -> Result<JobRecord> {
        self.inner
            .store
            .replay_dead_letter(id)
            .await
            .map_err(storage("replaying the job failed"))?
            .ok_or_else(|| not_dead(id))
    }

    /// Deletes a dead-letter entry.
    pub async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        if self.inner.store.delete_dead_letter(id).await.map_err(storage("deleting the DLQ entry failed"))? {
            Ok(())
        } else {
            Err(not_dead(id))
        }
    }
}
