//! Objects of any size with bounded memory: streamed uploads, streamed (ranged) downloads, listings by prefix.

use std::ops::Range;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, PutPayload, WriteMultipart};

use crate::{is_missing_object, BlobError, BlobStore};

/// Bytes gathered before an upload becomes a multipart upload, and the size of each part after that (S3's parts
/// are at least 5 MiB).
pub const PART_SIZE: usize = 8 << 20;

/// Parts uploading at once: with the part being filled, at most `(PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes of an
/// upload are in memory.
const PARTS_IN_FLIGHT: usize = 2;

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub last_modified: chrono::DateTime<chrono::Utc>,
    /// Its entity tag, where the storage has one.
    pub e_tag: Option<String>,
}

impl ObjectInfo {
    fn from_meta(key: String, meta: &object_store::ObjectMeta) -> Self {
        Self { key, size: meta.size, last_modified: meta.last_modified, e_tag: meta.e_tag.clone() }
    }
}

/// Which bytes of an object to read (HTTP's `Range: bytes=` forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `start-end`, both inclusive as in HTTP; an end past the object's end means its end.
    Inclusive(u64, u64),
    /// `start-`: from `start` to the end.
    From(u64),
    /// `-n`: the last `n` bytes.
    Last(u64),
}

impl ByteRange {
    /// The bytes this range selects of an object of `size` bytes, or `None` when it selects none.
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        let r = match self {
            Self::Inclusive(a, b) if a <= b => a..(b.saturating_add(1)).min(size),
            Self::Inclusive(..) => return None,
            Self::From(a) => a..size,
            Self::Last(n) => size.saturating_sub(n)..size,
        };
        (r.start < r.end).then_some(r)
    }
}

/// An object being read.
pub struct Download {
    /// The object.
    pub info: ObjectInfo,
    /// The bytes this download carries (all of them unless a range was asked for).
    pub range: Range<u64>,
    /// The bytes.
    pub stream: BoxStream<'static, Result<Bytes, BlobError>>,
}

impl BlobStore {
    /// Stores the bytes of `body` at `key`, atomically replacing any previous object, holding at most a few parts in
    /// memory whatever the size: a body that fits in one part is one write; a larger one is a multipart upload (on
    /// S3; locally, a staging file renamed into place) that is aborted, leaving nothing, when the body fails or
    /// passes `max_bytes`. Returns the size stored.
    pub async fn put_stream<S, E>(&self, key: &str, body: S, max_bytes: Option<u64>) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let path = ObjectPath::from(key);
        let mut body = std::pin::pin!(body);
        let limit = max_bytes.unwrap_or(u64::MAX);
        let mut total = 0u64;
        let mut first: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        // 1. Gather the first part: small objects end here.
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    if total > limit {
                        return Err(BlobError::TooLarge(limit));
                    }
                    buffered += chunk.len();
                    first.push(chunk);
                    if buffered >= PART_SIZE {
                        break;
                    }
                }
                Some(Err(e)) => return Err(BlobError::Body(e.to_string())),
                None => {
                    self.inner.put(&path, PutPayload::from_iter(first)).await?;
                    return Ok(total);
                }
            }
        }
        // 2. A multipart upload, a few parts in flight, aborted on any failure.
        let upload = self.inner.put_multipart(&path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for chunk in first {
            writer.put(chunk);
        }
        let failed = loop {
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break BlobError::from(e);
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    if total > limit {
                        break BlobError::TooLarge(limit);
                    }
                    writer.put(chunk);
                }
                Some(Err(e)) => break BlobError::Body(e.to_string()),
                None => {
                    writer.finish().await?;
                    return Ok(total);
                }
            }
        };
        if let Err(e) = writer.abort().await {
            tracing::warn!(%key, error = %e, "could not abort a failed multipart upload; the storage will expire it");
        }
        Err(failed)
    }

    /// Reads the object at `key` (or the bytes `range` selects of it) as a stream.
    pub async fn get_stream(&self, key: &str, range: Option<ByteRange>) -> Result<Download, BlobError> {
        let path = ObjectPath::from(key);
        let range = match range {
            None => None,
            Some(r) => {
                let info = self.head(key).await?;
                Some(r.resolve(info.size).ok_or(BlobError::RangeNotSatisfiable(info.size))?)
            }
        };
        let opts = GetOptions { range: range.clone().map(GetRange::Bounded), ..Default::default() };
        let got = match self.inner.get_opts(&path, opts).await {
            Ok(g) => g,
            Err(e) if is_missing_object(&e) => return Err(BlobError::NotFound(key.to_string())),
            Err(e) => return Err(e.into()),
        };
        let info = ObjectInfo::from_meta(key.to_string(), &got.meta);
        let range = got.range.clone();
        let stream = got.into_stream().map_err(BlobError::from).boxed();
        Ok(Download { info, range, stream })
    }

    /// An object's metadata.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, BlobError> {
        match self.inner.head(&ObjectPath::from(key)).await {
            Ok(meta) => Ok(ObjectInfo::from_meta(key.to_string(), &meta)),
            Err(e) if is_missing_object(&e) => Err(BlobError::NotFound(key.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// The objects whose keys start with `prefix` (a string prefix, as S3's: `uploads/2026-` matches
    /// `uploads/2026-12/a.mp4`), sorted by key, at most `limit` of them.
    pub async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<ObjectInfo>, BlobError> {
        // object_store lists by directory: list the deepest directory the prefix names, and filter by the rest.
        let dir = prefix.rsplit_once('/').map(|(d, _)| d).filter(|d| !d.is_empty());
        let dir_path = dir.map(ObjectPath::from);
        let mut found: Vec<ObjectInfo> = Vec::new();
        let mut listing = self.inner.list(dir_path.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta?;
            let key = meta.location.to_string();
            if key.starts_with(prefix) {
                found.push(ObjectInfo::from_meta(key, &meta));
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.truncate(limit);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::ByteRange;

    #[test]
    fn byte_ranges_resolve_as_http_says() {
        assert_eq!(ByteRange::Inclusive(0, 9).resolve(100), Some(0..10));
        assert_eq!(ByteRange::Inclusive(90, 500).resolve(100), Some(90..100), "an end past the end is the end");
        assert_eq!(ByteRange::Inclusive(100, 200).resolve(100), None, "starts past the end");
        assert_eq!(ByteRange::Inclusive(5, 4).resolve(100), None);
        assert_eq!(ByteRange::From(95).resolve(100), Some(95..100));
        assert_eq!(ByteRange::From(100).resolve(100), None);
        assert_eq!(ByteRange::Last(10).resolve(100), Some(90..100));
        assert_eq!(ByteRange::Last(500).resolve(100), Some(0..100));
        assert_eq!(ByteRange::Last(0).resolve(100), None);
        assert_eq!(ByteRange::From(0).resolve(0), None, "an empty object has no bytes to select");
    }
}
