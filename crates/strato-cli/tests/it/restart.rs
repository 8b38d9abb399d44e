//! Jobs survive restarts: one queued while the server is down, and one interrupted mid-training, both finish
//! after the server comes back on the same data directory.

use std::time::{Duration, Instant};

use serde_json::json;
use strato_ml::Example;
use strato_service::{DataSource, Strato, TrainRequest};

use crate::common::{data, model_dir, small_csv, start, strato_options, Options};

#[tokio::test]
async fn job_queued_while_stopped_runs_after_restart() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model.clone())).await;
    s.put_dataset("intents", "text/csv", small_csv()).await;
    s.stop().await;

    // Server down: queue a job straight into the data directory (as another process would).
    let offline = Strato::open(strato_options(&Options::new(dir.path(), model.clone()))).await.unwrap();
    let job = offline
        .models()
        .submit_training(TrainRequest {
            model_id: "later".into(),
            data: DataSource::Dataset("intents".into()),
            params: Default::default(),
            force_update: false,
            meta: json!({}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    assert_eq!(offline.jobs().get(&job.id).await.unwrap().status.as_str(), "QUEUED");
    drop(offline);

    let s = start(Options::new(dir.path(), model)).await;
    let done = s.wait_job(&job.id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let (_, p) = s.post("/v1/models/later/predict", &json!({"text": "will it snow?"})).await;
    assert_eq!(p["predictions"][0][0]["label"], "weather", "{p}");
    s.stop().await;
}

#[tokio::test]
async fn job_interrupted_by_shutdown_runs_again_after_restart() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model.clone())).await;
    // Enough text that training is still running when we stop (embedding got fast: 3,000 texts sometimes
    // finished first on a loaded machine).
    let csv = std::fs::read_to_string(data("clinc150.csv")).unwrap();
    let examples: Vec<Example> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .take(9000)
        .map(|r| {
            let r = r.unwrap();
            Example { text: r[0].to_string(), label: r[1].to_string(), split: None }
        })
        .collect();
    let job = s
        .strato
        .models()
        .submit_training(TrainRequest {
            model_id: "big".into(),
            data: DataSource::Inline(examples),
            params: Default::default(),
            force_update: false,
            meta: json!({}),
            idempotency_key: None,
        })
        .await
        .unwrap();
    let start_wait = Instant::now();
    loop {
        let (_, j) = s.get(&format!("/v1/jobs/{}", job.id)).await;
        if j["status"] == "IN_PROGRESS" && j["progress"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        assert_ne!(j["status"], "SUCCESS", "training finished before the test could interrupt it");
        assert!(start_wait.elapsed() < Duration::from_secs(60), "{j}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
    let offline = Strato::open(strato_options(&Options::new(dir.path(), model.clone()))).await.unwrap();
    let j = offline.jobs().get(&job.id).await.unwrap();
    assert_eq!(j.status.as_str(), "QUEUED", "shutdown hands the running job back: {j:?}");
    drop(offline);

    let s = start(Options::new(dir.path(), model)).await;
    let done = s.wait_job(&job.id, Duration::from_secs(300)).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    let (_, m) = s.get("/v1/models/big").await;
    assert_eq!(m["versions"].as_array().unwrap().len(), 1, "exactly one version: {m}");
    s.stop().await;
}
