//! The `train_mentor` job kind: a mentor's classifier trained on its questions, paraphrases and graded user
//! questions, with its off-topic rule, and published as the mentor model's next version (fenced by the job's
//! lease).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use strato_jobs::{JobContext, JobError, Worker};
use strato_ml::mentor_model::MentorModel;
use strato_ml::{Example, TrainParams};
use strato_store::AddVersion;
use strato_types::{Answer, ErrorCode, JobArgs, JobDefaults, JobKind, JobRecord, NewJob, ResourceKind, ResourceRef};

use super::{bad, mentor_model_id, Mentors};
use crate::{internal, Result};

/// Why a trained mentor model was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The job's lease was lost: another attempt publishes.
    #[error("lease lost")]
    LeaseLost,
    /// The mentor was deleted.
    #[error("the mentor was deleted")]
    MentorGone,
    /// Blob or metadata storage failed.
    #[error("{0}")]
    Storage(String),
}

/// A `train_mentor` job's arguments.
///
/// # Warning
/// Persisted in the job table: queued jobs written by an older version must still parse.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainMentorArgs {
    /// The mentor to train.
    pub mentor_id: String,
}

impl JobArgs for TrainMentorArgs {
    const KIND: JobKind = JobKind::new("train_mentor");

    fn defaults() -> JobDefaults {
        JobDefaults { timeout: Duration::from_secs(3600), ..JobDefaults::STANDARD }
    }

    fn resource(&self) -> Option<ResourceRef> {
        Some(ResourceRef::new(ResourceKind::MENTOR, &self.mentor_id))
    }
}

impl Mentors {
    /// Queues a training of the mentor's classifier. Needs at least two answerable questions.
    pub async fn submit_training(&self, id: &str, idempotency_key: Option<String>) -> Result<JobRecord> {
        let mentor = self.get(id).await?;
        let n = mentor.answers.iter().filter(|a| a.is_training_question()).count();
        if n < 2 {
            return Err(bad(format!(
                "mentor {id:?} has {n} answerable question{}; training needs at least 2 (answers with status \
                 COMPLETE or NONE whose question type is QUESTION)",
                if n == 1 { "" } else { "s" }
            )));
        }
        let first = self
            .store
            .models()
            .get(&mentor_model_id(id))
            .await
            .map_err(internal("reading the mentor's model failed"))?
            .is_none_or(|m| m.active_version.is_none());
        let job = NewJob {
            key: Some(format!("mentor:{id}")),
            idempotency_key,
            coalesce: true,
            // A mentor's first training goes before re-trainings: until then it cannot answer at all.
            priority: if first { 10 } else { 0 },
            ..NewJob::of(&TrainMentorArgs { mentor_id: id.to_string() })?
        };
        // The classifier's model row and the job, together.
        let queue = async {
            let mut tx = self.store.begin().await?;
            tx.models().upsert(&mentor_model_id(id), &json!({"mentor": id})).await?;
            let e = tx.queue().enqueue(&job).await?;
            tx.commit().await?;
            Ok::<_, strato_store::StoreError>(e.job)
        };
        queue.await.map_err(internal("queueing the training failed"))
    }

    /// Runs a `train_mentor` job.
    async fn run_training(
        &self,
        p: TrainMentorArgs,
        job: &JobRecord,
        ctx: &JobContext,
    ) -> std::result::Result<serde_json::Value, JobError> {
        let id = p.mentor_id;
        let mentor = self.get(&id).await.map_err(|e| match e.code {
            ErrorCode::MentorNotFound => JobError::Permanent(e.message),
            _ => JobError::Retryable(e.message),
        })?;
        let graded =
            self.store.mentors().graded_questions(&id).await.map_err(|e| JobError::Retryable(e.to_string()))?;
        // 1. Training rows: questions, paraphrases and graded user questions of answerable answers.
        let answerable: HashMap<&str, &Answer> =
            mentor.answers.iter().filter(|a| a.is_training_question()).map(|a| (a.id.as_str(), a)).collect();
        let mut examples = Vec::new();
        for a in mentor.answers.iter().filter(|a| a.is_training_question()) {
            for t in std::iter::once(&a.question.text).chain(&a.question.paraphrases) {
                examples.push(Example { text: t.clone(), label: a.id.clone(), split: None });
            }
        }
        let mut negatives_text = Vec::new();
        for g in &graded {
            match (&g.graded_answer_id, g.graded_off_topic) {
                (Some(aid), _) if answerable.contains_key(aid.as_str()) => {
                    examples.push(Example { text: g.text.clone(), label: aid.clone(), split: None })
                }
                (_, true) => negatives_text.push(g.text.clone()),
                _ => {}
            }
        }
        for a in mentor.answers.iter().filter(|a| a.is_off_topic_reply()) {
            negatives_text.extend(a.question.paraphrases.iter().cloned());
        }
        if answerable.len() < 2 {
            return Err(JobError::Permanent("training needs at least 2 answerable questions".into()));
        }
        ctx.set_progress(2);
        // 2. Embed, train, learn the off-topic rule.
        let (embedder, identity) =
            self.embeddings.embedder_with_identity().await.map_err(|e| JobError::Retryable(e.message))?;
        let ctx2 = ctx.clone();
        let model = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
            let total = texts.len() + negatives_text.len();
            let stop = |done: usize| {
                ctx2.set_progress(2 + (70 * done / total.max(1)) as i32);
                !ctx2.should_stop()
            };
            let emb = embedder.embed_all(&texts, |d, _| stop(d)).map_err(|e| JobError::Retryable(e.to_string()))?;
            let neg_refs: Vec<&str> = negatives_text.iter().map(String::as_str).collect();
            let neg = embedder
                .embed_all(&neg_refs, |d, _| stop(texts.len() + d))
                .map_err(|e| JobError::Retryable(e.to_string()))?;
            ctx2.set_progress(75);
            let params = TrainParams::mentor();
            MentorModel::train(&examples, &emb, &neg, &params, &identity, chrono::Utc::now().to_rfc3339())
                .map_err(|e| JobError::Permanent(e.to_string()))
        })
        .await
        .map_err(|e| JobError::Permanent(format!("training task failed: {e}")))??;
        ctx.set_progress(95);
        // 3. Publish, fenced by the lease.
        let (version, report) =
            self.publish_model(&id, &model, Some((job.id.as_str(), ctx.worker()))).await.map_err(|e| match e {
                PublishError::LeaseLost => JobError::Retryable("lease lost".into()),
                PublishError::MentorGone => JobError::Permanent(format!("mentor {id} was deleted while training")),
                PublishError::Storage(m) => JobError::Retryable(m),
            })?;
        Ok(json!({"mentor": id, "version": version, "off_topic": report}))
    }

    /// Stores a trained mentor model and makes it the active version (fenced by a job lease when given); returns
    /// the version and the off-topic report. Used by training jobs and by tools that train in bulk.
    pub async fn publish_model(
        &self,
        id: &str,
        model: &MentorModel,
        fence: Option<(&str, &str)>,
    ) -> std::result::Result<(i64, serde_json::Value), PublishError> {
        let bytes = model.to_bytes().map_err(|e| PublishError::Storage(e.to_string()))?;
        let key = format!("mentors/{id}/{}.safetensors", uuid::Uuid::now_v7());
        self.blobs.put(&key, Bytes::from(bytes)).await.map_err(|e| PublishError::Storage(e.to_string()))?;
        let report = json!({
            "threshold": model.offtopic.threshold,
            "method": model.offtopic.method,
            "cv_f1": model.offtopic.cv_f1,
            "cv_accuracy": model.offtopic.cv_accuracy,
            "similarity_weight": model.offtopic.f2_weight,
            "calibrated": model.offtopic.calibration.is_some(),
            "assumed_off_topic_share": strato_ml::offtopic::OFF_TOPIC_SHARE,
            "n_questions": model.classifier.metrics.n_train,
            "n_answers": model.classifier.labels.len(),
        });
        let metrics = json!({"off_topic": report, "training": model.classifier.metrics});
        let params = serde_json::to_value(&model.classifier.params).unwrap_or_default();
        let outcome = self.store.models().add_version(&mentor_model_id(id), &key, &metrics, &params, fence).await;
        match outcome {
            Ok(AddVersion::Added(v)) => Ok((v, report)),
            other => {
                let _ = self.blobs.delete(&key).await;
                Err(match other {
                    Ok(AddVersion::LeaseLost) => PublishError::LeaseLost,
                    Ok(_) => PublishError::MentorGone,
                    Err(e) => PublishError::Storage(e.to_string()),
                })
            }
        }
    }
}

/// Runs `train_mentor` jobs.
pub struct TrainMentorWorker {
    mentors: Mentors,
}

impl TrainMentorWorker {
    /// A worker over the mentors part.
    pub fn new(mentors: Mentors) -> Self {
        Self { mentors }
    }
}

#[async_trait]
impl Worker for TrainMentorWorker {
    type Args = TrainMentorArgs;

    async fn work(
        &self,
        args: TrainMentorArgs,
        job: &JobRecord,
        ctx: &JobContext,
    ) -> std::result::Result<serde_json::Value, JobError> {
        self.mentors.run_training(args, job, ctx).await
    }
}
