//! Outages of what Strato depends on: the S3 server stopped mid-job, PostgreSQL restarted under running workers,
//! and a data directory that is full or read-only. Each is bounded in time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strato_blob::BlobStore;
use strato_store::Store;

use crate::backend::Backend;
use crate::common::{assert_error, data, model_dir, no_model, start, strato_options, Options};

fn clinc_rows(n: usize) -> Vec<Value> {
    let csv = std::fs::read_to_string(data("clinc150.csv")).unwrap();
    csv::Reader::from_reader(csv.as_bytes())
        .records()
        .take(n)
        .map(|r| {
            let r = r.unwrap();
            json!({"text": &r[0], "label": &r[1]})
        })
        .collect()
}

async fn poll<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn s3_stopped_during_a_job_is_retried_until_it_is_back_and_never_half_served() {
    let Some(model) = model_dir() else { return };
    let Some(backend) = Backend::shared().await else { return };
    let Backend::Shared(shared) = backend.clone() else { unreachable!() };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options { backend, ..Options::new(dir.path(), model) }).await;
    let (code, v) = s.post("/v1/models", &json!({"id": "s3m", "data": clinc_rows(1500)})).await;
    assert_eq!(code, 202, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    poll(Duration::from_secs(60), "training to start", async || {
        let j = s.get(&format!("/v1/jobs/{id}")).await.1;
        (j["status"] == "IN_PROGRESS" && j["progress"].as_i64() > Some(0)).then_some(())
    })
    .await;

    shared.moto.lock().stop();
    // The attempt cannot publish its artifact (or the retry cannot read its data): it fails and is retried.
    let failed = poll(Duration::from_secs(120), "an attempt to fail on the outage", async || {
        let j = s.get(&format!("/v1/jobs/{id}")).await.1;
        let failed = j["attempts"].as_array()?.iter().any(|a| a["outcome"] == "failed");
        failed.then_some(j)
    })
    .await;
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()), "the failed attempt says why: {failed}");
    assert_ne!(failed["status"], "FAILURE", "a storage outage is retryable: {failed}");
    let (_, m) = s.get("/v1/models/s3m").await;
    assert!(m["active_version"].is_null(), "nothing is served before an artifact is whole: {m}");

    shared.moto.lock().restart();
    let done = s.wait_job(&id, Duration::from_secs(240)).await;
    assert_eq!(done["status"], "SUCCESS", "{done}");
    assert!(done["attempt_count"].as_i64() >= Some(2), "{done}");
    let (_, m) = s.get("/v1/models/s3m").await;
    assert_eq!((m["active_version"].as_i64(), m["versions"].as_array().map(Vec::len)), (Some(1), Some(1)), "{m}");
    let (code, p) = s.post("/v1/models/s3m/predict", &json!({"text": "what is my account balance"})).await;
    assert_eq!(code, 200, "the published artifact loads: {p}");
    s.stop().await;
}

/// A PostgreSQL cluster of the test's own (so restarting it disturbs nobody), run as the `postgres` user.
struct PgCluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PgCluster {
    /// `None` (after saying why) unless this runs as root on a machine with PostgreSQL's server binaries.
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists());
        let is_root = Command::new("id").arg("-u").output().ok().is_some_and(|o| o.stdout.starts_with(b"0"));
        let Some(bin) = bin.filter(|_| is_root) else {
            eprintln!("SKIPPED: needs root and PostgreSQL's server binaries (/usr/lib/postgresql/*/bin) for a cluster");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = Self { bin, dir, port };
        assert!(Command::new("chown").args(["-R", "postgres"]).arg(c.dir.path()).status().unwrap().success());
        c.run("initdb", &["-A", "trust", "-U", "postgres", "-D", &c.data()]);
        c.pg_ctl("start");
        Some(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn pg_ctl(&self, action: &str) {
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -k {}", self.port, self.dir.path().display());
        let log = self.dir.path().join("log").display().to_string();
        match action {
            "start" => self.run("pg_ctl", &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"]),
            _ => self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test]
async fn postgres_restart_under_running_workers_loses_no_job() {
    let Some(pg) = tokio::task::spawn_blocking(PgCluster::start).await.unwrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&pg.url()).await.unwrap();
    let blobs = BlobStore::local(&dir.path().join("blobs")).unwrap();
    let mut o = Options::new(dir.path(), no_model());
    o.workers = 2;
    o.lease = Duration::from_secs(2);
    let strato = strato_service::Strato::with_parts(store, blobs, strato_options(&o)).unwrap();
    let pool = strato.start_workers(strato_service::WorkerPoolOptions {
        queues: strato_service::QueueConcurrency::default_queue(2),
        lease: Duration::from_secs(2),
        heartbeat: Duration::from_millis(400),
        poll_interval: Duration::from_millis(200),
        reap_interval: Duration::from_millis(500),
        ..Default::default()
    });
    let mut ids = Vec::new();
    for i in 0..30 {
        let job = strato_types::NewJob::new(
            <strato_jobs::noop::NoopArgs as strato_types::JobArgs>::KIND,
            json!({"sleep_ms": 200, "i": i}),
        );
        ids.push(strato.jobs().enqueue(job).await.unwrap().job.id);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    // Down for 3 s while jobs run: submits fail cleanly, workers back off instead of crashing.
    let pg = tokio::task::spawn_blocking(move || {
        pg.pg_ctl("stop");
        pg
    })
    .await
    .unwrap();
    let err = strato
        .jobs()
        .enqueue(strato_types::NewJob::new(<strato_jobs::noop::NoopArgs as strato_types::JobArgs>::KIND, json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code, strato_types::ErrorCode::StorageUnavailable, "{err:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pg = tokio::task::spawn_blocking(move || {
        pg.pg_ctl("start");
        pg
    })
    .await
    .unwrap();

    for id in &ids {
        let job = poll(Duration::from_secs(90), "every job to finish after the restart", async || {
            let j = strato.jobs().get(id).await.ok()?;
            j.status.is_final().then_some(j)
        })
        .await;
        assert_eq!(job.status, strato_types::JobStatus::Success, "{job:?}");
    }
    pool.shutdown().await;
    drop(pg);
}

/// A small tmpfs (root only), unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIPPED: mounting a small tmpfs needs root (it stands in for a full or read-only disk)");
            return None;
        }
        Some(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    async fn remount(&self, mode: &str) {
        // A stopped server's pooled SQLite connections close in the background, on this test's runtime; until they
        // do, a read-only remount is refused as busy. So the wait must let the runtime run (no thread sleep).
        let start = Instant::now();
        loop {
            let out = Command::new("mount").args(["-o", &format!("remount,{mode}")]).arg(self.path()).output().unwrap();
            if out.status.success() {
                return;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("busy") && start.elapsed() < Duration::from_secs(20), "remount {mode}: {err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).output();
    }
}

#[tokio::test]
async fn full_or_read_only_data_dir_is_a_clear_error_and_corrupts_nothing() {
    let Some(fs) = Tmpfs::mount("4m") else { return };
    let data_dir = fs.path().join("data");
    let mut o = Options::new(&data_dir, no_model());
    o.workers = 0;
    let s = start(o).await;
    let csv = "text,label\nhello,greet\nhi there,greet\nbye,leave\nsee you,leave\n";
    assert_eq!(s.put_dataset("before", "text/csv", csv).await.0, 201);

    // 1. Full: fill the disk, then write.
    let filler = fs.path().join("filler");
    let chunk = vec![7u8; 64 * 1024];
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let big = format!("text,label\n{}", "some words here,greet\nother words there,leave\n".repeat(2000));
    let r = s.put_dataset("during", "text/csv", big.clone()).await;
    assert_error(&r, 503, "storage_unavailable");
    assert!(r.1["error"]["message"].as_str().unwrap().contains("retry"), "says what to do: {}", r.1);

    // 2. Space again: the same request works, the failed one left nothing behind, the database is intact.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(s.put_dataset("during", "text/csv", big).await.0, 201);
    let (_, list) = s.get("/v1/datasets").await;
    let names: Vec<_> = list["datasets"].as_array().unwrap().iter().map(|d| d["name"].clone()).collect();
    assert_eq!(names, vec![json!("before"), json!("during")], "{list}");
    let blobs = walk(&data_dir.join("blobs"));
    assert_eq!(blobs.len(), 2, "no partial blob from the failed write: {blobs:?}");
    s.stop().await;
    let check = Command::new(env!("CARGO_BIN_EXE_strato"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["jobs", "list"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // 3. Read-only: a clear error naming the database, not a panic; fine again once writable.
    fs.remount("ro").await;
    let ro = Command::new(env!("CARGO_BIN_EXE_strato"))
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["jobs", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&ro.stderr);
    assert!(!ro.status.success(), "{err}");
    assert!(err.contains("meta.db") && !err.contains("panicked"), "{err}");
    fs.remount("rw").await;
    let s = start(Options { workers: 0, ..Options::new(&data_dir, no_model()) }).await;
    let (_, list) = s.get("/v1/datasets").await;
    assert_eq!(list["datasets"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(s.put_dataset("after", "text/csv", csv).await.0, 201);
    s.stop().await;
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
