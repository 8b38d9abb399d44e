//! What only PostgreSQL does: several processes (here: several stores, each with its own pool) sharing one queue,
//! waking each other through `LISTEN/NOTIFY`, and migrating at the same time. Skipped, with a message, when
//! `STRATO_TEST_DATABASE_URL` is not set.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use strato_store::testing::{self as backends, PgSchema, NOOP};
use strato_store::{EnqueueOutcome, JobFilter, Store};
use strato_types::{JobKind, NewJob};

const LEASE: Duration = Duration::from_secs(60);

/// A fresh schema, or `None` (after saying so) when no server is configured.
fn schema() -> Option<PgSchema> {
    backends::database_url().map(PgSchema::new)
}

/// Waits until the default queue's idle workers are woken, up to `limit`; whether they were.
async fn woken(signal: Arc<strato_store::JobSignal>, limit: Duration) -> bool {
    let signal = signal.queue(&strato_types::QueueName::DEFAULT);
    tokio::time::timeout(limit, signal.notified()).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_claim_each_job_once_and_keys_one_at_a_time() {
    let Some(schema) = schema() else { return };
    let stores = [schema.connect_as("race_a").await, schema.connect_as("race_b").await];
    let n = 500;
    for i in 0..n {
        // 10 keys × 40 jobs (fewer keys than workers, so keys are contended), and 100 jobs without a key.
        let key = (i < 400).then(|| format!("model:{}", i % 10));
        let job = NewJob { key, priority: (i % 3) as i32, ..NewJob::new(NOOP, json!({ "i": i })) };
        stores[i % 2].queue().enqueue(job).await.unwrap();
    }

    let claimed = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let running_keys = Arc::new(parking_lot::Mutex::new(HashSet::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (s, store) in stores.iter().enumerate() {
        for w in 0..8 {
            let store = store.clone();
            let (claimed, running_keys, done) = (claimed.clone(), running_keys.clone(), done.clone());
            tasks.spawn(async move {
                let worker = format!("s{s}-w{w}");
                while done.load(Ordering::SeqCst) < n {
                    let Some(job) = store.queue().claim(&worker, LEASE).await.unwrap() else {
                        // Keys busy elsewhere: wait for a wake-up (or poll).
                        woken(store.job_signal(), Duration::from_millis(50)).await;
                        continue;
                    };
                    if let Some(key) = &job.key {
                        assert!(running_keys.lock().insert(key.clone()), "{key} claimed while it was running");
                    }
                    // Hold it a moment, so that a second claim of the key, were it possible, would overlap.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    claimed.lock().push(job.id.clone());
                    if let Some(key) = &job.key {
                        running_keys.lock().remove(key);
                    }
                    assert!(store.queue().complete(&job.id, &worker, &json!(null)).await.unwrap());
                    done.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    }
    // The first failing worker fails the test; dropping the set stops the others.
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(t) = tasks.join_next().await {
            t.unwrap();
        }
    })
    .await
    .expect("every job done within 2 minutes");

    let mut ids = claimed.lock().clone();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!((before, ids.len()), (n, n), "every job claimed exactly once");
    for job in stores[0].queue().list(&Default::default()).await.unwrap() {
        assert_eq!((job.status, job.attempts), (strato_types::JobStatus::Success, 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_of_one_idempotency_or_coalescing_key_make_one_job() {
    let Some(schema) = schema() else { return };
    let stores = [schema.connect_as("enqueue_a").await, schema.connect_as("enqueue_b").await];
    let race = |make: fn(usize) -> NewJob| {
        let stores = stores.clone();
        async move {
            let enqueues = (0..20).map(|i| {
                let store = stores[i % 2].clone();
                tokio::spawn(async move { store.queue().enqueue(make(i)).await.unwrap() })
            });
            futures::future::join_all(enqueues).await.into_iter().map(Result::unwrap).collect::<Vec<_>>()
        }
    };

    let same_key = race(|i| NewJob { idempotency_key: Some("once".into()), ..NewJob::new(NOOP, json!(i)) }).await;
    let outcomes: Vec<_> = same_key.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == EnqueueOutcome::Created).count(), 1, "{outcomes:?}");
    assert!(same_key.iter().all(|e| e.job.id == same_key[0].job.id));

    let coalesced = race(|i| NewJob {
        key: Some("model:c".into()),
        coalesce: true,
        ..NewJob::new(JobKind::new("train_model"), json!(i))
    })
    .await;
    let outcomes: Vec<_> = coalesced.iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == EnqueueOutcome::Created).count(), 1, "{outcomes:?}");
    let filter = JobFilter { key: Some("model:c".into()), ..Default::default() };
    assert_eq!(stores[0].queue().list(&filter).await.unwrap().len(), 1, "one queued job carries every request");
}

#[tokio::test]
async fn a_write_in_one_process_wakes_the_workers_of_another() {
    let Some(schema) = schema() else { return };
    let (a, b) = (schema.connect_as("wake_a").await, schema.connect_as("wake_b").await);
    let Some(elsewhere) = backends::database_url().map(PgSchema::new) else { return };
    let other = elsewhere.connect().await;

    let (b_signal, other_signal) = (b.job_signal(), other.job_signal());
    let b_woken = tokio::spawn(woken(b_signal, Duration::from_secs(2)));
    let other_woken = tokio::spawn(woken(other_signal, Duration::from_millis(500)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.queue().enqueue(NewJob::new(NOOP, json!({}))).await.unwrap();
    assert!(b_woken.await.unwrap(), "store B woken within 2 s by store A's enqueue");
    assert!(!other_woken.await.unwrap(), "a store on another schema is not woken");

    // The worker of B claims what A queued; completing a keyed job frees its key for the others.
    let job = b.queue().claim("b", LEASE).await.unwrap().unwrap();
    assert!(b.queue().complete(&job.id, "b", &json!(1)).await.unwrap());
    let keyed = a.queue().enqueue(NewJob { key: Some("k".into()), ..NewJob::new(NOOP, json!({})) }).await.unwrap();
    a.queue().enqueue(NewJob { key: Some("k".into()), ..NewJob::new(NOOP, json!({})) }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(b.queue().claim("b", LEASE).await.unwrap().unwrap().id, keyed.job.id);
    assert!(a.queue().claim("a", LEASE).await.unwrap().is_none(), "the key is busy");
    let a_woken = tokio::spawn(woken(a.job_signal(), Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(b.queue().complete(&keyed.job.id, "b", &json!(1)).await.unwrap());
    assert!(a_woken.await.unwrap(), "A woken when B's completion freed the key");
    assert!(a.queue().claim("a", LEASE).await.unwrap().is_some());
}

#[tokio::test]
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let Some(schema) = schema() else { return };
    let a = schema.connect_as("kill_a").await;
    let b_name = format!("{}_b", schema.name);
    let b = schema.connect_as(&b_name).await;

    let url = backends::database_url().unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(&b_name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "B's listening connection found and terminated");

    // The listener notices, reconnects and wakes a worker in case it missed something meanwhile.
    assert!(woken(b.job_signal(), Duration::from_secs(10)).await, "woken after reconnecting");
    // Then it hears A again.
    let b_woken = tokio::spawn(woken(b.job_signal(), Duration::from_secs(5)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    a.queue().enqueue(NewJob::new(NOOP, json!({}))).await.unwrap();
    assert!(b_woken.await.unwrap(), "B hears A's notifications after the reconnect");
}

#[tokio::test]
async fn dropping_the_store_closes_its_connections() {
    let Some(schema) = schema() else { return };
    let name = format!("{}_drop", schema.name);
    let store = schema.connect_as(&name).await;
    store.queue().enqueue(NewJob::new(NOOP, json!({}))).await.unwrap();

    let url = backends::database_url().unwrap();
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let count = "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = $1";
    let open: i64 = sqlx::query_scalar(count).bind(&name).fetch_one(&mut admin).await.unwrap();
    assert!(open >= 2, "the pool and the listener are connected: {open}");
    drop(store);
    let mut left = open;
    for _ in 0..50 {
        left = sqlx::query_scalar(count).bind(&name).fetch_one(&mut admin).await.unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "no connection (the listener's included) outlives the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_starting_together_migrate_once() {
    let Some(schema) = schema() else { return };
    let starts = (0..4).map(|i| {
        let schema = &schema;
        async move { schema.try_connect_as(&format!("migrate_{i}")).await }
    });
    let stores: Vec<Store> =
        futures::future::join_all(starts).await.into_iter().collect::<Result<_, _>>().expect("every process starts");
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(stores[0].pg_pool().unwrap())
        .await
        .unwrap();
    let migrations: Vec<i64> = sqlx::migrate!("./migrations/postgres").iter().map(|m| m.version).collect();
    assert_eq!(applied, migrations);
    assert_eq!(migrations, (1..=migrations.len() as i64).collect::<Vec<_>>());
    // And a restart finds nothing to do.
    schema.connect().await;
}

#[tokio::test]
async fn schema_names_are_checked_before_connecting() {
    let options = strato_store::PgStoreOptions { schema: Some("x; DROP TABLE jobs".into()), ..Default::default() };
    let nowhere = "postgres://nobody@127.0.0.1:1/none".parse().unwrap();
    let err = Store::connect_with(nowhere, options).await.err().expect("refused");
    assert!(err.to_string().contains("invalid schema name"), "{err}");
}
