//! Blob storage for datasets and model artifacts, through `object_store`.
//!
//! Keys are `/`-separated paths such as `models/tc-01/v3-<uuid>.safetensors`. Writes are atomic: the local backend
//! writes a temporary file and renames it into place, and S3 objects appear whole, so a reader never sees half an
//! artifact. Another `object_store` backend (S3, GCS, Azure) slots in through [`BlobStore::new`].

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No object at that key.
    #[error("blob {0} not found")]
    NotFound(String),
    /// The backend failed.
    #[error("blob storage error: {0}")]
    Backend(#[from] object_store::Error),
    /// The local root could not be prepared.
    #[error("cannot prepare blob directory {path}: {source}")]
    Io {
        /// Directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// A handle to blob storage; cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
}

impl BlobStore {
    /// Wraps any `object_store` backend.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }

    /// Local filesystem storage rooted at `root` (created if missing).
    pub fn local(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root).map_err(|source| BlobError::Io { path: root.display().to_string(), source })?;
        let fs = LocalFileSystem::new_with_prefix(root)?;
        Ok(Self::new(Arc::new(fs)))
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
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the object at `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an object exists at `key`.
    pub async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        match self.inner.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
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
