//! Whisper model pulls against the local test server of `tests.rs`, with wheels built on the fly.

use std::collections::HashMap;
use std::io::{Cursor, Write};
use std::path::Path;

use crate::tests::{dir_names, record_hash, sha_hex, Recorder, TestServer, DEAD_BASE};
use crate::whisper::{pull_whisper, Join, WhisperSpec};
use crate::*;

/// A wheel of `package`: `files` under `<dist>/<dir>/`, an `__init__.py`, and a RECORD listing them all.
fn wheel(package: &str, version: &str, dir: &str, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let dist = package.replace('-', "_");
    let mut entries: Vec<(String, Vec<u8>)> =
        files.iter().map(|(rel, data)| (format!("{dist}/{dir}/{rel}"), data.clone())).collect();
    entries.push((format!("{dist}/__init__.py"), b"".to_vec()));
    let record_path = format!("{dist}-{version}.dist-info/RECORD");
    let mut record: String =
        entries.iter().map(|(n, d)| format!("{n},sha256={},{}\n", record_hash(d), d.len())).collect();
    record += &format!("{record_path},,\n");
    entries.push((record_path, record.into_bytes()));
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in &entries {
        zip.start_file(name.as_str(), options).expect("zip entry");
        zip.write_all(data).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// Routes for each `(package, version, wheel)`: the per-version JSON and the wheel, whose URL is written
/// relative to the JSON (`../../packages/…`) as pypi.org does for some uploads.
fn routes(releases: &[(&str, &str, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
    let mut routes = HashMap::new();
    for (package, version, wheel) in releases {
        let file = format!("{}-{version}-py3-none-any.whl", package.replace('-', "_"));
        let json = serde_json::json!({"urls": [{
            "packagetype": "bdist_wheel",
            "filename": file,
            "url": format!("../../../packages/xx/{file}"),
            "digests": {"sha256": sha_hex(wheel)},
            "size": wheel.len()
        }]});
        routes.insert(format!("/pypi/{package}/{version}/json"), json.to_string().into_bytes());
        routes.insert(format!("/packages/xx/{file}"), wheel.clone());
    }
    routes
}

fn common_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", br#"{"suppress_ids": []}"#.to_vec()),
        ("tokenizer.json", br#"{"version": "1.0"}"#.to_vec()),
        ("vocabulary.txt", b"!\n\"\n#\n".to_vec()),
    ]
}

/// `(package, version, wheel bytes)`.
type Release = (&'static str, &'static str, Vec<u8>);

/// A two-wheel model like base: `model.bin` split across the wheels; `pin` is the joined file's sha256.
fn split_model(pin: Option<String>) -> (WhisperSpec, Vec<Release>, Vec<u8>) {
    let model: Vec<u8> = (0..=255u8).cycle().take(100_001).collect();
    let (a, b) = model.split_at(60_000);
    let mut first = common_files();
    first.push(("model.bin.part1", a.to_vec()));
    let releases = vec![
        ("whisper-base-part1", "1.0.0", wheel("whisper-base-part1", "1.0.0", "data", &first)),
        (
            "whisper-base-part2",
            "1.0.0",
            wheel("whisper-base-part2", "1.0.0", "data", &[("model.bin.part2", b.to_vec())]),
        ),
    ];
    let mut spec = WhisperSpec::of(WhisperModelId::Base);
    for (source, (package, ..)) in spec.wheels.iter_mut().zip(&releases) {
        source.package = (*package).to_owned();
        source.wheel_sha256 = None;
    }
    spec.joins = vec![Join {
        parts: vec!["model.bin.part1".into(), "model.bin.part2".into()],
        output: "model.bin".into(),
        sha256: pin,
    }];
    (spec, releases, model)
}

#[test]
fn pins_are_full_sha256_values() {
    for id in [WhisperModelId::TinyEn, WhisperModelId::Base] {
        let spec = WhisperSpec::of(id);
        let pins =
            spec.wheels.iter().map(|w| w.wheel_sha256.clone()).chain(spec.joins.iter().map(|j| j.sha256.clone()));
        for pin in pins {
            let pin = pin.expect("every real source is pinned");
            assert!(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()), "{pin}");
        }
    }
}

#[test]
fn a_single_wheel_model_is_installed_with_its_manifest() {
    let mut files = common_files();
    files.push(("model.bin", vec![7u8; 5000]));
    let whl = wheel("tiny-models", "0.1.0", "model", &files);
    let server = TestServer::start(|_| routes(&[("tiny-models", "0.1.0", whl.clone())]));
    let mut spec = WhisperSpec::of(WhisperModelId::TinyEn);
    spec.wheels[0].package = "tiny-models".into();
    spec.wheels[0].wheel_sha256 = Some(sha_hex(&whl));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("tiny.en");
    let rec = Recorder::new();

    let report = pull_whisper(&rec.options(&target, DEAD_BASE, &server.base), &spec).expect("pull");
    let mut want: Vec<(String, String)> = files.iter().map(|(f, d)| ((*f).to_owned(), sha_hex(d))).collect();
    want.sort();
    assert_eq!(report.files, want);
    assert!(whisper_model_is_complete(&target));
    assert_eq!(read_manifest_sha256(&target, "model.bin"), Some(sha_hex(&[7u8; 5000])));
    assert!(!target.join("__init__.py").exists());
    assert_eq!(dir_names(root.path()), ["tiny.en"]);
    assert_eq!(server.hits(), ["/pypi/tiny-models/0.1.0/json", "/packages/xx/tiny_models-0.1.0-py3-none-any.whl"]);
    let events = rec.events();
    let label = format!("{}/project/tiny-models/0.1.0/", server.base);
    assert_eq!(events[0], PullEvent::Trying { source: label.clone() });
    assert_eq!(events.last(), Some(&PullEvent::Done { source: label }));

    // Installed: a second pull asks nothing of the server.
    let again = pull_whisper(&rec.options(&target, DEAD_BASE, &server.base), &spec).expect("second pull");
    assert_eq!(again.files, want);
    assert_eq!(server.hits().len(), 2);
}

#[test]
fn split_model_parts_are_joined_and_checked() {
    let model: Vec<u8> = (0..=255u8).cycle().take(100_001).collect();
    let (spec, releases, _) = split_model(Some(sha_hex(&model)));
    let server = TestServer::start(|_| routes(&releases));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("base");
    let rec = Recorder::new();
    let report = pull_whisper(&rec.options(&target, DEAD_BASE, &server.base), &spec).expect("pull");
    assert_eq!(std::fs::read(target.join("model.bin")).expect("model.bin"), model);
    assert!(!target.join("model.bin.part1").exists() && !target.join("model.bin.part2").exists());
    let names: Vec<&str> = report.files.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(names, ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]);
    assert_eq!(read_manifest_sha256(&target, "model.bin"), Some(sha_hex(&model)));
    assert_eq!(
        report.source,
        format!("{0}/project/whisper-base-part1/1.0.0/ + {0}/project/whisper-base-part2/1.0.0/", server.base)
    );
}

#[test]
fn a_joined_file_not_matching_its_pin_installs_nothing() {
    let (spec, releases, _) = split_model(Some("ab".repeat(32)));
    let server = TestServer::start(|_| routes(&releases));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("base");
    let rec = Recorder::new();
    let err = pull_whisper(&rec.options(&target, DEAD_BASE, &server.base), &spec).expect_err("bad join");
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Whisper { .. }), "{err:?}");
    assert!(
        msg.contains("model.bin joined from model.bin.part1 + model.bin.part2") && msg.contains(&"ab".repeat(32)),
        "{msg}"
    );
    assert!(dir_names(root.path()).is_empty(), "left behind: {:?}", dir_names(root.path()));
    assert!(matches!(rec.events().last(), Some(PullEvent::SourceFailed { .. })));
}

#[test]
fn a_wheel_not_matching_its_pin_is_refused() {
    let (mut spec, releases, _) = split_model(None);
    spec.wheels[1].wheel_sha256 = Some("00".repeat(32));
    let server = TestServer::start(|_| routes(&releases));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("base");
    let err = pull_whisper(&Recorder::new().options(&target, DEAD_BASE, &server.base), &spec).expect_err("pin");
    assert!(err.to_string().contains("whisper_base_part2-1.0.0-py3-none-any.whl (as listed by PyPI)"), "{err}");
    assert!(!target.exists());
    assert!(!Path::new(&target).join("model.bin").exists());
}

/// Pulls real tiny.en (71 MB) from PyPI; set STRATO_FETCH_WHISPER_TO to keep it (e.g. for strato-whisper's tests).
#[test]
#[ignore = "downloads 71 MB from PyPI"]
fn real_tiny_en_pull() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = std::env::var_os("STRATO_FETCH_WHISPER_TO").map_or_else(|| root.path().join("tiny.en"), Into::into);
    let report = pull_whisper_model(&PullOptions::new(&target), WhisperModelId::TinyEn).expect("real pull");
    eprintln!("real_tiny_en_pull: {} from {}", target.display(), report.source);
    assert!(whisper_model_is_complete(&target));
}

/// Pulls real base (133 MB in two wheels) from PyPI and checks the joined model.bin against its pin.
#[test]
#[ignore = "downloads 133 MB from PyPI"]
fn real_base_pull() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = std::env::var_os("STRATO_FETCH_WHISPER_BASE_TO").map_or_else(|| root.path().join("base"), Into::into);
    pull_whisper_model(&PullOptions::new(&target), WhisperModelId::Base).expect("real pull");
    assert!(whisper_model_is_complete(&target));
    assert_eq!(
        read_manifest_sha256(&target, "model.bin").as_deref(),
        Some("d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9")
    );
}
