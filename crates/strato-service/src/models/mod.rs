//! Models: versions, activation, deletion, and predictions served from a bounded LRU of loaded classifiers.
//!
//! The cache is keyed by (model, version). A model's active version is read from the store at most once per
//! `ACTIVE_TTL` (a store read per prediction was most of a cached prediction's cost): a version this process
//! activates, trains or deletes is seen at once, one another process activates within `ACTIVE_TTL`, with no
//! restart; a stale classifier simply ages out of the LRU. The locks are held only to look up or insert.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;
use strato_blob::BlobStore;
use strato_ml::{Classifier, Scored};
use strato_store::Store;
use strato_types::{ErrorCode, JobRecord, ModelRecord, ModelVersionRecord, StratoError};

use crate::datasets::Datasets;
use crate::embedding::Embeddings;
use crate::metrics::Metrics;
use crate::{blob_storage, internal, storage, Result};

mod train;

pub use train::{DataSource, TrainModelArgs, TrainModelWorker, TrainRequest};

/// How long a model's active version, as read from the store, is trusted.
const ACTIVE_TTL: Duration = Duration::from_secs(1);

pub(crate) struct ModelCache {
    lru: Mutex<LruCache<(String, i64), Arc<Classifier>>>,
    /// Model → (active version, when it was read).
    active: Mutex<HashMap<String, (i64, Instant)>>,
}

impl ModelCache {
    pub(crate) fn new(size: usize) -> Self {
        Self {
            lru: Mutex::new(LruCache::new(NonZeroUsize::new(size.max(1)).unwrap_or(NonZeroUsize::MIN))),
            active: Mutex::new(HashMap::new()),
        }
    }

    fn active(&self, id: &str) -> Option<i64> {
        self.active.lock().get(id).filter(|(_, at)| at.elapsed() < ACTIVE_TTL).map(|(v, _)| *v)
    }

    fn set_active(&self, id: &str, version: i64) {
        let mut active = self.active.lock();
        // Models that are gone or idle would otherwise stay forever.
        if active.len() >= 4096 {
            active.retain(|_, (_, at)| at.elapsed() < ACTIVE_TTL);
        }
        active.insert(id.to_string(), (version, Instant::now()));
    }

    /// Forgets a model's active version: the next prediction reads it from the store.
    pub(crate) fn forget_active(&self, id: &str) {
        self.active.lock().remove(id);
    }

    fn get(&self, id: &str, version: i64) -> Option<Arc<Classifier>> {
        self.lru.lock().get(&(id.to_string(), version)).cloned()
    }

    fn put(&self, id: &str, version: i64, model: Arc<Classifier>) {
        self.lru.lock().put((id.to_string(), version), model);
    }

    fn evict_model(&self, id: &str) {
        let mut lru = self.lru.lock();
        let keys: Vec<_> = lru.iter().filter(|((m, _), _)| m == id).map(|(k, _)| k.clone()).collect();
        for k in keys {
            lru.pop(&k);
        }
    }
}

/// A model with its versions.
pub struct ModelDetail {
    /// The model.
    pub model: ModelRecord,
    /// Its versions, oldest first.
    pub versions: Vec<ModelVersionRecord>,
}

/// Predictions for a batch of texts.
pub struct Prediction {
    /// Model id.
    pub model_id: String,
    /// Version that answered.
    pub version: i64,
    /// One ranked list per text.
    pub predictions: Vec<Vec<Scored>>,
}

fn not_found(id: &str) -> StratoError {
    StratoError::new(ErrorCode::ModelNotFound, format!("model {id:?} not found"))
}

/// Text classifiers: their versions, training, and predictions from a bounded cache of loaded versions.
#[derive(Clone)]
pub struct Models {
    store: Store,
    blobs: BlobStore,
    embeddings: Embeddings,
    datasets: Datasets,
    cache: Arc<ModelCache>,
    metrics: Metrics,
}

impl Models {
    pub(crate) fn new(
        store: Store,
        blobs: BlobStore,
        embeddings: Embeddings,
        datasets: Datasets,
        cache_size: usize,
        metrics: Metrics,
    ) -> Self {
        Self { store, blobs, embeddings, datasets, cache: Arc::new(ModelCache::new(cache_size)), metrics }
    }

    /// All models.
    pub async fn list(&self) -> Result<Vec<ModelRecord>> {
        self.store.models().list().await.map_err(storage("listing models failed"))
    }

    /// A model and its versions.
    pub async fn get(&self, id: &str) -> Result<ModelDetail> {
        let model = self.store.models().get(id).await.map_err(storage("reading the model failed"))?;
        let model = model.ok_or_else(|| not_found(id))?;
        let versions = self.store.models().versions(id).await.map_err(storage("reading versions failed"))?;
        Ok(ModelDetail { model, versions })
    }

    /// Deletes a model, its versions and their artifacts.
    pub async fn delete(&self, id: &str) -> Result<ModelRecord> {
        let (model, versions) = self
            .store
            .models()
            .delete(id)
            .await
            .map_err(internal("deleting the model failed"))?
            .ok_or_else(|| not_found(id))?;
        self.cache.evict_model(id);
        self.cache.forget_active(id);
        for v in versions {
            if let Err(e) = self.blobs.delete(&v.blob_key).await {
                tracing::warn!(key = %v.blob_key, error = %e, "could not delete a model artifact");
            }
        }
        Ok(model)
    }

    /// Makes `version` the one predictions use.
    pub async fn activate(&self, id: &str, version: i64) -> Result<ModelDetail> {
        let activated = self.store.models().activate(id, version).await.map_err(storage("activating failed"));
        self.cache.forget_active(id);
        if !activated? {
            self.get(id).await?;
            return Err(StratoError::new(ErrorCode::VersionNotFound, format!("model {id:?} has no version {version}")));
        }
        self.get(id).await
    }

    /// The active classifier of a model, from the cache or loaded from blob storage.
    pub async fn classifier(&self, id: &str) -> Result<(i64, Arc<Classifier>)> {
        let version = match self.cache.active(id) {
            Some(v) => v,
            None => {
                let model = self.store.models().get(id).await.map_err(storage("reading the model failed"))?;
                let model = model.ok_or_else(|| not_found(id))?;
                let version = model.active_version.ok_or_else(|| {
                    StratoError::new(
                        ErrorCode::ModelNotFound,
                        format!("model {id:?} has no trained version yet; check its training job"),
                    )
                })?;
                self.cache.set_active(id, version);
                version
            }
        };
        if let Some(c) = self.cache.get(id, version) {
            self.metrics.model_cache.with_label_values(&["hit"]).inc();
            return Ok((version, c));
        }
        self.metrics.model_cache.with_label_values(&["miss"]).inc();
        let rec = self
            .store
            .models()
            .version(id, version)
            .await
            .map_err(internal("reading the version failed"))?
            .ok_or_else(|| not_found(id))?;
        let bytes = self.blobs.get(&rec.blob_key).await.map_err(blob_storage("reading the model artifact failed"))?;
        let classifier = tokio::task::spawn_blocking(move || Classifier::from_bytes(&bytes))
            .await
            .map_err(internal("loading task failed"))?
            .map_err(internal("the model artifact is unreadable"))?;
        // The content hash, not the name, decides: the same weights may sit in differently named directories.
        let (embedder, identity) = self.embeddings.embedder_with_identity().await?;
        let sha = identity.sha256;
        if classifier.dim != embedder.dim() || classifier.embedding_sha256 != sha {
            return Err(StratoError::new(
                ErrorCode::EmbeddingModelMismatch,
                format!(
                    "model {id:?} v{version} was trained on embeddings of {:?} ({} dims, sha256 {}) but the server \
                     runs {:?} ({} dims, sha256 {sha}); retrain it or start Strato with that embedding model",
                    classifier.embedding_model,
                    classifier.dim,
                    classifier.embedding_sha256,
                    embedder.name(),
                    embedder.dim()
                ),
            ));
        }
        let classifier = Arc::new(classifier);
        self.cache.put(id, version, classifier.clone());
        self.metrics.model_loads.inc();
        Ok((version, classifier))
    }

    /// Top-`n_top` labels for each text.
    pub async fn predict(&self, id: &str, texts: Vec<String>, n_top: usize) -> Result<Prediction> {
        if texts.is_empty() {
            return Err(StratoError::new(ErrorCode::InvalidRequest, "give \"text\" or a non-empty \"texts\""));
        }
        if texts.len() > 1024 {
            return Err(StratoError::new(ErrorCode::InvalidRequest, "at most 1024 texts per request"));
        }
        let (version, classifier) = self.classifier(id).await?;
        let embeddings = self.embeddings.embed(texts).await?;
        let predictions = embeddings.iter().map(|e| classifier.predict(e, n_top.max(1))).collect();
        Ok(Prediction { model_id: id.to_string(), version, predictions })
    }
}

impl Models {
    /// The newest training job of a model, if any.
    pub async fn latest_job(&self, id: &str) -> Result<Option<JobRecord>> {
        let filter = strato_store::JobFilter { key: Some(format!("model:{id}")), limit: Some(1), ..Default::default() };
        let jobs = self.store.queue().list(&filter).await.map_err(storage("listing jobs failed"))?;
        Ok(jobs.into_iter().next())
    }

    /// Forgets a model's active version, so the next prediction reads it from the store.
    pub(crate) fn forget_active(&self, id: &str) {
        self.cache.forget_active(id);
    }
}
