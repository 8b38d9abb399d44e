//! The interpreter's Task, Parallel and Map states, Retry and Catch, and definition checks, with tasks run by a
//! small in-test resource table (the real resources — Strato's functions — plug in through the same trait).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::{json, Value};
use strato_workflows::interpreter::{self, TaskRunner};
use strato_workflows::{Machine, StatesError};

/// `echo` returns its input, `double` doubles `$.n`, `flaky` fails twice then succeeds, `boom` always fails.
#[derive(Default)]
struct Resources {
    flaky_calls: AtomicUsize,
}

#[async_trait]
impl TaskRunner for Resources {
    async fn run(&self, resource: &str, input: Value, _: &Value) -> Result<Value, StatesError> {
        match resource {
            "echo" => Ok(input),
            "double" => Ok(json!(input["n"].as_i64().unwrap_or(0) * 2)),
            "flaky" => {
                if self.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(StatesError::new("Transient", "try again"))
                } else {
                    Ok(json!("recovered"))
                }
            }
            "slow" => {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                Ok(json!("late"))
            }
            _ => Err(StatesError::new("BoomError", format!("{resource} failed"))),
        }
    }
}

async fn run(definition: Value, input: Value, tasks: &Resources) -> Result<Value, StatesError> {
    let m = Machine::from_value(&definition).unwrap_or_else(|p| panic!("{p:?}"));
    interpreter::run(&m, input, &json!({}), Default::default(), tasks).await
}

#[tokio::test]
async fn tasks_flow_through_parameters_result_selector_result_path_and_output_path() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "echo",
        "Parameters": {"payload.$": "$.data", "fixed": 1}, "ResultSelector": {"got.$": "$.payload"},
        "ResultPath": "$.result", "OutputPath": "$.result", "End": true}}});
    assert_eq!(run(def, json!({"data": [1, 2]}), &Resources::default()).await.unwrap(), json!({"got": [1, 2]}));
}

#[tokio::test]
async fn retry_backs_off_then_catch_routes_the_error_output() {
    let r = Resources::default();
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "flaky", "Retry": [{"ErrorEquals": ["Transient"], "IntervalSeconds": 0, "MaxAttempts": 2}], "End": true}}});
    assert_eq!(run(def, json!({}), &r).await.unwrap(), json!("recovered"));
    assert_eq!(r.flaky_calls.load(Ordering::SeqCst), 3, "two retries");

    // Out of attempts: the catcher's ResultPath puts {"Error", "Cause"} into the input, as the guide shows.
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "boom", "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0, "MaxAttempts": 1}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}], "End": true},
        "Recover": {"Type": "Pass", "End": true}}});
    assert_eq!(
        run(def, json!({"x": 1}), &Resources::default()).await.unwrap(),
        json!({"x": 1, "error": {"Error": "BoomError", "Cause": "boom failed"}})
    );

    // States.ALL does not catch States.Runtime.
    let def = json!({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "echo", "Parameters": {"a.$": "$.missing"},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}], "End": true},
        "Recover": {"Type": "Pass", "End": true}}});
    assert_eq!(run(def, json!({}), &Resources::default()).await.unwrap_err().error, "States.Runtime");
}

#[tokio::test]
async fn a_task_past_its_timeout_fails_with_states_timeout() {
    let def = json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "slow", "TimeoutSeconds": 1, "End": true}}});
    let started = std::time::Instant::now();
    let e = run(def, json!({}), &Resources::default()).await.unwrap_err();
    assert_eq!(e.error, "States.Timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[tokio::test]
async fn parallel_branches_and_map_items_keep_their_order() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [
        {"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "double", "End": true}}},
        {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": "b", "End": true}}}]}}});
    assert_eq!(run(def, json!({"n": 21}), &Resources::default()).await.unwrap(), json!([42, "b"]));

    let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
        "ItemSelector": {"n.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
        "ItemProcessor": {"StartAt": "D", "States": {"D": {"Type": "Task", "Resource": "double", "End": true}}},
        "End": true}}});
    assert_eq!(
        run(def, json!({"items": [1, 2, 3, 4, 5]}), &Resources::default()).await.unwrap(),
        json!([2, 4, 6, 8, 10])
    );

    // A failing iteration fails the Map unless it is tolerated.
    let failing = |tolerance: Value| {
        let mut m = json!({"Type": "Map", "ItemProcessor": {"StartAt": "X", "States": {"X": {"Type": "Task", "Resource": "boom", "End": true}}}, "End": true});
        for (k, v) in tolerance.as_object().unwrap() {
            m[k] = v.clone();
        }
        json!({"StartAt": "M", "States": {"M": m}})
    };
    assert_eq!(run(failing(json!({})), json!([1]), &Resources::default()).await.unwrap_err().error, "BoomError");
    assert_eq!(
        run(failing(json!({"ToleratedFailureCount": 0})), json!([1, 2]), &Resources::default())
            .await
            .unwrap_err()
            .error,
        "States.ExceedToleratedFailureThreshold"
    );
    let tolerated =
        run(failing(json!({"ToleratedFailurePercentage": 100})), json!([1]), &Resources::default()).await.unwrap();
    assert_eq!(tolerated, json!([{"Error": "BoomError", "Cause": "boom failed"}]));
}

#[test]
fn every_problem_of_a_definition_is_reported_with_its_location() {
    let def = json!({"StartAt": "Missing", "States": {
        "A": {"Type": "Pass", "Next": "Nowhere", "ResultPath": "$.a[*]"},
        "B": {"Type": "Task", "End": true, "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": 1, "Next": "A"}]},
        "D": {"Type": "Wait", "End": true},
        "E": {"Type": "Pass", "End": true, "Bogus": 1},
        "F": {"Type": "Teleport", "End": true}}});
    let problems = Machine::from_value(&def).unwrap_err();
    let at: Vec<&str> = problems.iter().map(|p| p.location.as_str()).collect();
    assert_eq!(at, ["/States/E", "/States/F/Type"], "field-level problems first: {problems:?}");
    let def = json!({"StartAt": "Missing", "States": {
        "A": {"Type": "Pass", "Next": "Nowhere", "ResultPath": "$.a[*]"},
        "B": {"Type": "Task", "End": true, "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": 1, "Next": "A"}]},
        "D": {"Type": "Wait", "End": true}}});
    let problems = Machine::from_value(&def).unwrap_err();
    let found: Vec<(String, String)> = problems.iter().map(|p| (p.code.clone(), p.location.clone())).collect();
    for want in [
        ("MISSING_TRANSITION_TARGET", "/StartAt"),
        ("MISSING_TRANSITION_TARGET", "/States/A/Next"),
        ("SCHEMA_VALIDATION_FAILED", "/States/A/ResultPath"),
        ("SCHEMA_VALIDATION_FAILED", "/States/B"),
        ("SCHEMA_VALIDATION_FAILED", "/States/B/Retry[0]/ErrorEquals"),
        ("SCHEMA_VALIDATION_FAILED", "/States/C/Choices[0]"),
        ("SCHEMA_VALIDATION_FAILED", "/States/D"),
    ] {
        assert!(found.iter().any(|(c, l)| c == want.0 && l == want.1), "{want:?} missing from {found:?}");
    }
    assert!(Machine::parse("{not json").unwrap_err()[0].code == "INVALID_JSON_DESCRIPTION");
}
