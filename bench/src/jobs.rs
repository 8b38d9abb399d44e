//! `strato-bench jobs`: the durable queue under no-op jobs, on SQLite and on PostgreSQL.
//!
//! Three measurements per backend, each on a fresh database (a temp-dir SQLite file, or a PostgreSQL schema
//! `bench_<uuid>` dropped afterwards), printed as one JSON line each:
//!
//! 1. `throughput`: N no-op jobs through a `WorkerPool`. `concurrent`: E tasks enqueue N/E jobs each (as API
//!    processes would) while the pool drains them; jobs/s = N / (first enqueue → last completion). `drain`: all N
//!    enqueued first, then the pool is started; jobs/s = N / (pool start → last completion).
//! 2. `latency`: one enqueue every 1/rate s for a few seconds, the pool idle-waiting in between. Enqueue → start
//!    is the `Instant` taken just before `enqueue` to the `Instant` the handler starts (not the stored
//!    millisecond timestamps); `enqueue_call_p50_ms` is how long the `enqueue` call itself took.
//! 3. `idle_cpu`: CPU time the whole process uses while the pool sits idle (no busy polling shows as ~0).
//!
//! "Last completion" is when the store no longer has a queued or running job: the handler counts jobs, and once
//! it has seen all N the bench polls the store (only then) until the last outcome is written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use serde_json::json;
use strato_jobs::noop::{NoopArgs, NoopWorker};
use strato_jobs::{JobContext, JobError, QueueConcurrency, Worker, WorkerPool, WorkerPoolOptions, Workers};
use strato_store::{JobFilter, PgStoreOptions, Store};
use strato_types::{JobArgs, JobRecord, JobStatus, NewJob};
use tokio::sync::Notify;

use crate::percentile;

/// Settings of one `jobs` run.
struct JobsOptions {
    database_url: Option<String>,
    backends: Vec<String>,
    jobs: usize,
    workers: Vec<usize>,
    enqueuers: Vec<usize>,
    rate: f64,
    latency_secs: f64,
    latency_workers: Option<usize>,
    idle_secs: f64,
}

impl JobsOptions {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self {
            database_url: None,
            backends: vec!["sqlite".into(), "postgres".into()],
            jobs: 20_000,
            workers: vec![8, 32, 128],
            enqueuers: vec![4, 32],
            rate: 200.0,
            latency_secs: 10.0,
            latency_workers: None,
            idle_secs: 5.0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--database-url" => o.database_url = Some(value.clone()),
                "--backends" => o.backends = value.split(',').map(str::to_string).collect(),
                "--jobs" => o.jobs = value.parse()?,
                "--workers" => o.workers = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
                "--enqueuers" => o.enqueuers = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
                "--rate" => o.rate = value.parse()?,
                "--latency-secs" => o.latency_secs = value.parse()?,
                "--latency-workers" => o.latency_workers = Some(value.parse()?),
                "--idle-secs" => o.idle_secs = value.parse()?,
                _ => bail!(
                    "usage: jobs [--database-url URL] [--backends sqlite,postgres] [--jobs N] [--workers 8,32,128] \
                     [--enqueuers 4,32] [--rate PER_S] [--latency-secs S] [--latency-workers W] [--idle-secs S]"
                ),
            }
        }
        if o.workers.is_empty() || o.enqueuers.is_empty() || o.enqueuers.contains(&0) || o.jobs == 0 {
            bail!("--workers, --enqueuers and --jobs must be positive");
        }
        Ok(o)
    }
}

/// Runs the no-op job and remembers when each one started; wakes the bench once it has seen `expected` jobs.
#[derive(Default)]
struct RecordingWorker {
    started: parking_lot::Mutex<Vec<(String, Instant)>>,
    count: AtomicUsize,
    expected: AtomicUsize,
    all_seen: Notify,
}

/// The worker registered for `noop`: records, then runs the real no-op worker.
struct Recorder(Arc<RecordingWorker>);

#[async_trait]
impl Worker for Recorder {
    type Args = NoopArgs;

    async fn work(&self, args: NoopArgs, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        let now = Instant::now();
        let r = &self.0;
        r.started.lock().push((job.id.clone(), now));
        let out = NoopWorker.work(args, job, ctx).await;
        if r.count.fetch_add(1, Ordering::AcqRel) + 1 == r.expected.load(Ordering::Acquire) {
            r.all_seen.notify_one();
        }
        out
    }
}

impl RecordingWorker {
    /// A registry with only this worker, for the `noop` kind.
    fn registry(self: &Arc<Self>) -> Workers {
        let mut w = Workers::new();
        w.add(Recorder(self.clone()));
        w
    }

    fn expect(&self, n: usize) {
        self.started.lock().clear();
        self.count.store(0, Ordering::Release);
        self.expected.store(n, Ordering::Release);
    }

    async fn wait_all_seen(&self, limit: Duration) -> Result<()> {
        let wait = async {
            loop {
                let notified = self.all_seen.notified();
                if self.count.load(Ordering::Acquire) >= self.expected.load(Ordering::Acquire) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.context("the pool did not run every job in time")
    }
}

/// A fresh database of one backend; `drop_it` removes it.
struct Db {
    store: Store,
    /// The SQLite file's directory, removed on drop.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL schema and the URL to drop it through.
    pg_schema: Option<(String, String)>,
}

impl Db {
    async fn open(backend: &str, url: Option<&str>, pool_size: u32) -> Result<Self> {
        match backend {
            "sqlite" => {
                let dir = tempfile::tempdir()?;
                let store = Store::open_sqlite(&dir.path().join("strato.db")).await?;
                Ok(Self { store, _dir: Some(dir), pg_schema: None })
            }
            "postgres" => {
                let url = url.context("postgres needs --database-url")?;
                let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
                let options =
                    PgStoreOptions { schema: Some(schema.clone()), max_connections: pool_size, ..Default::default() };
                let store = Store::connect_with(url.parse()?, options).await?;
                Ok(Self { store, _dir: None, pg_schema: Some((url.to_string(), schema)) })
            }
            other => bail!("unknown backend {other:?} (sqlite or postgres)"),
        }
    }

    async fn drop_it(self) -> Result<()> {
        drop(self.store);
        if let Some((url, schema)) = self.pg_schema {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await?;
        }
        Ok(())
    }
}

fn noop() -> NewJob {
    NewJob::new(NoopArgs::KIND, json!({}))
}

fn pool_options(workers: usize) -> WorkerPoolOptions {
    WorkerPoolOptions { queues: QueueConcurrency::default_queue(workers), ..Default::default() }
}

/// Waits until the store has no queued or running job (every outcome written); polls every millisecond, and is
/// only called once the handler has seen every job.
async fn wait_store_drained(store: &Store) -> Result<()> {
    let one = |status| JobFilter { status: Some(status), limit: Some(1), ..Default::default() };
    loop {
        if store.queue().list(&one(JobStatus::InProgress)).await?.is_empty()
            && store.queue().list(&one(JobStatus::Queued)).await?.is_empty()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Fails unless exactly `n` jobs succeeded.
async fn check_succeeded(store: &Store, n: usize) -> Result<()> {
    let f = JobFilter { status: Some(JobStatus::Success), limit: Some(n as i64 + 1), ..Default::default() };
    let done = store.queue().list(&f).await?.len();
    if done != n {
        bail!("{done} of {n} jobs succeeded");
    }
    Ok(())
}

/// Enqueues `n` no-op jobs from `tasks` concurrent tasks.
async fn enqueue_concurrently(store: &Store, n: usize, tasks: usize) -> Result<()> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let share = n / tasks + usize::from(t < n % tasks);
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..share {
                store.queue().enqueue(noop()).await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

/// Measurement 1: jobs/s with enqueues running beside the pool (`concurrent`), or all enqueued first (`drain`).
async fn throughput(
    o: &JobsOptions,
    backend: &str,
    workers: usize,
    enqueuers: usize,
    drain: bool,
) -> Result<serde_json::Value> {
    let db = Db::open(backend, o.database_url.as_deref(), (workers + enqueuers + 2) as u32).await?;
    let store = db.store.clone();
    let handler = Arc::new(RecordingWorker::default());
    handler.expect(o.jobs);
    let (secs, enqueue_secs) = if drain {
        let t = Instant::now();
        enqueue_concurrently(&store, o.jobs, enqueuers).await?;
        let enqueue_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let pool = WorkerPool::start(store.clone(), &handler.registry(), pool_options(workers));
        handler.wait_all_seen(Duration::from_secs(600)).await?;
        wait_store_drained(&store).await?;
        let secs = t.elapsed().as_secs_f64();
        pool.shutdown().await;
        (secs, enqueue_secs)
    } else {
        let pool = WorkerPool::start(store.clone(), &handler.registry(), pool_options(workers));
        // Let the idle workers reach their wait before the clock starts.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        enqueue_concurrently(&store, o.jobs, enqueuers).await?;
        let enqueue_secs = t.elapsed().as_secs_f64();
        handler.wait_all_seen(Duration::from_secs(600)).await?;
        wait_store_drained(&store).await?;
        let secs = t.elapsed().as_secs_f64();
        pool.shutdown().await;
        (secs, enqueue_secs)
    };
    check_succeeded(&store, o.jobs).await?;
    drop(store);
    db.drop_it().await?;
    Ok(json!({
        "bench": "jobs", "backend": backend, "measure": "throughput", "mode": if drain { "drain" } else { "concurrent" },
        "workers": workers, "enqueuers": enqueuers, "jobs": o.jobs, "seconds": secs,
        "jobs_per_s": o.jobs as f64 / secs, "enqueue_per_s": o.jobs as f64 / enqueue_secs,
    }))
}

/// CPU time of this whole process so far (every thread, alive ones from `/proc/self/task/*/schedstat` in
/// nanoseconds; exited threads' time is not there, so the caller compares two readings taken while idle).
fn process_cpu() -> Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task")? {
        let Ok(s) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
        total += s.split_whitespace().next().unwrap_or("0").parse::<u64>().unwrap_or(0);
    }
    Ok(Duration::from_nanos(total))
}

/// CPU ticks (user + system, 1/100 s) of this process including exited threads, from `/proc/self/stat`.
fn process_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start at state: utime is the 12th of those.
    let rest = stat.rsplit_once(')').context("malformed /proc/self/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Measurements 2 and 3 on one pool: paced enqueue → start latency, then CPU while idle.
async fn latency_and_idle(o: &JobsOptions, backend: &str, workers: usize) -> Result<Vec<serde_json::Value>> {
    let db = Db::open(backend, o.database_url.as_deref(), (workers + 4) as u32).await?;
    let store = db.store.clone();
    let handler = Arc::new(RecordingWorker::default());
    let n = (o.rate * o.latency_secs).round().max(1.0) as usize;
    handler.expect(n);
    let pool = WorkerPool::start(store.clone(), &handler.registry(), pool_options(workers));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Pace the enqueues on a fixed schedule (a slow enqueue does not shift the later ones).
    let period = Duration::from_secs_f64(1.0 / o.rate);
    let start = tokio::time::Instant::now();
    let mut enqueued: HashMap<String, Instant> = HashMap::with_capacity(n);
    let mut call_ms = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + period * i as u32).await;
        let t = Instant::now();
        let job = store.queue().enqueue(noop()).await?;
        call_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        enqueued.insert(job.job.id, t);
    }
    call_ms.sort_by(f64::total_cmp);
    handler.wait_all_seen(Duration::from_secs(120)).await?;
    wait_store_drained(&store).await?;
    let mut ms: Vec<f64> = handler
        .started
        .lock()
        .iter()
        .filter_map(|(id, started)| enqueued.get(id).map(|t| started.duration_since(*t).as_secs_f64() * 1000.0))
        .collect();
    if ms.len() != n {
        bail!("matched {} of {n} jobs to their enqueue", ms.len());
    }
    ms.sort_by(f64::total_cmp);
    let achieved_rate = n as f64 / start.elapsed().as_secs_f64();
    let latency = json!({
        "bench": "jobs", "backend": backend, "measure": "latency", "workers": workers, "rate": o.rate, "jobs": n,
        "achieved_rate": achieved_rate,
        "p50_ms": percentile(&ms, 0.5), "p90_ms": percentile(&ms, 0.9), "p99_ms": percentile(&ms, 0.99),
        "max_ms": ms[ms.len() - 1], "enqueue_call_p50_ms": percentile(&call_ms, 0.5),
    });

    // 2. Idle: nothing queued, the workers waiting on the job signal (and their poll interval).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (cpu0, ticks0, t0) = (process_cpu()?, process_ticks()?, Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(o.idle_secs)).await;
    let (cpu1, ticks1, secs) = (process_cpu()?, process_ticks()?, t0.elapsed().as_secs_f64());
    let cpu_ms = cpu1.saturating_sub(cpu0).as_secs_f64() * 1000.0;
    let idle = json!({
        "bench": "jobs", "backend": backend, "measure": "idle_cpu", "workers": workers, "seconds": secs,
        "cpu_ms": cpu_ms, "cpu_ms_ticks": (ticks1 - ticks0) as f64 * 10.0,
        "cpu_pct_of_core": cpu_ms / 10.0 / secs,
        "poll_interval_ms": pool_options(workers).poll_interval.as_millis() as u64,
    });
    pool.shutdown().await;
    drop(store);
    db.drop_it().await?;
    Ok(vec![latency, idle])
}

/// Entry point: prints one JSON line per measurement as it finishes.
pub async fn run(args: &[String]) -> Result<()> {
    let o = JobsOptions::parse(args)?;
    for backend in &o.backends {
        if backend == "postgres" && o.database_url.is_none() {
            eprintln!("jobs: no --database-url, skipping postgres");
            continue;
        }
        let mut best: Option<(f64, usize)> = None;
        for &e in &o.enqueuers {
            for &w in &o.workers {
                let r = throughput(&o, backend, w, e, false).await?;
                println!("{r}");
                let rate = r["jobs_per_s"].as_f64().unwrap_or(0.0);
                if best.is_none_or(|(b, _)| rate > b) {
                    best = Some((rate, w));
                }
            }
            for &w in &o.workers {
                println!("{}", throughput(&o, backend, w, e, true).await?);
            }
        }
        let w = o.latency_workers.or(best.map(|(_, w)| w)).unwrap_or(1);
        for line in latency_and_idle(&o, backend, w).await? {
            println!("{line}");
        }
    }
    Ok(())
}
