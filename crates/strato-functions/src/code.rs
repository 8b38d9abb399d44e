//! Function code: zip archives kept in blob storage by content, unpacked once per content into a local cache with
//! Lambda's limits and the checks an archive from a user needs (paths that escape, links, sizes that lie).

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{FunctionError, Result};

/// Largest archive accepted (Lambda: 50 MB zipped for a direct upload).
pub const MAX_ZIPPED_BYTES: u64 = 50 << 20;
/// Largest unpacked size (Lambda: 250 MB).
pub const MAX_UNPACKED_BYTES: u64 = 250 << 20;
/// Most entries in an archive: a bound on the files and directories one upload may create.
pub const MAX_ENTRIES: usize = 20_000;

/// SHA-256 (hex) of an archive: its blob key and cache directory name.
pub fn digest(zip: &[u8]) -> String {
    hex::encode(Sha256::digest(zip))
}

/// The blob key of an archive.
pub fn blob_key(sha256: &str) -> String {
    format!("functions/code/{sha256}.zip")
}

/// Checks an archive without writing anything: it opens, and every entry would unpack (the same checks as
/// [`unpack`]), so a bad upload is refused when it is made rather than at the first invocation.
pub fn check(zip: &[u8]) -> Result<()> {
    walk(zip, None)
}

/// Unpacks `zip` into `dest` (which must not exist yet), keeping executable bits.
pub fn unpack(zip: &[u8], dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    walk(zip, Some(dest))
}

fn walk(zip: &[u8], dest: Option<&Path>) -> Result<()> {
    let bad = |m: String| FunctionError::Invalid(format!("the code archive {m}"));
    if zip.len() as u64 > MAX_ZIPPED_BYTES {
        return Err(bad(format!("is {} bytes; the limit is {MAX_ZIPPED_BYTES} (50 MB)", zip.len())));
    }
    let mut archive =
        zip::ZipArchive::new(Cursor::new(zip)).map_err(|e| bad(format!("is not a valid zip file: {e}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(bad(format!("has {} entries; the limit is {MAX_ENTRIES}", archive.len())));
    }
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| bad(format!("has an unreadable entry #{i}: {e}")))?;
        let name = entry.name().to_string();
        let Some(rel) = entry.enclosed_name() else {
            return Err(bad(format!("has an entry whose path leaves the archive: {name:?}")));
        };
        let mode = entry.unix_mode();
        if mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(bad(format!("has a symbolic link, which is not accepted: {name:?}")));
        }
        let Some(dest) = dest else {
            total = total.saturating_add(entry.size());
            if total > MAX_UNPACKED_BYTES {
                return Err(bad(format!("unpacks to more than {MAX_UNPACKED_BYTES} bytes (250 MB)")));
            }
            continue;
        };
        let path = dest.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        let mut file = std::fs::File::create(&path).map_err(|e| io(&path, e))?;
        // The header's size may lie: count what is actually written.
        let budget = MAX_UNPACKED_BYTES - total;
        let written = std::io::copy(&mut (&mut entry).take(budget + 1), &mut file)
            .map_err(|e| bad(format!("entry {name:?} cannot be unpacked: {e}")))?;
        total += written;
        if total > MAX_UNPACKED_BYTES {
            return Err(bad(format!("unpacks to more than {MAX_UNPACKED_BYTES} bytes (250 MB)")));
        }
        if let Some(m) = mode {
            use std::os::unix::fs::PermissionsExt;
            // Read for everyone, execute where the archive says so; never setuid or world-writable.
            let perm = 0o644 | (m & 0o111);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perm)).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}

fn io(path: &Path, e: std::io::Error) -> FunctionError {
    FunctionError::Internal(format!("{}: {e}", path.display()))
}

/// Unpacked archives by content, under one directory.
#[derive(Debug, Clone)]
pub struct CodeCache {
    root: PathBuf,
}

impl CodeCache {
    /// A cache under `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The unpacked directory of an archive, when it is cached.
    pub fn cached(&self, sha256: &str) -> Option<PathBuf> {
        let dir = self.root.join(sha256);
        dir.is_dir().then_some(dir)
    }

    /// Unpacks `zip` (whose digest is `sha256`) unless already there; safe against another process or task
    /// unpacking the same archive at the same time (each unpacks aside, the first rename wins).
    pub fn ensure(&self, sha256: &str, zip: &[u8]) -> Result<PathBuf> {
        if let Some(dir) = self.cached(sha256) {
            return Ok(dir);
        }
        if digest(zip) != sha256 {
            return Err(FunctionError::Internal(format!("the stored code archive {sha256} does not match its digest")));
        }
        std::fs::create_dir_all(&self.root).map_err(|e| io(&self.root, e))?;
        let aside =
            tempfile::Builder::new().prefix(".unpacking-").tempdir_in(&self.root).map_err(|e| io(&self.root, e))?;
        let tree = aside.path().join("code");
        unpack(zip, &tree)?;
        let dir = self.root.join(sha256);
        match std::fs::rename(&tree, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if dir.is_dir() => Ok(dir),
            Err(e) => Err(io(&dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn archive(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let mut o = zip::write::SimpleFileOptions::default();
            if let Some(m) = mode {
                o = o.unix_permissions(*m);
            }
            w.start_file(*name, o).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn unpacks_files_with_their_exec_bits_once_per_content() {
        let zip = archive(&[("app.py", b"x = 1\n", None), ("bin/bootstrap", b"#!/bin/sh\n", Some(0o755))]);
        let dir = tempfile::tempdir().unwrap();
        let cache = CodeCache::new(dir.path());
        let sha = digest(&zip);
        let code = cache.ensure(&sha, &zip).unwrap();
        assert_eq!(std::fs::read(code.join("app.py")).unwrap(), b"x = 1\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(code.join("bin/bootstrap")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(cache.ensure(&sha, &zip).unwrap(), code, "the second time is the cached tree");
        assert!(cache.ensure(&"0".repeat(64), &zip).is_err(), "a digest that does not match is refused");
    }

    #[test]
    fn escaping_paths_links_and_garbage_are_refused() {
        let escape = archive(&[("../evil.py", b"boom", None)]);
        assert!(check(&escape).unwrap_err().to_string().contains("leaves the archive"));
        let absolute = archive(&[("/etc/evil", b"boom", None)]);
        assert!(check(&absolute).is_err());
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("link", "/etc/passwd", zip::write::SimpleFileOptions::default()).unwrap();
        let link = w.finish().unwrap().into_inner();
        assert!(check(&link).unwrap_err().to_string().contains("symbolic link"));
        assert!(check(b"not a zip").unwrap_err().to_string().contains("not a valid zip"));
    }

    #[test]
    fn an_archive_that_unpacks_past_the_limit_is_refused() {
        // 260 MB of zeros compresses to well under the zipped limit.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        w.start_file("zeros", o).unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..260 {
            w.write_all(&chunk).unwrap();
        }
        let zip = w.finish().unwrap().into_inner();
        assert!((zip.len() as u64) < MAX_ZIPPED_BYTES);
        let e = check(&zip).unwrap_err().to_string();
        assert!(e.contains("250 MB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        assert!(unpack(&zip, &dir.path().join("x")).unwrap_err().to_string().contains("250 MB"));
    }
}
