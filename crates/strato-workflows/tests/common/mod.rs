//! A service with the workflows capability served over a real socket, for the HTTP tests.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use strato_functions::{FunctionsOptions, FunctionsSlot};
use strato_http::auth::AuthOptions;
use strato_http::HttpOptions;
use strato_jobs::WorkerPool;
use strato_service::{Strato, StratoOptions};
use strato_workflows::Workflows;

/// The admin token the served gateway takes.
pub const ADMIN: &str = "an-admin-token-0123456789";

/// A service in a temporary directory, its workers (`workflows` workers on that queue) and its routes on a
/// loopback port.
pub struct Served {
    pub strato: Strato,
    pub workflows: Workflows,
    pub pool: WorkerPool,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub server: tokio::task::JoinHandle<()>,
    pub _dir: tempfile::TempDir,
}

/// Serves a new service with `workflows` workers.
pub async fn serve(workflows: usize) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StratoOptions::new(dir.path());
    opts.embedding_model = Some("/nonexistent/strato-test-model".into());
    let slot = FunctionsSlot::default();
    let wslot = strato_workflows::WorkflowsSlot::default();
    let strato = Strato::builder(opts)
        .register(slot.registrar(FunctionsOptions::new(dir.path().join("functions"))))
        .register(wslot.registrar(slot.clone()))
        .open()
        .await
        .unwrap();
    let pool = strato.start_workers(strato_service::WorkerPoolOptions {
        queues: strato_service::QueueConcurrency::parse(&format!("default=1,workflows={workflows}")).unwrap(),
        poll_interval: std::time::Duration::from_millis(200),
        ..Default::default()
    });
    let w = wslot.get().unwrap();
    let http = HttpOptions {
        auth: AuthOptions { admin_token: Some(ADMIN.into()), ..Default::default() },
        ..Default::default()
    };
    let app = strato_http::router_with(strato.clone(), http, vec![strato_workflows::routes(w.clone())]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    Served { strato, workflows: w, pool, base, server, _dir: dir }
}
