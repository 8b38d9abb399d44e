//! The shared embedding model: resolved, pulled when it is the default and missing, loaded once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strato_ml::Embedder;
use strato_types::{ErrorCode, StratoError};
use tokio::sync::OnceCell;

use crate::batching::{BatchOptions, EmbedQueue};
use crate::metrics::Metrics;
use crate::Result;

/// Name of the default embedding model.
pub const DEFAULT_MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// Where the default model lives in a data directory.
pub fn default_model_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models").join(DEFAULT_MODEL_NAME)
}

/// Where the embedding model comes from.
#[derive(Debug, Clone)]
pub enum EmbeddingSource {
    /// A directory the user named; never downloaded into.
    Dir(PathBuf),
    /// The default model's directory; pulled when missing.
    Default(PathBuf),
}

impl EmbeddingSource {
    /// The directory.
    pub fn dir(&self) -> &Path {
        match self {
            Self::Dir(p) | Self::Default(p) => p,
        }
    }
}

pub(crate) struct EmbedderCell {
    source: EmbeddingSource,
    cell: OnceCell<Arc<Embedder>>,
    load: strato_ml::LoadOptions,
    batching: BatchOptions,
    /// The serving queue, started with the model.
    queue: std::sync::OnceLock<EmbedQueue>,
    /// Text (as the model sees it: trimmed) → its embedding. One model per process, so the text is the key.
    cache: Option<parking_lot::Mutex<lru::LruCache<String, Arc<[f32]>>>>,
}

impl EmbedderCell {
    pub(crate) fn new(
        source: EmbeddingSource,
        cache_size: usize,
        load: strato_ml::LoadOptions,
        batching: BatchOptions,
    ) -> Self {
        let cache = std::num::NonZeroUsize::new(cache_size).map(|n| parking_lot::Mutex::new(lru::LruCache::new(n)));
        Self { source, cell: OnceCell::new(), load, batching, queue: std::sync::OnceLock::new(), cache }
    }
}

/// Loads the model at `source`, pulling the default model first when it is missing. Blocking.
fn load_blocking(source: &EmbeddingSource, opts: strato_ml::LoadOptions) -> Result<Embedder> {
    let dir = source.dir();
    if !strato_fetch::model_is_complete(dir) {
        match source {
            EmbeddingSource::Dir(d) => {
                return Err(StratoError::new(
                    ErrorCode::Internal,
                    format!(
                        "embedding model directory {} is incomplete: it needs config.json, model.safetensors, \
                         tokenizer.json and 1_Pooling/config.json",
                        d.display()
                    ),
                ))
            }
            EmbeddingSource::Default(d) => {
                tracing::info!(dir = %d.display(), "embedding model {DEFAULT_MODEL_NAME} not found; pulling it");
                pull_default(d)?;
            }
        }
    }
    let started = std::time::Instant::now();
    let e = Embedder::load_opts(dir, opts).map_err(|e| StratoError::internal(e.to_string()))?;
    tracing::info!(
        model = e.name(),
        dim = e.dim(),
        precision = ?opts.precision,
        ms = started.elapsed().as_millis() as u64,
        "embedding model loaded"
    );
    Ok(e)
}

/// Pulls the default model into `dir`; strato-fetch logs each step (source, download, verification). Blocking.
pub fn pull_default(dir: &Path) -> Result<strato_fetch::PullReport> {
    let opts = strato_fetch::PullOptions::new(dir.to_path_buf());
    strato_fetch::pull_default_model(&opts).map_err(|e| StratoError::internal(e.to_string()))
}

/// The shared embedding model, its batching queue and its cache: the part every model, mentor and training uses.
#[derive(Clone)]
pub struct Embeddings {
    cell: Arc<EmbedderCell>,
    metrics: Metrics,
}

impl Embeddings {
    pub(crate) fn new(cell: EmbedderCell, metrics: Metrics) -> Self {
        Self { cell: Arc::new(cell), metrics }
    }

    /// The embedding model, loading (and for the default model, pulling) it on first use.
    pub async fn embedder(&self) -> Result<Arc<Embedder>> {
        let cell = &self.cell;
        cell.cell
            .get_or_try_init(|| async {
                let (source, opts) = (cell.source.clone(), cell.load);
                let e = tokio::task::spawn_blocking(move || load_blocking(&source, opts))
                    .await
                    .map_err(|e| StratoError::internal(format!("model loading task failed: {e}")))??;
                Ok(Arc::new(e))
            })
            .await
            .cloned()
    }

    /// The embedding model and its identity (name and content hash, hashed once, on a blocking thread).
    pub async fn embedder_with_identity(&self) -> Result<(Arc<Embedder>, strato_ml::EmbeddingIdentity)> {
        let embedder = self.embedder().await?;
        let e = embedder.clone();
        let sha256 = tokio::task::spawn_blocking(move || e.content_hash())
            .await
            .map_err(crate::internal("hashing task failed"))?
            .map_err(crate::internal("hashing the embedding model failed"))?;
        let identity = strato_ml::EmbeddingIdentity { name: embedder.name().to_string(), sha256 };
        Ok((embedder, identity))
    }

    /// Where the embedding model is (or will be).
    pub fn source(&self) -> &EmbeddingSource {
        &self.cell.source
    }

    /// Embeds texts, answering repeated ones from the cache and the rest on a blocking thread.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let Some(cache) = &self.cell.cache else { return self.embed_uncached(texts).await };
        let mut out: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        let mut missing = Vec::new();
        {
            let mut lru = cache.lock();
            for t in &texts {
                let hit = lru.get(t.trim()).map(|v| v.to_vec());
                if hit.is_none() {
                    missing.push(t.clone());
                }
                out.push(hit);
            }
        }
        let lookups = &self.metrics.embedding_cache;
        lookups.with_label_values(&["hit"]).inc_by((texts.len() - missing.len()) as u64);
        lookups.with_label_values(&["miss"]).inc_by(missing.len() as u64);
        if missing.is_empty() {
            return Ok(out.into_iter().flatten().collect());
        }
        let fresh = self.embed_uncached(missing.clone()).await?;
        let mut lru = cache.lock();
        for (t, v) in missing.iter().zip(&fresh) {
            lru.put(t.trim().to_string(), Arc::from(v.as_slice()));
        }
        let mut fresh = fresh.into_iter();
        Ok(out.into_iter().map(|o| o.or_else(|| fresh.next()).unwrap_or_default()).collect())
    }

    /// Embeds texts: a few through the batching queue (with whatever other requests are waiting), many (a
    /// training job's) on a blocking thread of their own so they never hold up the queue.
    async fn embed_uncached(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let embedder = self.embedder().await?;
        let cell = &self.cell;
        if texts.len() <= cell.batching.max_batch_texts {
            let queue = cell.queue.get_or_init(|| {
                let histogram = self.metrics.embedding_batch.clone();
                let observe = Box::new(move |n: usize| histogram.observe(n as f64));
                EmbedQueue::start(embedder.clone(), cell.batching, observe)
            });
            return queue.submit(texts)?.await.map_err(crate::internal("the embedding thread stopped"))?;
        }
        self.metrics.embedding_batch.observe(texts.len() as f64);
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            if refs.len() <= strato_ml::embedder::BATCH_SIZE {
                embedder.embed_batch(&refs)
            } else {
                embedder.embed_all(&refs, |_, _| true)
            }
        })
        .await
        .map_err(crate::internal("embedding task failed"))?
        .map_err(crate::internal("embedding failed"))
    }
}
