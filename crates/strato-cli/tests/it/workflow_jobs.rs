//! Strato's own jobs as workflow Task resources, with the real embedding model: a state machine trains a model from
//! a stored dataset (`strato:trainModel.sync` waits for the training job), then starts another training without
//! waiting; a missing dataset is a task error a Catch takes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strato_service::{QueueConcurrency, Strato, WorkerPoolOptions};

use crate::common::{model_dir, strato_options, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_trains_a_model_from_a_dataset_and_waits_for_it() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fslot = strato_functions::FunctionsSlot::default();
    let wslot = strato_workflows::WorkflowsSlot::default();
    let strato = Strato::builder(strato_options(&Options::new(dir.path(), model)))
        .register(fslot.registrar(strato_functions::FunctionsOptions::new(dir.path().join("functions"))))
        .register(wslot.registrar(fslot.clone()))
        .open()
        .await
        .unwrap();
    let w = wslot.get().unwrap();
    w.use_service(strato.clone());
    let pool = strato.start_workers(WorkerPoolOptions {
        queues: QueueConcurrency::parse("default=1,workflows=2").unwrap(),
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    });
    let csv = "text,label\nhello there,greeting\nhi,greeting\ngood morning,greeting\nbye now,farewell\nsee you later,farewell\ngoodbye,farewell\n";
    strato.datasets().put("intents", Some("text/csv"), csv.as_bytes().to_vec().into()).await.unwrap();
    let definition = json!({"StartAt": "Train", "States": {
        "Train": {"Type": "Task", "Resource": "arn:aws:states:::strato:trainModel.sync",
            "Parameters": {"ModelId": "greeter", "Dataset.$": "$.dataset"},
            "ResultSelector": {"status.$": "$.Status", "job.$": "$.JobId"}, "ResultPath": "$.trained",
            "Next": "Again"},
        "Again": {"Type": "Task", "Resource": "arn:aws:states:::strato:trainModel",
            "Parameters": {"ModelId": "greeter", "Dataset.$": "$.dataset"}, "ResultPath": "$.queued",
            "Catch": [{"ErrorEquals": ["Strato.NotFound"], "ResultPath": "$.missing", "Next": "Done"}],
            "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    w.create("retrain", &definition.to_string(), "", "STANDARD", "").await.unwrap();
    w.start_execution("retrain", Some("r1"), r#"{"dataset": "intents"}"#, None).await.unwrap();
    let start = Instant::now();
    let x = loop {
        let x = w.execution("retrain:r1").await.unwrap();
        if x.status != "RUNNING" {
            break x;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "not finished: {x:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    let out: Value = serde_json::from_str(x.output.as_deref().unwrap()).unwrap();
    assert_eq!(out["trained"]["status"], "SUCCESS", "{out}");
    assert_eq!(out["queued"]["Status"], "QUEUED", "{out}");
    // The model the workflow trained answers.
    let p = strato.models().predict("greeter", vec!["hey, good morning".to_string()], 1).await.unwrap();
    assert_eq!(p.predictions[0][0].label, "greeting", "{:?}", p.predictions);
    let job = strato.jobs().get(out["trained"]["job"].as_str().unwrap()).await.unwrap();
    assert_eq!(job.kind.as_str(), "train_model");

    // A dataset that does not exist: the task fails with Strato.NotFound and the execution says so.
    w.start_execution("retrain", Some("r2"), r#"{"dataset": "nope"}"#, None).await.unwrap();
    let x = loop {
        let x = w.execution("retrain:r2").await.unwrap();
        if x.status != "RUNNING" {
            break x;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "not finished: {x:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((x.status.as_str(), x.error.as_deref()), ("FAILED", Some("Strato.NotFound")), "{x:?}");
    pool.shutdown().await;
    strato.close().await;
}
