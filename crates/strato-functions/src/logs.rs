//! Function logs, kept in blob storage so every process sharing it reads every process's logs: each invocation's
//! lines (`START`, the output, `END`, `REPORT`) gather in memory per function and are written together, at most
//! every [`FLUSH_EVERY`] (or sooner past [`FLUSH_BYTES`]), as one object
//! `function-logs/<function>/<day>/<time>-<process>.log`; reading a tail takes the newest objects, after writing
//! this process's own pending lines; objects of days past the time to live are deleted.

use std::collections::HashMap;
use std::time::Duration;

use strato_blob::BlobStore;

/// Where logs live in blob storage.
const PREFIX: &str = "function-logs/";
/// Pending lines are written at least this often.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// A function's pending lines past this size are written at once.
const FLUSH_BYTES: usize = 256 << 10;
/// A function's pending lines are capped here (a function printing without end cannot grow memory).
const MAX_PENDING: usize = 8 << 20;

/// Logs over blob storage.
pub(crate) struct LogStore {
    blobs: BlobStore,
    /// This process, in object names, so processes never overwrite each other's objects.
    process: String,
    pending: parking_lot::Mutex<HashMap<String, String>>,
    /// Serialises writes, so objects of one function are written in order.
    writing: tokio::sync::Mutex<()>,
}

impl LogStore {
    pub fn new(blobs: BlobStore) -> Self {
        let process = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        Self { blobs, process, pending: Default::default(), writing: Default::default() }
    }

    /// Adds one invocation's log; it reaches storage within [`FLUSH_EVERY`]. Returns whether the function's
    /// pending lines should be written now.
    pub fn append(&self, function: &str, text: &str) -> bool {
        let mut pending = self.pending.lock();
        let buf = pending.entry(function.to_string()).or_default();
        if buf.len() + text.len() <= MAX_PENDING {
            buf.push_str(text);
        }
        buf.len() >= FLUSH_BYTES
    }

    /// Writes pending lines (of one function, or all); a failure is logged and the lines kept for the next try.
    pub async fn flush(&self, only: Option<&str>) {
        let _writing = self.writing.lock().await;
        let batch: Vec<(String, String)> = {
            let mut pending = self.pending.lock();
            match only {
                Some(f) => pending.remove(f).map(|t| (f.to_string(), t)).into_iter().collect(),
                None => pending.drain().collect(),
            }
        };
        for (function, text) in batch {
            let now = chrono::Utc::now();
            let key = format!(
                "{PREFIX}{function}/{}/{}-{}.log",
                now.format("%Y-%m-%d"),
                now.format("%H%M%S%.6f"),
                self.process
            );
            if let Err(e) = self.blobs.put(&key, text.clone().into()).await {
                tracing::warn!(function, error = %e, "could not write the function's log; kept for the next try");
                let mut pending = self.pending.lock();
                let buf = pending.entry(function).or_default();
                if buf.len() + text.len() <= MAX_PENDING {
                    buf.insert_str(0, &text);
                }
            }
        }
    }

    /// The last `max_bytes` (at most, whole lines) of the function's logs, newest last, from every process.
    pub async fn tail(&self, function: &str, max_bytes: usize) -> String {
        self.flush(Some(function)).await;
        let today = chrono::Utc::now().date_naive();
        let mut out: Vec<u8> = Vec::new();
        // Today's objects first, then earlier days', until the tail is full (at most a week back).
        for back in 0..8 {
            let day = today - chrono::Duration::days(back);
            let listed = match self.blobs.list(&format!("{PREFIX}{function}/{day}/"), 100_000).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(function, error = %e, "could not list the function's logs");
                    break;
                }
            };
            for o in listed.iter().rev() {
                if out.len() >= max_bytes {
                    break;
                }
                let Ok(bytes) = self.blobs.get(&o.key).await else { continue };
                let mut chunk = bytes.to_vec();
                chunk.extend_from_slice(&out);
                out = chunk;
            }
            if out.len() >= max_bytes {
                break;
            }
        }
        if out.len() > max_bytes {
            let mut cut = out.len() - max_bytes;
            // Whole lines only: drop the partial first one.
            cut += out[cut..].iter().position(|b| *b == b'\n').map_or(out.len() - cut, |i| i + 1);
            out.drain(..cut.min(out.len()));
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Deletes the logs of days older than `ttl`.
    pub async fn expire(&self, ttl: Duration) {
        let cutoff = chrono::Utc::now().date_naive() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let Ok(objects) = self.blobs.list(PREFIX, usize::MAX).await else { return };
        for o in objects {
            // `function-logs/<function>/<day>/<name>`
            let day = o.key.rsplit('/').nth(1).and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            if day.is_some_and(|d| d < cutoff) {
                let _ = self.blobs.delete(&o.key).await;
            }
        }
    }

    /// Deletes every log of a function.
    pub async fn delete(&self, function: &str) {
        self.pending.lock().remove(function);
        if let Ok(objects) = self.blobs.list(&format!("{PREFIX}{function}/"), usize::MAX).await {
            for o in objects {
                let _ = self.blobs.delete(&o.key).await;
            }
        }
    }
}

/// The last 4 KB of an invocation's log, base64, as `X-Amz-Log-Result` carries it.
pub(crate) fn tail_header(log: &str) -> String {
    use base64::Engine;
    let bytes = log.as_bytes();
    let mut start = bytes.len().saturating_sub(4096);
    while start < bytes.len() && !log.is_char_boundary(start) {
        start += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(&bytes[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logs_are_shared_through_storage_and_tailed_by_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::local(dir.path()).unwrap();
        let (a, b) = (LogStore::new(blobs.clone()), LogStore::new(blobs.clone()));
        a.append("f", "START 1\nEND 1\n");
        b.append("f", "START 2\nEND 2\n");
        b.flush(None).await;
        assert_eq!(a.tail("f", 1 << 20).await, "START 2\nEND 2\nSTART 1\nEND 1\n", "its own pending lines, then");
        a.append("f", "START 3\n");
        assert!(b.tail("f", 1 << 20).await.contains("START 2"), "another process reads what was written");
        assert_eq!(b.tail("f", 12).await, "START 1\nEND 1\n".split_at(8).1, "whole lines within the limit");
        a.flush(None).await;
        assert!(b.tail("f", 1 << 20).await.ends_with("START 3\n"));
        assert_eq!(a.tail("other", 100).await, "");
        a.expire(Duration::from_secs(3600)).await;
        assert!(b.tail("f", 1 << 20).await.contains("START 1"), "today's logs outlive a one-hour TTL check");
        a.delete("f").await;
        assert_eq!(b.tail("f", 1 << 20).await, "");
    }
}
