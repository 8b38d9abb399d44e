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
