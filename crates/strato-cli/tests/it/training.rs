//! Train → poll → predict → version → roll back → delete, over HTTP with the real embedding model; and the
//! CLINC150 accuracy acceptance test.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_error, data, model_dir, small_csv, start, Options};

#[tokio::test]
async fn lifecycle_of_a_model() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;

    let (code, v) = s.put_dataset("intents", "text/csv", small_csv()).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["labels"], json!(["balance", "greeting", "weather"]));
    let (code, v) = s.post("/v1/models", &json!({"id": "intents", "dataset": "intents", "params": {"C": 10}})).await;
    assert_eq!(code, 202, "{v}");
    let job = s.wait_job(v["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");
    assert_eq!(job["progress"], 100);
    assert_eq!(job["kind"], "train_model");
    assert_eq!(job["result"]["version"], 1);
    assert!(job["error"].is_null());
    for k in ["created_at", "updated_at", "finished_at"] {
        assert!(job[k].is_string(), "{k}: {job}");
    }

    let (code, p) = s.post("/v1/models/intents/predict", &json!({"text": "is it going to rain this weekend?"})).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!((p["model_id"].clone(), p["version"].clone()), (json!("intents"), json!(1)));
    let top = p["predictions"][0].as_array().unwrap();
    assert_eq!(top.len(), 3, "n_top defaults to 5, capped by the 3 labels");
    assert_eq!(top[0]["label"], "weather", "{p}");
    let scores: Vec<f64> = top.iter().map(|x| x["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted: {scores:?}");
    assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-4, "probabilities: {scores:?}");

    let (_, p) = s
        .post(
            "/v1/models/intents/predict",
            &json!({"texts": ["hey there!", "how much cash is in my account"], "n_top": 1}),
        )
        .await;
    assert_eq!(p["predictions"][0][0]["label"], "greeting", "{p}");
    assert_eq!(p["predictions"][1][0]["label"], "balance", "{p}");
    assert_eq!(p["predictions"][1].as_array().unwrap().len(), 1);

    // A second version, then roll back to the first.
    let (code, _) = s.post("/v1/models", &json!({"id": "intents", "dataset": "intents"})).await;
    assert_eq!(code, 409);
    let (_, v) = s
        .post("/v1/models", &json!({"id": "intents", "dataset": "intents", "force_update": true, "params": {"C": 1}}))
        .await;
    let job = s.wait_job(v["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(job["result"]["version"], 2, "{job}");
    let (_, m) = s.get("/v1/models/intents").await;
    assert_eq!(m["active_version"], 2);
    let versions = m["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["params"]["C"], 1.0);
    assert_eq!((versions[0]["active"].clone(), versions[1]["active"].clone()), (json!(false), json!(true)));
    let val = &versions[0]["metrics"]["validation"];
    assert!(val["accuracy"].as_f64().is_some() && val["macro_f1"].as_f64().is_some(), "{m}");
    assert_eq!(versions[0]["metrics"]["support"]["weather"], 8);

    let (code, m) = s.post("/v1/models/intents/versions/1/activate", &json!({})).await;
    assert_eq!((code, m["active_version"].clone()), (200, json!(1)));
    let (_, p) = s.post("/v1/models/intents/predict", &json!({"text": "hello"})).await;
    assert_eq!(p["version"], 1, "the activated version is served at once");
    assert_error(&s.post("/v1/models/intents/versions/7/activate", &json!({})).await, 404, "version_not_found");
    assert_eq!(s.get("/v1/models").await.1["models"][0]["id"], "intents");

    let r = s.client.delete(s.url("/v1/models/intents")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_error(&s.post("/v1/models/intents/predict", &json!({"text": "hello"})).await, 404, "model_not_found");
    let artifacts = dir.path().join("blobs/models/intents");
    let left = std::fs::read_dir(&artifacts).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "artifacts are deleted with the model");
    s.stop().await;
}

/// Repeated texts are answered from the embedding cache, with the same result as when they were computed; a batch
/// mixing seen and new texts embeds only the new ones.
#[tokio::test]
async fn repeated_texts_come_from_the_embedding_cache() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    assert_eq!(s.put_dataset("intents", "text/csv", small_csv()).await.0, 201);
    let (_, v) = s.post("/v1/models", &json!({"id": "intents", "dataset": "intents"})).await;
    let job = s.wait_job(v["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");

    let cache = &s.strato.metrics().embedding_cache;
    let count = |r: &str| cache.with_label_values(&[r]).get();
    let (hits, misses) = (count("hit"), count("miss"));
    let ask = |body: Value| {
        let s = &s;
        async move {
            let (code, p) = s.post("/v1/models/intents/predict", &body).await;
            assert_eq!(code, 200, "{p}");
            p["predictions"].clone()
        }
    };
    let first = ask(json!({"text": "will it snow tomorrow?"})).await;
    assert_eq!((count("hit") - hits, count("miss") - misses), (0, 1));
    // Surrounding spaces do not matter to the model, so not to the cache either.
    let again = ask(json!({"text": "  will it snow tomorrow? "})).await;
    assert_eq!((count("hit") - hits, count("miss") - misses), (1, 1));
    assert_eq!(first, again);
    let mixed = ask(json!({"texts": ["hello friend", "will it snow tomorrow?"]})).await;
    assert_eq!((count("hit") - hits, count("miss") - misses), (2, 2));
    assert_eq!(mixed[1], first[0]);
    s.stop().await;
}

/// Concurrent predictions share forward passes (dynamic batching) and answer as they do one at a time.
#[tokio::test]
async fn concurrent_predictions_are_batched_and_answer_as_one_at_a_time() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path(), model);
    // No cache: every request must reach the model.
    o.embedding_cache_size = 0;
    let s = start(o).await;
    assert_eq!(s.put_dataset("intents", "text/csv", small_csv()).await.0, 201);
    let (_, v) = s.post("/v1/models", &json!({"id": "intents", "dataset": "intents"})).await;
    let job = s.wait_job(v["job_id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");

    let texts: Vec<String> = (0..48).map(|i| format!("question number {i}: will it rain in city {}?", i * 7)).collect();
    let ask = |t: String| {
        let s = &s;
        async move {
            let (code, p) = s.post("/v1/models/intents/predict", &json!({"text": t})).await;
            assert_eq!(code, 200, "{p}");
            p["predictions"][0].clone()
        }
    };
    let mut one_by_one = Vec::new();
    for t in &texts {
        one_by_one.push(ask(t.clone()).await);
    }
    let batches = &s.strato.metrics().embedding_batch;
    let (count, sum) = (batches.get_sample_count(), batches.get_sample_sum());
    let together = futures::future::join_all(texts.iter().cloned().map(ask)).await;
    let (passes, embedded) = (batches.get_sample_count() - count, batches.get_sample_sum() - sum);
    eprintln!("48 concurrent requests took {passes} forward passes");
    // The same answers, up to float rounding: a batch's products sum in blocks a single text's do not.
    for (t, (b, one)) in texts.iter().zip(together.iter().zip(&one_by_one)) {
        assert_eq!(b[0]["label"], one[0]["label"], "{t}: {b} vs {one}");
        for x in one.as_array().unwrap() {
            let y = b.as_array().unwrap().iter().find(|y| y["label"] == x["label"]).expect("same labels");
            let (x, y) = (x["score"].as_f64().unwrap(), y["score"].as_f64().unwrap());
            assert!((x - y).abs() < 1e-5, "{t}: {b} vs {one}");
        }
    }
    assert_eq!(embedded, 48.0, "each text is embedded once");
    assert!(passes < 48, "no request shared a forward pass");
    s.stop().await;
}

#[tokio::test]
async fn inline_data_trains_and_bad_data_fails_the_job_once() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    let data: Vec<Value> = ["yes please", "sure", "absolutely", "no thanks", "nope", "not at all"]
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"text": t, "label": if i < 3 { "yes" } else { "no" }}))
        .collect();
    let (_, v) = s.post("/v1/models", &json!({"id": "yn", "data": data})).await;
    let job = s.wait_job(v["job_id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");
    let (_, p) = s.post("/v1/models/yn/predict", &json!({"text": "definitely yes"})).await;
    assert_eq!(p["predictions"][0][0]["label"], "yes", "{p}");
    // Inline data is not kept once trained.
    assert_eq!(std::fs::read_dir(dir.path().join("blobs/datasets/_inline")).map(|d| d.count()).unwrap_or(0), 0);
    s.stop().await;
}

/// Acceptance: CLINC150's train split uploaded over HTTP, trained, and the test split predicted over HTTP.
#[tokio::test]
async fn clinc150_accuracy_over_http() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    let csv = std::fs::read_to_string(data("clinc150.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let (mut train, mut test) = (csv::Writer::from_writer(Vec::new()), Vec::new());
    train.write_record(["text", "label"]).unwrap();
    for r in reader.records() {
        let r = r.unwrap();
        match &r[2] {
            "train" => train.write_record([&r[0], &r[1]]).unwrap(),
            "test" => test.push((r[0].to_string(), r[1].to_string())),
            _ => {}
        }
    }
    let body = train.into_inner().unwrap();
    let (code, v) = s.put_dataset("clinc150-train", "text/csv", body).await;
    assert_eq!((code, v["rows"].clone()), (201, json!(18000)), "{v}");
    let (_, v) = s.post("/v1/models", &json!({"id": "clinc", "dataset": "clinc150-train"})).await;
    let job = s.wait_job(v["job_id"].as_str().unwrap(), Duration::from_secs(900)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");
    eprintln!("validation: {}", job["result"]["metrics"]["validation"]["accuracy"]);

    let mut correct = 0;
    for chunk in test.chunks(250) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        let (code, p) = s.post("/v1/models/clinc/predict", &json!({"texts": texts, "n_top": 1})).await;
        assert_eq!(code, 200, "{p}");
        for ((_, label), pred) in chunk.iter().zip(p["predictions"].as_array().unwrap()) {
            correct += usize::from(pred[0]["label"] == label.as_str());
        }
    }
    let accuracy = correct as f64 / test.len() as f64;
    eprintln!("CLINC150 test accuracy over HTTP: {accuracy:.4} ({correct}/{})", test.len());
    assert_eq!(test.len(), 2250);
    assert!(accuracy >= 0.965, "accuracy {accuracy:.4} < 0.965");
    s.stop().await;
}
