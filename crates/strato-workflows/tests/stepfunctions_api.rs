//! The Step Functions JSON protocol against a running Strato, driven by AWS's own clients (boto3 and the AWS CLI
//! from PyPI) with access keys: state machines created, validated, described, listed, updated and deleted; express
//! executions whose Task states call a real Python function (through AWS's runtime client), directly and through
//! `arn:aws:states:::lambda:invoke`; TestState on single states; AWS's error shapes; and another team's state
//! machine refused.
//!
//! Needs `STRATO_TEST_LAMBDA_PYTHON`: an interpreter with `awslambdaric`, `boto3` and `awscli` (`.ci/run` makes
//! one); the test says so and returns when it is unset.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use serde_json::{json, Value};
use strato_functions::{FunctionsOptions, FunctionsSlot};
use strato_http::auth::AuthOptions;
use strato_http::HttpOptions;
use strato_service::{NewApiKey, Strato, StratoOptions};
use strato_types::{Actions, Grant};

const ADMIN: &str = "an-admin-token-0123456789";

fn fixture(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

/// A Python process of the client scripts: the endpoint and an access key in its environment, no AWS config files.
fn boto3(py: &str, base: &str, key: &(String, String), home: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(py);
    c.env("STRATO_ENDPOINT", base)
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("none"));
    c
}

async fn access_key(strato: &Strato, team: &str) -> (String, String) {
    let req = NewApiKey {
        name: team.into(),
        role: Some("editor".into()),
        grants: vec![
            Grant::new("state-machine", format!("{team}-*"), Actions::ALL),
            Grant::new("function", format!("{team}-*"), Actions::ALL),
            Grant::new("activity", format!("{team}-*"), Actions::ALL),
        ],
        ..Default::default()
    };
    let (key, secret) = strato.keys().create_access_key(req).await.unwrap();
    (key.access_key_id.unwrap(), secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_clients_create_and_run_state_machines_calling_functions() {
    let Some(py) = std::env::var("STRATO_TEST_LAMBDA_PYTHON").ok().filter(|p| !p.is_empty()) else {
        eprintln!(
            "SKIPPED: set STRATO_TEST_LAMBDA_PYTHON to a Python with awslambdaric, boto3 and awscli (.ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StratoOptions::new(dir.path());
    opts.embedding_model = Some("/nonexistent/strato-test-model".into());
    let mut fopts = FunctionsOptions::new(dir.path().join("functions"));
    fopts.python = py.clone().into();
    let slot = FunctionsSlot::default();
    let wslot = strato_workflows::WorkflowsSlot::default();
    let strato = Strato::builder(opts)
        .register(slot.registrar(fopts))
        .register(wslot.registrar(slot.clone()))
        .open()
        .await
        .unwrap();
    let functions = slot.get().unwrap();
    let workflows = wslot.get().unwrap();
    let pool = strato.start_workers(strato_service::WorkerPoolOptions {
        queues: strato_service::QueueConcurrency::parse("default=1,workflows=4,functions=1").unwrap(),
        poll_interval: std::time::Duration::from_millis(200),
        ..Default::default()
    });
    let http = HttpOptions {
        auth: AuthOptions { admin_token: Some(ADMIN.into()), ..Default::default() },
        ..Default::default()
    };
    let app = strato_http::router_with(
        strato.clone(),
        http,
        vec![strato_functions::routes(functions.clone()), strato_workflows::routes(workflows)],
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });

    // A function for the Task states.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("app.py", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(&std::fs::read(fixture("handler/app.py")).unwrap()).unwrap();
    let code = base64::engine::general_purpose::STANDARD.encode(zip.finish().unwrap().into_inner());
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/functions"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "team-a-double", "runtime": "python3.11", "handler": "app.handler", "zip_base64": code, "timeout": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // Another team's state machine, made by the admin through the same API.
    let other = client
        .post(format!("{base}/"))
        .bearer_auth(ADMIN)
        .header("x-amz-target", "AWSStepFunctions.CreateStateMachine")
        .header("content-type", "application/x-amz-json-1.0")
        .body(
            json!({"name": "team-b-flow", "type": "EXPRESS", "roleArn": "r",
            "definition": json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}).to_string()})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    let foreign = other.json::<Value>().await.unwrap()["stateMachineArn"].as_str().unwrap().to_string();

    // Task by function ARN, Choice on its result, then lambda:invoke's envelope trimmed by OutputPath.
    let definition = json!({"StartAt": "Double", "States": {
        "Double": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:team-a-double",
            "ResultPath": "$.first", "Next": "Big?"},
        "Big?": {"Type": "Choice", "Choices": [{"Variable": "$.first.doubled", "NumericGreaterThan": 10, "Next": "Again"}],
            "Default": "Small"},
        "Small": {"Type": "Pass", "Result": "small", "End": true},
        "Again": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "team-a-double", "Payload": {"n.$": "$.first.doubled"}},
            "OutputPath": "$.Payload", "End": true}}});
    let def_file = dir.path().join("definition.json");
    std::fs::write(&def_file, definition.to_string()).unwrap();
    let key = access_key(&strato, "team-a").await;
    let out = boto3(&py, &base, &key, dir.path())
        .arg(fixture("clients/sfn_session.py"))
        .args([def_file.to_str().unwrap(), &foreign])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    assert_eq!(v["validate_bad"]["result"], "FAIL");
    assert_eq!(v["validate_bad"]["codes"], json!(["MISSING_TRANSITION_TARGET"]));
    assert_eq!(v["validate_bad"]["locations"], json!(["/StartAt"]));
    assert_eq!(v["validate_good"], "OK");
    assert_eq!(v["arn"], "arn:aws:states:us-east-1:000000000000:stateMachine:team-a-flow");
    assert_eq!(v["described"], json!({"name": "team-a-flow", "type": "EXPRESS", "status": "ACTIVE"}));
    assert_eq!(v["listed"], json!(["team-a-flow"]), "another team's state machines are not listed");
    assert_eq!(v["ok"]["status"], "SUCCEEDED");
    assert_eq!(v["ok"]["name"], "first");
    assert_eq!(v["ok"]["output"], json!({"doubled": 84, "function": "team-a-double"}));
    assert_eq!(v["failed"]["status"], "FAILED");
    assert_eq!(v["failed"]["error"], "ValueError", "the handler's errorType is the error");
    let cause: Value = serde_json::from_str(v["failed"]["cause"].as_str().unwrap()).unwrap();
    assert_eq!(cause["errorMessage"], "asked to fail: on purpose");
    assert_eq!(v["duplicate"]["code"], "StateMachineAlreadyExists");
    assert_eq!(v["invalid"]["code"], "InvalidDefinition");
    assert_eq!(v["missing"]["code"], "StateMachineDoesNotExist");
    assert_eq!(v["foreign_describe"]["code"], "AccessDeniedException");
    assert_eq!(v["foreign_start"]["code"], "AccessDeniedException");
    assert_eq!(v["after_update"], json!("updated"));
    assert_eq!(v["after_delete"]["code"], "StateMachineDoesNotExist");
    assert_eq!(v["test_pass"], json!({"status": "SUCCEEDED", "output": {"x": 2}, "next": "Done"}));
    assert_eq!(v["test_caught"], json!({"status": "CAUGHT_ERROR", "next": "Handler", "error": "ValueError"}));
    assert_eq!(v["test_vars"], json!({"status": "SUCCEEDED", "output": 42}));
    assert_eq!(v["test_fail"], json!({"status": "FAILED", "error": "Custom", "cause": "because"}));

    // The AWS CLI, unmodified, reads the other team's state machine with that team's key.
    let key_b = access_key(&strato, "team-b").await;
    let aws = Path::new(&py).with_file_name("aws");
    let cli = std::process::Command::new(&aws)
        .args([
            "stepfunctions",
            "describe-state-machine",
            "--endpoint-url",
            &base,
            "--state-machine-arn",
            &foreign,
            "--output",
            "json",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_ACCESS_KEY_ID", &key_b.0)
        .env("AWS_SECRET_ACCESS_KEY", &key_b.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let described: Value = serde_json::from_slice(&cli.stdout).unwrap();
    assert_eq!((described["name"].as_str(), described["type"].as_str()), (Some("team-b-flow"), Some("EXPRESS")));

    // A standard execution's whole cycle through boto3: tasks, a callback answered with its token, stop, and a
    // failed execution redriven after its function was fixed through Lambda's API.
    let standard = json!({"StartAt": "Double", "States": {
        "Double": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:000000000000:function:team-a-double",
            "ResultPath": "$.first", "Next": "Approve"},
        "Approve": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {"FunctionName": "team-a-double", "Payload": {"n.$": "$.first.doubled", "token.$": "$$.Task.Token"}},
            "ResultPath": "$.approval", "HeartbeatSeconds": 60, "TimeoutSeconds": 300, "End": true}}});
    std::fs::write(&def_file, standard.to_string()).unwrap();
    let out = boto3(&py, &base, &key, dir.path())
        .arg(fixture("clients/sfn_standard.py"))
        .arg(&def_file)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["execution_arn"], "arn:aws:states:us-east-1:000000000000:execution:team-a-standard:cycle-1");
    assert_eq!(v["running"], "RUNNING", "the execution waits for its token");
    assert_eq!(
        v["done"],
        json!({"status": "SUCCEEDED", "redriveStatus": "NOT_REDRIVABLE",
            "output": {"n": 4, "first": {"doubled": 8, "function": "team-a-double"}, "approval": {"approved": true}}})
    );
    assert_eq!(v["token_again"], "TaskTimedOut", "a token is answered once");
    assert_eq!(v["token_unknown"], "TaskDoesNotExist");
    assert_eq!(
        v["types"],
        json!([
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "TaskStateEntered",
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ])
    );
    assert_eq!(v["ids"], json!((1..=13).collect::<Vec<_>>()), "paginated in order, pages of 7");
    assert_eq!(v["for_execution"], "team-a-standard");
    assert_eq!(v["stopped"], "ABORTED");
    assert_eq!(v["failed"], json!({"status": "FAILED", "error": "ValueError", "redriveStatus": "REDRIVABLE"}));
    assert_eq!(v["listed_failed"], json!(["cycle-3"]));
    assert_eq!(v["listed_all"], json!(["cycle-1", "cycle-2", "cycle-3"]));
    assert_eq!(v["not_redrivable"], "ExecutionNotRedrivable");
    assert_eq!(
        v["redriven"],
        json!({"status": "SUCCEEDED", "redriveCount": 1, "output": {"n": 1, "fail": "until fixed",
            "first": {"doubled": 2, "function": "team-a-double"}, "approval": {"approved": "late"}}})
    );
    let t: Vec<&str> = v["redriven_types"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let at = t.iter().position(|x| *x == "ExecutionRedriven").unwrap();
    assert_eq!(
        &t[..at],
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "ExecutionFailed"
        ]
    );
    assert_eq!(t[at + 1], "TaskStateEntered", "the failed state runs again: {t:?}");
    assert_eq!(v["heartbeat"], json!({"status": "FAILED", "error": "States.HeartbeatTimeout"}));
    assert_eq!(v["heartbeat_types"], json!(["TaskTimedOut", "ExecutionFailed"]));
    assert_eq!(v["missing"], "ExecutionDoesNotExist");

    // MentorPal's upload processor and a Quetzal model's step-functions.json, unchanged, on Strato functions.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("app.py", zip::write::SimpleFileOptions::default()).unwrap();
    zip.write_all(&std::fs::read(fixture("upload/app.py")).unwrap()).unwrap();
    let code = base64::engine::general_purpose::STANDARD.encode(zip.finish().unwrap().into_inner());
    for (name, handler) in [
        ("team-a-transcode", "app.transcode"),
        ("team-a-transcribe", "app.transcribe_start"),
        ("team-a-mark-failed", "app.mark_failed"),
        ("team-a-quetzal", "app.notebook"),
    ] {
        let r = client
            .post(format!("{base}/v1/functions"))
            .bearer_auth(ADMIN)
            .json(
                &json!({"name": name, "runtime": "python3.11", "handler": handler, "zip_base64": code, "timeout": 10}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{name}");
    }
    let out = boto3(&py, &base, &key, dir.path())
        .arg(fixture("clients/sfn_upload.py"))
        .arg(fixture("upload/upload_processor.json"))
        .arg(fixture("upload/quetzal_step_functions.json"))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let media = |tag: &str, attempts: u64, q: &str| json!({"type": "video", "tag": tag, "attempts": attempts, "url": format!("videos/m1/{q}/{tag}.mp4")});
    assert_eq!(
        v["processed"],
        json!({"status": "SUCCEEDED", "output": {"mentor": "m1", "question": "q1", "video": "uploads/u1/answer.mp4",
            "broken": null, "trim": {"start": 0.5, "end": 12}, "trimmed": "trimmed",
            "results": [media("web", 2, "q1"), media("mobile", 1, "q1"), {"transcript": "I am a mentor.", "tag": "en"}]}})
    );
    assert_eq!(v["retried_error"], json!(["RuntimeError"]), "the flaky web transcode failed once and was retried");
    assert_eq!(v["broken"], json!({"status": "FAILED", "error": "UploadFailed"}));
    let broken_states: Vec<&str> = v["broken_states"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(
        broken_states.ends_with(&["TaskStateEntered", "FailStateEntered"]),
        "caught into MarkFailed: {broken_states:?}"
    );
    assert_eq!(
        v["quetzal"],
        json!({"status": "SUCCEEDED", "output": {"notebook": "notebooks/assignment.ipynb",
            "scenario": "s3://quetzal-models/paris/base/", "ok": true}})
    );

    // Versions and aliases through boto3.
    let out = boto3(&py, &base, &key, dir.path()).arg(fixture("clients/sfn_versions.py")).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sm = "arn:aws:states:us-east-1:000000000000:stateMachine:team-a-versioned";
    let (v1, v2, alias) = (format!("{sm}:1"), format!("{sm}:2"), format!("{sm}:prod"));
    assert_eq!((&v["v1"], &v["v2"], &v["v2_again"]), (&json!(v1), &json!(v2), &json!(v2)), "unchanged: no new version");
    assert_eq!(v["listed"], json!([v2, v1]), "newest first");
    assert_eq!(v["alias"], json!(alias));
    assert_eq!(v["through_alias"], json!({"output": "v1", "version": v1, "alias": alias}));
    assert_eq!(v["through_version"], json!({"output": "v2", "version": v2, "alias": null}));
    assert_eq!(v["latest"], json!({"output": "v3", "version": null, "alias": null}));
    assert_eq!(v["rerouted"], "v2");
    assert_eq!(v["alias_routes"], json!([{"stateMachineVersionArn": v2, "weight": 100}]));
    assert_eq!(v["aliases"], json!([alias]));
    assert_eq!(v["delete_used_version"], "ConflictException");
    assert_eq!(v["bad_weights"], "ValidationException");
    assert_eq!(v["after_delete"], json!([v1]));
    assert_eq!((&v["v1_definition"], &v["v1_description"]), (&json!("v1"), &json!("first")));

    // An activity worker and a standard execution's cycle, with the AWS CLI alone.
    let out = boto3(&py, &base, &key, dir.path()).arg(fixture("clients/sfn_cli.py")).arg(&aws).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["activity"], "arn:aws:states:us-east-1:000000000000:activity:team-a-review");
    assert_eq!(v["activity_again"], true, "CreateActivity is idempotent");
    assert_eq!(v["task_input"], json!({"doc": 7}));
    assert_eq!(v["done"], json!({"status": "SUCCEEDED", "output": {"doc": 7, "review": {"approved": true}}}));
    assert_eq!(
        v["types"],
        json!([
            "ExecutionStarted",
            "TaskStateEntered",
            "ActivityScheduled",
            "ActivityStarted",
            "ActivitySucceeded",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ])
    );
    assert_eq!(v["worker"], json!(["cli-worker"]));
    assert_eq!(
        v["scheduled"],
        json!([{"resource": "arn:aws:states:us-east-1:000000000000:activity:team-a-review", "input": "{\"doc\":7}",
            "inputDetails": {"truncated": false}, "timeoutInSeconds": 300, "heartbeatInSeconds": 60}])
    );
    assert_eq!(v["stopped"], "ABORTED");
    assert_eq!(v["stale_task_skipped"], true, "the stopped execution's task is not handed out");
    assert_eq!(v["failed"], json!({"status": "FAILED", "error": "Rejected", "cause": "not yet"}));
    assert_eq!(
        v["redriven"],
        json!({"status": "SUCCEEDED", "redriveCount": 1, "output": {"review": {"approved": "later"}}})
    );
    assert_eq!(v["test_state"], json!({"status": "SUCCEEDED", "output": {"ok": 1}}));
    assert_eq!(v["listed"], json!(["team-a-review"]));
    assert_eq!(v["described"], "team-a-review");
    assert_eq!(v["after_delete"], true);

    // A Distributed Map's Map Run through boto3.
    let out = boto3(&py, &base, &key, dir.path()).arg(fixture("clients/sfn_map_runs.py")).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_map_runs(&v);

    pool.shutdown().await;
    server.abort();
    strato.close().await;
}

/// What `sfn_map_runs.py` saw, against AWS's documented Map Run contract: ARNs `…:mapRun:<machine>/<label>:<uuid>`
/// and `…:execution:<machine>/<label>:<uuid>`, MapRun* events in the parent and none of MapIteration*, counts as
/// DescribeMapRun defines them, children redriven with their parent, stopped with it.
fn check_map_runs(v: &Value) {
    const ARN: &str = "arn:aws:states:us-east-1:000000000000";
    let uuid_like = |s: &str| s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4;
    assert_eq!(
        v["failed"],
        json!({"status": "FAILED", "error": "States.ExceedToleratedFailureThreshold",
            "cause": "The specified tolerated failure threshold was exceeded"})
    );
    assert_eq!(
        v["runs"],
        json!([{"executionArn": format!("{ARN}:execution:team-a-dmap:d1"),
            "stateMachineArn": format!("{ARN}:stateMachine:team-a-dmap/Each")}])
    );
    let run_arn = v["run_arn"].as_str().unwrap();
    let id = run_arn.strip_prefix(&format!("{ARN}:mapRun:team-a-dmap/Each:")).expect(run_arn);
    assert!(uuid_like(id), "{run_arn}");
    // MaxConcurrency 1: items 1 and 2 succeeded, 3 failed past the threshold (0), 4 and 5 never started.
    assert_eq!(
        v["run_failed"],
        json!({"status": "FAILED", "counts": {"pending": 2, "running": 0, "succeeded": 2, "failed": 1, "aborted": 0,
            "total": 5}, "maxConcurrency": 1, "toleratedFailureCount": 0, "stopped": true})
    );
    let children = v["children"].as_array().unwrap();
    let mut statuses: Vec<&str> = children.iter().map(|c| c["status"].as_str().unwrap()).collect();
    statuses.sort();
    assert_eq!(statuses, ["FAILED", "SUCCEEDED", "SUCCEEDED"]);
    for c in children {
        let name = c["name"].as_str().unwrap();
        assert!(uuid_like(name), "{c}");
        assert_eq!(c["arn"], json!(format!("{ARN}:execution:team-a-dmap/Each:{name}")));
        assert_eq!(c["stateMachineArn"], json!(format!("{ARN}:stateMachine:team-a-dmap/Each")));
        assert_eq!((&c["itemCount"], &c["mapRunArn"]), (&json!(1), &json!(run_arn)));
    }
    assert_eq!(v["failed_children"], 1);
    assert_eq!(
        v["failed_child"],
        json!({"mapRunArn": run_arn, "redriveStatus": "REDRIVABLE_BY_MAP_RUN", "error": "States.NoChoiceMatched",
            "input": {"n": 3}})
    );
    assert_eq!(v["child_machine"]["label"], "Each");
    assert_eq!(v["child_machine"]["mapRunArn"], json!(run_arn));
    assert_eq!(v["child_machine"]["name"], "team-a-dmap/Each");
    assert_eq!(v["child_machine"]["definition"]["StartAt"], "Check", "a child runs the item processor");
    assert_eq!(v["child_history"], json!(["ExecutionStarted", "ChoiceStateEntered", "ExecutionFailed"]));
    assert_eq!(
        v["parent_history"],
        json!([
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunFailed",
            "MapStateFailed",
            "ExecutionFailed"
        ])
    );
    assert_eq!(v["child_redrive_refused"], "ExecutionNotRedrivable");
    assert_eq!(v["both_filters"], "ValidationException");
    // The redrive reran only the failed child (redriven, not restarted) and started the pending ones.
    let redriven = &v["redriven"];
    assert_eq!((&redriven["status"], &redriven["redriveCount"]), (&json!("SUCCEEDED"), &json!(1)));
    let output = redriven["output"].as_array().unwrap();
    assert_eq!(output.iter().map(|o| o["n"].clone()).collect::<Vec<_>>(), [1, 2, 3, 4, 5].map(|n| json!(n)));
    for o in output {
        assert!(o["me"].as_str().unwrap().starts_with(&format!("{ARN}:execution:team-a-dmap/Each:")), "{o}");
    }
    assert_eq!(
        v["run_redriven"],
        json!({"status": "SUCCEEDED", "counts": {"pending": 0, "running": 0, "succeeded": 5, "failed": 0,
            "aborted": 0, "total": 5}, "redriveCount": 1})
    );
    assert_eq!(v["redriven_children"], json!(["SUCCEEDED"]));
    let after: Vec<&str> = v["after_redrive"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(after[..2], ["ExecutionRedriven", "MapRunRedriven"], "{after:?}");
    assert!(after.contains(&"MapRunSucceeded") && after.ends_with(&["ExecutionSucceeded"]), "{after:?}");
    assert!(v["update_ended"].is_string(), "an ended Map Run is not updated: {}", v["update_ended"]);
    // No Label: one is generated, stable for the state.
    let label = v["slow_label_generated"].as_str().unwrap();
    assert!(uuid_like(label.strip_prefix("team-a-slow-dmap/").unwrap()), "{label}");
    assert_eq!(
        v["slow_before"],
        json!({"pending": 3, "running": 1, "succeeded": 0, "failed": 0, "aborted": 0, "total": 4})
    );
    assert_eq!(
        v["slow_updated"],
        json!({"counts": {"pending": 1, "running": 3, "succeeded": 0, "failed": 0, "aborted": 0, "total": 4},
            "maxConcurrency": 3, "toleratedFailurePercentage": 50.0})
    );
    assert_eq!(v["bad_update"], "ValidationException");
    assert_eq!(
        v["slow_stopped"],
        json!({"status": "ABORTED", "counts": {"pending": 1, "running": 0, "succeeded": 0, "failed": 0, "aborted": 3,
            "total": 4}})
    );
    assert_eq!(v["slow_children"], json!(["ABORTED", "ABORTED", "ABORTED"]));
    assert_eq!(
        v["slow_history"],
        json!([
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunAborted",
            "ExecutionAborted"
        ])
    );
    assert_eq!(v["missing_run"], "ResourceNotFound");
}
