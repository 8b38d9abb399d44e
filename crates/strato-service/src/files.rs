//! Files: objects of any size in blob storage, streamed in and out with bounded memory, read by byte range, listed
//! by prefix, and shared through presigned URLs. They live under `files/` in the store, apart from the blobs Strato
//! keeps for itself (datasets, model artifacts), so a grant over files reaches nothing else.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use strato_blob::{BlobError, BlobStore, ByteRange, Download, ObjectInfo, PresignError, PresignMethod, PresignedUrl};
use strato_types::{ErrorCode, StratoError};

use crate::{blob_storage, Result};

/// Where files live in blob storage.
/// Where files live in blob storage: file `uploads/a.mp4` is blob `files/uploads/a.mp4`.
pub const PREFIX: &str = "files/";

/// Longest key.
const MAX_KEY_BYTES: usize = 1024;

/// The files part.
#[derive(Clone)]
pub struct Files {
    blobs: BlobStore,
    max_bytes: u64,
}

/// A file's metadata.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Its key (without the storage prefix).
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: chrono::DateTime<chrono::Utc>,
    /// Its entity tag, where the storage has one.
    pub e_tag: Option<String>,
}

impl FileInfo {
    fn from_object(o: ObjectInfo) -> Self {
        let key = o.key.strip_prefix(PREFIX).unwrap_or(&o.key).to_string();
        Self { key, size: o.size, last_modified: o.last_modified, e_tag: o.e_tag }
    }
}

/// Checks a file key: 1–1024 bytes of `/`-separated segments, none empty, `.` or `..`, no control characters or
/// backslashes (so a key is the same path on every storage and can never step out of `files/`).
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(StratoError::new(
            ErrorCode::InvalidName,
            format!("invalid file key {key:?}: {why}; use 1-1024 bytes of /-separated names, e.g. uploads/clip.mp4"),
        ))
    };
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return bad("wrong length");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("control characters and backslashes are not allowed");
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("an empty, '.' or '..' segment");
    }
    Ok(())
}

fn not_found(key: &str) -> StratoError {
    StratoError::new(ErrorCode::FileNotFound, format!("file {key:?} not found"))
}

impl Files {
    pub(crate) fn new(blobs: BlobStore, max_bytes: u64) -> Self {
        Self { blobs, max_bytes }
    }

    /// The largest file accepted, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn map(&self, key: &str, what: &'static str) -> impl FnOnce(BlobError) -> StratoError + '_ {
        let key = key.to_string();
        move |e| match e {
            BlobError::NotFound(_) => not_found(&key),
            BlobError::TooLarge(limit) => StratoError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "the file is larger than the limit of {limit} bytes (STRATO_MAX_FILE_BYTES); nothing was stored"
                ),
            ),
            BlobError::RangeNotSatisfiable(size) => StratoError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the range starts past the end of file {key:?} ({size} bytes)"),
            ),
            BlobError::Body(m) => {
                StratoError::new(ErrorCode::InvalidRequest, format!("the upload was cut off ({m}); nothing was stored"))
            }
            BlobError::NoPresigning(m) => StratoError::new(ErrorCode::PresignUnavailable, m),
            e => blob_storage(what)(e),
        }
    }

    /// Stores the body at `key` (replacing a file there), streaming it to storage; nothing is stored when the body
    /// fails or passes the limit.
    pub async fn put<S, E>(&self, key: &str, body: S) -> Result<FileInfo>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        validate_key(key)?;
        let full = format!("{PREFIX}{key}");
        self.blobs
            .put_stream(&full, body, Some(self.max_bytes))
            .await
            .map_err(self.map(key, "storing the file failed"))?;
        self.head(key).await
    }

    /// A file (or the bytes `range` selects of it), as a stream.
    pub async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<Download> {
        validate_key(key)?;
        let mut d = self
            .blobs
            .get_stream(&format!("{PREFIX}{key}"), range)
            .await
            .map_err(self.map(key, "reading the file failed"))?;
        d.info.key = key.to_string();
        Ok(d)
    }

    /// A file's metadata.
    pub async fn head(&self, key: &str) -> Result<FileInfo> {
        validate_key(key)?;
        let o = self.blobs.head(&format!("{PREFIX}{key}")).await.map_err(self.map(key, "reading the file failed"))?;
        Ok(FileInfo::from_object(o))
    }

    /// Deletes a file.
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.head(key).await?;
        self.blobs.delete(&format!("{PREFIX}{key}")).await.map_err(self.map(key, "deleting the file failed"))
    }

    /// The files whose keys start with `prefix`, sorted by key, at most `limit`.
    pub async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<FileInfo>> {
        if prefix.chars().any(|c| c.is_control() || c == '\\') || prefix.len() > MAX_KEY_BYTES {
            return Err(StratoError::new(ErrorCode::InvalidRequest, format!("invalid prefix {prefix:?}")));
        }
        let found = self
            .blobs
            .list(&format!("{PREFIX}{prefix}"), limit.clamp(1, 10_000))
            .await
            .map_err(self.map(prefix, "listing files failed"))?;
        Ok(found.into_iter().map(FileInfo::from_object).collect())
    }

    /// A URL that lets its holder upload or download `key` for `expires_in`, with no other credential: S3's own
    /// on S3, Strato-served ones on local storage.
    pub async fn presign(&self, method: PresignMethod, key: &str, expires_in: Duration) -> Result<PresignedUrl> {
        validate_key(key)?;
        self.blobs
            .presign(method, &format!("{PREFIX}{key}"), expires_in)
            .await
            .map_err(self.map(key, "presigning failed"))
    }

    /// Checks a Strato-served presigned URL for the blob `blob_key` (as signed, prefix included): 403 when it is
    /// expired or tampered with, or when this storage does not serve presigned URLs itself.
    pub fn verify_presigned(&self, method: PresignMethod, blob_key: &str, expires: u64, signature: &str) -> Result<()> {
        let refused = |m: &str| Err(StratoError::new(ErrorCode::Forbidden, m.to_string()));
        match self.blobs.verify_presigned(method, blob_key, expires, signature) {
            Some(Ok(())) => Ok(()),
            Some(Err(PresignError::Expired)) => refused("the presigned URL expired; ask for a new one"),
            Some(Err(PresignError::BadSignature)) => {
                refused("the presigned URL's signature does not match its method, key and expiry")
            }
            None => refused("this server does not serve presigned URLs (the storage signs its own)"),
        }
    }

    /// Stores the body at blob `blob_key` through a verified presigned URL.
    pub async fn put_presigned<S, E>(&self, blob_key: &str, body: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        self.blobs
            .put_stream(blob_key, body, Some(self.max_bytes))
            .await
            .map_err(self.map(blob_key, "storing the file failed"))
    }

    /// Reads blob `blob_key` through a verified presigned URL.
    pub async fn get_presigned(&self, blob_key: &str, range: Option<ByteRange>) -> Result<Download> {
        self.blobs.get_stream(blob_key, range).await.map_err(self.map(blob_key, "reading the file failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys_stay_inside_files() {
        for ok in ["a", "uploads/u1/clip.mp4", "a b/ünï.txt", "x..y"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a//b", "../x", "a/./b", "a/../b", "a\\b", "a\u{0}b", &"x".repeat(1025)] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }
}
