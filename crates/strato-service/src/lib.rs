//! Strato's domain: datasets, models and their training, mentors, jobs and API keys, cut by aggregate.
//!
//! [`Strato`] is the composition root: [`Strato::builder`] opens the store and blob storage once, builds one part
//! per aggregate — [`Models`], [`Mentors`], [`Datasets`], [`Jobs`], [`Keys`], and the shared [`Embeddings`] —
//! each holding only the dependencies it needs, registers the job kinds those parts run (`train_model`,
//! `train_mentor`, `noop`) and the resource kinds grants name (`model`, `mentor`), and lets each capability crate
//! register its own ([`StratoBuilder::register`]). The HTTP layer and the CLI call the parts' methods and never
//! reach into them. Blocking work — parsing, embedding, training — runs on blocking threads; the async side never
//! holds a lock across an await.

mod batching;
mod datasets;
mod embedding;
mod files;
mod jobs;
mod keys;
mod mentors;
mod metrics;
mod models;
mod resources;
mod secrets;

use std::path::PathBuf;
use std::sync::Arc;

use strato_blob::BlobStore;
use strato_jobs::{CatchPanicLayer, TracingLayer, Workers};
use strato_store::Store;
use strato_types::{ErrorCode, StratoError};

pub use batching::BatchOptions;
pub use datasets::{Datasets, StoredDataset};
pub use embedding::{default_model_dir, EmbeddingSource, Embeddings, DEFAULT_MODEL_NAME};
pub use files::{validate_key as validate_file_key, FileInfo, Files, PREFIX as FILES_PREFIX};
pub use jobs::{Cancellation, Jobs};
pub use keys::{Keys, NewApiKey};
pub use mentors::{
    mentor_model_id, AnswerMedia, AnswerResult, Followup, Mentors, PublishError, TrainMentorArgs, TrainMentorWorker,
};
pub use metrics::Metrics;
pub use models::{DataSource, ModelDetail, Models, Prediction, TrainModelArgs, TrainModelWorker, TrainRequest};
pub use resources::ResourceKinds;
pub use strato_blob::{ByteRange, Download, PresignMethod, PresignedUrl};
pub use strato_jobs::{
    Alerter, AlerterOptions, AttemptOutcome, JobContext, QueueConcurrency, WorkerPool, WorkerPoolOptions,
};

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
    /// Largest file (`/v1/files`), in bytes.
    pub max_file_bytes: u64,
    /// The server's address as clients reach it (`https://strato.example.com`): presigned URLs of local storage
    /// point there. `None`: local storage makes no presigned URLs (S3 always does).
    pub public_url: Option<String>,
    /// The key that signs local storage's presigned URLs (at least 32 bytes); `None`: a random one kept in
    /// `data_dir/signing.key`.
    pub signing_key: Option<Vec<u8>>,
    /// The key sealing SigV4 access keys' secrets in the store (at least 32 bytes); every process verifying
    /// signatures needs the same. `None`: a random one kept in `data_dir/secrets.key`.
    pub secrets_key: Option<Vec<u8>>,
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
            max_file_bytes: 5 << 30,
            public_url: None,
            signing_key: None,
            secrets_key: None,
        }
    }
}

/// The composition root: one part per aggregate over a shared store and blob storage; cheap to clone.
#[derive(Clone)]
pub struct Strato {
    // One `Arc`: every request clones the state (axum's extractors and layers), and a deep clone of each part's
    // handles was dozens of contended reference counts per request (half the throughput of cached predictions).
    core: Arc<Core>,
}

/// A server key: the configured one, else the one in `data_dir/<file>` (created, 32 random bytes as hex readable
/// by the owner only, on first use).
pub(crate) fn server_key(opts: &StratoOptions, configured: Option<&Vec<u8>>, file: &str) -> Result<Vec<u8>> {
    if let Some(k) = configured {
        return Ok(k.clone());
    }
    let path = opts.data_dir.join(file);
    let fail = |e: std::io::Error| StratoError::internal(format!("cannot read or create {}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(text) => return parse_server_key(&path, &text),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        Err(_) => {}
    }
    std::fs::create_dir_all(&opts.data_dir).map_err(fail)?;
    let key: [u8; 32] = rand::random();
    // Written whole under a name of its own, then linked into place: processes starting together on one data
    // directory never read a half-written key, and the first link wins (`hard_link` refuses an existing name).
    let tmp = opts.data_dir.join(format!("{file}.{}.tmp", uuid::Uuid::now_v7()));
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
    let written = f.open(&tmp).and_then(|mut file| {
        std::io::Write::write_all(&mut file, hex::encode(key).as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key.to_vec()),
        // Another process linked its key first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            parse_server_key(&path, &std::fs::read_to_string(&path).map_err(fail)?)
        }
        Err(e) => Err(fail(e)),
    }
}

fn parse_server_key(path: &std::path::Path, text: &str) -> Result<Vec<u8>> {
    match hex::decode(text.trim()) {
        Ok(key) if key.len() >= 32 => Ok(key),
        _ => Err(StratoError::internal(format!(
            "{} is not a server key (at least 32 bytes as hex): delete it to have a new one made",
            path.display()
        ))),
    }
}

/// What every part shares, held once.
struct Core {
    models: Models,
    mentors: Mentors,
    datasets: Datasets,
    files: Files,
    jobs: Jobs,
    keys: Keys,
    embeddings: Embeddings,
    store: Store,
    blobs: BlobStore,
    metrics: Metrics,
    resources: Arc<ResourceKinds>,
    opts: StratoOptions,
}

/// What a capability registers with: the shared store and blob storage (to build its workers), the job kinds
/// and the resource kinds.
pub struct Registration<'a> {
    /// The metadata store and job queue.
    pub store: &'a Store,
    /// Blob storage.
    pub blobs: &'a BlobStore,
    /// The job kinds: add the capability's workers.
    pub workers: &'a mut Workers,
    /// The resource kinds: add the capability's, so grants may name them.
    pub resources: &'a mut ResourceKinds,
    /// The service's metrics: register the capability's collectors in its registry (`/metrics` renders them).
    pub metrics: &'a Metrics,
}

type Registrar = Box<dyn FnOnce(&mut Registration<'_>) + Send>;

/// Builds a [`Strato`]: the core parts, then each registered capability's job and resource kinds.
pub struct StratoBuilder {
    opts: StratoOptions,
    registrars: Vec<Registrar>,
}

impl StratoBuilder {
    /// Adds a capability's registrations (its workers, its resource kinds), run once when the service is built.
    pub fn register(mut self, f: impl FnOnce(&mut Registration<'_>) + Send + 'static) -> Self {
        self.registrars.push(Box::new(f));
        self
    }

    /// Opens the data directory (creating it), the metadata store (SQLite in it, or the `database_url`'s
    /// PostgreSQL) and blob storage, then builds the service.
    pub async fn open(self) -> Result<Strato> {
        let opts = &self.opts;
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
            StratoError::internal(format!("cannot create data directory {}: {e}", opts.data_dir.display()))
        })?;
        let store = match opts.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Store::connect(url).await.map_err(|e| {
                    StratoError::internal(format!("cannot open the PostgreSQL database ({}): {e}", redact_url(url)))
                })?
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
                Store::open_sqlite(&path)
                    .await
                    .map_err(|e| StratoError::internal(format!("cannot open {}: {e}", path.display())))?
            }
        };
        let blobs = BlobStore::open(opts.storage.as_deref().unwrap_or(""), &opts.data_dir.join("blobs"))
            .map_err(|e| StratoError::new(ErrorCode::InvalidRequest, format!("blob storage: {e}")))?;
        self.build(store, blobs)
    }

    /// Builds the service over an open store and blob storage.
    pub fn build(self, store: Store, blobs: BlobStore) -> Result<Strato> {
        let opts = self.opts;
        // Local storage's presigned URLs are Strato's own: signed here, served at the public URL.
        let blobs = match &opts.public_url {
            Some(url) => {
                let signer =
                    strato_blob::LocalSigner::new(&server_key(&opts, opts.signing_key.as_ref(), "signing.key")?, url)
                        .map_err(|e| StratoError::new(ErrorCode::InvalidRequest, e.to_string()))?;
                blobs.with_local_signer(signer)
            }
            None => blobs,
        };
        let metrics = Metrics::new();
        let source = match &opts.embedding_model {
            Some(dir) => EmbeddingSource::Dir(dir.clone()),
            None => EmbeddingSource::Default(default_model_dir(&opts.data_dir)),
        };
        let embeddings = Embeddings::new(
            embedding::EmbedderCell::new(
                source,
                opts.embedding_cache_size,
                strato_ml::LoadOptions { precision: opts.embedding_precision, ..Default::default() },
                opts.batching,
            ),
            metrics.clone(),
        );
        let datasets = Datasets::new(store.clone(), blobs.clone(), opts.max_dataset_bytes);
        let files = Files::new(blobs.clone(), opts.max_file_bytes);
        let models = Models::new(
            store.clone(),
            blobs.clone(),
            embeddings.clone(),
            datasets.clone(),
            opts.model_cache_size,
            metrics.clone(),
        );
        let mentors =
            Mentors::new(store.clone(), blobs.clone(), embeddings.clone(), models.clone(), opts.mentor_cache_size);

        // 1. The core's job kinds and resource kinds, then each capability's.
        let mut workers = Workers::new();
        workers
            .add(strato_jobs::noop::NoopWorker)
            .add(TrainModelWorker::new(models.clone()))
            .add(TrainMentorWorker::new(mentors.clone()));
        let mut resources = ResourceKinds::core();
        for registrar in self.registrars {
            registrar(&mut Registration {
                store: &store,
                blobs: &blobs,
                workers: &mut workers,
                resources: &mut resources,
                metrics: &metrics,
            });
        }
        // 2. Layers wrap every worker once: panics become failures, spans name the job, attempts are timed.
        workers.layer(CatchPanicLayer).layer(TracingLayer).layer(metrics.job_timing());

        let resources = Arc::new(resources);
        let jobs = Jobs::new(store.clone(), Arc::new(workers));
        let keys = Keys::new(store.clone(), resources.clone(), &opts);
        Ok(Strato {
            core: Arc::new(Core {
                models,
                mentors,
                datasets,
                files,
                jobs,
                keys,
                embeddings,
                store,
                blobs,
                metrics,
                resources,
                opts,
            }),
        })
    }
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
    /// A builder for `opts`, to register capabilities before opening.
    pub fn builder(opts: StratoOptions) -> StratoBuilder {
        StratoBuilder { opts, registrars: Vec::new() }
    }

    /// Opens the data directory, the metadata store and blob storage, with the core capabilities only.
    pub async fn open(opts: StratoOptions) -> Result<Self> {
        Self::builder(opts).open().await
    }

    /// Builds the service from explicit parts (other store or blob backends), with the core capabilities only.
    pub fn with_parts(store: Store, blobs: BlobStore, opts: StratoOptions) -> Result<Self> {
        Self::builder(opts).build(store, blobs)
    }

    /// Text classifiers.
    pub fn models(&self) -> &Models {
        &self.core.models
    }

    /// Mentors.
    pub fn mentors(&self) -> &Mentors {
        &self.core.mentors
    }

    /// Datasets.
    pub fn datasets(&self) -> &Datasets {
        &self.core.datasets
    }

    /// Files in storage.
    pub fn files(&self) -> &Files {
        &self.core.files
    }

    /// Jobs of every kind, the registry of kinds and the dead-letter queue.
    pub fn jobs(&self) -> &Jobs {
        &self.core.jobs
    }

    /// API keys and quotas.
    pub fn keys(&self) -> &Keys {
        &self.core.keys
    }

    /// The shared embedding model.
    pub fn embeddings(&self) -> &Embeddings {
        &self.core.embeddings
    }

    /// The resource kinds grants may name.
    pub fn resource_kinds(&self) -> &ResourceKinds {
        &self.core.resources
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.core.metrics
    }

    /// The metadata store, for capabilities and admin tools built on it.
    pub fn store(&self) -> &Store {
        &self.core.store
    }

    /// Blob storage, for capabilities built on it.
    pub fn blobs(&self) -> &BlobStore {
        &self.core.blobs
    }

    /// Options in force.
    pub fn options(&self) -> &StratoOptions {
        &self.core.opts
    }

    /// Closes the store once in-flight writes finish (call it after the workers and the server have stopped).
    pub async fn close(&self) {
        self.core.store.close().await;
    }

    /// Whether blob storage answers (a lookup of a key that need not exist).
    pub async fn blobs_reachable(&self) -> bool {
        self.core.blobs.exists("readyz-probe").await.is_ok()
    }

    /// Where metadata and blobs live, for start-up logs (no secrets).
    pub fn describe_backends(&self) -> String {
        let db = match &self.core.opts.database_url {
            Some(url) => redact_url(url),
            None => format!("SQLite {}", self.core.opts.data_dir.join("meta.db").display()),
        };
        format!("metadata: {db}; blobs: {}", self.core.blobs)
    }

    /// Starts the in-process worker pool over the registered job kinds (`opts.queues` may be empty: an API-only
    /// process still reaps leases and expires old jobs).
    pub fn start_workers(&self, opts: WorkerPoolOptions) -> WorkerPool {
        WorkerPool::start(self.core.store.clone(), self.core.jobs.registry(), opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_starting_together_share_one_signing_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let opts = StratoOptions::new(dir.path());
            let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
                let handles: Vec<_> =
                    (0..8).map(|_| s.spawn(|| server_key(&opts, None, "signing.key").unwrap())).collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(keys[0].len(), 32);
            assert!(keys.iter().all(|k| *k == keys[0]), "every starter reads the key that won");
            assert_eq!(server_key(&opts, None, "signing.key").unwrap(), keys[0], "and so does a later start");
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left, vec![std::ffi::OsString::from("signing.key")], "no temporary files left behind");
        }
    }

    #[test]
    fn a_damaged_signing_key_is_an_error_not_an_empty_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signing.key"), "").unwrap();
        let opts = StratoOptions::new(dir.path());
        let err = server_key(&opts, None, "signing.key").unwrap_err().to_string();
        assert!(err.contains("not a server key"), "{err}");
    }
}
