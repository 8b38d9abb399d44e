//! The notebook model runner, with Quetzal's contract, over a real server: a model's notebooks run by nbconvert or
//! papermill from PyPI, its scenario's inputs downloaded from and outputs and logs uploaded to Strato's files, the
//! event returned, a failing cell's traceback, 100,000 tqdm updates, and cancellation stopping the process tree.
//!
//! Needs `STRATO_TEST_LAMBDA_PYTHON`: an interpreter with nbconvert, papermill, ipykernel and tqdm installed
//! (`.ci/run` makes one); each test says so and returns when it is unset.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A zip of a directory tree.
fn zip_tree(root: &Path) -> Vec<u8> {
    fn add(w: &mut zip::ZipWriter<std::io::Cursor<Vec<u8>>>, root: &Path, dir: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            if e.file_type().unwrap().is_dir() {
                add(w, root, &e.path());
            } else {
                let name = e.path().strip_prefix(root).unwrap().to_string_lossy().to_string();
                w.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
                w.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
            }
        }
    }
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    add(&mut w, root, root);
    w.finish().unwrap().into_inner()
}

async fn put_file(s: &Server, key: &str, body: &str) {
    let r = s
        .client
        .put(s.url(&format!("/v1/files/{key}")))
        .bearer_auth(ADMIN)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{key}: {}", r.status());
}

async fn get_file(s: &Server, key: &str) -> Option<String> {
    let r = s.client.get(s.url(&format!("/v1/files/{key}"))).bearer_auth(ADMIN).send().await.unwrap();
    if !r.status().is_success() {
        return None;
    }
    Some(r.text().await.unwrap())
}

/// The seed's payload (Quetzal's README), for one of the fixture's notebooks.
fn seed_event(notebook: &str, scenario: &str) -> Value {
    json!({"notebook_path": format!("notebooks/model/{notebook}.ipynb"), "scenario_path_S3": scenario,
        "launcher_arg": {"training_folder": "/tmp", "params": {"some_param": "value"}},
        "metadata": {"user_email": "lambda_test@test.com"}})
}

async fn start(py: &str) -> Server {
    let s = Server::start(py, |_| {}, true).await;
    s.create(json!({"name": "quetzal-test", "runtime": "strato.notebook", "handler": "main.handler",
        "timeout": 600, "memory_size": 4096,
        "zip_base64": b64(&zip_tree(&fixture("notebook-model")))}))
        .await;
    s
}

fn needs_notebook_tools(py: &str) {
    let ok =
        std::process::Command::new(py).args(["-c", "import nbconvert, papermill, ipykernel, tqdm"]).status().unwrap();
    assert!(ok.success(), "{py} needs nbconvert, papermill, ipykernel and tqdm (pip install …)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quetzal_model_runs_on_its_scenario_and_chains_its_event() {
    let Some(py) = python() else { return };
    needs_notebook_tools(&py);
    let s = start(&py).await;
    let links = json!({"type": "FeatureCollection", "features": [{"id": 1}, {"id": 2}, {"id": 3}]});
    put_file(&s, "test/inputs/pt/links.geojson", &links.to_string()).await;

    // The seed's curl, against the function by name.
    let event = seed_event("model", "test/");
    let r = s.invoke("quetzal-test", &event, &[]).await;
    let (status, headers, body) = common::body(r).await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "x-amz-function-error"), None, "{body}");
    assert_eq!(body, event, "the event comes back unchanged, so steps chain");
    let result: Value = serde_json::from_str(&get_file(&s, "test/outputs/result.json").await.unwrap()).unwrap();
    assert_eq!(
        result,
        json!({"links": 3, "model": "quetzal-test", "params": {"some_param": "value"}, "training_folder": "/tmp"}),
        "the scenario's input and the model's own input were both read, with the launcher's argument"
    );
    let log = get_file(&s, "test/logs/model.txt").await.unwrap();
    assert!(log.contains("model params: quetzal-test links: 3"), "{log}");
    assert!(log.contains("cwd ends with: notebooks/model"), "run from the notebook's folder: {log}");
    assert!(log.contains("[strato] run succeeded"), "{log}");
    assert_eq!(get_file(&s, "test/inputs/pt/links.geojson").await.unwrap(), links.to_string(), "inputs kept");
    assert!(get_file(&s, "test/inputs/params.json").await.is_none(), "unchanged model files are not uploaded");

    // A failing cell: the invocation fails with the traceback, and the log is kept.
    let (status, headers, body) =
        common::body(s.invoke("quetzal-test", &seed_event("failing", "test/"), &[]).await).await;
    assert_eq!((status, h(&headers, "x-amz-function-error")), (200, Some("Unhandled")));
    assert_eq!(body["errorType"], "NotebookError");
    let message = body["errorMessage"].as_str().unwrap();
    assert!(message.contains("ValueError: bad scenario: no road network in inputs/road/links.geojson"), "{body}");
    let trace: Vec<&str> = body["stackTrace"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(trace.first().unwrap().starts_with("Traceback"), "{trace:?}");
    assert!(trace.iter().any(|l| l.contains("in check")), "{trace:?}");
    let log = get_file(&s, "test/logs/failing.txt").await.unwrap();
    assert!(log.contains("Traceback (most recent call last)") && log.contains("[strato] run failed"), "{log}");

    // papermill for a notebook with a `parameters` cell, its executed copy kept under the scenario.
    let (status, headers, body) =
        common::body(s.invoke("quetzal-test", &seed_event("parametrised", "test/"), &[]).await).await;
    assert_eq!((status, h(&headers, "x-amz-function-error")), (200, None), "{body}");
    let out: Value = serde_json::from_str(&get_file(&s, "test/outputs/papermill.json").await.unwrap()).unwrap();
    assert_eq!(out, json!({"params": {"some_param": "value"}, "training_folder": "/tmp"}));
    let executed: Value =
        serde_json::from_str(&get_file(&s, "test/notebooks/model/parametrised.executed.ipynb").await.unwrap()).unwrap();
    let injected = executed["cells"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["metadata"]["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "injected-parameters")));
    assert!(injected, "papermill's executed notebook, with its injected parameters");

    // 100,000 tqdm updates: the run completes and the log keeps the bar's last state, not every redraw.
    let started = Instant::now();
    let (status, headers, body) =
        common::body(s.invoke("quetzal-test", &seed_event("progress", "test/"), &[]).await).await;
    assert_eq!((status, h(&headers, "x-amz-function-error")), (200, None), "{body}");
    let log = get_file(&s, "test/logs/progress.txt").await.unwrap();
    assert!(log.contains("100000/100000") && log.contains("total 4999950000"), "{log}");
    assert!(log.len() < 64 << 10, "redraws collapsed: {} bytes", log.len());
    eprintln!("100,000 tqdm updates ran in {:?}", started.elapsed());

    // Another team's key may invoke the model but not touch this scenario's files: refused before it runs.
    let r = s
        .client
        .post(s.url("/v1/api-keys"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"name": "planner", "grants": [{"kind": "function", "id": "quetzal-*", "actions": ["read", "use"]},
            {"kind": "file", "id": "mine/*", "actions": ["read", "edit"]}], "role": "editor"}),
        )
        .send()
        .await
        .unwrap();
    let key = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    let r = s
        .client
        .post(s.url("/2015-03-31/functions/quetzal-test/invocations"))
        .header("x-api-key", &key)
        .body(seed_event("model", "test/").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_whole_process_tree() {
    let Some(py) = python() else { return };
    needs_notebook_tools(&py);
    let s = start(&py).await;
    let pid_file = s.dir.path().join("grandchild.pid");
    let mut event = seed_event("sleeper", "sleepy/");
    event["launcher_arg"]["pid_file"] = json!(pid_file.display().to_string());
    let r = s.invoke("quetzal-test", &event, &[("x-amz-invocation-type", "Event")]).await;
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse().ok()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "the run never started its grandchild");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let filter =
        strato_store::JobFilter { kind: Some(strato_types::JobKind::new("notebook.run")), ..Default::default() };
    let job = s.strato.jobs().list(&filter).await.unwrap().into_iter().next().unwrap();
    assert_eq!(job.queue.as_str(), "notebooks");
    let cancelled_at = Instant::now();
    s.strato.jobs().cancel(&job.id).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let j = s.strato.jobs().get(&job.id).await.unwrap();
        let gone = !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| st.contains(") Z "));
        if j.status.is_final() && gone {
            break;
        }
        assert!(Instant::now() < deadline, "job {:?}, grandchild alive: {}", j.status, !gone);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("cancelled and stopped in {:?}", cancelled_at.elapsed());
    let log = get_file(&s, "sleepy/logs/sleeper.txt").await.unwrap();
    assert!(log.contains("started") && log.contains("[strato] run failed: cancelled"), "streamed while running: {log}");
    s.stop().await;
}
