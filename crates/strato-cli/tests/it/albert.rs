//! The original Albert service's routes, as its clients call them (README of the seed service).

use std::time::Duration;

use serde_json::json;

use crate::common::{model_dir, start, Options};

#[tokio::test]
async fn albert_clients_train_list_predict_delete() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    // The original trained from spaCy-style JSON stored in S3; here that object is a dataset.
    let cats = |label: &str| {
        let mut m = serde_json::Map::new();
        for l in ["SAVING", "DEBT", "BILLS"] {
            m.insert(l.into(), json!(if l == label { 1.0 } else { 0.0 }));
        }
        json!(m)
    };
    let mut items = Vec::new();
    for (label, texts) in [
        (
            "SAVING",
            [
                "I want to save for vacation",
                "put money aside for a car",
                "how do I build an emergency fund",
                "start a savings plan",
            ],
        ),
        (
            "DEBT",
            ["how do I pay off my loan", "my credit card debt is growing", "consolidate my debts", "reduce what I owe"],
        ),
        (
            "BILLS",
            [
                "when is my electricity bill due",
                "pay the water bill",
                "my phone bill is too high",
                "set up autopay for utilities",
            ],
        ),
    ] {
        for t in texts {
            items.push(json!({"text": t, "cats": cats(label)}));
        }
    }
    let (code, v) = s.put_dataset("trainingSet", "application/json", serde_json::to_vec(&items).unwrap()).await;
    assert_eq!((code, v["format"].clone()), (201, json!("spacy")), "{v}");

    let req = json!({"id": "tc-01", "s3bucket": "albert-textcats", "training_object": "trainingSet.json"});
    let (code, v) = s.post("/models", &req).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "model training started");
    let task = v["task_id"].as_str().unwrap().to_string();
    let job = s.wait_job(&task, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");

    assert_eq!(
        s.post("/models", &req).await,
        (400, json!({"error": "Cannot update existing model. Use force_update:True"}))
    );
    let mut forced = req.clone();
    forced["force_update"] = json!("True");
    forced["n_iter"] = json!(20);
    let (code, v) = s.post("/models", &forced).await;
    assert_eq!(code, 202, "{v}");
    s.wait_job(v["task_id"].as_str().unwrap(), Duration::from_secs(60)).await;

    let (code, list) = s.get("/models").await;
    assert_eq!(code, 200);
    let item = &list[0];
    assert_eq!(
        (item["key"].clone(), item["sort"].clone(), item["status"].clone()),
        (json!("model"), json!("tc-01"), json!("trained"))
    );
    assert_eq!(item["data"]["s3bucket"], "albert-textcats");
    assert_eq!(item["data"]["training_object"], "trainingSet.json");
    assert_eq!(item["data"]["n_iter"], 20);

    // GET with a JSON body, as the original client does.
    let r = s
        .client
        .get(s.url("/prediction"))
        .header("content-type", "application/json")
        .body(r#"{"model_id":"tc-01", "text":"I want to save for vacation!"}"#)
        .send()
        .await
        .unwrap();
    let (code, p) = crate::common::status_json(r).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(
        p["prediction_request"],
        json!({"model_id": "tc-01", "text": "I want to save for vacation!", "n_top": 5})
    );
    assert_eq!(p["model"]["id"], "tc-01");
    let pred = p["prediction"].as_array().unwrap();
    assert_eq!(pred.len(), 3);
    assert_eq!(pred[0][0], "SAVING", "{p}");
    assert!(pred[0][1].as_f64().unwrap() > pred[1][1].as_f64().unwrap());

    let (code, p) = s.get("/prediction?model_id=tc-01&text=my%20phone%20bill%20is%20huge&n_top=1").await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["prediction"].as_array().unwrap().len(), 1);
    assert_eq!(p["prediction"][0][0], "BILLS", "{p}");

    let r = s.client.delete(s.url("/models/tc-01")).send().await.unwrap();
    let (code, v) = crate::common::status_json(r).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["Attributes"]["sort"], "tc-01");
    assert_eq!(s.get("/models").await, (200, json!([])));
    s.stop().await;
}
