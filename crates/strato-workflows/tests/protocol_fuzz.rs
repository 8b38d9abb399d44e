//! Bad input to the Step Functions JSON protocol gets AWS's error shape, never a 5xx or a hang: every operation is
//! sent random bodies over a real socket — its own field names and others, with values of the wrong type, empty,
//! huge, negative, ARNs of the wrong kind, of missing resources and of real ones (a state machine, an execution
//! and a Map Run exist). Seeded, so a failure repeats.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

mod common;

use common::ADMIN;

const ARN: &str = "arn:aws:states:us-east-1:000000000000";

const OPERATIONS: &[&str] = &[
    "CreateStateMachine",
    "DescribeStateMachine",
    "UpdateStateMachine",
    "DeleteStateMachine",
    "ListStateMachines",
    "ValidateStateMachineDefinition",
    "PublishStateMachineVersion",
    "ListStateMachineVersions",
    "DeleteStateMachineVersion",
    "CreateStateMachineAlias",
    "DescribeStateMachineAlias",
    "UpdateStateMachineAlias",
    "DeleteStateMachineAlias",
    "ListStateMachineAliases",
    "StartExecution",
    "StartSyncExecution",
    "DescribeExecution",
    "DescribeStateMachineForExecution",
    "ListExecutions",
    "GetExecutionHistory",
    "StopExecution",
    "RedriveExecution",
    "SendTaskSuccess",
    "SendTaskFailure",
    "SendTaskHeartbeat",
    "CreateActivity",
    "DescribeActivity",
    "ListActivities",
    "DeleteActivity",
    "TestState",
    "DescribeMapRun",
    "ListMapRuns",
    "UpdateMapRun",
    "NoSuchOperation",
];

const FIELDS: &[&str] = &[
    "name",
    "definition",
    "roleArn",
    "type",
    "stateMachineArn",
    "executionArn",
    "mapRunArn",
    "activityArn",
    "input",
    "output",
    "error",
    "cause",
    "taskToken",
    "maxResults",
    "nextToken",
    "statusFilter",
    "redriveFilter",
    "reverseOrder",
    "includeExecutionData",
    "maxConcurrency",
    "toleratedFailureCount",
    "toleratedFailurePercentage",
    "publish",
    "routingConfiguration",
    "stateMachineAliasArn",
    "stateMachineVersionArn",
    "description",
    "workerName",
    "variables",
    "inspectionLevel",
];

/// The field an operation is mostly about: a body usually names it, so the checks past "is it there" run too.
fn main_field(op: &str) -> &'static str {
    match op {
        o if o.contains("MapRun") && o != "ListMapRuns" => "mapRunArn",
        o if o.contains("Alias") && !o.starts_with("Create") && !o.starts_with("List") => "stateMachineAliasArn",
        "DeleteStateMachineVersion" => "stateMachineVersionArn",
        o if o.contains("Activity") && o != "ListActivities" && o != "CreateActivity" => "activityArn",
        o if o.starts_with("SendTask") => "taskToken",
        "DescribeExecution"
        | "DescribeStateMachineForExecution"
        | "GetExecutionHistory"
        | "StopExecution"
        | "RedriveExecution"
        | "ListMapRuns" => "executionArn",
        _ => "stateMachineArn",
    }
}

fn value(rng: &mut impl Rng, arns: &[String]) -> Value {
    match rng.random_range(0..14) {
        0 => Value::Null,
        1 => json!(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-5i64..2000)),
        3 => json!(1e300),
        4 => json!(-0.5),
        5 => json!(""),
        6 => json!("x".repeat(rng.random_range(1..3000))),
        7 => json!([1, "a", null]),
        8 => json!(json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}).to_string()),
        9 => json!("{\"StartAt\": 1}"),
        10 => json!(["RUNNING", "FAILED", "PENDING_REDRIVE", "REDRIVEN", "NOPE"][rng.random_range(0..5)]),
        _ => json!(arns[rng.random_range(0..arns.len())]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_random_bodies_with_aws_errors_never_a_server_error() {
    let common::Served { strato, workflows: w, pool, base, server, _dir } = common::serve(2).await;
    let base = format!("{base}/");

    // Real resources for the ARNs to name: a machine, an execution parked in a Distributed Map, its Map Run.
    let definition = json!({"StartAt": "Each", "States": {"Each": {"Type": "Map", "Label": "L", "ItemsPath": "$.items",
        "MaxConcurrency": 1, "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
        "StartAt": "Sleep", "States": {"Sleep": {"Type": "Wait", "Seconds": 3600, "End": true}}}, "End": true}}});
    w.create("fz", &definition.to_string(), "arn:aws:iam::000000000000:role/r", "STANDARD", "").await.unwrap();
    w.start_execution("fz", Some("x1"), r#"{"items": [1, 2]}"#, None).await.unwrap();
    let run = loop {
        if let Some(r) = w.map_runs("fz:x1").await.unwrap().into_iter().next() {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let arns: Vec<String> = vec![
        format!("{ARN}:stateMachine:fz"),
        format!("{ARN}:stateMachine:missing"),
        format!("{ARN}:stateMachine:fz:1"),
        format!("{ARN}:execution:fz:x1"),
        format!("{ARN}:execution:fz:nope"),
        format!("{ARN}:execution:fz/L:00000000-0000-0000-0000-000000000000"),
        w.map_run_arn(&run.key),
        format!("{ARN}:mapRun:fz/L:00000000-0000-0000-0000-000000000000"),
        format!("{ARN}:mapRun:fz"),
        format!("{ARN}:activity:act"),
        "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        "not an arn".into(),
    ];

    let c = reqwest::Client::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5f_0bad);
    let mut statuses = std::collections::BTreeMap::<(u16, &str), usize>::new();
    for round in 0..3000 {
        let op = OPERATIONS[round % OPERATIONS.len()];
        let mut body = Map::new();
        if rng.random_bool(0.7) {
            body.insert(main_field(op).to_string(), json!(arns[rng.random_range(0..arns.len())]));
        }
        for _ in 0..rng.random_range(0..5) {
            body.insert(FIELDS[rng.random_range(0..FIELDS.len())].to_string(), value(&mut rng, &arns));
        }
        // Never stop the execution the Map Run belongs to: later rounds keep a running run to aim at.
        if op == "StopExecution" || op == "DeleteStateMachine" {
            body.remove("executionArn");
            body.remove("stateMachineArn");
        }
        let text =
            if rng.random_bool(0.05) { "{not json".to_string() } else { Value::Object(body.clone()).to_string() };
        let r = tokio::time::timeout(
            Duration::from_secs(20),
            c.post(&base)
                .bearer_auth(ADMIN)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amz-target", format!("AWSStepFunctions.{op}"))
                .body(text.clone())
                .send(),
        )
        .await
        .unwrap_or_else(|_| panic!("{op} {text}: no answer in 20 s"))
        .unwrap();
        let status = r.status().as_u16();
        *statuses.entry((status, op)).or_default() += 1;
        let answer: Value = r.json().await.unwrap_or_else(|e| panic!("{op} {text}: the answer is not JSON: {e}"));
        assert!(status < 500, "{op} {text}: {status} {answer}");
        if status != 200 {
            assert_eq!(status, 400, "{op} {text}: {answer}");
            assert!(answer["__type"].is_string() && answer["message"].is_string(), "{op} {text}: {answer}");
        }
    }
    // The Map Run the bodies aimed at is whole: still running with its settings readable.
    let after = w.map_run(&run.key).await.unwrap();
    assert_eq!(after.executions.total, 2);
    assert!(statuses.keys().filter(|(s, _)| *s == 200).count() >= 10, "hardly anything was accepted: {statuses:?}");
    // After the barrage, the Map Run operations still answer well-formed calls.
    let call = |op: &'static str, body: Value| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let r = c
                .post(&base)
                .bearer_auth(ADMIN)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amz-target", format!("AWSStepFunctions.{op}"))
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{op}");
            r.json::<Value>().await.unwrap()
        }
    };
    let run_arn = w.map_run_arn(&run.key);
    assert_eq!(call("DescribeMapRun", json!({"mapRunArn": run_arn})).await["status"], "RUNNING");
    let runs = call("ListMapRuns", json!({"executionArn": format!("{ARN}:execution:fz:x1")})).await;
    assert_eq!(runs["mapRuns"][0]["mapRunArn"], json!(run_arn));
    call("UpdateMapRun", json!({"mapRunArn": run_arn, "maxConcurrency": 1})).await;
    let children = call("ListExecutions", json!({"mapRunArn": run_arn})).await;
    assert!(!children["executions"].as_array().unwrap().is_empty());
    w.stop_execution("fz:x1", None, None).await.unwrap();
    pool.shutdown().await;
    server.abort();
    strato.close().await;
}
