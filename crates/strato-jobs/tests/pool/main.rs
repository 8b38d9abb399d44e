//! The worker pool over a real store, on SQLite always and on PostgreSQL when `STRATO_TEST_DATABASE_URL` is set:
//! registered kinds, named queues, scheduled jobs, kinds no worker here knows, and what waiting costs.

mod flaky;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flaky::{FlakyArgs, FlakyWorker};
use serde_json::json;
use strato_jobs::noop::{NoopArgs, NoopWorker};
use strato_jobs::{JobContext, JobError, QueueConcurrency, Worker, WorkerPool, WorkerPoolOptions, Workers};
use strato_store::testing::all as backends;
use strato_store::{JobFilter, Store};
use strato_types::{JobArgs, JobKind, JobRecord, JobStatus, NewJob, QueueName};

/// Settings that make a test's waits short: quick heartbeats, reaping and polls.
fn options(queues: &[(&'static str, usize)]) -> WorkerPoolOptions {
    WorkerPoolOptions {
        queues: QueueConcurrency(queues.iter().map(|(q, n)| (QueueName::new(q), *n)).collect()),
        lease: Duration::from_secs(5),
        heartbeat: Duration::from_millis(500),
        poll_interval: Duration::from_secs(1),
        reap_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

/// Waits until job `id` is final (or `limit` passes) and returns it.
async fn wait_final(store: &Store, id: &str, limit: Duration) -> JobRecord {
    let until = Instant::now() + limit;
    loop {
        let job = store.queue().get(id).await.unwrap().unwrap();
        if job.status.is_final() || Instant::now() > until {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_kind_added_in_one_file_runs_retries_and_dead_letters_like_the_others() {
    for (name, b) in backends().await {
        let store = &b.store;
        let flaky = FlakyWorker::default();
        let mut workers = Workers::new();
        workers.add(flaky.clone());
        // What waits on a job hears of its end, once per end, never of an attempt that is retried.
        let ends: Arc<parking_lot::Mutex<Vec<String>>> = Arc::default();
        let seen = ends.clone();
        workers.on_end([FlakyArgs::KIND], Arc::new(move |id: &str, _: &JobKind| seen.lock().push(id.to_string())));
        assert_eq!(workers.kinds(), vec![FlakyArgs::KIND]);
        // Its own queue, from its defaults: served with one worker by a process told only `--workers 1`.
        assert_eq!(
            QueueConcurrency::for_workers(1, &workers).to_string(),
            "default=1,flaky=1",
            "a kind's queue gets a worker by default"
        );
        let pool = WorkerPool::start(store.clone(), &workers, options(&[("default", 1), ("flaky", 1)]));

        // Fails once, then succeeds on its retry.
        let retried = NewJob::of(&FlakyArgs { fail_first: 1, panic: false }).unwrap();
        assert_eq!((retried.queue.as_str(), retried.max_attempts), ("flaky", 3), "the kind's defaults");
        let retried = store.queue().enqueue(retried).await.unwrap().job;
        // Fails every attempt: dead-lettered after its two.
        let dead = NewJob { max_attempts: 2, ..NewJob::of(&FlakyArgs { fail_first: 99, panic: false }).unwrap() };
        let dead = store.queue().enqueue(dead).await.unwrap().job;
        // A panic is a failed attempt (permanent), not a crashed worker.
        let panicked = store.queue().enqueue(NewJob::of(&FlakyArgs { fail_first: 0, panic: true }).unwrap()).await;
        let panicked = panicked.unwrap().job;
        // A payload that is not the kind's fails at once, for good.
        let garbled = store.queue().enqueue(NewJob::new(FlakyArgs::KIND, json!({"fail_first": "x"}))).await;
        let garbled = garbled.unwrap().job;

        let ok = wait_final(store, &retried.id, Duration::from_secs(20)).await;
        assert_eq!((ok.status, ok.attempts), (JobStatus::Success, 2), "{name}: {ok:?}");
        assert_eq!(ok.result, Some(json!({"succeeded_on": 2})));
        let dl = wait_final(store, &dead.id, Duration::from_secs(20)).await;
        assert_eq!((dl.status, dl.attempts), (JobStatus::Failure, 2), "{name}: {dl:?}");
        assert!(dl.dead_lettered_at.is_some(), "{name}: in the dead-letter queue");
        let dlq: Vec<String> = store.queue().dead_letters(10).await.unwrap().into_iter().map(|j| j.id).collect();
        assert_eq!(dlq, vec![dead.id.clone()]);
        let p = wait_final(store, &panicked.id, Duration::from_secs(10)).await;
        assert_eq!((p.status, p.attempts, p.dead_lettered_at), (JobStatus::Failure, 1, None), "{name}: {p:?}");
        assert!(p.error.unwrap().contains("panicked"));
        let g = wait_final(store, &garbled.id, Duration::from_secs(10)).await;
        assert_eq!((g.status, g.attempts), (JobStatus::Failure, 1), "{name}: {g:?}");
        assert!(g.error.as_deref().unwrap_or_default().contains("bad test.flaky job payload"), "{g:?}");
        assert_eq!(flaky.attempts.load(Ordering::SeqCst), 2 + 2 + 1, "the garbled payload never reached the worker");

        // Replayed from the dead-letter queue, it runs again with fresh attempts.
        store.queue().replay_dead_letter(&dead.id).await.unwrap().unwrap();
        let again = wait_final(store, &dead.id, Duration::from_secs(20)).await;
        assert_eq!((again.status, again.attempts), (JobStatus::Failure, 2), "{name}");
        pool.shutdown().await;
        let mut ended = ends.lock().clone();
        ended.sort();
        let mut expected = vec![retried.id, dead.id.clone(), dead.id, panicked.id, garbled.id];
        expected.sort();
        assert_eq!(ended, expected, "{name}: each end announced once (the replayed job's two ends), no retry");
    }
}

/// Records when each job started.
#[derive(Clone, Default)]
struct Stamped(Arc<parking_lot::Mutex<Vec<(String, Instant)>>>);

#[async_trait]
impl Worker for Stamped {
    type Args = NoopArgs;

    async fn work(&self, args: NoopArgs, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobError> {
        self.0.lock().push((job.id.clone(), Instant::now()));
        NoopWorker.work(args, job, ctx).await
    }
}

impl Stamped {
    fn started(&self, id: &str) -> Option<Instant> {
        self.0.lock().iter().find(|(j, _)| j == id).map(|(_, t)| *t)
    }

    async fn wait_started(&self, id: &str, limit: Duration) -> Option<Instant> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(t) = self.started(id) {
                return Some(t);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        None
    }
}

#[tokio::test]
async fn a_default_job_starts_at_once_while_the_media_queue_is_saturated() {
    for (name, b) in backends().await {
        let store = &b.store;
        let stamped = Stamped::default();
        let mut workers = Workers::new();
        workers.add(stamped.clone());
        let pool = WorkerPool::start(store.clone(), &workers, options(&[("default", 1), ("media", 2)]));
        let media =
            |ms: u64| NewJob { queue: QueueName::new("media"), ..NewJob::new(NoopArgs::KIND, json!({"sleep_ms": ms})) };
        // Media's two workers busy for 5 s, and more waiting behind them.
        for _ in 0..6 {
            store.queue().enqueue(media(5_000)).await.unwrap();
        }
        // Media's own wake-ups start both workers at once (a 1 s poll would be the only other way); the bound leaves
        // room for a loaded machine.
        let busy = JobFilter { status: Some(JobStatus::InProgress), ..Default::default() };
        let until = Instant::now() + Duration::from_millis(800);
        while store.queue().list(&busy).await.unwrap().len() < 2 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.queue().list(&busy).await.unwrap().len(), 2, "{name}: media is saturated");

        for _ in 0..3 {
            let t = Instant::now();
            let job = store.queue().enqueue(NewJob::new(NoopArgs::KIND, json!({}))).await.unwrap().job;
            let started = stamped.wait_started(&job.id, Duration::from_secs(2)).await.expect("the default job started");
            let waited = started.duration_since(t);
            assert!(waited < Duration::from_millis(100), "{name}: a default job waited {waited:?} behind media");
            wait_final(store, &job.id, Duration::from_secs(2)).await;
        }
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn a_job_due_in_two_seconds_starts_then_and_not_before() {
    for (name, b) in backends().await {
        let store = &b.store;
        let stamped = Stamped::default();
        let mut workers = Workers::new();
        workers.add(stamped.clone());
        let pool = WorkerPool::start(store.clone(), &workers, options(&[("default", 2)]));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        let due = chrono::Utc::now() + chrono::Duration::milliseconds(2_000);
        let job = NewJob { run_after: Some(due), ..NewJob::new(NoopArgs::KIND, json!({})) };
        let job = store.queue().enqueue(job).await.unwrap().job;
        assert_eq!(job.run_after.timestamp_millis(), due.timestamp_millis(), "{name}");
        // Another, due now, meanwhile: the idle workers wake for it and go back to sleeping until the first is due.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = store.queue().enqueue(NewJob::new(NoopArgs::KIND, json!({}))).await.unwrap().job;
        stamped.wait_started(&now.id, Duration::from_secs(2)).await.expect("the job due now started");
        assert!(stamped.started(&job.id).is_none(), "{name}: started before it was due");

        let started = stamped.wait_started(&job.id, Duration::from_secs(5)).await.expect("the scheduled job started");
        // Stored times are whole milliseconds: "due" may come up to 1 ms before the exact instant asked for.
        let after = started.duration_since(t0);
        assert!(
            after >= Duration::from_millis(1_999),
            "{name}: started {after:?} after the enqueue, before it was due"
        );
        assert!(after < Duration::from_millis(2_200), "{name}: started {after:?} after the enqueue (due at 2 s)");
        pool.shutdown().await;
    }
}

/// CPU time of this process (every thread, from `/proc/self/task/*/schedstat`, nanoseconds).
fn process_cpu() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) else { continue };
        total += s.split_whitespace().next().unwrap_or("0").parse::<u64>().unwrap_or(0);
    }
    Duration::from_nanos(total)
}

/// CPU time of the PostgreSQL server processes serving `store` (its pool and listener), from their
/// `/proc/<pid>/schedstat`: the database's share of what waiting costs.
async fn backend_cpu(store: &Store, pids: &mut Vec<i32>) -> Duration {
    if let Some(pool) = store.pg_pool() {
        let app: String =
            sqlx::query_scalar("SELECT current_setting('application_name')").fetch_one(pool).await.unwrap();
        let found: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(&app)
            .fetch_all(pool)
            .await
            .unwrap();
        for p in found {
            if !pids.contains(&p) {
                pids.push(p);
            }
        }
    }
    let mut total = 0u64;
    for pid in pids.iter() {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/schedstat")) {
            total += s.split_whitespace().next().unwrap_or("0").parse::<u64>().unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

#[tokio::test]
async fn ten_thousand_jobs_due_next_year_cost_an_idle_pool_almost_nothing() {
    for (name, b) in backends().await {
        let store = &b.store;
        let next_year = chrono::Utc::now() + chrono::Duration::days(365);
        let jobs = (0..10_000).map(|i| {
            let store = store.clone();
            async move {
                let job = NewJob { run_after: Some(next_year), ..NewJob::new(NoopArgs::KIND, json!({"i": i})) };
                store.queue().enqueue(job).await.unwrap()
            }
        });
        futures::future::join_all(jobs).await;
        let mut workers = Workers::new();
        workers.add(NoopWorker);
        // The default poll (1 s) and reaper (5 s): what a process runs with.
        let opts = WorkerPoolOptions { queues: QueueConcurrency::default_queue(4), ..Default::default() };
        let pool = WorkerPool::start(store.clone(), &workers, opts);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut pids = Vec::new();
        let (cpu0, db0, t0) = (process_cpu(), backend_cpu(store, &mut pids).await, Instant::now());
        tokio::time::sleep(Duration::from_secs(6)).await;
        let (cpu1, db1) = (process_cpu(), backend_cpu(store, &mut pids).await);
        let secs = t0.elapsed().as_secs_f64();
        let pct = |d: Duration| d.as_secs_f64() / secs * 100.0;
        let (ours, db) = (pct(cpu1.saturating_sub(cpu0)), pct(db1.saturating_sub(db0)));
        eprintln!(
            "{name}: idle with 10,000 future jobs: this process {ours:.3} %, database backends {db:.3} % of a core"
        );
        assert!(ours + db < 1.0, "{name}: idle cost {ours:.3} % + {db:.3} % of a core");
        let queued = JobFilter { status: Some(JobStatus::Queued), limit: Some(20_000), ..Default::default() };
        assert_eq!(store.queue().list(&queued).await.unwrap().len(), 10_000, "{name}: none ran early");
        pool.shutdown().await;
    }
}

#[tokio::test]
async fn jobs_of_a_kind_no_worker_here_knows_are_left_alone() {
    for (name, b) in backends().await {
        let store = &b.store;
        let mut workers = Workers::new();
        workers.add(NoopWorker);
        let pool = WorkerPool::start(store.clone(), &workers, options(&[("default", 2)]));
        let future = store.queue().enqueue(NewJob::new(JobKind::new("from_a_newer_version"), json!({}))).await;
        let future = future.unwrap().job;
        let known = store.queue().enqueue(NewJob::new(NoopArgs::KIND, json!({}))).await.unwrap().job;
        let done = wait_final(store, &known.id, Duration::from_secs(5)).await;
        assert_eq!(done.status, JobStatus::Success, "{name}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let left = store.queue().get(&future.id).await.unwrap().unwrap();
        assert_eq!((left.status, left.attempts), (JobStatus::Queued, 0), "{name}: left alone, untouched");
        pool.shutdown().await;
        // A process that runs the kind takes it.
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Newer {}
        impl JobArgs for Newer {
            const KIND: JobKind = JobKind::new("from_a_newer_version");
        }
        struct NewerWorker;
        #[async_trait]
        impl Worker for NewerWorker {
            type Args = Newer;
            async fn work(&self, _: Newer, _: &JobRecord, _: &JobContext) -> Result<serde_json::Value, JobError> {
                Ok(json!("done by a newer process"))
            }
        }
        let mut newer = Workers::new();
        newer.add(NewerWorker);
        let pool = WorkerPool::start(store.clone(), &newer, options(&[("default", 1)]));
        let done = wait_final(store, &future.id, Duration::from_secs(5)).await;
        assert_eq!((done.status, done.result), (JobStatus::Success, Some(json!("done by a newer process"))), "{name}");
        pool.shutdown().await;
    }
}
