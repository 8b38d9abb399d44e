//! Function logs: each invocation's lines (`START`, the output, `END`, `REPORT`) appended to one file per function
//! and day, read back newest last, and deleted after their time to live.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

/// Logs under one directory.
pub(crate) struct LogStore {
    root: PathBuf,
    /// Serialises appends, so one invocation's lines are never interleaved with another's.
    lock: parking_lot::Mutex<()>,
}

impl LogStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root, lock: Default::default() }
    }

    fn file(&self, function: &str, day: chrono::NaiveDate) -> PathBuf {
        self.root.join(function).join(format!("{day}.log"))
    }

    /// Appends one invocation's log; a failure is logged, never fails the invocation.
    pub fn append(&self, function: &str, text: &str) {
        let path = self.file(function, chrono::Utc::now().date_naive());
        let _guard = self.lock.lock();
        let written = (|| {
            std::fs::create_dir_all(path.parent().expect("a function directory"))?;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            f.write_all(text.as_bytes())
        })();
        if let Err(e) = written {
            tracing::warn!(function, error = %e, "could not write the function's log");
        }
    }

    /// The last `max_bytes` (at most, whole lines) of the function's newest log files.
    pub fn tail(&self, function: &str, max_bytes: usize) -> String {
        let dir = self.root.join(function);
        let mut days: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect())
            .unwrap_or_default();
        days.sort();
        let mut out: Vec<u8> = Vec::new();
        for path in days.iter().rev() {
            let want = max_bytes.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            let Ok(mut f) = std::fs::File::open(path) else { continue };
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let start = len.saturating_sub(want as u64);
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
                continue;
            }
            if start > 0 {
                // Drop the partial first line.
                let cut = buf.iter().position(|b| *b == b'\n').map_or(buf.len(), |i| i + 1);
                buf.drain(..cut);
            }
            buf.extend_from_slice(&out);
            out = buf;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Deletes log files older than `ttl`.
    pub fn expire(&self, ttl: Duration) {
        let cutoff = chrono::Utc::now().date_naive() - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let Ok(functions) = std::fs::read_dir(&self.root) else { return };
        for f in functions.flatten() {
            let Ok(days) = std::fs::read_dir(f.path()) else { continue };
            for d in days.flatten() {
                let name = d.file_name().to_string_lossy().trim_end_matches(".log").to_string();
                if chrono::NaiveDate::parse_from_str(&name, "%Y-%m-%d").is_ok_and(|day| day < cutoff) {
                    let _ = std::fs::remove_file(d.path());
                }
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
