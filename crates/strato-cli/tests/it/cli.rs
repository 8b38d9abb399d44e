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
    use strato_store::MetaStore;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A job that exhausted its attempts, and one still queued, written as a worker would.
    let store = strato_store::SqliteStore::open(&data.join("meta.db")).await.unwrap();
    let noop = |max_attempts| strato_types::NewJob {
        max_attempts,
        ..strato_types::NewJob::new(strato_types::JobKind::Noop, serde_json::json!({}))
    };
    let dead = store.enqueue(noop(1)).await.unwrap().job.id;
    store.claim("w-test", std::time::Duration::from_secs(30)).await.unwrap().unwrap();
    store.fail(&dead, "w-test", "boom", Some(std::time::Duration::ZERO), false).await.unwrap();
    let queued = store.enqueue(noop(5)).await.unwrap().job.id;
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
