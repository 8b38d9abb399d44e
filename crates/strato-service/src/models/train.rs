//! The `train_model` job kind: a training request becomes a durable job in the same transaction that creates or
//! updates the model's row; its worker turns the job into a new active model version.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strato_jobs::{JobContext, JobError, JobHandler, Worker};
use strato_ml::{Dataset, DatasetFormat, Example, TrainParams};
use strato_store::{AddVersion, EnqueueOutcome, Enqueued, StoreError};
use strato_types::{
    validate_name, ErrorCode, JobArgs, JobDefaults, JobKind, JobRecord, NewJob, ResourceKind, ResourceRef, StratoError,
};

use super::Models;
use crate::datasets::parse_upload;
use crate::{blob_storage, internal, Result};

/// Where training data comes from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// A stored dataset, by name.
    Dataset(String),
    /// Examples given in the request.
    Inline(Vec<Example>),
}

/// A request to train (a new version of) a model.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// Model id.
    pub model_id: String,
    /// Training data.
    pub data: DataSource,
    /// Parameters.
    pub params: TrainParams,
    /// Replace an existing model (adds a version) instead of refusing.
    pub force_update: bool,
    /// Free-form metadata kept with the model (e.g. what an Albert client sent).
    pub meta: serde_json::Value,
    /// Client's `Idempotency-Key`: a repeat with the same key returns the first job.
    pub idempotency_key: Option<String>,
}

/// A `train_model` job's arguments.
///
/// # Warning
/// Persisted in the job table: queued jobs written by an older version must still parse.
#[derive(Debug, Serialize, Deserialize)]
pub struct TrainModelArgs {
    /// The model to train a version of.
    pub model_id: String,
    /// The training data's blob.
    pub dataset_key: String,
    /// `csv`, `jsonl` or `json`.
    pub format: String,
    /// The stored dataset's name; `None` for inline data (its blob is deleted once trained).
    pub dataset: Option<String>,
    /// Training parameters.
    pub params: TrainParams,
}

impl JobArgs for TrainModelArgs {
    const KIND: JobKind = JobKind::new("train_model");

    fn defaults() -> JobDefaults {
        JobDefaults { timeout: Duration::from_secs(2 * 3600), ..JobDefaults::STANDARD }
    }

    fn resource(&self) -> Option<ResourceRef> {
        Some(ResourceRef::new(ResourceKind::MODEL, &self.model_id))
    }
}

/// Outcome of queueing a training.
enum TrainSubmission {
    /// The model row exists (or was created) and the job is queued (or an equal one already was).
    Queued(Box<Enqueued>),
    /// The model exists and `force` was false.
    ModelExists,
}

fn format_named(s: &str) -> DatasetFormat {
    match s {
        "csv" => DatasetFormat::Csv,
        "jsonl" => DatasetFormat::Jsonl,
        _ => DatasetFormat::Json,
    }
}

impl Models {
    /// Validates a training request and enqueues its job in the same transaction that creates the model row.
    pub async fn submit_training(&self, req: TrainRequest) -> Result<JobRecord> {
        let job = self.prepare_training(&req).await?;
        match self
            .queue_training(&req.model_id, &req.meta, req.force_update, &job, None)
            .await
            .map_err(internal("queueing the training job failed"))?
        {
            TrainSubmission::Queued(e) => {
                match (e.outcome, e.replaced_payload) {
                    // The coalesced request's own data is unused, or the one it replaced is.
                    (EnqueueOutcome::Idempotent, _) => self.discard_inline_payload(&job.payload).await,
                    (EnqueueOutcome::Coalesced, Some(old)) => self.discard_inline_payload(&old).await,
                    _ => {}
                }
                Ok(e.job)
            }
            TrainSubmission::ModelExists => {
                self.discard_inline(&job).await;
                Err(StratoError::new(
                    ErrorCode::ModelExists,
                    format!(
                        "model {:?} already exists; set \"force_update\": true to train a new version",
                        req.model_id
                    ),
                ))
            }
        }
    }

    /// In one transaction: refuse if the model exists and `force` is false (unless the job's idempotency key
    /// was seen: the first job answers); else create or update the model row (keeping its versions) and enqueue
    /// the training job — already claimed by `claimed_by` when given, so the caller runs it itself.
    async fn queue_training(
        &self,
        model_id: &str,
        meta: &serde_json::Value,
        force: bool,
        job: &NewJob,
        claimed_by: Option<(&str, Duration)>,
    ) -> std::result::Result<TrainSubmission, StoreError> {
        let mut tx = self.store.begin().await?;
        if let Some(e) = tx.queue().find_idempotent(job).await? {
            return Ok(TrainSubmission::Queued(Box::new(e)));
        }
        // The row lock (PostgreSQL) makes a concurrent delete or submission wait for this one.
        if tx.models().get_for_update(model_id).await?.is_some() && !force {
            return Ok(TrainSubmission::ModelExists);
        }
        tx.models().upsert(model_id, meta).await?;
        let queued = match claimed_by {
            Some((worker, lease)) => Enqueued {
                job: tx.queue().enqueue_claimed(job, worker, lease).await?,
                outcome: EnqueueOutcome::Created,
                replaced_payload: None,
            },
            None => tx.queue().enqueue(job).await?,
        };
        tx.commit().await?;
        Ok(TrainSubmission::Queued(Box::new(queued)))
    }

    /// Checks the request and resolves its data to a blob; inline data is stored as a JSONL blob first.
    async fn prepare_training(&self, req: &TrainRequest) -> Result<NewJob> {
        validate_name("model", &req.model_id)?;
        req.params.validate().map_err(|m| StratoError::new(ErrorCode::InvalidRequest, m))?;
        let (dataset_key, format, dataset) = match &req.data {
            DataSource::Dataset(name) => {
                let rec = self.datasets.get(name).await?;
                (rec.blob_key, rec.format, Some(name.clone()))
            }
            DataSource::Inline(examples) => {
                Dataset::from_examples(examples.clone())
                    .map_err(|e| StratoError::new(ErrorCode::InvalidDataset, format!("data: {}", e.0)))?;
                let mut body = Vec::new();
                for e in examples {
                    let split = e.split.map(|s| match s {
                        strato_ml::Split::Train => "train",
                        strato_ml::Split::Val => "val",
                        strato_ml::Split::Test => "test",
                    });
                    serde_json::to_writer(&mut body, &json!({"text": e.text, "label": e.label, "split": split}))
                        .map_err(internal("encoding inline data failed"))?;
                    body.push(b'\n');
                }
                let key = format!("datasets/_inline/{}.jsonl", uuid::Uuid::now_v7());
                self.blobs.put(&key, Bytes::from(body)).await.map_err(blob_storage("storing inline data failed"))?;
                (key, "jsonl".to_string(), None)
            }
        };
        let args =
            TrainModelArgs { model_id: req.model_id.clone(), dataset_key, format, dataset, params: req.params.clone() };
        Ok(NewJob {
            key: Some(format!("model:{}", req.model_id)),
            idempotency_key: req.idempotency_key.clone(),
            // A second request while one is still queued trains once, on the newest request.
            coalesce: true,
            ..NewJob::of(&args)?
        })
    }

    async fn discard_inline(&self, job: &NewJob) {
        self.discard_inline_payload(&job.payload).await
    }

    async fn discard_inline_payload(&self, payload: &serde_json::Value) {
        if let Some(key) = payload.get("dataset_key").and_then(|k| k.as_str()) {
            if key.starts_with("datasets/_inline/") {
                let _ = self.blobs.delete(key).await;
            }
        }
    }

    /// Trains in this process right away (the CLI's `train`): the job is recorded already claimed so no server
    /// worker takes it, and `on_progress` sees 0–100 while it runs.
    pub async fn train_now(
        &self,
        req: TrainRequest,
        on_progress: impl Fn(i32) + Send + 'static,
    ) -> Result<(JobRecord, strato_jobs::AttemptOutcome)> {
        let job = self.prepare_training(&req).await?;
        let worker = format!("cli-{}", std::process::id());
        let opts = strato_jobs::WorkerPoolOptions { worker_id: worker.clone(), ..Default::default() };
        let submitted = match self
            .queue_training(&req.model_id, &req.meta, req.force_update, &job, Some((&worker, opts.lease)))
            .await
        {
            Ok(TrainSubmission::Queued(e)) => e.job,
            Ok(TrainSubmission::ModelExists) => {
                self.discard_inline(&job).await;
                return Err(StratoError::new(
                    ErrorCode::ModelExists,
                    format!("model {:?} already exists; pass --force to train a new version", req.model_id),
                ));
            }
            Err(e) => return Err(internal("queueing the training job failed")(e)),
        };
        let ctx = JobContext::new(&worker);
        let mut workers = strato_jobs::Workers::new();
        workers.add(TrainModelWorker::new(self.clone())).layer(strato_jobs::CatchPanicLayer);
        let handler: Arc<dyn JobHandler> = workers
            .handler(&TrainModelArgs::KIND)
            .ok_or_else(|| StratoError::internal("train_model is not registered"))?;
        let watcher = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                loop {
                    on_progress(ctx.progress());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let id = submitted.id.clone();
        let outcome = strato_jobs::run_claimed(&self.store, &handler, submitted, &worker, &opts, ctx).await;
        watcher.abort();
        let job = self.store.queue().get(&id).await.map_err(crate::storage("reading the job failed"))?;
        Ok((job.ok_or_else(|| StratoError::new(ErrorCode::JobNotFound, format!("job {id:?} not found")))?, outcome))
    }
}

/// Runs `train_model` jobs.
pub struct TrainModelWorker {
    models: Models,
}

impl TrainModelWorker {
    /// A worker over the models part.
    pub fn new(models: Models) -> Self {
        Self { models }
    }
}

#[async_trait]
impl Worker for TrainModelWorker {
    type Args = TrainModelArgs;

    async fn work(
        &self,
        p: TrainModelArgs,
        job: &JobRecord,
        ctx: &JobContext,
    ) -> std::result::Result<serde_json::Value, JobError> {
        let s = &self.models;
        // 1. Load and parse the data (a parse error is permanent: retrying cannot fix the file).
        let bytes = s.blobs.get(&p.dataset_key).await.map_err(|e| match e {
            strato_blob::BlobError::NotFound(_) => JobError::Permanent(format!(
                "the training data is gone (dataset {} was deleted or replaced before the job ran)",
                p.dataset.as_deref().unwrap_or("inline")
            )),
            e => JobError::Retryable(format!("reading the training data failed: {e}")),
        })?;
        let ds = parse_upload(bytes, format_named(&p.format), usize::MAX)
            .await
            .map_err(|e| JobError::Permanent(e.message))?;
        ctx.set_progress(2);

        // 2. Embed (most of the time goes here: 2 → 85 %).
        let (embedder, identity) =
            s.embeddings.embedder_with_identity().await.map_err(|e| JobError::Retryable(e.message))?;
        let examples = ds.examples;
        let params = p.params.clone();
        let ctx2 = ctx.clone();
        let model = tokio::task::spawn_blocking(move || {
            let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
            let started = std::time::Instant::now();
            let embeddings = embedder
                .embed_all(&texts, |done, total| {
                    ctx2.set_progress(2 + (83 * done / total.max(1)) as i32);
                    !ctx2.should_stop()
                })
                .map_err(|e| match e {
                    strato_ml::MlError::Cancelled => JobError::Retryable("interrupted before it finished".into()),
                    e => JobError::Permanent(e.to_string()),
                })?;
            let embed_ms = started.elapsed().as_millis() as u64;
            // 3. Fit, evaluate, refit (85 → 95 %).
            ctx2.set_progress(85);
            let started = std::time::Instant::now();
            let model = strato_ml::classifier::train(
                &examples,
                &embeddings,
                &params,
                &identity,
                chrono::Utc::now().to_rfc3339(),
            )
            .map_err(|e| JobError::Permanent(e.to_string()))?;
            let fit_ms = started.elapsed().as_millis() as u64;
            tracing::info!(texts = texts.len(), embed_ms, fit_ms, "classifier trained");
            Ok(model)
        })
        .await
        .map_err(|e| JobError::Permanent(format!("training task failed: {e}")))??;
        ctx.set_progress(95);

        // 4. Store the artifact, then record the version; the artifact key is unique, so a retried or duplicate
        //    attempt never overwrites a version that is being served.
        let bytes = model.to_bytes().map_err(|e| JobError::Permanent(e.to_string()))?;
        let key = format!("models/{}/{}.safetensors", p.model_id, uuid::Uuid::now_v7());
        s.blobs.put(&key, Bytes::from(bytes)).await.map_err(|e| JobError::Retryable(e.to_string()))?;
        let metrics = serde_json::to_value(&model.metrics).unwrap_or_default();
        let params = serde_json::to_value(&model.params).unwrap_or_default();
        let fence = Some((job.id.as_str(), ctx.worker()));
        let version = match s.store.models().add_version(&p.model_id, &key, &metrics, &params, fence).await {
            Ok(AddVersion::Added(v)) => v,
            Ok(AddVersion::ModelMissing) => {
                let _ = s.blobs.delete(&key).await;
                return Err(JobError::Permanent(format!("model {} was deleted while training", p.model_id)));
            }
            Ok(AddVersion::LeaseLost) => {
                let _ = s.blobs.delete(&key).await;
                return Err(JobError::Retryable("lease lost; another attempt owns this job".into()));
            }
            Err(e) => {
                let _ = s.blobs.delete(&key).await;
                return Err(JobError::Retryable(format!("recording the version failed: {e}")));
            }
        };
        if p.dataset.is_none() {
            let _ = s.blobs.delete(&p.dataset_key).await;
        }
        s.forget_active(&p.model_id);
        tracing::info!(model = %p.model_id, version, "model version trained and activated");
        Ok(json!({"model_id": p.model_id, "version": version, "metrics": metrics}))
    }
}
