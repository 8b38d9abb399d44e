//! [`Functions`]: functions and their versions (documents in the store, code in blob storage), and invocations
//! through the warm pools.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use strato_blob::BlobStore;
use strato_store::{Document, Store};

use crate::code::{self, CodeCache};
use crate::config::{validate_name, CodeRef, FunctionConfig, Runtime, DEFAULT_MEMORY, DEFAULT_TIMEOUT};
use crate::instance::{self, Instance, Launch, Outcome};
use crate::logs::LogStore;
use crate::pool::{Acquired, PoolKey, Pools};
use crate::runtime_api::{Reply, MAX_PAYLOAD_BYTES};
use crate::{FunctionError, Result};

const FUNCTION_DOC: &str = "function";
const VERSION_DOC: &str = "function-version";

/// How functions run in this process.
#[derive(Debug, Clone)]
pub struct FunctionsOptions {
    /// Code cache, instances' temporary directories and logs live here.
    pub work_dir: PathBuf,
    /// The interpreter of `python3.x` functions (it must have `awslambdaric` installed).
    pub python: PathBuf,
    /// The region in ARNs and `AWS_REGION`.
    pub region: String,
    /// The account id in ARNs.
    pub account: String,
    /// Most instances running at once in this process.
    pub max_instances: usize,
    /// An instance idle this long is stopped.
    pub idle_timeout: Duration,
    /// Logs older than this are deleted.
    pub log_ttl: Duration,
    /// The function the Runtime Interface Emulator's path (`/2015-03-31/functions/function/invocations`) runs,
    /// when no function is named `function`.
    pub rie_function: Option<String>,
    /// The unprivileged user instances run as (Strato must run as root to switch to it); `None`: Strato's own.
    pub run_as: Option<crate::instance::RunAs>,
}

impl FunctionsOptions {
    /// Defaults under `work_dir`: `python3` from `PATH`, `us-east-1`, account `000000000000`, 8 instances, 10
    /// minutes idle, logs kept 7 days.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            python: PathBuf::from("python3"),
            region: "us-east-1".into(),
            account: "000000000000".into(),
            max_instances: 8,
            idle_timeout: Duration::from_secs(600),
            log_ttl: Duration::from_secs(7 * 24 * 3600),
            rie_function: None,
            run_as: None,
        }
    }
}

/// A function's stored document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FunctionDoc {
    config: FunctionConfig,
    /// The last published version number (0: none yet).
    #[serde(default)]
    last_version: u64,
}

/// Code for a new function or a code update.
#[derive(Debug, Clone)]
pub enum NewCode {
    /// A zip archive (Lambda's `Code.ZipFile`).
    Zip(Bytes),
    /// A directory on the server, used in place.
    Directory(PathBuf),
    /// A zip archive in Strato's files (`/v1/files` key), as Lambda's `Code.S3Key`.
    File(String),
}

/// What creating a function takes.
#[derive(Debug, Clone)]
pub struct NewFunction {
    /// The name.
    pub name: String,
    /// Lambda's runtime identifier.
    pub runtime: String,
    /// The handler.
    pub handler: String,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Seconds; Lambda's default (3) when unset.
    pub timeout: Option<u32>,
    /// MB; Lambda's default (128) when unset.
    pub memory_size: Option<u32>,
    /// Most instances at once.
    pub reserved_concurrency: Option<u32>,
    /// Free text.
    pub description: String,
    /// The execution role's ARN (kept and shown only).
    pub role: String,
    /// The code.
    pub code: NewCode,
    /// Publish version 1 at once.
    pub publish: bool,
}

/// A configuration change: unset fields are kept.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    /// Lambda's runtime identifier.
    pub runtime: Option<String>,
    /// The handler.
    pub handler: Option<String>,
    /// Replaces every environment variable.
    pub environment: Option<BTreeMap<String, String>>,
    /// Seconds.
    pub timeout: Option<u32>,
    /// MB.
    pub memory_size: Option<u32>,
    /// Most instances at once; 0 removes the reservation.
    pub reserved_concurrency: Option<u32>,
    /// Free text.
    pub description: Option<String>,
    /// The execution role's ARN (kept and shown only).
    pub role: Option<String>,
    /// Retries of a failed asynchronous invocation (0 to 2).
    pub maximum_retry_attempts: Option<u32>,
    /// Seconds an asynchronous event may wait (60 to 21,600).
    pub maximum_event_age: Option<u32>,
}

/// A function or version as callers see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FunctionView {
    /// Name.
    pub name: String,
    /// `$LATEST` or a published number.
    pub version: String,
    /// Its ARN (qualified for published versions).
    pub arn: String,
    /// Runtime.
    pub runtime: String,
    /// Handler.
    pub handler: String,
    /// Environment variables.
    pub environment: BTreeMap<String, String>,
    /// Seconds.
    pub timeout: u32,
    /// MB.
    pub memory_size: u32,
    /// Most instances at once.
    pub reserved_concurrency: Option<u32>,
    /// Free text.
    pub description: String,
    /// The execution role's ARN (kept and shown only).
    pub role: String,
    /// Retries of a failed asynchronous invocation.
    pub maximum_retry_attempts: u32,
    /// Seconds an asynchronous event may wait.
    pub maximum_event_age: u32,
    /// SHA-256 of the code archive, base64 (as Lambda's `CodeSha256`); empty for a directory.
    pub code_sha256: String,
    /// Archive size in bytes (0 for a directory).
    pub code_size: u64,
    /// Where the code is (`zip` or `directory`).
    pub code_source: String,
    /// When it last changed (RFC 3339).
    pub last_modified: String,
    /// Revision of the stored configuration (changes with every update).
    pub revision: i64,
}

/// One invocation.
#[derive(Debug, Clone, Default)]
pub struct InvokeRequest {
    /// The event (JSON, up to 6 MB).
    pub payload: Bytes,
    /// `$LATEST` (default) or a version number.
    pub qualifier: Option<String>,
    /// The client context JSON (already decoded from base64).
    pub client_context: Option<String>,
    /// The caller's identity, handed to the function as its Cognito identity.
    pub identity: Option<serde_json::Value>,
    /// A request id to use (an asynchronous invocation keeps its own across retries).
    pub request_id: Option<String>,
    /// The caller's grants, when it is not trusted with everything: a notebook model reads and writes its
    /// scenario's files, so the caller must be allowed to change them.
    pub grants: Option<Vec<strato_types::Grant>>,
}

/// What an invocation returned.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    /// The request id.
    pub request_id: String,
    /// The function's result, or its error document.
    pub payload: Bytes,
    /// `Unhandled` (or the runtime's error type) when the function failed.
    pub function_error: Option<String>,
    /// The version that ran.
    pub executed_version: String,
    /// This invocation's log: output between `START` and `END`, and the `REPORT` line.
    pub log: String,
}

/// Functions: configuration, code, versions and invocations.
#[derive(Clone)]
pub struct Functions(Arc<Inner>);

struct Inner {
    store: Store,
    blobs: BlobStore,
    opts: FunctionsOptions,
    cache: CodeCache,
    pools: Pools,
    logs: LogStore,
    reaper: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(r) = self.reaper.lock().take() {
            r.abort();
        }
    }
}

impl Functions {
    /// Functions over the service's store and blob storage.
    pub fn new(store: Store, blobs: BlobStore, opts: FunctionsOptions) -> Self {
        let cache = CodeCache::new(opts.work_dir.join("code"));
        let logs = LogStore::new(blobs.clone());
        let pools = Pools::new(opts.max_instances);
        Self(Arc::new(Inner { store, blobs, cache, logs, pools, opts, reaper: Default::default() }))
    }

    /// Starts the background task that stops idle instances, writes pending log lines and deletes old logs (needs a
    /// Tokio runtime); the task ends when the last clone of these functions is dropped.
    pub fn start_maintenance(&self) {
        let weak = Arc::downgrade(&self.0);
        let every = (self.0.opts.idle_timeout / 4).clamp(Duration::from_millis(100), crate::logs::FLUSH_EVERY);
        let task = tokio::spawn(async move {
            let mut last_logs = Instant::now() - Duration::from_secs(3600);
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let stopped = inner.pools.reap_idle(inner.opts.idle_timeout);
                if stopped > 0 {
                    tracing::info!(stopped, "stopped idle function instances");
                }
                inner.logs.flush(None).await;
                if last_logs.elapsed() > Duration::from_secs(600) {
                    last_logs = Instant::now();
                    inner.logs.expire(inner.opts.log_ttl).await;
                }
            }
        });
        *self.0.reaper.lock() = Some(task);
    }

    /// The options.
    pub fn options(&self) -> &FunctionsOptions {
        &self.0.opts
    }

    /// The metadata store.
    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }

    /// Blob storage (the notebook runner reads and writes Strato's files there).
    pub(crate) fn blobs(&self) -> &BlobStore {
        &self.0.blobs
    }

    /// A notebook model's configuration, version and unpacked code.
    pub(crate) async fn notebook_code(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(FunctionConfig, String, PathBuf)> {
        let (config, version, _) = self.resolve(name, qualifier).await?;
        if config.runtime()? != Runtime::Notebook {
            return Err(FunctionError::Invalid(format!(
                "function {name:?} is not a {} function",
                crate::config::NOTEBOOK_RUNTIME
            )));
        }
        let dir = self
            .code_dir(&config.code)
            .await?
            .ok_or_else(|| FunctionError::Internal("the function has no code".into()))?;
        Ok((config, version, dir))
    }

    /// Queues a run of a notebook model; returns its job id. Its time limit is the function's timeout.
    async fn enqueue_notebook(
        &self,
        name: &str,
        config: &FunctionConfig,
        req: &InvokeRequest,
        request_id: &str,
    ) -> Result<String> {
        let event: serde_json::Value = serde_json::from_slice(&req.payload)
            .map_err(|e| FunctionError::Invalid(format!("a notebook model's event must be JSON: {e}")))?;
        let parsed = crate::notebook::parse_event(&event)?;
        let files = strato_types::ResourceRef::new(strato_types::ResourceKind::FILE, parsed.scenario());
        if let Some(grants) = &req.grants {
            if !grants.iter().any(|g| g.allows(&files, strato_types::Action::Edit)) {
                return Err(FunctionError::Forbidden(format!(
                    "the caller may not change files under {:?}, which this model reads and writes",
                    parsed.scenario()
                )));
            }
        }
        let args = crate::notebook::NotebookRunArgs {
            function: name.to_string(),
            qualifier: req.qualifier.clone(),
            event,
            request_id: request_id.to_string(),
        };
        let mut job = strato_types::NewJob::of(&args).map_err(|e| FunctionError::Internal(e.message))?;
        job.timeout = Duration::from_secs(u64::from(config.timeout));
        job.max_attempts = 1 + config.maximum_retry_attempts.unwrap_or(0) as i32;
        Ok(self.0.store.queue().enqueue(job).await?.job.id)
    }

    /// Runs a notebook model and waits for it: the job's result is the response, its error the function error.
    async fn invoke_notebook(
        &self,
        name: &str,
        config: &FunctionConfig,
        version: String,
        req: InvokeRequest,
    ) -> Result<InvokeResponse> {
        let request_id = req.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let job_id = self.enqueue_notebook(name, config, &req, &request_id).await?;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Some(job) = self.0.store.queue().get(&job_id).await? else {
                return Err(FunctionError::Internal(format!("the run's job {job_id} disappeared")));
            };
            let (payload, function_error) = match job.status {
                strato_types::JobStatus::Success => (job.result.unwrap_or_default().to_string(), None),
                strato_types::JobStatus::Failure | strato_types::JobStatus::Cancelled => {
                    let error = job.error.unwrap_or_else(|| "cancelled".into());
                    let doc = serde_json::from_str::<serde_json::Value>(&error)
                        .ok()
                        .filter(|d| d.get("errorType").is_some())
                        .unwrap_or_else(|| json!({"errorType": "NotebookError", "errorMessage": error}));
                    (doc.to_string(), Some("Unhandled".to_string()))
                }
                _ => continue,
            };
            let log = format!("START RequestId: {request_id} Version: {version}\n[strato] job {job_id}: see the scenario's logs/\nEND RequestId: {request_id}\n");
            return Ok(InvokeResponse {
                request_id,
                payload: payload.into(),
                function_error,
                executed_version: version,
                log,
            });
        }
    }

    /// A function's ARN, qualified when `version` is given.
    pub fn arn(&self, name: &str, version: Option<&str>) -> String {
        let o = &self.0.opts;
        match version {
            Some(v) => format!("arn:aws:lambda:{}:{}:function:{name}:{v}", o.region, o.account),
            None => format!("arn:aws:lambda:{}:{}:function:{name}", o.region, o.account),
        }
    }

    /// Creates a function.
    pub async fn create(&self, f: NewFunction) -> Result<FunctionView> {
        validate_name(&f.name)?;
        let mut config = FunctionConfig {
            name: f.name.clone(),
            runtime: f.runtime,
            handler: f.handler,
            environment: f.environment,
            timeout: f.timeout.unwrap_or(DEFAULT_TIMEOUT),
            memory_size: f.memory_size.unwrap_or(DEFAULT_MEMORY),
            reserved_concurrency: f.reserved_concurrency,
            description: f.description,
            role: f.role,
            maximum_retry_attempts: None,
            maximum_event_age: None,
            // Set below, once the configuration is known to be valid.
            code: CodeRef::Directory { path: String::new() },
        };
        config.validate()?;
        config.code = self.store_code(&f.code).await?;
        check_entrypoint(&config, self.code_dir(&config.code).await?.as_deref())?;
        let doc = FunctionDoc { config, last_version: 0 };
        let body = serde_json::to_value(&doc).map_err(|e| FunctionError::Internal(e.to_string()))?;
        let Some(stored) = self.0.store.documents().create(FUNCTION_DOC, &f.name, &body).await? else {
            return Err(FunctionError::Conflict(format!(
                "function {:?} exists already: update it or delete it first",
                f.name
            )));
        };
        if f.publish {
            return self.publish(&f.name, None).await;
        }
        Ok(self.view(&doc.config, "$LATEST", &stored))
    }

    /// One function (`$LATEST`) or one of its published versions.
    pub async fn get(&self, name: &str, qualifier: Option<&str>) -> Result<FunctionView> {
        let (config, version, doc) = self.resolve(name, qualifier).await?;
        Ok(self.view(&config, &version, &doc))
    }

    /// Every function (`$LATEST`), by name.
    pub async fn list(&self) -> Result<Vec<FunctionView>> {
        let docs = self.0.store.documents().list(FUNCTION_DOC, "").await?;
        docs.iter().map(|d| Ok(self.view(&parse::<FunctionDoc>(d)?.config, "$LATEST", d))).collect()
    }

    /// Published versions of a function, oldest first (`$LATEST` first, as Lambda lists them).
    pub async fn versions(&self, name: &str) -> Result<Vec<FunctionView>> {
        let mut out = vec![self.get(name, None).await?];
        let docs = self.0.store.documents().list(VERSION_DOC, &format!("{name}:")).await?;
        let mut versions: Vec<(u64, FunctionView)> = Vec::new();
        for d in &docs {
            let config: FunctionConfig = parse(d)?;
            let n = d.id.rsplit(':').next().unwrap_or("0").to_string();
            versions.push((n.parse().unwrap_or(0), self.view(&config, &n, d)));
        }
        versions.sort_by_key(|(n, _)| *n);
        out.extend(versions.into_iter().map(|(_, v)| v));
        Ok(out)
    }

    /// Replaces a function's code; its warm instances are retired.
    pub async fn update_code(&self, name: &str, code: NewCode) -> Result<FunctionView> {
        let code = self.store_code(&code).await?;
        self.update(name, |c| {
            c.code = code.clone();
            Ok(())
        })
        .await
    }

    /// Changes a function's configuration; its warm instances are retired.
    pub async fn update_config(&self, name: &str, patch: ConfigPatch) -> Result<FunctionView> {
        self.update(name, |c| {
            if let Some(v) = &patch.runtime {
                c.runtime = v.clone();
            }
            if let Some(v) = &patch.handler {
                c.handler = v.clone();
            }
            if let Some(v) = &patch.environment {
                c.environment = v.clone();
            }
            if let Some(v) = patch.timeout {
                c.timeout = v;
            }
            if let Some(v) = patch.memory_size {
                c.memory_size = v;
            }
            if let Some(v) = patch.reserved_concurrency {
                c.reserved_concurrency = (v > 0).then_some(v);
            }
            if let Some(v) = &patch.description {
                c.description = v.clone();
            }
            if let Some(v) = &patch.role {
                c.role = v.clone();
            }
            if let Some(v) = patch.maximum_retry_attempts {
                c.maximum_retry_attempts = Some(v);
            }
            if let Some(v) = patch.maximum_event_age {
                c.maximum_event_age = Some(v);
            }
            c.validate()
        })
        .await
    }

    async fn update(&self, name: &str, change: impl Fn(&mut FunctionConfig) -> Result<()>) -> Result<FunctionView> {
        // Compare-and-swap on the revision: a concurrent update is retried on the fresh document, never lost.
        for _ in 0..5 {
            let current = self.function_doc(name).await?;
            let mut doc = parse::<FunctionDoc>(&current)?;
            change(&mut doc.config)?;
            check_entrypoint(&doc.config, self.code_dir(&doc.config.code).await?.as_deref())?;
            let body = serde_json::to_value(&doc).map_err(|e| FunctionError::Internal(e.to_string()))?;
            if let Some(stored) = self.0.store.documents().update(FUNCTION_DOC, name, current.revision, &body).await? {
                self.0.pools.retire(name);
                return Ok(self.view(&doc.config, "$LATEST", &stored));
            }
        }
        Err(FunctionError::Conflict(format!("function {name:?} is being changed by someone else: try again")))
    }

    /// Publishes `$LATEST` as the next numbered, immutable version. With `revision`, only if `$LATEST` is still at
    /// that revision (Lambda's `RevisionId`).
    pub async fn publish(&self, name: &str, revision: Option<i64>) -> Result<FunctionView> {
        let mut tx = self.0.store.begin().await?;
        let mut docs = tx.documents();
        let Some(current) = docs.get_for_update(FUNCTION_DOC, name).await? else {
            return Err(not_found(name));
        };
        if revision.is_some_and(|r| r != current.revision) {
            return Err(FunctionError::Conflict(format!(
                "function {name:?} changed since revision {}: it is at {}",
                revision.unwrap_or_default(),
                current.revision
            )));
        }
        let mut doc = parse::<FunctionDoc>(&current)?;
        doc.last_version += 1;
        let n = doc.last_version;
        let snapshot = serde_json::to_value(&doc.config).map_err(|e| FunctionError::Internal(e.to_string()))?;
        let Some(version) = docs.create(VERSION_DOC, &format!("{name}:{n}"), &snapshot).await? else {
            return Err(FunctionError::Conflict(format!("version {n} of {name:?} exists already")));
        };
        let body = serde_json::to_value(&doc).map_err(|e| FunctionError::Internal(e.to_string()))?;
        if docs.update(FUNCTION_DOC, name, current.revision, &body).await?.is_none() {
            return Err(FunctionError::Conflict(format!("function {name:?} is being changed by someone else")));
        }
        tx.commit().await?;
        Ok(self.view(&doc.config, &n.to_string(), &version))
    }

    /// Deletes a function with its versions; stops its instances.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let mut tx = self.0.store.begin().await?;
        let mut docs = tx.documents();
        if !docs.delete(FUNCTION_DOC, name).await? {
            return Err(not_found(name));
        }
        docs.delete_prefix(VERSION_DOC, &format!("{name}:")).await?;
        docs.delete_prefix(crate::aliases::ALIAS_DOC, &format!("{name}:")).await?;
        tx.commit().await?;
        self.0.pools.retire(name);
        self.0.logs.delete(name).await;
        Ok(())
    }

    /// Instances of a function in this process: (busy, idle).
    pub fn instances(&self, name: &str) -> (usize, usize) {
        self.0.pools.counts(name)
    }

    /// The newest log text of a function, at most `max_bytes` (whole lines), from every process sharing the storage.
    pub async fn logs(&self, name: &str, max_bytes: usize) -> String {
        self.0.logs.tail(name, max_bytes).await
    }

    /// Writes every pending log line to storage now (before a process exits).
    pub async fn flush_logs(&self) {
        self.0.logs.flush(None).await;
    }

    /// Adds an invocation's log; writes the function's pending lines in the background when they are many.
    fn append_log(&self, name: &str, text: &str) {
        if self.0.logs.append(name, text) {
            let this = self.clone();
            let name = name.to_string();
            tokio::spawn(async move { this.0.logs.flush(Some(&name)).await });
        }
    }

    /// Queues an asynchronous invocation (Lambda's `Event` type); returns its request id. It runs on the
    /// `functions` queue, retried and dead-lettered as the function's configuration says.
    pub async fn invoke_async(&self, name: &str, req: InvokeRequest) -> Result<String> {
        const MAX_EVENT_BYTES: usize = 1 << 20;
        if req.payload.len() > MAX_EVENT_BYTES {
            return Err(FunctionError::TooLarge(format!(
                "{} byte payload is too large for the Event invocation type ({MAX_EVENT_BYTES} byte limit)",
                req.payload.len()
            )));
        }
        let payload = String::from_utf8(req.payload.to_vec())
            .map_err(|_| FunctionError::Invalid("the event must be UTF-8 text (JSON)".into()))?;
        let (config, _, _) = self.resolve(name, req.qualifier.as_deref()).await?;
        let request_id = req.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if config.runtime()? == Runtime::Notebook {
            self.enqueue_notebook(name, &config, &req, &request_id).await?;
            return Ok(request_id);
        }
        let args = crate::InvokeEventArgs {
            function: name.to_string(),
            qualifier: req.qualifier,
            payload,
            request_id: request_id.clone(),
            client_context: req.client_context,
            identity: req.identity,
            max_event_age_s: config.maximum_event_age.map_or(crate::jobs::DEFAULT_MAX_EVENT_AGE.as_secs(), u64::from),
        };
        let mut job = strato_types::NewJob::of(&args).map_err(|e| FunctionError::Internal(e.message))?;
        job.max_attempts = 1 + config.maximum_retry_attempts.unwrap_or(2) as i32;
        self.0.store.queue().enqueue(job).await?;
        Ok(request_id)
    }

    /// Checks that `name` (with `qualifier`) exists, as `DryRun` does.
    pub async fn exists(&self, name: &str, qualifier: Option<&str>) -> Result<()> {
        self.resolve(name, qualifier).await.map(|_| ())
    }

    /// Runs one invocation synchronously.
    pub async fn invoke(&self, name: &str, req: InvokeRequest) -> Result<InvokeResponse> {
        if req.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(FunctionError::TooLarge(format!(
                "{} byte payload is too large for the RequestResponse invocation type ({MAX_PAYLOAD_BYTES} byte limit)",
                req.payload.len()
            )));
        }
        let (config, version, doc) = self.resolve(name, req.qualifier.as_deref()).await?;
        if config.runtime()? == Runtime::Notebook {
            return self.invoke_notebook(name, &config, version, req).await;
        }
        let key = PoolKey { function: name.to_string(), version: version.clone(), revision: doc.revision };
        let request_id = req.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (instance, cold) = match self.0.pools.acquire(&key, config.reserved_concurrency) {
            Acquired::Warm(i) => (i, false),
            Acquired::Throttled => {
                return Err(FunctionError::Throttled(format!(
                    "Rate Exceeded: function {name:?} is at its concurrency limit ({})",
                    config.reserved_concurrency.map_or_else(
                        || format!("{} instances in this process", self.0.opts.max_instances),
                        |r| r.to_string()
                    )
                )))
            }
            Acquired::Start => match self.launch(&config, &version).await {
                Ok(i) => (i, true),
                Err(e) => {
                    self.0.pools.release(&key, None);
                    // Lambda's answer when the runtime cannot start: a function error, not a service error.
                    let body = json!({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": e.to_string()});
                    let log = format!(
                        "START RequestId: {request_id} Version: {version}\n{}\nEND RequestId: {request_id}\n",
                        body["errorMessage"].as_str().unwrap_or_default()
                    );
                    self.append_log(name, &log);
                    return Ok(InvokeResponse {
                        request_id,
                        payload: body.to_string().into(),
                        function_error: Some("Unhandled".into()),
                        executed_version: version,
                        log,
                    });
                }
            },
        };
        let arn = self.arn(name, req.qualifier.as_deref().filter(|q| *q != "$LATEST"));
        let limit = Duration::from_secs(u64::from(config.timeout));
        let deadline_ms = chrono::Utc::now().timestamp_millis() + limit.as_millis() as i64;
        let identity = req.identity.as_ref().map(|v| v.to_string());
        let t0 = Instant::now();
        let outcome =
            instance.invoke(&request_id, req.payload, deadline_ms, &arn, req.client_context, identity, limit).await;
        // Lambda's Duration leaves initialisation out: count from when the runtime took the invocation.
        let elapsed = instance.ready_at().map_or(t0, |r| r.max(t0)).elapsed();
        // The runtime's last lines may still be in the pipe when its answer arrives.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let output = instance.take_output();
        let (payload, function_error, extra) = match outcome {
            Outcome::Replied(Reply::Response(b)) => (b, None, String::new()),
            Outcome::Replied(Reply::Error { body, .. }) if is_memory_error(&body) => {
                // The memory limit was reached: reported as Lambda reports it, and the instance (whose heap is
                // exhausted) replaced.
                instance.kill();
                let msg = format!(
                    "RequestId: {request_id} Error: Runtime exited with error: out of memory (memory size {} MB)",
                    config.memory_size
                );
                let body = json!({"errorType": "Runtime.OutOfMemory", "errorMessage": msg});
                (body.to_string().into(), Some("Unhandled".into()), format!("{msg}\nRuntime.OutOfMemory\n"))
            }
            Outcome::Replied(Reply::Error { error_type, body }) => {
                let t = if error_type.starts_with("Function.") { error_type } else { "Unhandled".into() };
                (body, Some(t), String::new())
            }
            Outcome::InitFailed(Reply::Error { body, .. }) | Outcome::InitFailed(Reply::Response(body)) => {
                (body, Some("Unhandled".into()), String::new())
            }
            Outcome::Exited(how) => {
                let msg = format!("RequestId: {request_id} Error: Runtime exited with error: {how}");
                let body = json!({"errorType": "Runtime.ExitError", "errorMessage": msg});
                (body.to_string().into(), Some("Unhandled".into()), format!("{msg}\nRuntime.ExitError\n"))
            }
            Outcome::TimedOut => {
                let secs = limit.as_secs_f64();
                let msg = format!("RequestId: {request_id} Error: Task timed out after {secs:.2} seconds");
                let body = json!({"errorType": "Sandbox.Timedout", "errorMessage": msg});
                let line = format!(
                    "{} {request_id} Task timed out after {secs:.2} seconds\n",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                );
                (body.to_string().into(), Some("Unhandled".into()), line)
            }
        };
        let init = if cold { instance.take_init_duration() } else { None };
        let ms = elapsed.as_secs_f64() * 1e3;
        let mut report = format!(
            "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
            ms.ceil() as u64,
            config.memory_size,
            instance.max_memory_mb()
        );
        if let Some(i) = init {
            report.push_str(&format!("\tInit Duration: {:.2} ms", i.as_secs_f64() * 1e3));
        }
        let log = format!(
            "START RequestId: {request_id} Version: {version}\n{output}{extra}END RequestId: {request_id}\n{report}\n"
        );
        self.append_log(name, &log);
        self.0.pools.release(&key, Some(instance));
        Ok(InvokeResponse { request_id, payload, function_error, executed_version: version, log })
    }

    async fn launch(&self, config: &FunctionConfig, version: &str) -> Result<Arc<Instance>> {
        let Some(task_root) = self.code_dir(&config.code).await? else {
            return Err(FunctionError::Internal("the function has no code".into()));
        };
        let runtime = config.runtime()?;
        let o = &self.0.opts;
        let mut env = instance::clean_env(&config.environment);
        let task_root_s = task_root.display().to_string();
        let stream = format!(
            "{}/[{version}]{}",
            chrono::Utc::now().format("%Y/%m/%d"),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        for (k, v) in [
            ("_HANDLER", config.handler.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", config.name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", version.to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", config.memory_size.to_string()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", config.name)),
            ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", runtime.as_str())),
            ("AWS_REGION", o.region.clone()),
            ("AWS_DEFAULT_REGION", o.region.clone()),
            ("LAMBDA_TASK_ROOT", task_root_s.clone()),
            ("LAMBDA_RUNTIME_DIR", task_root_s),
            ("TZ", ":UTC".into()),
        ] {
            env.insert(k.into(), v);
        }
        if matches!(runtime, Runtime::Python(_)) {
            // The code's own packages first, as Lambda's PYTHONPATH puts the task root ahead of the runtime's.
            env.insert("PYTHONPATH".into(), task_root.display().to_string());
        }
        if o.run_as.is_some() {
            instance::share_code(&task_root, &o.work_dir).map_err(|e| {
                FunctionError::Internal(format!("the code cannot be opened to the instances' user: {e}"))
            })?;
        }
        let argv = instance::argv(&runtime, &config.handler, &o.python, &task_root, config.memory_size, o.run_as)
            .map_err(FunctionError::Internal)?;
        let launch = Launch {
            argv,
            task_root: &task_root,
            env,
            tmp_parent: &instance::tmp_parent(&o.work_dir),
            run_as: o.run_as,
        };
        Instance::launch(launch)
            .await
            .map_err(|e| FunctionError::Internal(format!("the runtime could not be started: {e}")))
    }

    /// The unpacked code of a version (fetched and unpacked on first use in this process).
    async fn code_dir(&self, code: &CodeRef) -> Result<Option<PathBuf>> {
        match code {
            CodeRef::Directory { path } if path.is_empty() => Ok(None),
            CodeRef::Directory { path } => Ok(Some(PathBuf::from(path))),
            CodeRef::Zip { sha256, .. } => {
                if let Some(dir) = self.0.cache.cached(sha256) {
                    return Ok(Some(dir));
                }
                let zip = self
                    .0
                    .blobs
                    .get(&code::blob_key(sha256))
                    .await
                    .map_err(|e| FunctionError::Internal(format!("the code archive {sha256}: {e}")))?;
                let cache = self.0.cache.clone();
                let sha = sha256.clone();
                tokio::task::spawn_blocking(move || cache.ensure(&sha, &zip))
                    .await
                    .map_err(|e| FunctionError::Internal(e.to_string()))?
                    .map(Some)
            }
        }
    }

    async fn store_code(&self, code: &NewCode) -> Result<CodeRef> {
        match code {
            NewCode::Directory(path) => {
                let path = std::fs::canonicalize(path)
                    .map_err(|e| FunctionError::Invalid(format!("code directory {}: {e}", path.display())))?;
                if !path.is_dir() {
                    return Err(FunctionError::Invalid(format!(
                        "code directory {} is not a directory",
                        path.display()
                    )));
                }
                Ok(CodeRef::Directory { path: path.display().to_string() })
            }
            NewCode::Zip(zip) => {
                let checked = zip.clone();
                tokio::task::spawn_blocking(move || code::check(&checked))
                    .await
                    .map_err(|e| FunctionError::Internal(e.to_string()))??;
                let sha256 = code::digest(zip);
                self.0
                    .blobs
                    .put(&code::blob_key(&sha256), zip.clone())
                    .await
                    .map_err(|e| FunctionError::Internal(format!("storing the code archive: {e}")))?;
                Ok(CodeRef::Zip { sha256, size: zip.len() as u64 })
            }
            NewCode::File(key) => {
                let full = format!("files/{key}");
                let missing = |e: strato_blob::BlobError| match e {
                    strato_blob::BlobError::NotFound(_) => {
                        FunctionError::Invalid(format!("no file {key:?} in Strato's files to take the code from"))
                    }
                    e => FunctionError::Internal(format!("reading the code archive {key:?}: {e}")),
                };
                // Sized before it is read: a file may be gigabytes, the archive may not.
                let size = self.0.blobs.head(&full).await.map_err(missing)?.size;
                if size > code::MAX_ZIPPED_BYTES {
                    return Err(FunctionError::Invalid(format!(
                        "file {key:?} is {size} bytes; a code archive may be at most {} (50 MB)",
                        code::MAX_ZIPPED_BYTES
                    )));
                }
                let zip = self.0.blobs.get(&full).await.map_err(missing)?;
                Box::pin(self.store_code(&NewCode::Zip(zip))).await
            }
        }
    }

    async fn function_doc(&self, name: &str) -> Result<Document> {
        validate_name(name).map_err(|_| not_found(name))?;
        self.0.store.documents().get(FUNCTION_DOC, name).await?.ok_or_else(|| not_found(name))
    }

    /// The configuration an invocation of `name:qualifier` runs, its version label and its document.
    async fn resolve(&self, name: &str, qualifier: Option<&str>) -> Result<(FunctionConfig, String, Document)> {
        match qualifier {
            None | Some("$LATEST") | Some("") => {
                let d = self.function_doc(name).await?;
                Ok((parse::<FunctionDoc>(&d)?.config, "$LATEST".into(), d))
            }
            Some(q) if q.parse::<u64>().is_ok() => {
                validate_name(name).map_err(|_| not_found(name))?;
                let d = self.0.store.documents().get(VERSION_DOC, &format!("{name}:{q}")).await?.ok_or_else(|| {
                    FunctionError::NotFound(format!("Function not found: {}", self.arn(name, Some(q))))
                })?;
                Ok((parse(&d)?, q.to_string(), d))
            }
            Some(q) => {
                // An alias: resolved to what it points at now (never to another alias).
                let alias = self.alias(name, q).await.map_err(|e| match e {
                    FunctionError::NotFound(_) => {
                        FunctionError::NotFound(format!("Function not found: {}", self.arn(name, Some(q))))
                    }
                    e => e,
                })?;
                Box::pin(self.resolve(name, Some(&alias.function_version))).await
            }
        }
    }

    fn view(&self, c: &FunctionConfig, version: &str, doc: &Document) -> FunctionView {
        let (code_sha256, code_size, code_source) = match &c.code {
            CodeRef::Zip { sha256, size } => {
                use base64::Engine;
                let raw = hex::decode(sha256).unwrap_or_default();
                (base64::engine::general_purpose::STANDARD.encode(raw), *size, "zip")
            }
            CodeRef::Directory { .. } => (String::new(), 0, "directory"),
        };
        FunctionView {
            name: c.name.clone(),
            version: version.to_string(),
            arn: self.arn(&c.name, (version != "$LATEST").then_some(version)),
            runtime: c.runtime.clone(),
            handler: c.handler.clone(),
            environment: c.environment.clone(),
            timeout: c.timeout,
            memory_size: c.memory_size,
            reserved_concurrency: c.reserved_concurrency,
            description: c.description.clone(),
            role: c.role.clone(),
            maximum_retry_attempts: c.maximum_retry_attempts.unwrap_or(2),
            maximum_event_age: c.maximum_event_age.unwrap_or(21_600),
            code_sha256,
            code_size,
            code_source: code_source.into(),
            last_modified: doc.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            revision: doc.revision,
        }
    }
}

/// A `provided` function needs an executable `bootstrap` at the root of its code: refuse it where it is made.
fn check_entrypoint(c: &FunctionConfig, dir: Option<&std::path::Path>) -> Result<()> {
    let (Ok(Runtime::Provided(_)), Some(dir)) = (c.runtime(), dir) else { return Ok(()) };
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(dir.join("bootstrap")) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(FunctionError::Invalid("the code's bootstrap is not an executable file".into())),
        Err(_) => Err(FunctionError::Invalid(format!(
            "runtime {} runs the code's own executable `bootstrap`, and the code has none at its root",
            c.runtime
        ))),
    }
}

/// Whether a runtime's error document is an allocation refused at the memory limit (Python's `MemoryError`).
fn is_memory_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v["errorType"] == "MemoryError")
}

fn not_found(name: &str) -> FunctionError {
    FunctionError::NotFound(format!("Function not found: {name}"))
}

fn parse<T: serde::de::DeserializeOwned>(d: &Document) -> Result<T> {
    serde_json::from_value(d.body.clone())
        .map_err(|e| FunctionError::Internal(format!("stored {} {:?} is unreadable: {e}", d.kind, d.id)))
}
