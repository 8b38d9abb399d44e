//! Alerts for dead-lettered jobs: a Slack-compatible webhook (`{"text": ...}` plus structured fields).
//!
//! Workers hand an alert over a bounded channel and move on; a background task delivers each one with retries and
//! exponential backoff, so a slow or failing webhook never holds a worker up. When the channel is full (the webhook
//! has been down for a long time) the alert is dropped with an error log: the job itself is safe in the DLQ.

use std::fmt;
use std::time::Duration;

use serde_json::json;
use strato_types::JobRecord;
use tokio::sync::mpsc;

/// How to deliver alerts.
#[derive(Clone)]
pub struct AlerterOptions {
    /// Webhook URL (a secret for Slack: never logged).
    pub webhook_url: String,
    /// Delivery tries per alert.
    pub max_tries: u32,
    /// Wait before the second try; doubles after each failure.
    pub first_backoff: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl AlerterOptions {
    /// Defaults for a webhook: 8 tries over about 4 minutes, 10 s per request.
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Self {
            webhook_url: webhook_url.into(),
            max_tries: 8,
            first_backoff: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for AlerterOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlerterOptions")
            .field("webhook_url", &"<redacted>")
            .field("max_tries", &self.max_tries)
            .finish()
    }
}

/// Sends alerts; cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    tx: mpsc::Sender<serde_json::Value>,
}

impl fmt::Debug for Alerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Alerter")
    }
}

impl Alerter {
    /// Starts the delivery task (needs a Tokio runtime).
    pub fn start(opts: AlerterOptions) -> Self {
        let (tx, mut rx) = mpsc::channel::<serde_json::Value>(1024);
        let client = reqwest::Client::builder().timeout(opts.timeout).build().unwrap_or_default();
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                // One task per alert: a retrying delivery does not delay the next alert.
                tokio::spawn(deliver(client.clone(), opts.clone(), msg));
            }
        });
        Self { tx }
    }

    /// Announces that `job` entered the dead-letter queue. Never blocks.
    pub fn dead_lettered(&self, job: &JobRecord) {
        let error = job.error.clone().unwrap_or_default();
        let key = job.key.as_deref().map(|k| format!(" for {k}")).unwrap_or_default();
        let text = format!(
            "Strato job {} ({}{key}) moved to the dead-letter queue after {} attempt{}: {error}. Inspect: GET \
             /v1/dlq/{}; replay: POST /v1/dlq/{}/replay",
            job.id,
            job.kind.as_str(),
            job.attempts,
            if job.attempts == 1 { "" } else { "s" },
            job.id,
            job.id
        );
        let msg = json!({
            "text": text,
            "event": "job.dead_lettered",
            "job_id": job.id,
            "kind": job.kind.as_str(),
            "key": job.key,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "error": job.error,
            "dead_lettered_at": job.dead_lettered_at,
        });
        if let Err(e) = self.tx.try_send(msg) {
            tracing::error!(job = %job.id, error = %e, "alert dropped: the alert queue is full or closed");
        }
    }
}

impl Alerter {
    /// Announces a response slower than its route's threshold. Never blocks; the caller rate-limits.
    pub fn slow_response(&self, method: &str, route: &str, latency_ms: f64, threshold_ms: u64, request_id: &str) {
        let text = format!(
            "Strato: {method} {route} took {latency_ms:.0} ms, over its {threshold_ms} ms threshold (request {request_id})"
        );
        let msg = json!({
            "text": text,
            "event": "http.slow_response",
            "method": method,
            "route": route,
            "latency_ms": latency_ms,
            "threshold_ms": threshold_ms,
            "request_id": request_id,
        });
        if let Err(e) = self.tx.try_send(msg) {
            tracing::error!(error = %e, "alert dropped: the alert queue is full or closed");
        }
    }
}

async fn deliver(client: reqwest::Client, opts: AlerterOptions, msg: serde_json::Value) {
    let job = msg["job_id"].as_str().unwrap_or_default().to_string();
    let mut wait = opts.first_backoff;
    for attempt in 1..=opts.max_tries.max(1) {
        match client.post(&opts.webhook_url).json(&msg).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(%job, attempt, "dead-letter alert delivered");
                return;
            }
            // The error text of a failed request can contain the URL: log the status or the kind only.
            Ok(r) => tracing::warn!(%job, attempt, status = %r.status(), "alert webhook refused the alert"),
            Err(e) => {
                tracing::warn!(%job, attempt, timeout = e.is_timeout(), connect = e.is_connect(), "alert delivery failed")
            }
        }
        if attempt < opts.max_tries {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(300));
        }
    }
    tracing::error!(%job, tries = opts.max_tries, "giving up on a dead-letter alert; the job is still in the DLQ");
}
