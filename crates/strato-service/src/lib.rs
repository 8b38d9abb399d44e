//! Strato's domain: datasets, training jobs, model versions and serving predictions.
//!
//! [`Strato`] is the one handle the HTTP layer and the CLI use. It owns the metadata store, the blob store, the
//! (lazily loaded, shared) embedding model and a bounded LRU of loaded classifiers. Blocking work — parsing,
//! embedding, training — runs on blocking threads; the async side never holds a lock across an await.

mod access;
mod batching;
mod datasets;
mod embedding;
mod jobs;
mod mentors;
mod metrics;
mod models;
mod training;

use std::path::PathBuf;
use std::sync::Arc;

use strato_blob::BlobStore;
use strato_store::{MetaStore, PgStore, SqliteStore};
use strato_types::{ErrorCode, StratoError};

pub use access::NewApiKey;
pub use batching::BatchOptions;
pub use datasets::StoredDataset;
pub use embedding::{default_model_dir, EmbeddingSource, DEFAULT_MODEL_NAME};
pub use jobs::Cancellation;
pub use mentors::{mentor_model_id, AnswerMedia, AnswerResult, Followup, PublishError};
pub use metrics::Metrics;
pub use models::{ModelDetail, Prediction};
pub use strato_jobs::{Alerter, AlerterOptions, AttemptOutcome, JobContext, WorkerPool, WorkerPoolOptions};
pub use training::{DataSource, TrainRequest, TrainingHandler};

/// Result with a user-facing error.
pub type Result<T> = std::result::Result<T, StratoError>;

/// How to build a [`Strato`].
#[derive(Debug, Clone)]
pub struct StratoOptions {
    /// Data directory: `meta.db`, `blobs/`, `models/`.
    pub data_dir: PathBuf,
    /// Embedding model directory; `None` means the default model under `data_dir/models`, pulled when missing.
    pub embedding_model: Option<PathBuf>,
    /// Largest accepted dataset, in bytes.
    pub max_dataset_bytes: usize,
    /// Classifiers kept loaded.
    pub model_cache_size: usize,
    /// Mentors kept loaded (about 0.8 MB each at 100 answers; one not in memory loads in a few ms).
    pub mentor_cache_size: usize,
    /// Texts whose embeddings are kept (1.5 KB each with a 384-wide model): chat users repeat their questions.
    pub embedding_cache_size: usize,
    /// `postgres://…` to share metadata and the job queue with other processes; `None`: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Blob storage location (`s3://bucket/prefix` or a directory); `None`: `data_dir/blobs`.
    pub storage: Option<String>,
    /// The embedding model's precision.
    pub embedding_precision: strato_ml::Precision,
    /// How concurrent embedding requests are batched.
    pub batching: BatchOptions,
}

impl StratoOptions {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            embedding_model: None,
            max_dataset_bytes: 50 * 1024 * 1024,
            model_cache_size: 64,
            mentor_cache_size: 128,
            embedding_cache_size: 4096,
            database_url: None,
            storage: None,
            embedding_precision: strato_ml::Precision::F32,
            batching: BatchOptions::default(),
        }
    }
}

/// The service handle; cheap to clone.
#[derive(Clone)]
pub struct Strato {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn MetaStore>,
    blobs: BlobStore,
    embedder: embedding::EmbedderCell,
    models: models::ModelCache,
    mentors: mentors::MentorCache,
    keys: access::KeyCache,
    metrics: metrics::Metrics,
    opts: StratoOptions,
}

/// A database URL without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Like [`internal`], but a store error that means "the database or disk refused the write" (read-only, full,
/// unreachable) becomes `storage_unavailable` (503): nothing was changed and the client may retry.
pub(crate) fn storage(what: &'static str) -> impl FnOnce(strato_store::StoreError) -> StratoError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        if e.is_unavailable() {
            StratoError::new(
                ErrorCode::StorageUnavailable,
                format!("{what}: storage is unavailable ({e}); nothing was changed, retry later"),
            )
        } else {
            StratoError::internal(format!("{what}; see the server log"))
        }
    }
}

/// Like [`storage`], for blob storage: a backend failure (S3 unreachable, disk full or read-only) is
/// `storage_unavailable` (503).
pub(crate) fn blob_storage(what: &'static str) -> impl FnOnce(strato_blob::BlobError) -> StratoError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        match e {
            strato_blob::BlobError::Backend(_) | strato_blob::BlobError::Io { .. } => StratoError::new(
                ErrorCode::StorageUnavailable,
                format!("{what}: blob storage is unavailable; nothing was changed, retry later"),
            ),
            _ => StratoError::internal(format!("{what}; see the server log")),
        }
    }
}

/// Logs an internal failure with its cause and returns a short error for the client.
pub(crate) fn internal<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> StratoError {
    move |e| {
        tracing::error!(error = %e, "{what}");
        StratoError::internal(format!("{what}; see the server log"))
    }
}

impl Strato {
    /// Opens the data directory (creating it), the SQLite metadata store and the local blob store.
    pub async fn open(opts: StratoOptions) -> Result<Self> {
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
            StratoError::internal(format!("cannot create data directory {}: {e}", opts.data_dir.display()))
        })?;
        let store: Arc<dyn MetaStore> = match opts.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Arc::new(PgStore::connect(url).await.map_err(|e| {
                    StratoError::internal(format!("cannot open the PostgreSQL database ({}): {e}", redact_url(url)))
                })?)
            }
            Some(other) => {
                return Err(StratoError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "unsupported database URL {:?}: use postgres://user:password@host:port/database, or leave it \
                         unset for SQLite in the data directory",
                        redact_url(other)
                    ),
                ))
            }
            None => {
                let path = opts.data_dir.join("meta.db");
                Arc::new(
                    SqliteStore::open(&path)
                        .await
                        .map_err(|e| StratoError::internal(format!("cannot open {}: {e}", path.display())))?,
                )
            }
        };
        let blobs = BlobStore::open(opts.storage.as_deref().unwrap_or(""), &opts.data_dir.join("blobs"))
            .map_err(|e| StratoError::new(ErrorCode::InvalidRequest, format!("blob storage: {e}")))?;
        Ok(Self::with_parts(store, blobs, opts))
    }

    /// Builds the service from explicit parts (other store or blob backends).
    pub fn with_parts(store: Arc<dyn MetaStore>, blobs: BlobStore, opts: StratoOptions) -> Self {
        let source = match &opts.embedding_model {
            Some(dir) => EmbeddingSource::Dir(dir.clone()),
            None => EmbeddingSource::Default(default_model_dir(&opts.data_dir)),
        };
        Self {
            inner: Arc::new(Inner {
                store,
                blobs,
                embedder: embedding::EmbedderCell::new(
                    source,
                    opts.embedding_cache_size,
                    strato_ml::LoadOptions { precision: opts.embedding_precision, ..Default::default() },
                    opts.batching,
                ),
                models: models::ModelCache::new(opts.model_cache_size),
                mentors: mentors::MentorCache::new(opts.mentor_cache_size),
                keys: access::KeyCache::new(),
                metrics: metrics::Metrics::new(),
                opts,
            }),
        }
    }

    /// Closes the store once in-flight writes finish (call it after the workers and the server have stopped).
    pub async fn close(&self) {
        self.inner.store.close().await;
    }

    /// Whether blob storage answers (a lookup of a key that need not exist).
    pub async fn blobs_reachable(&self) -> bool {
        self.inner.blobs.exists("readyz-probe").await.is_ok()
    }

    /// Where metadata and blobs live, for start-up logs (no secrets).
    pub fn describe_backends(&self) -> String {
        let db = match &self.inner.opts.database_url {
            Some(url) => redact_url(url),
            None => format!("SQLite {}", self.inner.opts.data_dir.join("meta.db").display()),
        };
        format!("metadata: {db}; blobs: {}", self.inner.blobs)
    }

    /// The metadata store.
    pub fn store(&self) -> &Arc<dyn MetaStore> {
        &self.inner.store
    }

    /// Options in force.
    pub fn options(&self) -> &StratoOptions {
        &self.inner.opts
    }

    /// Starts the in-process worker pool (`opts.workers` may be 0: an API-only process still reaps leases and
    /// expires old jobs).
    pub fn start_workers(&self, opts: WorkerPoolOptions) -> WorkerPool {
        let handler = metrics::Timed { inner: TrainingHandler::new(self.clone()), metrics: self.inner.metrics.clone() };
        WorkerPool::start(self.inner.store.clone(), Arc::new(handler), opts)
    }
}
