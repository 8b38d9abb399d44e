//! The job facility over HTTP: generic (noop) jobs, idempotency keys, cancellation, time limits, attempt history,
//! the dead-letter queue with its alert webhook and replay, and TTL expiry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backend::{on_both_backends, Backend};
use crate::common::{assert_error, no_model, start, Options, TestServer};

on_both_backends!(
    noop_jobs_run_and_idempotency_keys_return_the_first_job,
    cancel_queued_and_running_jobs,
    failing_job_is_dead_lettered_alerted_and_replayed,
    attempts_past_the_time_limit_are_stopped_and_permanent_errors_skip_retries,
    finished_jobs_expire_after_their_ttl
);

/// A local webhook that records every JSON body it receives.
struct Webhook {
    url: String,
    seen: Arc<parking_lot::Mutex<Vec<Value>>>,
}

async fn webhook() -> Webhook {
    let seen: Arc<parking_lot::Mutex<Vec<Value>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let s = s.clone();
            async move {
                s.lock().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Webhook { url, seen }
}

async fn submit(s: &TestServer, body: Value) -> Value {
    let (code, v) = s.post("/v1/jobs", &body).await;
    assert_eq!(code, 202, "{v}");
    v
}

async fn wait_until(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn noop_jobs_run_and_idempotency_keys_return_the_first_job(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options { backend, ..Options::new(dir.path(), no_model()) }).await;
    let j = submit(&s, json!({"kind": "noop"})).await;
    let done = s.wait_job(j["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!((done["status"].as_str(), done["attempt_count"].as_i64()), (Some("SUCCESS"), Some(1)), "{done}");
    let attempts = done["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "succeeded");
    assert!(attempts[0]["worker"].as_str().is_some_and(|w| !w.is_empty()) && attempts[0]["finished_at"].is_string());

    let send = |key: &'static str| {
        s.client.post(s.url("/v1/jobs")).header("idempotency-key", key).json(&json!({"kind": "noop"})).send()
    };
    let first = send("order-42").await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send("order-42").await.unwrap();
    assert_eq!(again.status(), 200, "a repeat is not a new job");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first["id"], again["id"]);
    let (_, all) = s.get("/v1/jobs?kind=noop").await;
    assert_eq!(all["jobs"].as_array().unwrap().len(), 2, "{all}");

    let bad = s.client.post(s.url("/v1/jobs")).header("idempotency-key", "").json(&json!({"kind": "noop"}));
    let r = crate::common::status_json(bad.send().await.unwrap()).await;
    assert_error(&r, 400, "invalid_request");
    assert_error(&s.post("/v1/jobs", &json!({"kind": "train_model"})).await, 400, "invalid_request");
    assert_error(&s.post("/v1/jobs", &json!({"kind": "nope"})).await, 400, "invalid_request");
    assert_error(&s.post("/v1/jobs", &json!({"kind": "noop", "max_attempts": 0})).await, 400, "invalid_request");
    assert_error(&s.get("/v1/jobs/nope").await, 404, "job_not_found");
    s.stop().await;
}

async fn cancel_queued_and_running_jobs(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options { backend, ..Options::new(dir.path(), no_model()) };
    o.lease = Duration::from_secs(1);
    let s = start(o).await;
    // One worker: the long job runs, the second waits in the queue.
    let running = submit(&s, json!({"kind": "noop", "payload": {"sleep_ms": 60_000}})).await;
    let rid = running["id"].as_str().unwrap().to_string();
    wait_until(Duration::from_secs(10), "the job to start", async || {
        s.get(&format!("/v1/jobs/{rid}")).await.1["status"] == "IN_PROGRESS"
    })
    .await;
    let queued = submit(&s, json!({"kind": "noop"})).await;
    let qid = queued["id"].as_str().unwrap();

    let (code, c) = s.post(&format!("/v1/jobs/{qid}/cancel"), &json!({})).await;
    assert_eq!((code, c["status"].as_str(), c["cancel"].as_str()), (200, Some("CANCELLED"), Some("cancelled")), "{c}");
    let (code, c) = s.post(&format!("/v1/jobs/{rid}/cancel"), &json!({})).await;
    assert_eq!((code, c["cancel"].as_str(), c["cancel_requested"].as_bool()), (202, Some("requested"), Some(true)));
    let started = Instant::now();
    let done = s.wait_job(&rid, Duration::from_secs(10)).await;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped within a heartbeat or two, not after 60 s");
    assert_eq!(done["attempts"][0]["outcome"], "cancelled", "{done}");
    assert_error(&s.post(&format!("/v1/jobs/{rid}/cancel"), &json!({})).await, 409, "job_finished");
    assert_error(&s.post("/v1/jobs/nope/cancel", &json!({})).await, 404, "job_not_found");
    let (_, q) = s.get(&format!("/v1/jobs/{qid}")).await;
    assert_eq!((q["status"].as_str(), q["attempt_count"].as_i64()), (Some("CANCELLED"), Some(0)), "never ran: {q}");
    s.stop().await;
}

async fn failing_job_is_dead_lettered_alerted_and_replayed(backend: Backend) {
    let hook = webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options { backend, ..Options::new(dir.path(), no_model()) };
    o.alert_url = Some(hook.url.clone());
    let s = start(o).await;
    let j = submit(&s, json!({"kind": "noop", "payload": {"fail": "retryable"}, "max_attempts": 2})).await;
    let id = j["id"].as_str().unwrap().to_string();
    let dead = s.wait_job(&id, Duration::from_secs(30)).await;
    assert_eq!(dead["status"], "FAILURE");
    assert!(dead["dead_lettered_at"].is_string(), "{dead}");
    let outcomes: Vec<_> = dead["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].clone()).collect();
    assert_eq!(outcomes, vec![json!("failed"), json!("failed")], "{dead}");
    assert!(dead["attempts"][1]["error"].as_str().unwrap().contains("attempt 2"), "{dead}");

    let (_, dlq) = s.get("/v1/dlq").await;
    assert_eq!(dlq["jobs"][0]["id"], json!(id), "{dlq}");
    let (code, entry) = s.get(&format!("/v1/dlq/{id}")).await;
    assert_eq!((code, entry["attempts"].as_array().map(Vec::len)), (200, Some(2)), "{entry}");
    wait_until(Duration::from_secs(10), "the alert", async || !hook.seen.lock().is_empty()).await;
    {
        let seen = hook.seen.lock();
        assert_eq!(seen.len(), 1, "exactly one alert: {seen:?}");
        assert_eq!((seen[0]["event"].as_str(), seen[0]["job_id"].as_str()), (Some("job.dead_lettered"), Some(&*id)));
        assert!(seen[0]["text"].as_str().unwrap().contains(&id), "Slack-style text: {}", seen[0]);
    }

    // Replay: queued again with fresh attempts; it fails the same way, so it comes back with a longer history.
    let (code, r) = s.post(&format!("/v1/dlq/{id}/replay"), &json!({})).await;
    assert_eq!((code, r["status"].as_str(), r["attempt_count"].as_i64()), (202, Some("QUEUED"), Some(0)), "{r}");
    assert_error(&s.post(&format!("/v1/dlq/{id}/replay"), &json!({})).await, 404, "dead_letter_not_found");
    wait_until(Duration::from_secs(30), "the replayed job to fail again", async || {
        s.get(&format!("/v1/dlq/{id}")).await.0 == 200
    })
    .await;
    let (_, again) = s.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(again["attempts"].as_array().unwrap().len(), 4, "re-ran twice after the replay: {again}");
    wait_until(Duration::from_secs(10), "the second alert", async || hook.seen.lock().len() == 2).await;

    let del = s.client.delete(s.url(&format!("/v1/dlq/{id}"))).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert_error(&s.get(&format!("/v1/dlq/{id}")).await, 404, "dead_letter_not_found");
    assert_error(&s.get(&format!("/v1/jobs/{id}")).await, 404, "job_not_found");
    s.stop().await;
}

async fn attempts_past_the_time_limit_are_stopped_and_permanent_errors_skip_retries(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options { backend, ..Options::new(dir.path(), no_model()) }).await;
    let slow =
        submit(&s, json!({"kind": "noop", "payload": {"sleep_ms": 60_000}, "timeout_secs": 1, "max_attempts": 1}))
            .await;
    let started = Instant::now();
    let done = s.wait_job(slow["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert!(started.elapsed() < Duration::from_secs(10), "stopped at its 1 s limit");
    assert_eq!(
        (done["status"].as_str(), done["attempts"][0]["outcome"].as_str()),
        (Some("FAILURE"), Some("timed_out"))
    );
    assert!(done["dead_lettered_at"].is_string(), "a timeout is retryable, so running out of attempts dead-letters");

    let bad = submit(&s, json!({"kind": "noop", "payload": {"fail": "permanent"}})).await;
    let done = s.wait_job(bad["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!((done["status"].as_str(), done["attempt_count"].as_i64()), (Some("FAILURE"), Some(1)), "{done}");
    assert!(done["dead_lettered_at"].is_null(), "bad input fails at once and is not for the DLQ: {done}");
    s.stop().await;
}

async fn finished_jobs_expire_after_their_ttl(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options { backend, ..Options::new(dir.path(), no_model()) };
    o.job_ttl = Some(Duration::from_secs(1));
    let s = start(o).await;
    let j = submit(&s, json!({"kind": "noop"})).await;
    let id = j["id"].as_str().unwrap().to_string();
    assert_eq!(s.wait_job(&id, Duration::from_secs(10)).await["status"], "SUCCESS");
    wait_until(Duration::from_secs(10), "the finished job to expire", async || {
        s.get(&format!("/v1/jobs/{id}")).await.0 == 404
    })
    .await;
    // Unfinished work never expires: a job waiting behind a busy key is still there.
    let long = submit(&s, json!({"kind": "noop", "key": "k", "payload": {"sleep_ms": 4000}})).await;
    let waiting = submit(&s, json!({"kind": "noop", "key": "k"})).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, w) = s.get(&format!("/v1/jobs/{}", waiting["id"].as_str().unwrap())).await;
    assert_eq!(w["status"], "QUEUED", "same key waits for the running job: {w}");
    assert_eq!(s.wait_job(long["id"].as_str().unwrap(), Duration::from_secs(10)).await["status"], "SUCCESS");
    assert_eq!(s.wait_job(waiting["id"].as_str().unwrap(), Duration::from_secs(10)).await["status"], "SUCCESS");
    s.stop().await;
}
