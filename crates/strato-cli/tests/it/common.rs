use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use strato_service::{Strato, StratoOptions, WorkerPool, WorkerPoolOptions};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The real embedding model, or `None` (after saying so) when the environment does not provide it.
pub fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("STRATO_TEST_MODEL_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("SKIPPED: set STRATO_TEST_MODEL_DIR to the all-MiniLM-L6-v2 directory (scripts/test.sh does)");
            None
        }
    }
}

/// A path that is not a model, for tests that never embed (jobs fail instead of downloading anything).
pub fn no_model() -> PathBuf {
    PathBuf::from("/nonexistent/strato-test-model")
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data").join(name)
}

pub struct Options {
    pub data_dir: PathBuf,
    pub model: PathBuf,
    pub admin_token: Option<String>,
    /// Gateway settings; `admin_token` above is added to them.
    pub http: strato_http::HttpOptions,
    pub max_dataset_bytes: usize,
    pub workers: usize,
    /// Dead-letter alerts go here.
    pub alert_url: Option<String>,
    /// Lease length for this server's workers.
    pub lease: Duration,
    /// How long finished jobs are kept.
    pub job_ttl: Option<Duration>,
    /// Where metadata and blobs live.
    pub backend: crate::backend::Backend,
    /// Embeddings kept in memory (0: none).
    pub embedding_cache_size: usize,
    /// How concurrent embedding requests are batched.
    pub batching: strato_service::BatchOptions,
    /// Largest file.
    pub max_file_bytes: u64,
}

impl Options {
    pub fn new(data_dir: &Path, model: PathBuf) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            model,
            admin_token: None,
            http: strato_http::HttpOptions::default(),
            max_dataset_bytes: 50 << 20,
            workers: 1,
            alert_url: None,
            lease: Duration::from_secs(10),
            job_ttl: Some(strato_jobs_default_ttl()),
            backend: crate::backend::Backend::Embedded,
            embedding_cache_size: StratoOptions::new(data_dir).embedding_cache_size,
            batching: Default::default(),
            max_file_bytes: StratoOptions::new(data_dir).max_file_bytes,
        }
    }
}

fn strato_jobs_default_ttl() -> Duration {
    WorkerPoolOptions::default().job_ttl.unwrap_or(Duration::MAX)
}

pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub strato: Strato,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    pool: Option<WorkerPool>,
    /// Keeps a shared backend's schema and S3 server alive as long as the server.
    _backend: crate::backend::Backend,
}

pub fn strato_options(o: &Options) -> StratoOptions {
    let mut so = StratoOptions::new(&o.data_dir);
    so.embedding_model = Some(o.model.clone());
    so.max_dataset_bytes = o.max_dataset_bytes;
    so.embedding_cache_size = o.embedding_cache_size;
    so.batching = o.batching;
    so.max_file_bytes = o.max_file_bytes;
    so
}

pub async fn start(o: Options) -> TestServer {
    // Server logs go to the test's captured output: shown when a test fails.
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    // Bound first: presigned URLs of local storage point at the server's own address.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut so = strato_options(&o);
    so.public_url = Some(base.clone());
    let strato = o.backend.open(so).await;
    let pool = (o.workers > 0).then(|| {
        strato.start_workers(WorkerPoolOptions {
            queues: strato_service::QueueConcurrency::default_queue(o.workers),
            lease: o.lease,
            heartbeat: (o.lease / 5).max(Duration::from_millis(100)),
            poll_interval: Duration::from_millis(200),
            reap_interval: Duration::from_millis(200),
            job_ttl: o.job_ttl,
            alerter: o.alert_url.as_ref().map(|url| {
                let mut a = strato_service::AlerterOptions::new(url.clone());
                a.first_backoff = Duration::from_millis(100);
                strato_service::Alerter::start(a)
            }),
            ..Default::default()
        })
    });
    let mut http = o.http.clone();
    if o.admin_token.is_some() {
        http.auth.admin_token = o.admin_token.clone();
    }
    let app = strato_http::router(strato.clone(), http);
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    TestServer {
        base,
        client: reqwest::Client::new(),
        strato,
        stop: Some(tx),
        server: Some(server),
        pool,
        _backend: o.backend.clone(),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops like `strato serve` does on SIGTERM: stop serving, hand running jobs back to the queue.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = s.await;
        }
        if let Some(p) = self.pool.take() {
            p.shutdown().await;
        }
        // Lets an in-flight batch commit before the schema is dropped (the drop blocks this runtime).
        self.strato.close().await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.unwrap();
        status_json(r).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.client.post(self.url(path)).json(body).send().await.unwrap();
        status_json(r).await
    }

    pub async fn put_dataset(&self, name: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .client
            .put(self.url(&format!("/v1/datasets/{name}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    /// Polls a job until it reaches a final status.
    pub async fn wait_job(&self, id: &str, limit: Duration) -> Value {
        let start = Instant::now();
        loop {
            let (code, job) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(code, 200, "{job}");
            if matches!(job["status"].as_str(), Some("SUCCESS" | "FAILURE" | "CANCELLED")) {
                return job;
            }
            assert!(start.elapsed() < limit, "job {id} not finished after {limit:?}: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (code, v)
}

/// Asserts the native error shape and code.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", got.1);
}

/// A small three-intent dataset as CSV.
pub fn small_csv() -> String {
    let rows = [
        (
            "greeting",
            &[
                "hello there",
                "hi",
                "good morning",
                "hey, how are you",
                "greetings",
                "hello friend",
                "hi there, nice to meet you",
                "good evening",
            ][..],
        ),
        (
            "weather",
            &[
                "what's the weather like",
                "will it rain tomorrow",
                "is it sunny outside",
                "how cold is it today",
                "weather forecast please",
                "do I need an umbrella",
                "how hot will it be",
                "is it going to snow",
            ][..],
        ),
        (
            "balance",
            &[
                "what is my account balance",
                "how much money do I have",
                "show my bank balance",
                "check my savings balance",
                "how much is in checking",
                "balance of my card",
                "tell me my balance",
                "what's left in my account",
            ][..],
        ),
    ];
    let mut csv = String::from("text,label\n");
    for (label, texts) in rows {
        for t in texts {
            csv.push_str(&format!("\"{t}\",{label}\n"));
        }
    }
    csv
}
