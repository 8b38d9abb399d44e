//! The `strato` binary's admin commands work directly on a data directory.

use std::process::Command;

use crate::common::{model_dir, small_csv};

fn strato(data_dir: &std::path::Path, model: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strato"));
    c.arg("--data-dir").arg(data_dir).arg("--embedding-model").arg(model);
    c
}

#[test]
fn train_predict_list_delete() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("intents.csv");
    std::fs::write(&file, small_csv()).unwrap();
    let data = dir.path().join("data");

    let out = strato(&data, &model)
        .args(["train", "--model", "cli-m", "--data"])
        .arg(&file)
        .args(["--param", "C=5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("model cli-m version 1 is active"), "{stdout}");
    assert!(stdout.contains("validation"), "{stdout}");

    let out = strato(&data, &model)
        .args(["predict", "--model", "cli-m", "--n-top", "1", "what's my balance?"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().nth(1).is_some_and(|l| l.trim_start().starts_with("balance")), "{stdout}");

    let out = strato(&data, &model).args(["models", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli-m"));
    let out = strato(&data, &model).args(["train", "--model", "cli-m", "--data"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "text,label\nhello,greet\nno comma\n").unwrap();
    let out = strato(&data, &model).args(["train", "--model", "x", "--data"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = strato(&data, &model)
        .args(["train", "--model", "x", "--data"])
        .arg(&file)
        .args(["--param", "C=zero"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    let out = strato(&data, &model).args(["models", "delete", "cli-m"]).output().unwrap();
    assert!(out.status.success());
    let out = strato(&data, &model).args(["predict", "--model", "cli-m", "hi"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn serve_refuses_open_network_binding_without_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strato"))
        .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("without credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn train_respects_the_split_column() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("text,label,split\n");
    for (i, line) in small_csv().lines().skip(1).enumerate() {
        let split = match i % 8 {
            6 => "val",
            7 => "test",
            _ => "train",
        };
        csv.push_str(&format!("{line},{split}\n"));
    }
    let file = dir.path().join("split.csv");
    std::fs::write(&file, csv).unwrap();
    let out =
        strato(&dir.path().join("data"), &model).args(["train", "--model", "s", "--data"]).arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("examples trained on  21"), "test rows are never trained on: {stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("validation n=3")), "{stdout}");
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("test       n=3")), "{stdout}");
}

#[tokio::test]
async fn jobs_and_dlq_commands_work_on_the_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A job that exhausted its attempts, and one still queued, written as a worker would.
    let store = strato_store::Store::open_sqlite(&data.join("meta.db")).await.unwrap();
    let noop = |max_attempts| strato_types::NewJob {
        max_attempts,
        ..strato_types::NewJob::new(<strato_jobs::noop::NoopArgs as strato_types::JobArgs>::KIND, serde_json::json!({}))
    };
    let dead = store.queue().enqueue(noop(1)).await.unwrap().job.id;
    store.queue().claim("w-test", std::time::Duration::from_secs(30)).await.unwrap().unwrap();
    store.queue().fail(&dead, "w-test", "boom", Some(std::time::Duration::ZERO), false).await.unwrap();
    let queued = store.queue().enqueue(noop(5)).await.unwrap().job.id;
    drop(store);

    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strato")).arg("--data-dir").arg(&data).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["dlq", "list"]);
    assert!(ok && out.contains(&dead) && !out.contains(&queued), "{out}{err}");
    let (ok, out, _) = run(&["dlq", "show", &dead]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && shown["attempt_log"][0]["error"] == "boom", "{out}");
    let (ok, out, _) = run(&["jobs", "list", "--status", "queued"]);
    assert!(ok && out.contains(&queued) && !out.contains(&dead), "{out}");
    let (ok, out, _) = run(&["jobs", "cancel", &queued]);
    assert!(ok && out.contains("cancelled"), "{out}");
    let (ok, _, err) = run(&["jobs", "cancel", &queued]);
    assert!(!ok && err.contains("already finished"), "{err}");
    let (ok, out, _) = run(&["dlq", "replay", &dead]);
    assert!(ok && out.contains("replayed"), "{out}");
    let (ok, _, err) = run(&["dlq", "delete", &dead]);
    assert!(!ok && err.contains("not in the dead-letter queue"), "a replayed job left the DLQ: {err}");
    let (ok, out, _) = run(&["jobs", "show", &dead]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(ok && shown["status"] == "QUEUED" && shown["attempts"] == 0, "{out}");
    let (ok, _, err) = run(&["jobs", "list", "--status", "nope"]);
    assert!(!ok && err.contains("unknown status"), "{err}");
}

#[test]
fn api_keys_commands_create_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = strato(dir.path(), std::path::Path::new("/nonexistent")).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{args:?}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let created =
        run(&["api-keys", "create", "--name", "ci bot", "--role", "editor", "--models", "a,b", "--burst", "5"]);
    let id = created.split_whitespace().nth(1).unwrap().to_string();
    assert!(id.starts_with("ak_"), "{created}");
    let secret = created.lines().find_map(|l| l.split(": ").nth(1)).unwrap().trim().to_string();
    assert!(secret.starts_with("strato_"), "{created}");
    let listed = run(&["api-keys", "list"]);
    assert!(listed.contains(&id) && listed.contains("editor") && listed.contains("models=a,b"), "{listed}");
    assert!(listed.contains("active") && !listed.contains(&secret), "{listed}");
    run(&["api-keys", "revoke", &id]);
    assert!(run(&["api-keys", "list"]).contains("revoked"));
    let out = strato(dir.path(), std::path::Path::new("/nonexistent"))
        .args(["api-keys", "revoke", "ak_nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn serve_logs_one_json_line_per_request_without_secrets() {
    use std::io::Read;
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let token = "log-test-admin-token-0123456789";
    let mut child = strato(&dir.path().join("data"), &model)
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--log-format", "json", "--workers", "0"])
        .env("STRATO_ADMIN_TOKEN", token)
        .env("STRATO_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client.get(url("/healthz")).send().is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = client.get(url("/v1/models")).bearer_auth(token).header("x-request-id", "log-test-1").send().unwrap();
    assert_eq!(r.status(), 200);
    let r = client.get(url("/v1/models")).bearer_auth("wrong-token").send().unwrap();
    assert_eq!(r.status(), 401);
    // Lines are written by a logging thread; a graceful stop (SIGTERM, as a supervisor sends) flushes them all.
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let _ = child.wait();
    let lines: Vec<serde_json::Value> = err.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!lines.is_empty() && lines.len() == err.lines().count(), "every line is JSON:\n{err}");
    let line =
        lines.iter().find(|l| l["request_id"] == "log-test-1").unwrap_or_else(|| panic!("no request line:\n{err}"));
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/v1/models");
    assert_eq!(line["status"], 200);
    assert_eq!(line["principal"], "admintoken:admin");
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    assert!(lines.iter().any(|l| l["status"] == 401), "refusals are logged too:\n{err}");
    assert!(!err.contains(token) && !err.contains("wrong-token"), "no secret in the logs:\n{err}");
}

/// `strato functions`, as `sls invoke --local` was used: a handler created from a directory, invoked in the
/// command's own process through AWS's runtime client, its log on stderr, then listed, read back and deleted.
#[test]
fn functions_are_created_invoked_and_deleted_from_the_command_line() {
    let Some(python) = std::env::var("STRATO_TEST_LAMBDA_PYTHON").ok().filter(|p| !p.is_empty()) else {
        eprintln!("SKIPPED: set STRATO_TEST_LAMBDA_PYTHON to a Python with awslambdaric installed (.ci/run does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let code = dir.path().join("code");
    std::fs::create_dir(&code).unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../strato-functions/tests/fixtures/python/app.py");
    std::fs::copy(fixture, code.join("app.py")).unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strato"))
            .arg("--data-dir")
            .arg(&data)
            .args(["--embedding-model", "/nonexistent/strato-test-model"])
            .env("STRATO_FUNCTIONS_PYTHON", &python)
            .args(args)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let code_dir = code.display().to_string();
    let (ok, stdout, stderr) = run(&[
        "functions",
        "create",
        "echo",
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--dir",
        &code_dir,
        "--env",
        "GREETING=hi",
    ]);
    assert!(ok, "{stdout}{stderr}");
    let made: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((made["name"].as_str(), made["code_source"].as_str()), (Some("echo"), Some("directory")));

    let (ok, stdout, stderr) = run(&["functions", "invoke", "echo", "--payload", r#"{"action": "env"}"#]);
    assert!(ok, "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["env"]["GREETING"], "hi");
    assert!(stderr.contains("START RequestId: ") && stderr.contains("REPORT RequestId: "), "the log: {stderr}");

    let (ok, stdout, stderr) = run(&["functions", "invoke", "echo", "--payload", r#"{"action": "raise", "why": 1}"#]);
    assert!(!ok, "a handler error fails the command");
    assert!(stdout.contains("ValueError") && stderr.contains("the function failed"), "{stdout}{stderr}");

    let (ok, stdout, _) = run(&["functions", "list"]);
    assert!(ok && stdout.starts_with("echo "), "{stdout}");
    let (ok, stdout, _) = run(&["functions", "logs", "echo"]);
    assert!(ok && stdout.matches("REPORT RequestId: ").count() == 2, "both invocations logged: {stdout}");
    let (ok, _, _) = run(&["functions", "delete", "echo"]);
    assert!(ok);
    let (ok, _, stderr) = run(&["functions", "show", "echo"]);
    assert!(!ok && stderr.contains("Function not found"), "{stderr}");
}

#[test]
fn workflows_validate_checks_a_definition_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    std::fs::write(&good, r#"{"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strato")).args(["workflows", "validate"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK: 1 states"));

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"StartAt": "Nope", "States": {"P": {"Type": "Pass", "Next": "Gone"}}}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strato")).args(["workflows", "validate"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("MISSING_TRANSITION_TARGET  /StartAt"), "{stdout}");
    assert!(stdout.contains("MISSING_TRANSITION_TARGET  /States/P/Next"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("problem(s) in"));
}

/// `strato media upload` stores a file and follows its tasks until a `strato worker` on the same data dir has
/// processed it; a file that is not a video is refused at once with its code; `strato media cancel` leaves an
/// ended upload as it was.
#[test]
fn media_upload_is_processed_by_a_worker_and_followed_to_its_end() {
    let Some(model) = model_dir() else { return };
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("SKIPPED: ffmpeg is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = dir.path().join("answer.mp4");
    let made = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=2",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(made.success());
    // A mentor with the answer to record, written where the commands will find it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut o = strato_service::StratoOptions::new(&data);
        o.embedding_model = Some(model.clone());
        let s = strato_service::Strato::builder(o).open().await.unwrap();
        let m: strato_types::Mentor = serde_json::from_value(serde_json::json!({"id": "cli-m", "answers": [
            {"id": "a1", "question": {"id": "q1", "text": "Who are you?"}}]}))
        .unwrap();
        s.mentors().put("cli-m", m).await.unwrap();
        s.close().await;
    });

    let notes = dir.path().join("notes.mp4");
    std::fs::write(&notes, "not a video").unwrap();
    let out = strato(&data, &model)
        .args(["media", "upload"])
        .arg(&notes)
        .args(["--mentor", "cli-m", "--question", "q1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not_media"), "{}", String::from_utf8_lossy(&out.stderr));

    let mut worker = strato(&data, &model)
        .args(["worker", "--queues", "default=1,workflows=4,media=1,media-control=2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = strato(&data, &model)
        .args(["media", "upload"])
        .arg(&clip)
        .args(["--mentor", "cli-m", "--question", "q1", "--keep-transcript", "--thumbnail"])
        .output()
        .unwrap();
    let _ = worker.kill();
    let _ = worker.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(": Done"), "{stdout}");

    let out =
        strato(&data, &model).args(["media", "cancel", "--mentor", "cli-m", "--question", "q1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Done"), "an ended upload stays as it was");
    let out =
        strato(&data, &model).args(["media", "cancel", "--mentor", "cli-m", "--question", "q9"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no upload"));
}
