//! What the functions' integration tests share: a real server over a real socket, fixtures, and helpers.
#![allow(dead_code, unused_imports)] // each test crate uses its own part

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use strato_functions::{Functions, FunctionsOptions, FunctionsSlot};
use strato_http::auth::AuthOptions;
use strato_http::HttpOptions;
use strato_service::{QueueConcurrency, Strato, StratoOptions, WorkerPool, WorkerPoolOptions};

pub const ADMIN: &str = "an-admin-token-0123456789";

pub fn python() -> Option<String> {
    let p = std::env::var("STRATO_TEST_LAMBDA_PYTHON").ok().filter(|p| !p.is_empty());
    if p.is_none() {
        eprintln!("SKIPPED: set STRATO_TEST_LAMBDA_PYTHON to a Python with awslambdaric installed (.ci/run does)");
    }
    p
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A zip of a fixture directory, with the files' modes.
pub fn zip_of(dir: &Path) -> Vec<u8> {
    use std::os::unix::fs::PermissionsExt;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let mode = e.metadata().unwrap().permissions().mode();
        let o = zip::write::SimpleFileOptions::default().unix_permissions(mode & 0o777);
        w.start_file(e.file_name().to_string_lossy(), o).unwrap();
        w.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub functions: Functions,
    pub strato: Strato,
    pool: Option<WorkerPool>,
    server: tokio::task::JoinHandle<()>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(python: &str, tune: impl FnOnce(&mut FunctionsOptions), auth: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StratoOptions::new(dir.path());
        opts.embedding_model = Some("/nonexistent/strato-test-model".into());
        let mut fopts = FunctionsOptions::new(dir.path().join("functions"));
        fopts.python = python.into();
        tune(&mut fopts);
        let slot = FunctionsSlot::default();
        let strato = Strato::builder(opts).register(slot.registrar(fopts)).open().await.unwrap();
        let functions = slot.get().unwrap();
        functions.start_maintenance();
        let queues = QueueConcurrency::for_workers(1, strato.jobs().registry());
        assert!(queues.to_string().contains("functions=1"), "the functions queue is served: {queues}");
        let pool = strato.start_workers(WorkerPoolOptions {
            queues,
            poll_interval: Duration::from_millis(200),
            ..Default::default()
        });
        let http = HttpOptions {
            auth: AuthOptions { admin_token: auth.then(|| ADMIN.to_string()), ..Default::default() },
            ..Default::default()
        };
        let app = strato_http::router_with(strato.clone(), http, vec![strato_functions::routes(functions.clone())]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
        });
        Self { base, client: reqwest::Client::new(), functions, strato, pool: Some(pool), server, dir }
    }

    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    pub async fn create(&self, body: Value) -> Value {
        let r = self.client.post(self.url("/v1/functions")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "{v}");
        v
    }

    /// Lambda's Invoke, as the SDKs send it (with the admin's token).
    pub async fn invoke(&self, name: &str, event: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.url(&format!("/2015-03-31/functions/{name}/invocations")))
            .bearer_auth(ADMIN)
            .body(event.to_string());
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    pub async fn stop(mut self) {
        self.server.abort();
        if let Some(p) = self.pool.take() {
            p.shutdown().await;
        }
        self.strato.close().await;
    }
}

pub fn python_function(name: &str, extra: Value) -> Value {
    let mut body = json!({
        "name": name,
        "runtime": "python3.11",
        "handler": "app.handler",
        "zip_base64": b64(&zip_of(&fixture("python"))),
        "environment": {"GREETING": "hello"},
        "timeout": 2,
        "memory_size": 256,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

pub async fn body(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

pub fn h<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn log_of(headers: &reqwest::header::HeaderMap) -> String {
    let raw = base64::engine::general_purpose::STANDARD.decode(h(headers, "x-amz-log-result").unwrap()).unwrap();
    String::from_utf8(raw).unwrap()
}
