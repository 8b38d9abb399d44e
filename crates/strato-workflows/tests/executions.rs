//! Standard executions run durably on the job queue, on SQLite and (when `STRATO_TEST_DATABASE_URL` is set) on
//! PostgreSQL: the conformance suite run again as standard executions, history events in AWS's shapes and order,
//! Parallel and Map as child frames, Wait, task tokens (success, failure, heartbeat timeout), stop, redrive of only
//! what failed, and executions' timeouts.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use strato_functions::{FunctionsOptions, FunctionsSlot};
use strato_jobs::WorkerPool;
use strato_service::{Strato, StratoOptions, WorkerPoolOptions};
use strato_workflows::durable::ExecutionRecord;
use strato_workflows::{Workflows, WorkflowsSlot};

struct Env {
    workflows: Workflows,
    pool: Option<WorkerPool>,
    _strato: Strato,
    _dir: tempfile::TempDir,
    _schema: Option<strato_store::testing::PgSchema>,
}

impl Env {
    async fn stop(mut self) {
        if let Some(p) = self.pool.take() {
            p.shutdown().await;
        }
    }
}

/// A service on `backend` with its workers running (four on the `workflows` queue).
async fn env(backend: &str) -> Option<Env> {
    let mut e = env_idle(backend).await?;
    e.pool = Some(e._strato.start_workers(WorkerPoolOptions {
        queues: strato_jobs::QueueConcurrency::parse("default=1,workflows=4").unwrap(),
        poll_interval: Duration::from_millis(200),
        ..Default::default()
    }));
    Some(e)
}

/// [`env`] with no workers yet.
async fn env_idle(backend: &str) -> Option<Env> {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StratoOptions::new(dir.path());
    opts.embedding_model = Some("/nonexistent/strato-test-model".into());
    let slot = FunctionsSlot::default();
    let wslot = WorkflowsSlot::default();
    let builder = Strato::builder(opts)
        .register(slot.registrar(FunctionsOptions::new(dir.path().join("functions"))))
        .register(wslot.registrar(slot.clone()));
    let (strato, schema) = match backend {
        "sqlite" => (builder.open().await.unwrap(), None),
        _ => {
            let url = strato_store::testing::database_url()?;
            let schema = strato_store::testing::PgSchema::new(url);
            let store = schema.connect().await;
            let blobs = strato_blob::BlobStore::local(&dir.path().join("blobs")).unwrap();
            (builder.build(store, blobs).unwrap(), Some(schema))
        }
    };
    Some(Env { workflows: wslot.get().unwrap(), pool: None, _strato: strato, _dir: dir, _schema: schema })
}

async fn backends() -> Vec<&'static str> {
    let mut b = vec!["sqlite"];
    if strato_store::testing::database_url().is_some() {
        b.push("postgres");
    }
    b
}

/// Waits until the execution is no longer running.
async fn finished(w: &Workflows, key: &str) -> ExecutionRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let x = w.execution(key).await.unwrap();
        if x.status != "RUNNING" {
            return x;
        }
        assert!(std::time::Instant::now() < deadline, "{key} still runs: {x:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn events(w: &Workflows, key: &str) -> Vec<Value> {
    w.history(key, false, true, 1000, None).await.unwrap().events
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect()
}

async fn create(w: &Workflows, name: &str, definition: &Value) {
    w.create(name, &definition.to_string(), "arn:aws:iam::000000000000:role/strato", "STANDARD", "").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_runs_the_same_as_standard_executions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        let mut started = Vec::new();
        for file in &files {
            let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            for (i, case) in cases.into_iter().enumerate() {
                let stem = file.file_stem().unwrap().to_string_lossy().to_string();
                let machine = format!("{stem}-{i}");
                if case["expected"]["refused"] == json!(true) {
                    let refused = w
                        .create(
                            &machine,
                            &case["definition"].to_string(),
                            "arn:aws:iam::000000000000:role/r",
                            "STANDARD",
                            "",
                        )
                        .await;
                    assert!(refused.is_err(), "{stem}:{} was accepted", case["name"]);
                    continue;
                }
                create(w, &machine, &case["definition"]).await;
                let x = w.start_execution(&machine, Some("run-1"), &case["input"].to_string(), None).await.unwrap();
                started.push((format!("{stem}:{}", case["name"].as_str().unwrap()), x, case["expected"].clone()));
            }
        }
        let mut failures = Vec::new();
        for (name, x, expected) in &started {
            let done = finished(w, &format!("{}:{}", x.machine, x.name)).await;
            let ok = match (expected.get("output"), expected.get("error")) {
                (Some(want), _) => {
                    done.status == "SUCCEEDED"
                        && serde_json::from_str::<Value>(done.output.as_deref().unwrap_or("null")).unwrap() == *want
                }
                (_, Some(want)) => {
                    done.status == "FAILED"
                        && done.error.as_deref() == want.as_str()
                        && expected.get("cause").is_none_or(|c| done.cause.as_deref() == c.as_str())
                }
                _ => false,
            };
            if !ok {
                failures.push(format!("{name}: expected {expected}, got {done:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{backend}: {} of {} failed:\n{}",
            failures.len(),
            started.len(),
            failures.join("\n")
        );
        assert!(started.len() >= 160);
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_has_aws_event_types_ids_and_previous_ids() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        // The Step Functions guide's "Hello World" shape: Pass, Choice, Wait, Succeed.
        create(
            w,
            "hello",
            &json!({"StartAt": "Greet", "States": {
                "Greet": {"Type": "Pass", "Result": {"ok": true}, "ResultPath": "$.greeting", "Next": "Check"},
                "Check": {"Type": "Choice", "Choices": [{"Variable": "$.greeting.ok", "BooleanEquals": true, "Next": "Pause"}],
                          "Default": "Done"},
                "Pause": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
                "Done": {"Type": "Succeed"}}}),
        )
        .await;
        let x = w.start_execution("hello", Some("e1"), r#"{"who": "world"}"#, None).await.unwrap();
        assert_eq!(x.status, "RUNNING");
        let again = w.start_execution("hello", Some("e1"), r#"{"who": "world"}"#, None).await.unwrap();
        assert_eq!(again.started, x.started, "the same name and input while running return the same execution");
        let done = finished(w, "hello:e1").await;
        assert_eq!(done.status, "SUCCEEDED");
        assert_eq!(
            serde_json::from_str::<Value>(done.output.as_deref().unwrap()).unwrap(),
            json!({"who": "world", "greeting": {"ok": true}})
        );
        assert!(done.stopped.unwrap() - done.started >= chrono::Duration::milliseconds(1000), "the Wait waited");
        let h = events(w, "hello:e1").await;
        assert_eq!(
            types(&h),
            [
                "ExecutionStarted",
                "PassStateEntered",
                "PassStateExited",
                "ChoiceStateEntered",
                "ChoiceStateExited",
                "WaitStateEntered",
                "WaitStateExited",
                "SucceedStateEntered",
                "SucceedStateExited",
                "ExecutionSucceeded"
            ]
        );
        // Ids count from 1; the first state follows the start with previousEventId 0 (as AWS records it), each
        // later event the one before it.
        let ids: Vec<u64> = h.iter().map(|e| e["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
        let prev: Vec<u64> = h.iter().map(|e| e["previousEventId"].as_u64().unwrap()).collect();
        assert_eq!(prev, [0, 0, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(h[0]["executionStartedEventDetails"]["input"], json!(r#"{"who": "world"}"#));
        assert_eq!(h[1]["stateEnteredEventDetails"]["name"], json!("Greet"));
        let output: Value = serde_json::from_str(h[2]["stateExitedEventDetails"]["output"].as_str().unwrap()).unwrap();
        assert_eq!(output, json!({"greeting": {"ok": true}, "who": "world"}));
        // Pages and reverse order.
        let p1 = w.history("hello:e1", true, false, 4, None).await.unwrap();
        assert_eq!(p1.events.len(), 4);
        assert_eq!(p1.events[0]["type"], json!("ExecutionSucceeded"));
        assert!(p1.events[0]["executionSucceededEventDetails"].get("output").is_none(), "no execution data");
        let p2 = w.history("hello:e1", true, false, 4, p1.next_token.as_deref()).await.unwrap();
        assert_eq!(p2.events[0]["id"], json!(6));
        // A name is used once.
        let err = w.start_execution("hello", Some("e1"), "{}", None).await.unwrap_err();
        assert!(err.to_string().contains("Execution Already Exists"), "{err}");
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_and_map_run_as_child_frames_with_their_events() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        create(
            w,
            "fanout",
            &json!({"StartAt": "Both", "States": {
                "Both": {"Type": "Parallel", "Next": "Each", "ResultPath": "$.branches", "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": true}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Pass", "InputPath": "$.items", "End": true}}}]},
                "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, "ResultPath": "$.doubled",
                    "ItemSelector": {"n.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
                    "ItemProcessor": {"StartAt": "Twice", "States": {
                        "Twice": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($.n, $.n)", "i.$": "$.i"}, "End": true}}},
                    "End": true}}}),
        )
        .await;
        w.start_execution("fanout", Some("f1"), r#"{"items": [1, 2, 3, 4, 5]}"#, None).await.unwrap();
        let done = finished(w, "fanout:f1").await;
        assert_eq!(done.status, "SUCCEEDED", "{done:?}");
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(out["branches"], json!(["a", [1, 2, 3, 4, 5]]));
        assert_eq!(
            out["doubled"],
            json!([{"v": 2, "i": 0}, {"v": 4, "i": 1}, {"v": 6, "i": 2}, {"v": 8, "i": 3}, {"v": 10, "i": 4}])
        );
        let h = events(w, "fanout:f1").await;
        let t = types(&h);
        let count = |k: &str| t.iter().filter(|x| *x == k).count();
        assert_eq!(count("ParallelStateEntered"), 1);
        assert_eq!(count("ParallelStateStarted"), 1);
        assert_eq!(count("ParallelStateSucceeded"), 1);
        assert_eq!(count("MapStateStarted"), 1);
        assert_eq!(count("MapIterationStarted"), 5);
        assert_eq!(count("MapIterationSucceeded"), 5);
        assert_eq!(count("PassStateEntered"), 7);
        assert_eq!(count("MapStateSucceeded"), 1);
        assert_eq!(t.last().unwrap(), "ExecutionSucceeded");
        let started = h.iter().find(|e| e["type"] == "MapStateStarted").unwrap();
        assert_eq!(started["mapStateStartedEventDetails"]["length"], json!(5));
        let mut indexes: Vec<u64> = h
            .iter()
            .filter(|e| e["type"] == "MapIterationSucceeded")
            .map(|e| e["mapIterationSucceededEventDetails"]["index"].as_u64().unwrap())
            .collect();
        indexes.sort();
        assert_eq!(indexes, [0, 1, 2, 3, 4]);
        // Ids are unique and increasing; each event follows an earlier one.
        for (i, ev) in h.iter().enumerate() {
            assert_eq!(ev["id"].as_u64().unwrap(), i as u64 + 1);
            assert!(ev["previousEventId"].as_u64().unwrap() < ev["id"].as_u64().unwrap());
        }
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_iteration_failure_fails_the_map_and_redrive_reruns_only_the_failed() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        // Item 3's Choice matches nothing (States.NoChoiceMatched) until the execution is redriven: the state reads
        // $$.Execution.RedriveCount, standing for a downstream fixed between the failure and the redrive.
        create(
            w,
            "items",
            &json!({"StartAt": "Each", "States": {
                "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                    "ItemSelector": {"n.$": "$$.Map.Item.Value"},
                    "ItemProcessor": {"StartAt": "Check", "States": {
                        "Check": {"Type": "Choice", "Choices": [{"Or": [
                            {"Not": {"Variable": "$.n", "NumericEquals": 3}},
                            {"Variable": "$$.Execution.RedriveCount", "NumericGreaterThanEquals": 1}],
                            "Next": "Ok"}]},
                        "Ok": {"Type": "Pass", "End": true}}},
                    "End": true}}}),
        )
        .await;
        w.start_execution("items", Some("m1"), r#"{"items": [1, 2, 3, 4]}"#, None).await.unwrap();
        let done = finished(w, "items:m1").await;
        assert_eq!(done.status, "FAILED");
        assert_eq!(done.error.as_deref(), Some("States.NoChoiceMatched"));
        let before = events(w, "items:m1").await;
        let t = types(&before);
        assert!(t.contains(&"MapIterationFailed".to_string()) && t.contains(&"MapStateFailed".to_string()), "{t:?}");
        assert_eq!(t.last().unwrap(), "ExecutionFailed");
        let succeeded_before = t.iter().filter(|x| *x == "MapIterationSucceeded").count();

        let redriven = w.redrive_execution("items:m1").await.unwrap();
        assert_eq!(redriven.redrive_count, 1);
        let done = finished(w, "items:m1").await;
        assert_eq!(done.status, "SUCCEEDED", "{done:?}");
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(
            out.as_array().unwrap().iter().map(|o| o["n"].clone()).collect::<Vec<_>>(),
            [json!(1), json!(2), json!(3), json!(4)]
        );
        let after = events(w, "items:m1").await;
        let new: Vec<&Value> = after[before.len()..].iter().collect();
        assert_eq!(new[0]["type"], json!("ExecutionRedriven"));
        assert_eq!(new[0]["executionRedrivenEventDetails"]["redriveCount"], json!(1));
        // Only the iterations that had not succeeded ran again.
        let reran = new.iter().filter(|e| e["type"] == "MapIterationSucceeded").count();
        assert_eq!(reran, 4 - succeeded_before, "{:?}", types(&after));
        assert!(w.redrive_execution("items:m1").await.unwrap_err().to_string().contains("SUCCEEDED"));
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_hold_no_worker_stop_aborts_and_a_failed_callback_is_caught() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        // The upload processor's shape: Parallel branches, one a callback task (.waitForTaskToken), Catch to a
        // mark-failed state. Its function does not exist here, so the callback fails at once and is caught; the
        // callback answered by a real function is in stepfunctions_api.rs.
        create(
            w,
            "upload",
            &json!({"StartAt": "Work", "States": {
                "Work": {"Type": "Parallel", "Next": "Done", "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkFailed"}],
                    "Branches": [
                    {"StartAt": "Transcribe", "States": {"Transcribe": {"Type": "Task",
                        "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "TimeoutSeconds": 900,
                        "Parameters": {"FunctionName": "missing-transcriber", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}},
                    {"StartAt": "Quick", "States": {"Quick": {"Type": "Pass", "End": true}}}]},
                "MarkFailed": {"Type": "Pass", "End": true},
                "Done": {"Type": "Succeed"}}}),
        )
        .await;
        w.start_execution("upload", Some("u1"), r#"{"video": "v.mp4"}"#, None).await.unwrap();
        let done = finished(w, "upload:u1").await;
        assert_eq!(done.status, "SUCCEEDED", "{done:?}");
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(out["error"]["Error"], json!("Lambda.ResourceNotFoundException"), "{out}");
        let h = events(w, "upload:u1").await;
        let t = types(&h);
        for k in [
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskFailed",
            "ParallelStateFailed",
            "ParallelStateExited",
        ] {
            assert!(t.contains(&k.to_string()), "{k} missing from {t:?}");
        }
        let scheduled = h.iter().find(|e| e["type"] == "TaskScheduled").unwrap();
        let d = &scheduled["taskScheduledEventDetails"];
        assert_eq!(d["resourceType"], json!("lambda"));
        assert_eq!(d["resource"], json!("invoke.waitForTaskToken"));
        assert_eq!(d["timeoutInSeconds"], json!(900));
        let params: Value = serde_json::from_str(d["parameters"].as_str().unwrap()).unwrap();
        assert!(params["Payload"]["token"].as_str().unwrap().len() >= 40, "the token is in the parameters");

        // An hour-long Wait holds no worker: the execution sits RUNNING while workers are idle, until stopped.
        create(
            w,
            "hold",
            &json!({"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
        )
        .await;
        w.start_execution("hold", Some("h1"), "{}", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(w.execution("hold:h1").await.unwrap().status, "RUNNING");
        let stopped = w.stop_execution("hold:h1", Some("Operator.Stopped"), Some("no longer needed")).await.unwrap();
        assert_eq!(stopped.status, "ABORTED");
        let h = events(w, "hold:h1").await;
        assert_eq!(types(&h), ["ExecutionStarted", "WaitStateEntered", "ExecutionAborted"]);
        assert_eq!(h[2]["executionAbortedEventDetails"]["error"], json!("Operator.Stopped"));
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_execution_past_its_timeout_times_out() {
    let e = env("sqlite").await.unwrap();
    let w = &e.workflows;
    create(
        w,
        "slow",
        &json!({"TimeoutSeconds": 1, "StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 30, "End": true}}}),
    )
    .await;
    w.start_execution("slow", Some("t1"), "{}", None).await.unwrap();
    let done = finished(w, "slow:t1").await;
    assert_eq!(done.status, "TIMED_OUT");
    assert_eq!(done.error.as_deref(), Some("States.Timeout"));
    assert_eq!(types(&events(w, "slow:t1").await).last().unwrap(), "ExecutionTimedOut");
    let page = w.list_executions("slow", Some("TIMED_OUT"), 0, None).await.unwrap();
    assert_eq!(page.executions.len(), 1);
    assert!(w.list_executions("slow", Some("RUNNING"), 0, None).await.unwrap().executions.is_empty());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_whose_worker_died_before_invoking_is_invoked_by_the_retry() {
    for backend in backends().await {
        let mut e = env_idle(backend).await.unwrap();
        let w = &e.workflows;
        create(
            w,
            "cb",
            &json!({"StartAt": "Callback", "States": {
                "Callback": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": "missing-fn", "Payload": {"token.$": "$$.Task.Token"}},
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": true},
                "Caught": {"Type": "Pass", "End": true}}}),
        )
        .await;
        w.start_execution("cb", Some("x"), "{}", None).await.unwrap();
        // What a worker killed right after committing the token leaves: the frame waiting on a token its resource
        // never received, and the job (not completed) due again once its lease lapses.
        let docs = w.store().documents();
        // The starting process parks the frame on its token itself (its worker's job queued); this test replaces
        // that with a dead worker's leftovers once it has.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let fdoc = loop {
            let d = docs.get("sfn-frame", "cb:x#r").await.unwrap().unwrap();
            if d.body["status"] == json!("Waiting") || std::time::Instant::now() > deadline {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let mut f = fdoc.body.clone();
        f["status"] = json!("Waiting");
        f["entered"] = json!(true);
        f["token"] = json!("tok-of-a-dead-worker-0123456789abcdefghijklmnop");
        f["params"] = json!({"FunctionName": "missing-fn", "Payload": {"token": "tok-of-a-dead-worker-0123456789abcdefghijklmnop"}});
        f["submitted"] = json!(false);
        docs.update("sfn-frame", "cb:x#r", fdoc.revision, &f).await.unwrap().unwrap();
        docs.create(
            "sfn-token",
            "tok-of-a-dead-worker-0123456789abcdefghijklmnop",
            &json!({"execution": "cb:x", "frame": "r"}),
        )
        .await
        .unwrap();
        e.pool = Some(e._strato.start_workers(WorkerPoolOptions {
            queues: strato_jobs::QueueConcurrency::parse("default=1,workflows=2").unwrap(),
            poll_interval: Duration::from_millis(200),
            ..Default::default()
        }));
        let w = &e.workflows;
        let done = finished(w, "cb:x").await;
        // The retry invoked the resource: its failure (no such function) reached the task and was caught.
        assert_eq!(done.status, "SUCCEEDED", "{done:?}");
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(out["Error"], json!("Lambda.ResourceNotFoundException"), "{out}");
        let t = types(&events(w, "cb:x").await);
        assert!(t.contains(&"TaskFailed".to_string()), "{t:?}");
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonata_variables_survive_parking_and_reach_map_iterations() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        let definition = json!({"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
            "Init": {"Type": "Pass", "Assign": {"total": "{% $states.input.base %}", "names": []}, "Next": "Nap"},
            // Parks (a committed frame, no worker): the variables must come back with it.
            "Nap": {"Type": "Wait", "Seconds": 1, "Assign": {"total": "{% $total + 1 %}"}, "Next": "Each"},
            "Each": {"Type": "Map", "Items": "{% $states.input.items %}", "ItemProcessor": {"StartAt": "Add",
                "States": {"Add": {"Type": "Pass", "Output": "{% $states.input + $total %}", "End": true}}},
                "Assign": {"sum": "{% $sum($states.result) %}"}, "Next": "Done"},
            "Done": {"Type": "Pass", "Output": {"sum": "{% $sum %}", "total": "{% $total %}"}, "End": true}}});
        create(w, "vars", &definition).await;
        let x = w.start_execution("vars", Some("v1"), r#"{"base": 10, "items": [1, 2]}"#, None).await.unwrap();
        let done = finished(w, &format!("{}:{}", x.machine, x.name)).await;
        assert_eq!(done.status, "SUCCEEDED", "{backend}: {:?}", done.error);
        assert_eq!(
            serde_json::from_str::<Value>(done.output.as_deref().unwrap()).unwrap(),
            json!({"sum": 25, "total": 11})
        );
        let h = events(w, "vars:v1").await;
        let exited = h.iter().find(|e| e["type"] == "PassStateExited").unwrap();
        assert_eq!(
            exited["stateExitedEventDetails"]["assignedVariables"],
            json!({"total": "10", "names": "[]"}),
            "{backend}: AWS records each assigned value as JSON text"
        );
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_tasks_wait_for_a_worker_time_out_and_are_not_handed_out_once_stale() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        let arn = w.activity_arn(&w.create_activity("review").await.unwrap().name);
        let definition = json!({"StartAt": "Review", "States": {"Review": {"Type": "Task", "Resource": arn,
            "TimeoutSeconds": 1, "Catch": [{"ErrorEquals": ["States.Timeout"], "Next": "Late"}], "End": true},
            "Late": {"Type": "Pass", "Result": "late", "End": true}}});
        create(w, "review-flow", &definition).await;
        // Nobody polls: the task times out after its second, and the catcher takes it.
        w.start_execution("review-flow", Some("t1"), r#"{"doc": 1}"#, None).await.unwrap();
        let done = finished(w, "review-flow:t1").await;
        assert_eq!((done.status.as_str(), done.output.as_deref()), ("SUCCEEDED", Some(r#""late""#)), "{backend}");
        let t = types(&events(w, "review-flow:t1").await);
        assert_eq!(&t[1..4], ["TaskStateEntered", "ActivityScheduled", "ActivityTimedOut"], "{backend}: {t:?}");
        // The timed-out task is dropped when a worker comes, not handed out.
        let none = w.get_activity_task("review", "late-worker", Duration::from_millis(300)).await.unwrap();
        assert!(none.is_none(), "{backend}: a spent task was handed out");
        // A live one is handed out once, with its input, to the first worker that asks.
        w.start_execution("review-flow", Some("t2"), r#"{"doc": 2}"#, None).await.unwrap();
        let (token, input) =
            w.get_activity_task("review", "w1", Duration::from_secs(10)).await.unwrap().expect("a queued task");
        assert_eq!(input, json!({"doc": 2}));
        assert!(w.get_activity_task("review", "w2", Duration::from_millis(300)).await.unwrap().is_none());
        w.send_task_success(&token, r#"{"ok": true}"#).await.unwrap();
        assert_eq!(finished(w, "review-flow:t2").await.output.as_deref(), Some(r#"{"ok":true}"#));
        // Polling an activity that does not exist is ActivityDoesNotExist, at once.
        let missing = w.get_activity_task("nope", "w", Duration::from_secs(30)).await.unwrap_err();
        assert!(missing.to_string().contains("Activity Does Not Exist"), "{missing}");
        e.stop().await;
    }
}

/// A counter's value in the service's metrics, for the given labels.
fn metric(strato: &Strato, name: &str, labels: &[(&str, &str)]) -> f64 {
    let families = strato.metrics().registry.gather();
    let Some(f) = families.iter().find(|f| f.name() == name) else { return 0.0 };
    f.get_metric()
        .iter()
        .find(|m| labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v)))
        .map_or(0.0, |m| m.get_counter().get_value())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_execution_is_a_dead_letter_whose_replay_redrives_it_and_metrics_count_it() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        let arn = w.activity_arn(&w.create_activity("check").await.unwrap().name);
        create(
            w,
            "checked",
            &json!({"StartAt": "Check", "States": {"Check": {"Type": "Task", "Resource": arn, "End": true}}}),
        )
        .await;
        w.start_execution("checked", Some("c1"), "{}", None).await.unwrap();
        let (token, _) = w.get_activity_task("check", "w", Duration::from_secs(10)).await.unwrap().unwrap();
        w.send_task_failure(&token, "Broken", "fix me").await.unwrap();
        assert_eq!(finished(w, "checked:c1").await.status, "FAILED");
        // The failure lands in the dead-letter queue (and so reaches the alert webhook), saying how to restart it.
        let queue = w.store().queue();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let letter = loop {
            let letters = queue.dead_letters(50).await.unwrap();
            if let Some(j) = letters.into_iter().find(|j| j.kind.as_str() == "workflow.failed") {
                break j;
            }
            assert!(std::time::Instant::now() < deadline, "{backend}: no dead letter for the failed execution");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let error = letter.error.clone().unwrap();
        assert!(error.contains("execution:checked:c1 FAILED: Broken: fix me"), "{backend}: {error}");
        assert!(error.contains("Replaying this dead letter redrives the execution"), "{error}");
        // Replaying it redrives the execution: the activity's task is queued again.
        queue.replay_dead_letter(&letter.id).await.unwrap().unwrap();
        let (token, _) = w.get_activity_task("check", "w", Duration::from_secs(30)).await.unwrap().expect("redriven");
        w.send_task_success(&token, r#""fixed""#).await.unwrap();
        let done = finished(w, "checked:c1").await;
        assert_eq!((done.status.as_str(), done.redrive_count), ("SUCCEEDED", 1), "{backend}");
        let sm = [("state_machine", "checked")];
        assert_eq!(metric(&e._strato, "strato_workflow_executions_started_total", &sm), 1.0, "{backend}");
        for status in ["FAILED", "SUCCEEDED"] {
            let labels = [("state_machine", "checked"), ("status", status)];
            assert_eq!(
                metric(&e._strato, "strato_workflow_executions_ended_total", &labels),
                1.0,
                "{backend} {status}"
            );
        }
        assert_eq!(metric(&e._strato, "strato_workflow_transitions_total", &sm), 1.0, "{backend}: one state exited");
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_executions_start_wait_and_report_their_children() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        let child = json!({"StartAt": "Nap", "States": {
            "Nap": {"Type": "Wait", "Seconds": 1, "Next": "Check"},
            "Check": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": true, "Next": "Done"}],
                "Default": "Broken"},
            "Done": {"Type": "Pass", "Parameters": {"child_saw.$": "$.n"}, "End": true},
            "Broken": {"Type": "Fail", "Error": "ChildBroke", "Cause": "not ok"}}});
        create(w, "child", &child).await;
        let child_arn = w.arn("child");
        let parent = json!({"StartAt": "Fire", "States": {
            "Fire": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
                "Parameters": {"StateMachineArn": child_arn, "Input": {"n": 0, "ok": true}}, "ResultPath": "$.fired",
                "Next": "Wait2"},
            "Wait2": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                "Parameters": {"StateMachineArn": child_arn, "Input": {"n.$": "$.n", "ok.$": "$.ok"}},
                "ResultSelector": {"status.$": "$.Status", "output.$": "$.Output"}, "ResultPath": "$.sync2",
                "Next": "WaitText"},
            "WaitText": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
                "Parameters": {"StateMachineArn": child_arn, "Name": "named-child", "Input": {"n": 2, "ok.$": "$.ok"}},
                "ResultSelector": {"output.$": "$.Output"}, "ResultPath": "$.sync",
                "Catch": [{"ErrorEquals": ["States.TaskFailed"], "ResultPath": "$.failed", "Next": "Caught"}],
                "End": true},
            "Caught": {"Type": "Pass", "End": true}}});
        create(w, "parent", &parent).await;
        // The children succeed: .sync:2 returns the child's output as JSON, .sync as JSON text.
        w.start_execution("parent", Some("p1"), r#"{"n": 7, "ok": true}"#, None).await.unwrap();
        let done = finished(w, "parent:p1").await;
        assert_eq!(done.status, "SUCCEEDED", "{backend}: {:?} {:?}", done.error, done.cause);
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        let fired = out["fired"]["ExecutionArn"].as_str().unwrap();
        assert!(fired.starts_with("arn:aws:states:us-east-1:000000000000:execution:child:"), "{fired}");
        assert!(out["fired"]["StartDate"].is_i64(), "{out}");
        assert_eq!(out["sync2"], json!({"status": "SUCCEEDED", "output": {"child_saw": 7}}), "{backend}");
        assert_eq!(out["sync"], json!({"output": "{\"child_saw\":2}"}), "{backend}");
        let named = w.execution("child:named-child").await.unwrap();
        assert_eq!(named.status, "SUCCEEDED");
        let t = types(&events(w, "parent:p1").await);
        assert!(t.contains(&"TaskSubmitted".to_string()) && t.contains(&"TaskSucceeded".to_string()), "{t:?}");
        // A child that fails fails its .sync task with States.TaskFailed, the child's description as the cause.
        w.start_execution("parent", Some("p2"), r#"{"n": 1, "ok": false}"#, None).await.unwrap();
        let done = finished(w, "parent:p2").await;
        assert_eq!(done.status, "FAILED", "{backend}: the .sync:2 child failed and nothing caught it there");
        assert_eq!(done.error.as_deref(), Some("States.TaskFailed"));
        let cause: Value = serde_json::from_str(done.cause.as_deref().unwrap()).unwrap();
        assert_eq!(
            (cause["Status"].as_str(), cause["Error"].as_str()),
            (Some("FAILED"), Some("ChildBroke")),
            "{cause}"
        );
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_tasks_call_allowed_hosts_only() {
    use axum::routing::{get, post};
    // A real HTTP API on a real socket.
    let app = axum::Router::new()
        .route(
            "/orders",
            post(|q: axum::extract::Query<std::collections::BTreeMap<String, String>>,
                  h: axum::http::HeaderMap,
                  axum::Json(body): axum::Json<Value>| async move {
                axum::Json(json!({"got": body, "page": q.get("page"), "token": h.get("x-token").and_then(|v| v.to_str().ok())}))
            }),
        )
        .route("/broken", get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let e = env("sqlite").await.unwrap();
    let w = &e.workflows;
    w.allow_http(vec![format!("127.0.0.1:{port}")]);
    let definition = json!({"StartAt": "Order", "States": {
        "Order": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": format!("http://127.0.0.1:{port}/orders"), "Method": "POST",
                "Headers": {"x-token": "secret-1"}, "QueryParameters": {"page": 2}, "RequestBody": {"n.$": "$.n"}},
            "ResultSelector": {"status.$": "$.StatusCode", "body.$": "$.ResponseBody"}, "ResultPath": "$.order",
            "Next": "Broken"},
        "Broken": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": format!("http://127.0.0.1:{port}/broken"), "Method": "GET"},
            "Catch": [{"ErrorEquals": ["States.Http.StatusCode.500"], "ResultPath": "$.broken", "Next": "Elsewhere"}],
            "End": true},
        "Elsewhere": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
            "Parameters": {"ApiEndpoint": "http://169.254.169.254/latest/meta-data/", "Method": "GET"},
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.refused", "Next": "Done"}], "End": true},
        "Done": {"Type": "Pass", "End": true}}});
    create(w, "http", &definition).await;
    w.start_execution("http", Some("h1"), r#"{"n": 5}"#, None).await.unwrap();
    let done = finished(w, "http:h1").await;
    assert_eq!(done.status, "SUCCEEDED", "{:?} {:?}", done.error, done.cause);
    let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
    assert_eq!(out["order"], json!({"status": 200, "body": {"got": {"n": 5}, "page": "2", "token": "secret-1"}}));
    assert_eq!(out["broken"]["Error"], "States.Http.StatusCode.500");
    let cause: Value = serde_json::from_str(out["broken"]["Cause"].as_str().unwrap()).unwrap();
    assert_eq!(
        (cause["StatusCode"].as_u64(), cause["ResponseBody"].as_str()),
        (Some(500), Some("down for maintenance"))
    );
    assert_eq!(out["refused"]["Error"], "States.Http.Socket");
    assert!(out["refused"]["Cause"].as_str().unwrap().contains("not on Strato's allow-list"), "{out}");
    e.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_reads_items_from_files_batches_them_and_writes_results() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        let blobs = e._strato.blobs();
        let (people, events_jsonl) = ("name,team\nann,a\nbo,b\ncy,a\n", "{\"n\": 1}\n{\"n\": 2}\n{\"n\": 3}\n");
        for (key, body) in [("files/data/people.csv", people), ("files/data/events.jsonl", events_jsonl)] {
            blobs.put(key, bytes::Bytes::from(body)).await.unwrap();
        }
        let definition = json!({"StartAt": "People", "States": {
            "People": {"Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                    "Parameters": {"Bucket": "data", "Key.$": "$.people"}},
                "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"source.$": "$.source"}},
                "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Count", "States": {"Count": {"Type": "Pass",
                    "Parameters": {"count.$": "States.ArrayLength($.Items)", "first.$": "$.Items[0].name",
                        "source.$": "$.BatchInput.source"}, "End": true}}},
                "ResultPath": "$.batches", "Next": "Events"},
            "Events": {"Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSONL", "MaxItems": 2}, "Parameters": {"Bucket": "data", "Key": "events.jsonl"}},
                "ItemProcessor": {"StartAt": "Double", "States": {"Double": {"Type": "Pass",
                    "Parameters": {"n.$": "States.MathAdd($.n, $.n)"}, "End": true}}},
                "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "out", "Prefix": "runs"}},
                "ResultPath": "$.written", "Next": "Listing"},
            "Listing": {"Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
                    "Parameters": {"Bucket": "data"}},
                "ItemSelector": {"key.$": "$$.Map.Item.Value.Key", "size.$": "$$.Map.Item.Value.Size"},
                "ItemProcessor": {"StartAt": "Keep", "States": {"Keep": {"Type": "Pass", "End": true}}},
                "ResultPath": "$.listed", "End": true}}});
        create(w, "files-map", &definition).await;
        w.start_execution("files-map", Some("f1"), r#"{"people": "people.csv", "source": "hr"}"#, None).await.unwrap();
        let done = finished(w, "files-map:f1").await;
        assert_eq!(done.status, "SUCCEEDED", "{backend}: {:?} {:?}", done.error, done.cause);
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(
            out["batches"],
            json!([{"count": 2, "first": "ann", "source": "hr"}, {"count": 1, "first": "cy", "source": "hr"}]),
            "{backend}"
        );
        assert_eq!(
            out["listed"],
            json!([{"key": "events.jsonl", "size": events_jsonl.len()}, {"key": "people.csv", "size": people.len()}])
        );
        let manifest_key = out["written"]["ResultWriterDetails"]["Key"].as_str().unwrap();
        assert_eq!(out["written"]["ResultWriterDetails"]["Bucket"], "out");
        let manifest: Value =
            serde_json::from_slice(&blobs.get(&format!("files/out/{manifest_key}")).await.unwrap()).unwrap();
        let succeeded = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"].as_str().unwrap();
        let results: Value =
            serde_json::from_slice(&blobs.get(&format!("files/out/{succeeded}")).await.unwrap()).unwrap();
        let outputs: Vec<Value> = results
            .as_array()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(r["Output"].as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(outputs, [json!({"n": 2}), json!({"n": 4})], "{backend}: MaxItems 2 read, each doubled");
        // A missing object is States.ItemReaderFailed.
        w.start_execution("files-map", Some("f2"), r#"{"people": "nobody.csv", "source": "hr"}"#, None).await.unwrap();
        let done = finished(w, "files-map:f2").await;
        assert_eq!(
            (done.status.as_str(), done.error.as_deref()),
            ("FAILED", Some("States.ItemReaderFailed")),
            "{backend}"
        );
        e.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_executions_history_expires_after_the_time_to_keep_it() {
    let e = env("sqlite").await.unwrap();
    let w = &e.workflows;
    w.keep_history_for(Some(Duration::from_secs(1)));
    // A callback task leaves a token behind (its function is missing: the task fails at once and is caught).
    create(
        w,
        "brief",
        &json!({"StartAt": "Call", "States": {
            "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": "missing", "Payload": {"t.$": "$$.Task.Token"}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "P"}], "End": true},
            "P": {"Type": "Pass", "End": true}}}),
    )
    .await;
    w.start_execution("brief", Some("b1"), "{}", None).await.unwrap();
    assert_eq!(finished(w, "brief:b1").await.status, "SUCCEEDED");
    assert!(!events(w, "brief:b1").await.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while w.execution("brief:b1").await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the ended execution was kept past its time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(w.history("brief:b1", false, true, 10, None).await.is_err(), "its history went with it");
    let left = w.store().documents().list("sfn-events", "brief:b1#").await.unwrap();
    assert!(left.is_empty(), "{} event chunks left", left.len());
    let tokens = w.store().documents().list("sfn-token", "").await.unwrap();
    assert!(tokens.is_empty(), "the execution's task tokens went with it: {tokens:?}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_distributed_map_runs_its_items_as_child_executions_within_tolerance() {
    for backend in backends().await {
        let e = env(backend).await.unwrap();
        let w = &e.workflows;
        // Item 2 fails; one failure is tolerated. A sibling branch's failure gives up a second Map Run that waits.
        create(
            w,
            "dmap",
            &json!({"StartAt": "Each", "States": {
                "Each": {"Type": "Map", "Label": "Items", "ItemsPath": "$.items", "MaxConcurrency": 3,
                    "ToleratedFailureCount": 1, "ResultPath": "$.out",
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                        "StartAt": "Two?", "States": {
                        "Two?": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericEquals": 2, "Next": "Boom"}],
                            "Default": "Ten"},
                        "Boom": {"Type": "Fail", "Error": "Two", "Cause": "two is not allowed"},
                        "Ten": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($, 10)"}, "End": true}}},
                    "Next": "Both"},
                "Both": {"Type": "Parallel", "ResultPath": "$.both", "Next": "Done", "Catch": [{"ErrorEquals": ["Sibling"], "ResultPath": "$.caught", "Next": "Done"}],
                    "Branches": [
                        {"StartAt": "Slow", "States": {"Slow": {"Type": "Map", "ItemsPath": "$.items", "End": true,
                            "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                                "StartAt": "Sleep", "States": {"Sleep": {"Type": "Wait", "Seconds": 600, "End": true}}}}}},
                        {"StartAt": "Later", "States": {
                            "Later": {"Type": "Wait", "Seconds": 1, "Next": "Fail"},
                            "Fail": {"Type": "Fail", "Error": "Sibling", "Cause": "gives up the other branch"}}}]},
                "Done": {"Type": "Succeed"}}}),
        )
        .await;
        w.start_execution("dmap", Some("x1"), r#"{"items": [1, 2, 3, 4]}"#, None).await.unwrap();
        let done = finished(w, "dmap:x1").await;
        assert_eq!(done.status, "SUCCEEDED", "{backend}: {:?} {:?}", done.error, done.cause);
        let out: Value = serde_json::from_str(done.output.as_deref().unwrap()).unwrap();
        assert_eq!(
            out["out"],
            json!([{"n": 11}, {"Error": "Two", "Cause": "two is not allowed"}, {"n": 13}, {"n": 14}]),
            "{backend}: results in item order, the tolerated failure as its error"
        );
        assert_eq!(out["caught"]["Error"], "Sibling");
        let t = types(&events(w, "dmap:x1").await);
        assert!(!t.iter().any(|t| t.starts_with("MapIteration")), "{backend}: no iteration events: {t:?}");
        let runs = w.map_runs("dmap:x1").await.unwrap();
        assert_eq!(runs.len(), 2, "{backend}");
        let (items, slow) = (&runs[0], &runs[1]);
        assert!(items.key.starts_with("dmap/Items:"), "{}", items.key);
        assert_eq!(items.status, "SUCCEEDED");
        assert_eq!(
            (items.executions.succeeded, items.executions.failed, items.executions.total, items.executions.running),
            (3, 1, 4, 0)
        );
        assert_eq!(slow.status, "ABORTED", "{backend}: the given-up branch's Map Run is aborted");
        assert_eq!((slow.executions.aborted, slow.executions.running), (4, 0), "{backend}");
        let started = t.iter().filter(|t| *t == "MapRunStarted").count();
        let ended: Vec<&String> = t.iter().filter(|t| t.starts_with("MapRun") && *t != "MapRunStarted").collect();
        assert_eq!((started, ended.len()), (2, 2), "{backend}: {t:?}");
        assert!(ended.contains(&&"MapRunSucceeded".to_string()) && ended.contains(&&"MapRunAborted".to_string()));
        // Each child has a history of its own, from its input to its end.
        for (child, n) in w.map_run_children(&items.key).await.unwrap() {
            assert_eq!(n, 1);
            let key = format!("{}:{}", child.machine, child.name);
            let h = types(&events(w, &key).await);
            assert_eq!(h.first().map(String::as_str), Some("ExecutionStarted"), "{backend}: {h:?}");
            let last = if child.input == "2" { "ExecutionFailed" } else { "ExecutionSucceeded" };
            assert_eq!(h.last().map(String::as_str), Some(last), "{backend} {}: {h:?}", child.input);
        }
        for (child, _) in w.map_run_children(&slow.key).await.unwrap() {
            assert_eq!(child.status, "ABORTED", "{backend}");
        }
        e.stop().await;
    }
}

#[tokio::test]
async fn distributed_map_definitions_are_checked_as_aws_checks_them() {
    let e = env_idle("sqlite").await.unwrap();
    let w = &e.workflows;
    let map = |config: Value, label: Option<&str>| {
        let mut m = json!({"Type": "Map", "End": true, "ItemProcessor": {"ProcessorConfig": config, "StartAt": "P",
            "States": {"P": {"Type": "Pass", "End": true}}}});
        if let Some(l) = label {
            m["Label"] = json!(l);
        }
        json!({"StartAt": "M", "States": {"M": m}}).to_string()
    };
    let ok = map(json!({"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}), Some("my-label_1"));
    assert!(w.validate(&ok).is_ok());
    for (definition, needle) in [
        (map(json!({"Mode": "DISTRIBUTED"}), None), "ExecutionType"),
        (map(json!({"Mode": "PARALLEL"}), None), "INLINE or DISTRIBUTED"),
        (map(json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}), Some("has space")), "Label"),
        (map(json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}), Some("a:b")), "Label"),
        (map(json!({"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}), Some(&"x".repeat(41))), "1 to 40"),
    ] {
        let problems = w.validate(&definition).unwrap_err();
        assert!(problems.iter().any(|p| p.message.contains(needle)), "{definition}: {problems:?}");
    }
    // Labels are unique within a definition.
    let twice = json!({"StartAt": "A", "States": {
        "A": {"Type": "Map", "Label": "same", "Next": "B", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED",
            "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}},
        "B": {"Type": "Map", "Label": "same", "End": true, "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED",
            "ExecutionType": "STANDARD"}, "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}}}});
    let problems = w.validate(&twice.to_string()).unwrap_err();
    assert!(problems.iter().any(|p| p.message.contains("unique")), "{problems:?}");
}
