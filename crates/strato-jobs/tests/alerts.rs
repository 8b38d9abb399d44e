//! Dead-letter alerts: delivered with retries by a background task, never holding the caller up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use strato_jobs::{Alerter, AlerterOptions};
use strato_types::{JobArgs, JobRecord, JobStatus, QueueName};

fn dead_job() -> JobRecord {
    let now = chrono::Utc::now();
    JobRecord {
        id: "job-1".into(),
        kind: strato_jobs::noop::NoopArgs::KIND,
        queue: QueueName::DEFAULT,
        status: JobStatus::Failure,
        payload: json!({}),
        key: Some("model:m".into()),
        resource: None,
        priority: 0,
        progress: 0,
        error: Some("boom".into()),
        result: None,
        attempts: 5,
        max_attempts: 5,
        lease_owner: None,
        lease_expires_at: None,
        run_after: now,
        created_at: now,
        updated_at: now,
        started_at: Some(now),
        finished_at: Some(now),
        timeout_ms: 1000,
        idempotency_key: None,
        cancel_requested: false,
        dead_lettered_at: Some(now),
    }
}

/// A webhook that answers 503 to its first `fail_first` calls, then 200; counts the calls.
async fn flaky_webhook(
    fail_first: usize,
) -> (String, Arc<AtomicUsize>, Arc<parking_lot::Mutex<Vec<serde_json::Value>>>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen: Arc<parking_lot::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (c, s) = (calls.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let (c, s) = (c.clone(), s.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                s.lock().push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls, seen)
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_until_it_accepts() {
    let (url, calls, seen) = flaky_webhook(2).await;
    let mut o = AlerterOptions::new(url);
    o.first_backoff = Duration::from_millis(50);
    let alerter = Alerter::start(o);
    let t = Instant::now();
    alerter.dead_lettered(&dead_job());
    assert!(t.elapsed() < Duration::from_millis(20), "handing an alert over never waits for delivery");
    let start = Instant::now();
    while seen.lock().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "not delivered; {} calls", calls.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "two refusals, then the delivery");
    let msg = seen.lock()[0].clone();
    assert_eq!(
        (msg["event"].as_str(), msg["job_id"].as_str(), msg["attempts"].as_i64()),
        (Some("job.dead_lettered"), Some("job-1"), Some(5))
    );
    assert!(
        msg["text"].as_str().unwrap().contains("model:m") && msg["text"].as_str().unwrap().contains("boom"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unreachable_webhook_never_blocks_the_caller() {
    // Nothing listens on this port: every try fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut o = AlerterOptions::new(format!("http://127.0.0.1:{port}/hook"));
    o.first_backoff = Duration::from_millis(10);
    o.max_tries = 3;
    let alerter = Alerter::start(o);
    let t = Instant::now();
    for _ in 0..100 {
        alerter.dead_lettered(&dead_job());
    }
    assert!(t.elapsed() < Duration::from_millis(100), "{:?} for 100 alerts", t.elapsed());
    assert!(!format!("{alerter:?}").contains("127.0.0.1"), "the webhook URL (a secret) is not printed");
}
