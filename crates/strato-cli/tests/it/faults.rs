//! Fault tests with real processes: workers killed with SIGKILL mid-job, and many concurrent submissions through
//! several API processes and workers sharing one database.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use strato_ml::Example;
use strato_service::{DataSource, TrainRequest};
use strato_types::{AttemptEnd, JobStatus};

use crate::backend::{on_both_backends, Backend};
use crate::common::{data, model_dir, strato_options, Options};

/// A `strato` child process, killed (SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(backend: &Backend, data_dir: &Path, model: &Path, args: &[&str]) -> Proc {
    let (backend_args, env) = backend.process_args();
    let child = Command::new(env!("CARGO_BIN_EXE_strato"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--embedding-model")
        .arg(model)
        .args(backend_args)
        .envs(env)
        .args(args)
        .env("STRATO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn strato");
    Proc(child)
}

fn clinc_examples(n: usize) -> Vec<Example> {
    let csv = std::fs::read_to_string(data("clinc150.csv")).unwrap();
    csv::Reader::from_reader(csv.as_bytes())
        .records()
        .take(n)
        .map(|r| {
            let r = r.unwrap();
            Example { text: r[0].to_string(), label: r[1].to_string(), split: None }
        })
        .collect()
}

on_both_backends!(
    worker_killed_mid_training_is_finished_by_another_after_the_lease,
    a_thousand_jobs_through_two_api_processes_and_three_workers_end_exactly_once,
    worker_killed_during_a_map_of_200_items_the_execution_ends_with_each_state_entered_once,
    worker_killed_during_a_distributed_map_of_200_items_each_child_ends_once_with_its_history_whole,
    worker_killed_while_executions_wait_on_task_tokens_each_task_is_scheduled_and_answered_once,
);

async fn worker_killed_mid_training_is_finished_by_another_after_the_lease(backend: Backend) {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // This process is an API-only node: it queues, the worker processes run.
    let api = backend.open(strato_options(&Options::new(dir.path(), model.clone()))).await;
    let job = api
        .models()
        .submit_training(TrainRequest {
            model_id: "victim".into(),
            data: DataSource::Inline(clinc_examples(2500)),
            params: Default::default(),
            force_update: false,
            meta: json!({}),
            idempotency_key: None,
        })
        .await
        .unwrap();

    let mut a = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    let start = Instant::now();
    let owner_a = loop {
        let j = api.jobs().get(&job.id).await.unwrap();
        if j.status == JobStatus::InProgress && j.progress > 0 {
            break j.lease_owner.unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "worker A never got going: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _b = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    a.0.kill().unwrap(); // SIGKILL: no shutdown hook, no release — only the lease can save the job.
    let _ = a.0.wait();

    let done = loop {
        let j = api.jobs().get(&job.id).await.unwrap();
        if j.status.is_final() {
            break j;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "not finished after the kill: {j:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done.status, JobStatus::Success, "{done:?}");
    assert_eq!(done.attempts, 2, "{done:?}");
    let attempts = api.jobs().with_attempts(&job.id).await.unwrap().1;
    let log: Vec<_> = attempts.iter().map(|a| (a.worker.clone(), a.outcome)).collect();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0], (owner_a.clone(), AttemptEnd::LeaseExpired), "{log:?}");
    assert_eq!(log[1].1, AttemptEnd::Succeeded, "{log:?}");
    assert_ne!(log[1].0, owner_a, "another worker finished it");
    let versions = api.models().get("victim").await.unwrap().versions;
    assert_eq!(versions.len(), 1, "exactly one version: {versions:?}");
    assert_eq!(api.models().get("victim").await.unwrap().model.active_version, Some(1));
}

async fn a_thousand_jobs_through_two_api_processes_and_three_workers_end_exactly_once(backend: Backend) {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ports = [free_port(), free_port()];
    // Two API processes (one also runs a worker), and a separate worker process with two workers: 3 workers.
    let _api1 =
        spawn(&backend, dir.path(), &model, &["serve", "--addr", &format!("127.0.0.1:{}", ports[0]), "--workers", "1"]);
    let _api2 =
        spawn(&backend, dir.path(), &model, &["serve", "--addr", &format!("127.0.0.1:{}", ports[1]), "--workers", "0"]);
    let _w = spawn(&backend, dir.path(), &model, &["worker", "--workers", "2"]);
    let client = reqwest::Client::new();
    for p in ports {
        let start = Instant::now();
        while client.get(format!("http://127.0.0.1:{p}/healthz")).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "server on {p} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // 4 client processes, 250 jobs each, alternating between the API processes. Each job takes 10 ms: instant
    // jobs are drained by whichever worker wakes first (one worker does ~10,000 a second on SQLite), which would
    // say nothing about several processes sharing the queue.
    let ports_arg = format!("{},{}", ports[0], ports[1]);
    let clients: Vec<Child> = (0..4)
        .map(|c| {
            Command::new(std::env::current_exe().unwrap())
                .args(["faults::submit_jobs_as_a_client_process", "--exact", "--ignored", "--nocapture"])
                .env(CLIENT_ENV, format!("{c}:{ports_arg}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn a client process")
        })
        .collect();
    let mut ids = Vec::new();
    for c in clients {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "a client process failed: {:?}", out.status);
        let text = String::from_utf8(out.stdout).unwrap();
        let mine: Vec<String> = text.lines().filter_map(|l| l.strip_prefix("JOB ")).map(str::to_string).collect();
        assert_eq!(mine.len(), 250, "each client submits 250 jobs: {text}");
        ids.extend(mine);
    }
    assert_eq!(ids.len(), 1000);

    // Count checks straight in the database.
    let store = backend.store(dir.path()).await;
    let start = Instant::now();
    loop {
        let f = strato_store::JobFilter { status: Some(JobStatus::Success), limit: Some(5000), ..Default::default() };
        let done = store.queue().list(&f).await.unwrap().len();
        if done == 1000 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{done}/1000 finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut workers = std::collections::HashSet::new();
    for id in &ids {
        let j = store.queue().get(id).await.unwrap().unwrap();
        let log = store.queue().attempts(id).await.unwrap();
        let succeeded: Vec<_> = log.iter().filter(|a| a.outcome == AttemptEnd::Succeeded).collect();
        assert_eq!((j.status, j.attempts, succeeded.len()), (JobStatus::Success, 1, 1), "{id}: {log:?}");
        assert!(log.iter().all(|a| a.started_at <= j.finished_at.unwrap()), "nothing ran after success: {log:?}");
        workers.insert(succeeded[0].worker.clone());
    }
    assert_eq!(workers.len(), 3, "all three workers took part: {workers:?}");
}

/// Tells [`submit_jobs_as_a_client_process`] who it is: `CLIENT:PORT,PORT`.
const CLIENT_ENV: &str = "STRATO_TEST_JOB_CLIENT";

/// Not a test of its own: the client process of the 1000-job test (which runs this binary with this test's name).
/// Submits 250 no-op jobs, alternating between the two API processes, and prints each job's id.
#[tokio::test]
#[ignore = "a client process of a_thousand_jobs_…; runs only when that test starts it"]
#[allow(clippy::print_stdout, reason = "the parent test reads the job ids from this process's stdout")]
async fn submit_jobs_as_a_client_process() {
    let spec = std::env::var(CLIENT_ENV).expect("started by the 1000-job test");
    let (c, ports) = spec.split_once(':').unwrap();
    let c: usize = c.parse().unwrap();
    let ports: Vec<&str> = ports.split(',').collect();
    let client = reqwest::Client::new();
    for i in 0..250 {
        let port = ports[(c + i) % ports.len()];
        let r = client
            .post(format!("http://127.0.0.1:{port}/v1/jobs"))
            .json(&json!({"kind": "noop", "payload": {"client": c, "i": i, "sleep_ms": 10}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: serde_json::Value = r.json().await.unwrap();
        println!("JOB {}", v["id"].as_str().unwrap());
    }
}

/// Workflows over `api`'s store, for a test process that starts executions and reads them (workers run them).
fn workflows_of(api: &strato_service::Strato, dir: &Path) -> strato_workflows::Workflows {
    let functions = strato_functions::Functions::new(
        api.store().clone(),
        api.blobs().clone(),
        strato_functions::FunctionsOptions::new(dir.join("functions")),
    );
    strato_workflows::Workflows::new(api.store().clone(), functions)
}

/// Waits (up to 180 s from `start`) for an execution to end.
async fn ended(
    w: &strato_workflows::Workflows,
    key: &str,
    start: Instant,
) -> strato_workflows::durable::ExecutionRecord {
    loop {
        let x = w.execution(key).await.unwrap();
        if x.status != "RUNNING" {
            return x;
        }
        assert!(start.elapsed() < Duration::from_secs(180), "not finished after the kill: {x:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn worker_killed_during_a_map_of_200_items_the_execution_ends_with_each_state_entered_once(backend: Backend) {
    // Worker processes load the embedding model at start, whatever they run.
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    // This process only starts the execution and reads it; the worker processes run it.
    let api = backend.open(strato_options(&Options::new(dir.path(), model.clone()))).await;
    let w = workflows_of(&api, dir.path());
    let definition = json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 40, "ResultPath": "$.results",
            "ItemSelector": {"n.$": "$$.Map.Item.Value"},
            "ItemProcessor": {"StartAt": "Before", "States": {
                "Before": {"Type": "Pass", "Parameters": {"n.$": "$.n", "sq.$": "States.MathAdd($.n, $.n)"}, "Next": "Pause"},
                "Pause": {"Type": "Wait", "Seconds": 1, "Next": "After"},
                "After": {"Type": "Pass", "End": true}}},
            "Next": "Done"},
        "Done": {"Type": "Succeed"}}});
    w.create("fanout", &definition.to_string(), "", "STANDARD", "").await.unwrap();
    let items: Vec<u64> = (0..200).collect();
    w.start_execution("fanout", Some("run"), &json!({"items": items}).to_string(), None).await.unwrap();
    let iterations_done =
        |events: &[serde_json::Value]| events.iter().filter(|e| e["type"] == "MapIterationSucceeded").count();
    let history = || async { w.history("fanout:run", false, true, 1000, None).await.unwrap().events };
    let all_history = || async {
        let mut out = Vec::new();
        let mut next = None;
        loop {
            let page = w.history("fanout:run", false, true, 1000, next.as_deref()).await.unwrap();
            out.extend(page.events);
            match page.next_token {
                Some(t) => next = Some(t),
                None => return out,
            }
        }
    };

    let mut a = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    let start = Instant::now();
    loop {
        let done = iterations_done(&history().await);
        if done >= 40 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "worker A never got going ({done} iterations)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.0.kill().unwrap(); // SIGKILL mid-Map: its leases lapse, another worker takes the frames over.
    let _ = a.0.wait();
    let _b = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    let x = ended(&w, "fanout:run", start).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    let out: serde_json::Value = serde_json::from_str(x.output.as_deref().unwrap()).unwrap();
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 200);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, &json!({"n": i, "sq": 2 * i}), "iteration {i}");
    }
    let events = all_history().await;
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    // Every state of every iteration entered exactly once: nothing committed ran again after the kill.
    assert_eq!(count("MapIterationStarted"), 200);
    assert_eq!(count("MapIterationSucceeded"), 200);
    assert_eq!(count("WaitStateEntered"), 200);
    assert_eq!(count("WaitStateExited"), 200);
    assert_eq!(count("PassStateEntered"), 400);
    assert_eq!(count("MapStateEntered"), 1);
    assert_eq!(count("MapStateSucceeded"), 1);
    assert_eq!(count("ExecutionSucceeded"), 1);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["id"].as_u64().unwrap(), i as u64 + 1, "ids are gapless and unique");
    }
    let mut entered: Vec<(u64, String)> = events
        .iter()
        .filter(|e| e["type"] == "MapIterationStarted")
        .map(|e| (e["mapIterationStartedEventDetails"]["index"].as_u64().unwrap(), String::new()))
        .collect();
    entered.sort();
    entered.dedup();
    assert_eq!(entered.len(), 200, "each iteration started once");
}

async fn worker_killed_during_a_distributed_map_of_200_items_each_child_ends_once_with_its_history_whole(
    backend: Backend,
) {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let api = backend.open(strato_options(&Options::new(dir.path(), model.clone()))).await;
    let w = workflows_of(&api, dir.path());
    let definition = json!({"StartAt": "Each", "States": {
        "Each": {"Type": "Map", "Label": "Fan", "ItemsPath": "$.items", "MaxConcurrency": 40, "ResultPath": "$.results",
            "ItemSelector": {"n.$": "$$.Map.Item.Value"},
            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                "StartAt": "Before", "States": {
                "Before": {"Type": "Pass", "Parameters": {"n.$": "$.n", "sq.$": "States.MathAdd($.n, $.n)"}, "Next": "Pause"},
                "Pause": {"Type": "Wait", "Seconds": 1, "Next": "After"},
                "After": {"Type": "Pass", "End": true}}},
            "End": true}}});
    w.create("dfanout", &definition.to_string(), "", "STANDARD", "").await.unwrap();
    let items: Vec<u64> = (0..200).collect();
    w.start_execution("dfanout", Some("run"), &json!({"items": items}).to_string(), None).await.unwrap();
    let succeeded = || async {
        let runs = w.map_runs("dfanout:run").await.unwrap();
        runs.first().map_or(0, |r| r.executions.succeeded)
    };

    let mut a = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    let start = Instant::now();
    while succeeded().await < 40 {
        assert!(start.elapsed() < Duration::from_secs(60), "worker A never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.0.kill().unwrap(); // SIGKILL mid-run: children and the parent's counting are taken over by another worker.
    let _ = a.0.wait();
    let _b = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    let x = ended(&w, "dfanout:run", start).await;
    assert_eq!(x.status, "SUCCEEDED", "{x:?}");
    let out: serde_json::Value = serde_json::from_str(x.output.as_deref().unwrap()).unwrap();
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), 200);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, &json!({"n": i, "sq": 2 * i}), "item {i}");
    }
    let parent: Vec<String> = w
        .history("dfanout:run", false, true, 1000, None)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        parent,
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunSucceeded",
            "MapStateSucceeded",
            "MapStateExited",
            "ExecutionSucceeded"
        ],
        "the parent counted each child once"
    );
    let run = &w.map_runs("dfanout:run").await.unwrap()[0];
    assert_eq!((run.status.as_str(), run.executions.succeeded, run.executions.total), ("SUCCEEDED", 200, 200));
    let children = w.map_run_children(&run.key).await.unwrap();
    assert_eq!(children.len(), 200, "one child per item");
    // Every child's states entered exactly once, its event ids gapless.
    let whole = [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "WaitStateEntered",
        "WaitStateExited",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ];
    for (child, _) in children {
        let key = format!("{}:{}", child.machine, child.name);
        let events = w.history(&key, false, true, 1000, None).await.unwrap().events;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, whole, "{key}");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["id"].as_u64().unwrap(), i as u64 + 1, "{key}: ids gapless and unique");
        }
    }
}

async fn worker_killed_while_executions_wait_on_task_tokens_each_task_is_scheduled_and_answered_once(backend: Backend) {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let api = backend.open(strato_options(&Options::new(dir.path(), model.clone()))).await;
    // This process is the client and the activity worker outside Strato; the worker processes run the executions.
    let w = workflows_of(&api, dir.path());
    let activity = w.activity_arn(&w.create_activity("approve").await.unwrap().name);
    let definition = json!({"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Parameters": {"n.$": "$.n"}, "Next": "Approve"},
        "Approve": {"Type": "Task", "Resource": activity, "HeartbeatSeconds": 120, "ResultPath": "$.approval",
            "Next": "Done"},
        "Done": {"Type": "Pass", "End": true}}});
    w.create("approvals", &definition.to_string(), "", "STANDARD", "").await.unwrap();
    const N: usize = 60;
    for i in 0..N {
        w.start_execution("approvals", Some(&format!("a{i}")), &json!({"n": i}).to_string(), None).await.unwrap();
    }
    let scheduled = |w: &strato_workflows::Workflows| {
        let w = w.clone();
        async move {
            let mut n = 0;
            for i in 0..N {
                let h = w.history(&format!("approvals:a{i}"), false, true, 1000, None).await.unwrap().events;
                n += h.iter().filter(|e| e["type"] == "ActivityScheduled").count();
            }
            n
        }
    };

    // Worker A is killed while it parks the executions on their tokens (some parked, some not yet).
    let mut a = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    let start = Instant::now();
    while scheduled(&w).await < N / 3 {
        assert!(start.elapsed() < Duration::from_secs(60), "worker A never got going");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.0.kill().unwrap();
    let _ = a.0.wait();
    // While no worker runs, tasks already queued are taken and answered: the answers wait in the queue.
    let mut tokens = std::collections::BTreeSet::new();
    let mut answer = |token: String, input: serde_json::Value| {
        assert!(tokens.insert(token.clone()), "a task was handed out twice");
        (token, input)
    };
    let mut early = Vec::new();
    while let Some((t, input)) = w.get_activity_task("approve", "outside", Duration::from_millis(300)).await.unwrap() {
        early.push(answer(t, input));
    }
    for (t, input) in &early {
        w.send_task_success(t, &json!({"approved": input["n"]}).to_string()).await.unwrap();
    }
    eprintln!("at the kill: {} of {N} tasks scheduled; {} answered before worker B", scheduled(&w).await, early.len());
    // Worker B takes over: the rest park, and every task is answered once.
    let _b = spawn(&backend, dir.path(), &model, &["worker", "--job-lease-secs", "2"]);
    let mut answered = early.len();
    while answered < N {
        assert!(start.elapsed() < Duration::from_secs(180), "only {answered} tasks were handed out");
        if let Some((t, input)) = w.get_activity_task("approve", "outside", Duration::from_secs(5)).await.unwrap() {
            let (t, input) = answer(t, input);
            w.send_task_success(&t, &json!({"approved": input["n"]}).to_string()).await.unwrap();
            answered += 1;
        }
    }
    for i in 0..N {
        let key = format!("approvals:a{i}");
        let x = loop {
            let x = w.execution(&key).await.unwrap();
            if x.status != "RUNNING" {
                break x;
            }
            assert!(start.elapsed() < Duration::from_secs(240), "{key} not finished: {x:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(x.status, "SUCCEEDED", "{x:?}");
        let out: serde_json::Value = serde_json::from_str(x.output.as_deref().unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"n": i, "approval": {"approved": i}}),
            "{key}: the answer applied once, to its own task"
        );
        let events = w.history(&key, false, true, 1000, None).await.unwrap().events;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "ExecutionStarted",
                "PassStateEntered",
                "PassStateExited",
                "TaskStateEntered",
                "ActivityScheduled",
                "ActivityStarted",
                "ActivitySucceeded",
                "TaskStateExited",
                "PassStateEntered",
                "PassStateExited",
                "ExecutionSucceeded"
            ],
            "{key}: each state entered once, its task scheduled once"
        );
    }
    assert!(
        w.get_activity_task("approve", "outside", Duration::from_millis(300)).await.unwrap().is_none(),
        "no task is left over"
    );
}
