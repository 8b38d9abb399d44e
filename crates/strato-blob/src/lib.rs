//! Blob storage for datasets and model artifacts, through `object_store`.
//!
//! Keys are `/`-separated paths such as `models/tc-01/v3-<uuid>.safetensors`. Writes are atomic: the local backend
//! writes a temporary file and renames it into place, and S3 objects appear whole, so a reader never sees half an
//! artifact.
//!
//! [`BlobStore::open`] turns a `--storage` value into a store: a local directory, or an S3 bucket (AWS or any
//! S3-compatible server through [`S3_ENDPOINT_ENV`]) configured from the standard AWS environment variables. The
//! S3 client retries refused connections and server errors for about 10 s, then fails, so a job never hangs on a
//! stopped server. Another `object_store` backend (GCS, Azure) slots in through [`BlobStore::new`]. With the
//! `test-support` feature, `test_support` runs real S3 servers (moto, s3rver) for tests.
//!
//! Large objects stream (`stream.rs`): [`BlobStore::put_stream`] holds at most a few parts in memory whatever the
//! object's size (a multipart upload on S3, a staging file renamed into place locally), [`BlobStore::get_stream`]
//! reads whole objects or byte ranges as a stream, and [`BlobStore::list`] lists keys by prefix. Presigned URLs
//! (`presign.rs`) let a client upload or download one object directly: S3's own (SigV4) on S3, and Strato-signed
//! ones (HMAC-SHA256 over method, key and expiry, with a server key) that Strato serves itself for local storage.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

mod location;
mod presign;
mod s3;
mod stream;
#[cfg(feature = "test-support")]
pub mod test_support;

pub use location::{BlobLocation, S3Options, DEFAULT_REGION, S3_ENDPOINT_ENV};
pub use presign::{LocalSigner, PresignError, PresignMethod, PresignedUrl};
pub use stream::{ByteRange, Download, ObjectInfo, PART_SIZE};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No object at that key.
    #[error("blob {0} not found")]
    NotFound(String),
    /// The backend failed (for S3: after its retries ran out).
    #[error("blob storage error: {}", with_causes(.0))]
    Backend(#[from] object_store::Error),
    /// The local root could not be prepared.
    #[error("cannot prepare blob directory {path}: {source}")]
    Io {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The storage location is malformed, names an unsupported scheme or an inconsistent S3 configuration.
    #[error("invalid storage location: {0}")]
    InvalidLocation(String),
    /// A streamed body failed (the client went away); nothing was stored.
    #[error("the upload was cut off: {0}")]
    Body(String),
    /// A streamed body went past its limit; nothing was stored.
    #[error("the object is larger than the limit of {0} bytes")]
    TooLarge(u64),
    /// A byte range starts past the object's end.
    #[error("the range starts past the end of the object ({0} bytes)")]
    RangeNotSatisfiable(u64),
    /// Presigned URLs are not available for this storage (local storage without a signing key and public URL).
    #[error("{0}")]
    NoPresigning(String),
}

/// A handle to blob storage; cheap to clone. `Display` describes where blobs live, without secrets.
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    description: Arc<str>,
    presigner: presign::Presigner,
}

impl BlobStore {
    /// Wraps any `object_store` backend (without presigned URLs).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        let description = inner.to_string().into();
        Self { inner, description, presigner: presign::Presigner::None }
    }

    /// Opens a `--storage` value (see [`BlobLocation::parse`]): empty means `default_local_root`, a path or
    /// `file:///absolute/path` a local directory, `s3://bucket[/prefix]` S3 configured from the environment.
    pub fn open(storage: &str, default_local_root: &Path) -> Result<Self, BlobError> {
        Self::open_location(&BlobLocation::parse(storage, default_local_root)?)
    }

    /// Opens a parsed location. Builds the client only: nothing is sent until the first operation.
    pub fn open_location(location: &BlobLocation) -> Result<Self, BlobError> {
        match location {
            BlobLocation::Local(root) => Self::local(root),
            BlobLocation::S3(options) => Self::s3(options),
        }
    }

    /// Local filesystem storage rooted at `root` (created if missing).
    pub fn local(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root).map_err(|source| BlobError::Io { path: root.display().to_string(), source })?;
        let fs = LocalFileSystem::new_with_prefix(root)?;
        let description = root.display().to_string().into();
        Ok(Self { inner: Arc::new(fs), description, presigner: presign::Presigner::Local(None) })
    }

    /// S3 storage in `options.bucket`, keys under `options.prefix`.
    pub fn s3(options: &S3Options) -> Result<Self, BlobError> {
        let (inner, signer) = s3::build(options)?;
        Ok(Self { inner, description: options.to_string().into(), presigner: signer })
    }

    /// Stores `bytes` at `key`, atomically replacing any previous object.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), BlobError> {
        self.inner.put(&ObjectPath::from(key), PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Reads the object at `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        match self.inner.get(&ObjectPath::from(key)).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(e) if is_missing_object(&e) => Err(BlobError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object at `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) => Ok(()),
            Err(e) if is_missing_object(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Copies the object at `from` to `to`, replacing it, without passing its bytes through this process where the
    /// store can copy by itself (S3's CopyObject; a file copy on local storage). Objects over 5 GB need S3 multipart
    /// copies, which this does not do.
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), BlobError> {
        match self.inner.copy(&ObjectPath::from(from), &ObjectPath::from(to)).await {
            Ok(()) => Ok(()),
            Err(e) if is_missing_object(&e) => Err(BlobError::NotFound(from.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object exists at `key`. On S3 a missing bucket also reads as `false`: a HEAD answer has no body
    /// to tell the two apart.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.inner.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(e) if is_missing_object(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// `e` followed by the causes its message leaves out. object_store stops at "error sending request"; the
/// operator needs the "Connection refused" or "dns error" underneath, and most callers keep only `to_string()`.
fn with_causes(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let part = c.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = c.source();
    }
    text
}

/// Whether `e` says the object is missing. S3 answers 404 for a missing bucket too, which is a misconfiguration,
/// not a missing blob (callers treat that as data gone for good); only the error body tells them apart.
fn is_missing_object(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. }) && !e.to_string().contains("<Code>NoSuchBucket</Code>")
}

impl fmt::Display for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_replace_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::local(&dir.path().join("blobs")).unwrap();
        store.put("models/m/v1.bin", Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(store.get("models/m/v1.bin").await.unwrap(), Bytes::from_static(b"one"));
        store.put("models/m/v1.bin", Bytes::from_static(b"two")).await.unwrap();
        assert_eq!(store.get("models/m/v1.bin").await.unwrap(), Bytes::from_static(b"two"));
        assert!(store.exists("models/m/v1.bin").await.unwrap());
        store.delete("models/m/v1.bin").await.unwrap();
        store.delete("models/m/v1.bin").await.unwrap();
        assert!(matches!(store.get("models/m/v1.bin").await, Err(BlobError::NotFound(_))));
        // No temporary files are left behind.
        let leftovers: Vec<_> = walk(&dir.path().join("blobs"));
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(p: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
