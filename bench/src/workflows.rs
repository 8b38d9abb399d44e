//! `strato-bench workflows [--database-url URL] [--chains N] [--map-items N] [--waiting N]`: standard executions
//! on SQLite and (with a URL) PostgreSQL, each backend on a fresh database, 8 workers on the `workflows` queue in
//! this process. One JSON line per measurement:
//!
//! 1. `pass_chain`: N executions of a chain of 100 Pass states started at once; transitions/s = N × 100 / (first
//!    start → last execution stored as SUCCEEDED).
//! 2. `latency_3_states`: Pass → Pass → Succeed, one execution at a time: start call → status SUCCEEDED seen by a
//!    reader polling the store every 0.2 ms; p50/p99.
//! 3. `map`: one Map over N items (a Pass per item; `MaxConcurrency` 0) → items/s and the wall time; `distributed_map`:
//!    the same as a Distributed Map (each item a child execution with its own history; `--dmap-items`, 2,000).
//! 4. `idle_cpu`: N executions parked in an hour-long Wait; the process's CPU time over 5 s of idling.
//! 5. `task_chain` (with `--lambda-python PATH`, an interpreter with `awslambdaric`): N executions of a chain of
//!    100 Task states, each invoking a no-op Python function (`return event`) through Strato's functions (8 warm
//!    instances, one per workflow worker); transitions/s as for `pass_chain`.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use strato_service::{QueueConcurrency, Strato, StratoOptions, WorkerPoolOptions};
use strato_store::{PgStoreOptions, Store};
use strato_workflows::{Workflows, WorkflowsSlot};

use crate::percentile;

fn werr(e: strato_workflows::WorkflowError) -> anyhow::Error {
    anyhow!("{e}")
}

async fn wait_done(w: &Workflows, key: &str, poll: Duration) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let x = w.execution(key).await.map_err(werr)?;
        if x.status != "RUNNING" {
            return Ok(x.status);
        }
        if Instant::now() > deadline {
            bail!("{key} did not finish");
        }
        tokio::time::sleep(poll).await;
    }
}

/// The process's CPU time (all threads, user + system), from /proc/self/stat (clock ticks of 10 ms).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// What one backend's run measures.
struct Plan {
    chains: usize,
    map_items: usize,
    dmap_items: usize,
    waiting: usize,
    lambda_python: Option<String>,
}

async fn one_backend(backend: &str, store: Store, plan: &Plan) -> Result<()> {
    let Plan { chains, map_items, dmap_items, waiting, .. } = *plan;
    let dir = tempfile::tempdir()?;
    let mut opts = StratoOptions::new(dir.path());
    opts.embedding_model = Some("/nonexistent/bench-model".into());
    let fslot = strato_functions::FunctionsSlot::default();
    let wslot = WorkflowsSlot::default();
    let blobs = strato_blob::BlobStore::local(&dir.path().join("blobs"))?;
    let strato = Strato::builder(opts)
        .register(fslot.registrar({
            let mut f = strato_functions::FunctionsOptions::new(dir.path().join("functions"));
            if let Some(py) = &plan.lambda_python {
                f.python = py.into();
            }
            f
        }))
        .register(wslot.registrar(fslot.clone()))
        .build(store, blobs)
        .map_err(|e| anyhow!(e.message))?;
    let w = wslot.get().ok_or_else(|| anyhow!("workflows not registered"))?;
    let pool = strato.start_workers(WorkerPoolOptions {
        queues: QueueConcurrency::parse("workflows=8").map_err(|e| anyhow!(e.message))?,
        ..Default::default()
    });
    let emit = |v: serde_json::Value| println!("{v}");

    // 1. Chains of 100 Pass states.
    let mut states = serde_json::Map::new();
    for i in 0..100 {
        let next = if i == 99 {
            json!({"Type": "Pass", "End": true})
        } else {
            json!({"Type": "Pass", "Next": format!("S{}", i + 1)})
        };
        states.insert(format!("S{i}"), next);
    }
    w.create("chain", &json!({"StartAt": "S0", "States": states}).to_string(), "", "STANDARD", "")
        .await
        .map_err(werr)?;
    let t = Instant::now();
    for i in 0..chains {
        w.start_execution("chain", Some(&format!("c{i}")), r#"{"n": 1}"#, None).await.map_err(werr)?;
    }
    for i in 0..chains {
        let s = wait_done(&w, &format!("chain:c{i}"), Duration::from_millis(1)).await?;
        if s != "SUCCEEDED" {
            bail!("chain c{i} ended {s}");
        }
    }
    let secs = t.elapsed().as_secs_f64();
    emit(json!({"bench": "workflows", "backend": backend, "measure": "pass_chain", "executions": chains,
        "states": 100, "seconds": secs, "transitions_per_s": (chains * 100) as f64 / secs}));

    // 1b. Chains of 100 Task states, each a no-op Python function.
    if plan.lambda_python.is_some() {
        let functions = fslot.get().ok_or_else(|| anyhow!("functions not registered"))?;
        let code = dir.path().join("noop");
        std::fs::create_dir_all(&code)?;
        std::fs::write(code.join("app.py"), "def handler(event, context):\n    return event\n")?;
        functions
            .create(strato_functions::NewFunction {
                name: "noop".into(),
                runtime: "python3.11".into(),
                handler: "app.handler".into(),
                environment: Default::default(),
                timeout: Some(10),
                memory_size: None,
                reserved_concurrency: None,
                description: String::new(),
                role: String::new(),
                code: strato_functions::NewCode::Directory(code),
                publish: false,
            })
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:noop";
        let mut states = serde_json::Map::new();
        for i in 0..100 {
            let s = if i == 99 {
                json!({"Type": "Task", "Resource": arn, "End": true})
            } else {
                json!({"Type": "Task", "Resource": arn, "Next": format!("T{}", i + 1)})
            };
            states.insert(format!("T{i}"), s);
        }
        w.create("tasks", &json!({"StartAt": "T0", "States": states}).to_string(), "", "STANDARD", "")
            .await
            .map_err(werr)?;
        // Warm the instances first (one per workflow worker, the process's limit of 8), as a steady workflow finds them.
        for i in 0..8 {
            w.start_execution("tasks", Some(&format!("warm{i}")), r#"{"n": 1}"#, None).await.map_err(werr)?;
        }
        for i in 0..8 {
            wait_done(&w, &format!("tasks:warm{i}"), Duration::from_millis(5)).await?;
        }
        let t = Instant::now();
        for i in 0..chains {
            w.start_execution("tasks", Some(&format!("c{i}")), r#"{"n": 1}"#, None).await.map_err(werr)?;
        }
        for i in 0..chains {
            let s = wait_done(&w, &format!("tasks:c{i}"), Duration::from_millis(2)).await?;
            if s != "SUCCEEDED" {
                let x = w.execution(&format!("tasks:c{i}")).await.map_err(werr)?;
                bail!("task chain c{i} ended {s}: {:?} {:?}", x.error, x.cause);
            }
        }
        let secs = t.elapsed().as_secs_f64();
        emit(json!({"bench": "workflows", "backend": backend, "measure": "task_chain", "executions": chains,
            "states": 100, "seconds": secs, "transitions_per_s": (chains * 100) as f64 / secs}));
    }

    // 2. Latency of a 3-state workflow.
    let three = json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "C"},
        "C": {"Type": "Succeed"}}});
    w.create("three", &three.to_string(), "", "STANDARD", "").await.map_err(werr)?;
    let mut ms = Vec::new();
    for i in 0..220 {
        let t = Instant::now();
        w.start_execution("three", Some(&format!("t{i}")), "{}", None).await.map_err(werr)?;
        wait_done(&w, &format!("three:t{i}"), Duration::from_micros(200)).await?;
        if i >= 20 {
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    ms.sort_by(f64::total_cmp);
    emit(json!({"bench": "workflows", "backend": backend, "measure": "latency_3_states", "runs": ms.len(),
        "p50_ms": percentile(&ms, 0.5), "p99_ms": percentile(&ms, 0.99)}));

    // 3. A Map over many items.
    let map = json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    w.create("map", &map.to_string(), "", "STANDARD", "").await.map_err(werr)?;
    let items: Vec<usize> = (0..map_items).collect();
    let t = Instant::now();
    w.start_execution("map", Some("m"), &json!({"items": items}).to_string(), None).await.map_err(werr)?;
    let s = wait_done(&w, "map:m", Duration::from_millis(5)).await?;
    let secs = t.elapsed().as_secs_f64();
    emit(json!({"bench": "workflows", "backend": backend, "measure": "map", "items": map_items, "status": s,
        "seconds": secs, "items_per_s": map_items as f64 / secs}));

    // 3b. A Distributed Map: each item a child execution of its own under a Map Run.
    let dmap = json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "ItemsPath": "$.items", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    w.create("dmap", &dmap.to_string(), "", "STANDARD", "").await.map_err(werr)?;
    let items: Vec<usize> = (0..dmap_items).collect();
    let t = Instant::now();
    w.start_execution("dmap", Some("d"), &json!({"items": items}).to_string(), None).await.map_err(werr)?;
    let s = wait_done(&w, "dmap:d", Duration::from_millis(5)).await?;
    let secs = t.elapsed().as_secs_f64();
    emit(json!({"bench": "workflows", "backend": backend, "measure": "distributed_map", "items": dmap_items,
        "status": s, "seconds": secs, "items_per_s": dmap_items as f64 / secs}));

    // 4. Idle CPU with executions parked in a Wait.
    let wait = json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": true}}});
    w.create("hold", &wait.to_string(), "", "STANDARD", "").await.map_err(werr)?;
    let t = Instant::now();
    for i in 0..waiting {
        w.start_execution("hold", Some(&format!("h{i}")), "{}", None).await.map_err(werr)?;
    }
    let start_s = t.elapsed().as_secs_f64();
    // Every one parked: its root frame's job ran and committed the Wait, leaving one job due in an hour.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let counts = strato.store().queue().counts().await?;
        let n = |status: &str| {
            counts.iter().filter(|(k, s, _)| k == "workflow.advance" && s == status).map(|(_, _, n)| *n).sum::<i64>()
        };
        if (n("QUEUED") == waiting as i64 && n("IN_PROGRESS") == 0) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c0 = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = cpu_seconds() - c0;
    emit(json!({"bench": "workflows", "backend": backend, "measure": "idle_cpu", "waiting": waiting,
        "start_all_s": start_s, "cpu_s_per_s": cpu / 5.0}));
    pool.shutdown().await;
    strato.close().await;
    Ok(())
}

/// Runs the workflow benchmarks.
pub async fn run(args: &[String]) -> Result<()> {
    let mut url = None;
    let (mut chains, mut map_items, mut dmap_items, mut waiting) = (20usize, 10_000usize, 2_000usize, 10_000usize);
    let mut lambda_python = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or_else(|| anyhow!("{a} needs a value"));
        match a.as_str() {
            "--database-url" => url = Some(val()?),
            "--chains" => chains = val()?.parse()?,
            "--map-items" => map_items = val()?.parse()?,
            "--dmap-items" => dmap_items = val()?.parse()?,
            "--waiting" => waiting = val()?.parse()?,
            "--lambda-python" => lambda_python = Some(val()?),
            other => bail!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let sqlite = Store::open_sqlite(&dir.path().join("meta.db")).await?;
    let plan = Plan { chains, map_items, dmap_items, waiting, lambda_python };
    one_backend("sqlite", sqlite, &plan).await?;
    if let Some(url) = url {
        let schema = format!("bench_wf_{}", uuid::Uuid::new_v4().simple());
        let connect: sqlx::postgres::PgConnectOptions = url.parse()?;
        let store =
            Store::connect_with(connect, PgStoreOptions { schema: Some(schema.clone()), ..Default::default() }).await?;
        let r = one_backend("postgres", store, &plan).await;
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut conn).await?;
        r?;
    }
    Ok(())
}
