//! Strato's own workflow routes over a real socket: `/v1/state-machines…` and `/v1/executions…` — create, list,
//! show, change, start (standard and express), describe, history, stop, redrive — with Strato's JSON errors for
//! bad input and grants that keep another team's state machines out.

use serde_json::{json, Value};
use strato_service::NewApiKey;
use strato_types::{Actions, Grant};

mod common;

use common::ADMIN;

/// An admin's request with a JSON body.
async fn send(req: reqwest::RequestBuilder, body: &Value) -> reqwest::Response {
    req.bearer_auth(ADMIN).json(body).send().await.unwrap()
}

/// An admin's GET, as JSON.
async fn get_json(c: &reqwest::Client, url: String) -> Value {
    c.get(url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap()
}

async fn until_ended(c: &reqwest::Client, url: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let x: Value = c.get(url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        if x["status"] != "RUNNING" || std::time::Instant::now() > deadline {
            return x;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_routes_manage_state_machines_and_executions() {
    let common::Served { strato, pool, base, server, _dir, .. } = common::serve(4).await;
    let c = reqwest::Client::new();

    // A definition with a problem is refused with every problem named.
    let r = send(
        c.post(format!("{base}/v1/state-machines")),
        &json!({"name": "flow", "definition": {"StartAt": "Nope", "States": {"A": {"Type": "Pass"}}}}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_request", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("MISSING_TRANSITION_TARGET") && message.contains("Next or End"), "{message}");

    // Create, list, show.
    let definition = json!({"StartAt": "Greet", "States": {
        "Greet": {"Type": "Pass", "Parameters": {"text.$": "States.Format('hello {}', $.who)"},
            "ResultPath": "$.greeting", "Next": "Nap"},
        "Nap": {"Type": "Wait", "SecondsPath": "$.nap", "OutputPath": "$.greeting", "End": true}}});
    let r = send(
        c.post(format!("{base}/v1/state-machines")),
        &json!({"name": "flow", "definition": definition, "description": "greets"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let sm: Value = r.json().await.unwrap();
    assert_eq!((sm["type"].as_str(), sm["definition"].clone()), (Some("STANDARD"), definition.clone()));
    assert_eq!(sm["arn"], "arn:aws:states:us-east-1:000000000000:stateMachine:flow");
    let listed: Value = get_json(&c, format!("{base}/v1/state-machines")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let r = c.get(format!("{base}/v1/state-machines/nope")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "resource_not_found");

    // Start, describe, history.
    let r = send(
        c.post(format!("{base}/v1/state-machines/flow/executions")),
        &json!({"name": "run-1", "input": {"who": "world", "nap": 0}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let x = until_ended(&c, &format!("{base}/v1/executions/flow/run-1")).await;
    assert_eq!((x["status"].as_str(), x["output"].clone()), (Some("SUCCEEDED"), json!({"text": "hello world"})));
    let h: Value = get_json(&c, format!("{base}/v1/executions/flow/run-1/history?limit=3&reverse=true")).await;
    assert_eq!(h["events"][0]["type"], "ExecutionSucceeded");
    assert_eq!(h["events"].as_array().unwrap().len(), 3);
    assert!(h["next"].is_string(), "more pages: {h}");

    // A long wait: stopped, then redriven (it waits again), listed by status.
    send(
        c.post(format!("{base}/v1/state-machines/flow/executions")),
        &json!({"name": "run-2", "input": {"who": "you", "nap": 3600}}),
    )
    .await;
    let r = send(c.post(format!("{base}/v1/executions/flow/run-2/stop")), &json!({"cause": "by hand"})).await;
    assert_eq!(r.status(), 200);
    let x: Value = r.json().await.unwrap();
    assert_eq!((x["status"].as_str(), x["cause"].as_str()), (Some("ABORTED"), Some("by hand")));
    let aborted: Value = get_json(&c, format!("{base}/v1/state-machines/flow/executions?status=ABORTED")).await;
    assert_eq!(aborted["executions"].as_array().unwrap().iter().map(|x| &x["name"]).collect::<Vec<_>>(), ["run-2"]);
    let x: Value = c
        .post(format!("{base}/v1/executions/flow/run-2/redrive"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((x["status"].as_str(), x["redrive_count"].as_u64()), (Some("RUNNING"), Some(1)));
    let r =
        c.get(format!("{base}/v1/state-machines/flow/executions?status=LOST")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 400, "an unknown status is refused");

    // Patch the definition; an express machine runs in the request.
    let r = c
        .patch(format!("{base}/v1/state-machines/flow"))
        .bearer_auth(ADMIN)
        .json(
            &json!({"definition": {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "Result": 2, "End": true}}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = send(
        c.post(format!("{base}/v1/state-machines")),
        &json!({"name": "quick", "type": "EXPRESS", "definition": {"QueryLanguage": "JSONata", "StartAt": "Sum",
            "States": {"Sum": {"Type": "Pass", "Output": "{% $sum($states.input.n) %}", "End": true}}}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let x: Value =
        send(c.post(format!("{base}/v1/state-machines/quick/executions")), &json!({"input": {"n": [1, 2, 3]}}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!((x["status"].as_str(), x["output"].clone()), (Some("SUCCEEDED"), json!(6)));

    // Another team's key sees nothing of these and may not start them.
    let (_, secret) = strato
        .keys()
        .create(NewApiKey {
            name: "team-b".into(),
            role: Some("editor".into()),
            grants: vec![Grant::new("state-machine", "team-b-*", Actions::ALL)],
            ..Default::default()
        })
        .await
        .unwrap();
    let theirs: Value = c
        .get(format!("{base}/v1/state-machines"))
        .header("x-api-key", &secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    let r = c
        .post(format!("{base}/v1/state-machines/flow/executions"))
        .header("x-api-key", &secret)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // A machine whose tasks train models runs with the service's authority: starting it takes an administrator,
    // even for a key granted everything on the machine.
    let r = send(
        c.post(format!("{base}/v1/state-machines")),
        &json!({"name": "team-b-retrain", "definition": {"StartAt": "T", "States": {"T": {"Type": "Task",
            "Resource": "arn:aws:states:::strato:trainModel.sync", "Parameters": {"ModelId": "m", "Dataset": "d"},
            "End": true}}}}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{base}/v1/state-machines/team-b-retrain/executions"))
        .header("x-api-key", &secret)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "an editor may not start a machine that trains models");

    let r = c.delete(format!("{base}/v1/state-machines/flow")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(c.get(format!("{base}/v1/state-machines/flow")).bearer_auth(ADMIN).send().await.unwrap().status(), 404);

    pool.shutdown().await;
    server.abort();
    strato.close().await;
}
