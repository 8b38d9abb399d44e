//! Staging directories, the `strato-model.json` manifest and the atomic rename into place.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::error::{FetchError, SourceError};

pub(crate) const MANIFEST_FILE: &str = "strato-model.json";

#[derive(Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub name: String,
    pub source: String,
    pub files: BTreeMap<String, String>,
}

pub(crate) fn read_manifest(dir: &Path) -> Option<Manifest> {
    let text = fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where the model is going: the final directory and the parent that holds its staging
/// siblings (same file system, so the final rename is atomic).
pub(crate) struct Target {
    pub dir: PathBuf,
    pub parent: PathBuf,
    pub name: String,
}

impl Target {
    pub fn new(dir: &Path) -> Result<Self, FetchError> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "." && *n != "..")
            .ok_or_else(|| FetchError::InvalidTarget(dir.to_path_buf()))?
            .to_owned();
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Self { dir: dir.to_path_buf(), parent, name })
    }

    /// Fails early (before any download) when the rename could not succeed anyway.
    pub fn check_replaceable(&self) -> Result<(), FetchError> {
        match fs::symlink_metadata(&self.dir) {
            Err(_) => Ok(()),
            Ok(m) if m.is_dir() && is_empty_dir(&self.dir) => Ok(()),
            Ok(_) => Err(FetchError::TargetNotEmpty(self.dir.clone())),
        }
    }

    pub fn create_parent(&self) -> Result<(), FetchError> {
        fs::create_dir_all(&self.parent)
            .map_err(|source| FetchError::Io { context: format!("creating {}", self.parent.display()), source })
    }

    /// A fresh `<target>.partial-<random>` directory, removed on drop unless installed.
    pub fn staging_dir(&self) -> Result<TempDir, SourceError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}.partial-", self.name))
            .tempdir_in(&self.parent)
            .map_err(SourceError::io(format!("creating a staging directory in {}", self.parent.display())))?;
        widen_permissions(dir.path());
        Ok(dir)
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut it| it.next().is_none())
}

/// tempfile creates 0700 directories; the model is not secret and the server may run as
/// another user than the one who pulled it.
#[cfg(unix)]
fn widen_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(e) = fs::set_permissions(dir, fs::Permissions::from_mode(0o755)) {
        tracing::debug!(dir = %dir.display(), error = %e, "could not widen staging dir permissions");
    }
}

#[cfg(not(unix))]
fn widen_permissions(_dir: &Path) {}

/// Creates `rel` (a checked, `/`-separated relative path) under `root` for writing.
/// `create_new` makes a duplicate entry an error instead of a silent overwrite.
pub(crate) fn create_file(root: &Path, rel: &str) -> Result<File, SourceError> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(SourceError::io(format!("creating {}", parent.display())))?;
    }
    File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(SourceError::io(format!("creating {}", path.display())))
}

/// A complete, verified model in a staging directory.
pub(crate) struct Staged {
    pub dir: TempDir,
    pub source: String,
    pub files: BTreeMap<String, String>,
}

/// Writes the manifest into the staged directory, then renames it onto the target.
/// Returns the files of whichever model ends up at the target.
pub(crate) fn install(
    staged: Staged,
    target: &Target,
    model_name: &str,
    is_complete: fn(&Path) -> bool,
) -> Result<(String, BTreeMap<String, String>), FetchError> {
    let manifest = Manifest { name: model_name.to_owned(), source: staged.source, files: staged.files };
    write_manifest(staged.dir.path(), &manifest)?;

    // An empty target directory is replaced by the rename on Unix but not elsewhere;
    // removing it first keeps the behaviour the same.
    if target.dir.is_dir() && is_empty_dir(&target.dir) {
        let _ = fs::remove_dir(&target.dir);
    }
    match fs::rename(staged.dir.path(), &target.dir) {
        Ok(()) => {
            // The directory now lives at the target: stop TempDir from deleting it.
            let _ = staged.dir.keep();
            sync_dir(&target.parent);
            Ok((manifest.source, manifest.files))
        }
        Err(source) => {
            // Another pull may have won the race; its result is as good as ours.
            if is_complete(&target.dir) {
                tracing::info!(dir = %target.dir.display(), "model was installed concurrently; keeping it");
                let existing = read_manifest(&target.dir);
                return Ok(existing
                    .map(|m| (m.source, m.files))
                    .unwrap_or_else(|| (crate::EXISTING_SOURCE.to_owned(), BTreeMap::new())));
            }
            Err(FetchError::Io {
                context: format!("moving {} to {}", staged.dir.path().display(), target.dir.display()),
                source,
            })
        }
    }
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), FetchError> {
    let path = dir.join(MANIFEST_FILE);
    let io_err = |source| FetchError::Io { context: format!("writing {}", path.display()), source };
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| io_err(e.into()))?;
    let mut f = File::create(&path).map_err(io_err)?;
    f.write_all(&json).map_err(io_err)?;
    f.sync_all().map_err(io_err)
}

/// Makes the rename itself durable; best effort, as not every platform can open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
