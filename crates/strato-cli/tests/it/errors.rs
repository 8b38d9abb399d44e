//! Every error path answers JSON with a stable code, and stores nothing.

use serde_json::json;

use crate::common::{assert_error, no_model, start, Options};

#[tokio::test]
async fn routes_methods_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), no_model())).await;
    assert_error(&s.get("/v1/nope").await, 404, "route_not_found");
    let r = s.client.delete(s.url("/v1/jobs")).send().await.unwrap();
    assert_error(&crate::common::status_json(r).await, 405, "method_not_allowed");

    let r = s.client.post(s.url("/v1/models")).body("{not json").send().await.unwrap();
    assert_error(&crate::common::status_json(r).await, 400, "invalid_json");
    assert_error(&s.post("/v1/models", &json!({"id": "m", "dataset": "d", "bogus": 1})).await, 400, "invalid_request");
    assert_error(&s.post("/v1/models", &json!({"id": "m"})).await, 400, "invalid_request");
    assert_error(&s.post("/v1/models", &json!({"id": "bad name", "dataset": "d"})).await, 400, "invalid_name");
    assert_error(&s.post("/v1/models", &json!({"id": "m", "dataset": "missing"})).await, 404, "dataset_not_found");
    assert_error(
        &s.post("/v1/models", &json!({"id": "m", "data": [{"text": "a", "label": "x"}], "params": {"C": -1}})).await,
        400,
        "invalid_request",
    );
    assert_error(
        &s.post("/v1/models", &json!({"id": "m", "data": [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]}))
            .await,
        400,
        "invalid_dataset",
    );
    assert_error(&s.post("/v1/models/nope/predict", &json!({"text": "hi"})).await, 404, "model_not_found");
    assert_error(&s.post("/v1/models/nope/predict", &json!({})).await, 400, "invalid_request");
    assert_error(&s.get("/v1/models/nope").await, 404, "model_not_found");
    assert_error(&s.get("/v1/jobs/nope").await, 404, "job_not_found");
    assert_error(&s.get("/v1/jobs?status=bogus").await, 400, "invalid_request");
    let r = s.client.delete(s.url("/v1/models/nope")).send().await.unwrap();
    assert_error(&crate::common::status_json(r).await, 404, "model_not_found");
    assert_error(&s.post("/v1/models/nope/versions/1/activate", &json!({})).await, 404, "model_not_found");
    assert_eq!(s.get("/v1/models").await, (200, json!({"models": []})), "nothing was created");
    s.stop().await;
}

#[tokio::test]
async fn bad_datasets_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path(), no_model());
    o.max_dataset_bytes = 1000;
    let s = start(o).await;

    let r = s.put_dataset("d", "text/csv", "text,label\nhello,greet\nno comma here\n").await;
    assert_error(&r, 400, "invalid_dataset");
    assert!(r.1["error"]["message"].as_str().unwrap().starts_with("line 3:"), "{}", r.1);
    let r = s.put_dataset("d", "application/x-ndjson", "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\"}\n").await;
    assert_error(&r, 400, "invalid_dataset");
    assert!(r.1["error"]["message"].as_str().unwrap().starts_with("line 2:"), "{}", r.1);
    let r = s.put_dataset("d", "application/json", r#"[{"text":"a","label":"x"},{"text":"b","label":null}]"#).await;
    assert!(r.1["error"]["message"].as_str().unwrap().starts_with("item 1:"), "{}", r.1);
    assert_error(&s.put_dataset("d", "text/csv", "text,label\na,x\nb,x\n").await, 400, "invalid_dataset");
    assert_error(&s.put_dataset("d", "text/plain", "text,label\na,x\nb,y\n").await, 415, "unsupported_media_type");
    let big = format!("text,label\n{}", "some text,x\nother text,y\n".repeat(100));
    assert_error(&s.put_dataset("d", "text/csv", big).await, 413, "payload_too_large");
    assert_error(&s.put_dataset(".hidden", "text/csv", "text,label\na,x\nb,y\n").await, 400, "invalid_name");

    assert_error(&s.get("/v1/datasets/d").await, 404, "dataset_not_found");
    assert_eq!(s.get("/v1/datasets").await, (200, json!({"datasets": []})));
    let blobs = dir.path().join("blobs");
    let stored = walk(&blobs);
    assert!(stored.is_empty(), "no file may be stored on error: {stored:?}");

    // A good upload works, lists, downloads byte-for-byte and deletes.
    let body = "text,label\nhello,greet\nbye,leave\n";
    let (code, v) = s.put_dataset("d", "text/csv", body).await;
    assert_eq!((code, v), (201, json!({"name": "d", "rows": 2, "labels": ["greet", "leave"], "format": "csv"})));
    let r = s.client.get(s.url("/v1/datasets/d")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv");
    assert_eq!(r.text().await.unwrap(), body);
    assert_eq!(s.get("/v1/datasets").await.1["datasets"][0]["rows"], 2);
    let r = s.client.delete(s.url("/v1/datasets/d")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(walk(&blobs).is_empty());
    s.stop().await;
}

#[tokio::test]
async fn existing_model_conflicts_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path(), no_model());
    o.workers = 0;
    let s = start(o).await;
    let data = json!([{"text": "hello", "label": "greet"}, {"text": "bye", "label": "leave"}]);
    let (code, v) = s.post("/v1/models", &json!({"id": "m", "data": data})).await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["status"], "QUEUED");
    assert_eq!(v["model_id"], "m");
    assert_eq!(v["status_url"], format!("/v1/jobs/{}", v["job_id"].as_str().unwrap()));
    assert_error(&s.post("/v1/models", &json!({"id": "m", "data": data})).await, 409, "model_exists");
    // A forced retrain while the first is still queued coalesces into it: one training, on the newest request.
    let (code, forced) = s.post("/v1/models", &json!({"id": "m", "data": data, "force_update": true})).await;
    assert_eq!((code, &forced["job_id"]), (202, &v["job_id"]), "{forced}");
    let (_, jobs) = s.get("/v1/jobs?status=QUEUED&kind=train_model").await;
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 1);
    // The replaced request's inline data is not left behind in blob storage.
    let inline: Vec<_> = std::fs::read_dir(dir.path().join("blobs/datasets/_inline")).unwrap().collect();
    assert_eq!(inline.len(), 1, "{inline:?}");
    s.stop().await;
}

#[tokio::test]
async fn bearer_token_guards_everything_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path(), no_model());
    o.admin_token = Some("s3cret-token-for-tests".into());
    let s = start(o).await;
    assert_error(&s.get("/v1/models").await, 401, "unauthorized");
    assert_error(&s.get("/models").await, 401, "unauthorized");
    let r = s.client.get(s.url("/v1/models")).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.client.get(s.url("/v1/models")).bearer_auth("s3cret-token-for-tests").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.get("/healthz").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn albert_error_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), no_model())).await;
    let err = |m: &str| json!({"error": m});
    assert_eq!(s.post("/models", &json!({"id": "x"})).await, (400, err("Required parameters not supplied")));
    let r = s.client.post(s.url("/models")).body("nonsense").send().await.unwrap();
    assert_eq!(crate::common::status_json(r).await, (400, err("Required parameters not supplied")));
    let (code, v) = s.post("/models", &json!({"id": "x", "s3bucket": "b", "training_object": "none.json"})).await;
    assert_eq!(code, 400);
    assert!(v["error"].as_str().unwrap().contains("none.json"), "{v}");
    let r = s.client.delete(s.url("/models/nope")).send().await.unwrap();
    assert_eq!(crate::common::status_json(r).await, (400, err("Requested Model ID does not exist")));
    assert_eq!(s.get("/prediction").await, (400, err("Required parameters not supplied")));
    assert_eq!(s.get("/prediction?model_id=nope&text=hi").await, (400, err("Model ID does not exist")));
    assert_eq!(s.get("/prediction?model_id=nope&text=hi&n_top=abc").await, (400, err("Wrong parameters")));
    let r = s.client.get(s.url("/prediction")).body(r#"{"model_id":"nope","text":"hi"}"#).send().await.unwrap();
    assert_eq!(crate::common::status_json(r).await, (400, err("Model ID does not exist")));
    assert_eq!(s.get("/models").await, (200, json!([])));
    s.stop().await;
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(p) else { return out };
    for e in rd.flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
