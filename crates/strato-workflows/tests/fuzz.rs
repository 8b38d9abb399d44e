//! Bad input never panics: every conformance definition mutated at random (characters dropped, doubled, replaced
//! with the States Language's own tokens) is parsed, and when it validates it runs, ending in an output or a States
//! error; random JSONata expressions end in a value or `States.QueryEvaluationError`. Seeded, so a failure is
//! repeated by the same run.

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use strato_workflows::interpreter::{self, NoTasks};
use strato_workflows::jsonata::{self, Bindings};
use strato_workflows::Machine;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "$",
    "$$",
    ".$",
    "{%",
    "%}",
    "null",
    "true",
    "-1",
    "1e400",
    "\"Type\"",
    "\"Pass\"",
    "\"Map\"",
    "\"Next\"",
    "\"End\"",
    "\"States.ALL\"",
    "\"$.a\"",
    "\"$x\"",
    "\"{% $states.input %}\"",
    "\"JSONata\"",
    "\"Assign\"",
    "\\u0000",
    "é",
    " ",
];

fn mutate(text: &str, rng: &mut impl Rng) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..4) {
        if chars.is_empty() {
            break;
        }
        let at = rng.random_range(0..chars.len());
        match rng.random_range(0..3) {
            0 => {
                chars.remove(at);
            }
            1 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                for (i, c) in t.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            _ => {
                let c = chars[at];
                chars.insert(at, c);
            }
        }
    }
    chars.into_iter().collect()
}

#[tokio::test]
async fn mutated_definitions_are_refused_or_run_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261207);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    let context = json!({"Execution": {"Id": "e", "Name": "e", "Input": {}}, "StateMachine": {"Id": "m", "Name": "m"}});
    let (mut refused, mut ran) = (0, 0);
    for file in ["dataflow.json", "choice.json", "errors.json", "intrinsics.json", "jsonata.json", "variables.json"] {
        let cases: Vec<Value> = serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap();
        for case in &cases {
            let text = case["definition"].to_string();
            for _ in 0..8 {
                let bad = mutate(&text, &mut rng);
                match Machine::parse(&bad) {
                    Err(problems) => {
                        assert!(!problems.is_empty(), "refused with no problem named: {bad}");
                        refused += 1;
                    }
                    Ok(m) => {
                        let run = interpreter::run(&m, case["input"].clone(), &context, Default::default(), &NoTasks);
                        // A mutated Wait may wait: what matters is that it ends or keeps waiting without panicking.
                        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(200), run).await {
                            assert!(!e.error.is_empty(), "an error without a name: {bad}");
                        }
                        ran += 1;
                    }
                }
            }
        }
    }
    assert!(refused > 500 && ran > 100, "refused {refused}, ran {ran}");
}

#[test]
fn random_jsonata_expressions_give_a_value_or_a_query_error() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let parts = [
        "$states.input",
        ".a",
        "[0]",
        "+",
        "-",
        "*",
        "/",
        "&",
        "=",
        "!=",
        "and",
        "or",
        "?",
        ":",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "\"x\"",
        "1",
        "0",
        "null",
        "$sum(",
        "$count(",
        "$partition(",
        "$range(",
        "$hash(",
        "$parse(",
        "$uuid()",
        "$random(",
        ",",
        "$x",
        "function($v){$v}",
        "~>",
        "$map(",
        "..",
        "%",
        "**",
        "$string(",
        "[1,2,3]",
    ];
    let mut vars = strato_workflows::path::Vars::new();
    vars.insert("x".into(), json!([1, "two", {"three": 3}]));
    let input = json!({"a": [1, 2, {"b": "c"}]});
    for _ in 0..3000 {
        let n = rng.random_range(1..8);
        let expr: String = (0..n).map(|_| parts[rng.random_range(0..parts.len())]).collect::<Vec<_>>().join(" ");
        let b = Bindings::new(&input, &json!({}), &vars);
        match jsonata::eval(&Value::String(format!("{{% {expr} %}}")), &b, "Output") {
            Ok(_) => {}
            Err(e) => assert_eq!(e.error, jsonata::QUERY_ERROR, "{expr}: {e:?}"),
        }
    }
}
