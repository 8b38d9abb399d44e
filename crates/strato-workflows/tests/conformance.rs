//! The conformance suite: every case in `tests/conformance/*.json` (a definition, an input, and the output or error
//! AWS documents or recorded for it; see that directory's README) is validated and run by the interpreter.

use std::path::Path;

use serde_json::{json, Value};
use strato_workflows::interpreter::{self, NoTasks};
use strato_workflows::Machine;

fn context(input: &Value) -> Value {
    json!({
        "Execution": {"Id": "arn:aws:states:us-east-1:000000000000:execution:conformance:run-1", "Input": input,
            "Name": "run-1", "RoleArn": "arn:aws:iam::000000000000:role/strato", "StartTime": "2026-12-06T00:00:00.000Z"},
        "StateMachine": {"Id": "arn:aws:states:us-east-1:000000000000:stateMachine:conformance", "Name": "conformance"},
    })
}

#[tokio::test]
async fn every_documented_case_behaves_as_aws_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let (mut passed, mut failures) = (0, Vec::new());
    for file in &files {
        let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        for case in cases {
            let name = format!("{}:{}", file.file_name().unwrap().to_string_lossy(), case["name"].as_str().unwrap());
            let refused = case["expected"]["refused"] == json!(true);
            let machine = match Machine::from_value(&case["definition"]) {
                Ok(_) if refused => {
                    failures.push(format!("{name}: the definition was accepted, but AWS refuses it"));
                    continue;
                }
                Err(_) if refused => {
                    passed += 1;
                    continue;
                }
                Ok(m) => m,
                Err(problems) => {
                    failures.push(format!("{name}: the definition was refused: {problems:?}"));
                    continue;
                }
            };
            let input = case["input"].clone();
            let got = interpreter::run(&machine, input.clone(), &context(&input), Default::default(), &NoTasks).await;
            let expected = &case["expected"];
            let ok = match (&got, expected.get("output"), expected.get("error")) {
                (Ok(out), Some(want), _) => out == want,
                (Err(e), _, Some(want)) => {
                    Some(e.error.as_str()) == want.as_str()
                        && expected.get("cause").is_none_or(|c| Some(e.cause.as_str()) == c.as_str())
                }
                _ => false,
            };
            if ok {
                passed += 1;
            } else {
                failures.push(format!("{name}: expected {expected}, got {got:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        passed + failures.len(),
        failures.join("\n")
    );
    assert!(passed >= 300, "only {passed} cases ran");
}
