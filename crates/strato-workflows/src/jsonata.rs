//! The JSONata query language of States Language states (`QueryLanguage: "JSONata"`): strings written
//! `{% … %}` are expressions, evaluated by `jsonata-core` with `$states` (`input`, `result`, `errorOutput`,
//! `context`) and the workflow's variables bound, plus the functions AWS adds (`$partition`, `$range`, `$hash`,
//! `$random`, `$uuid`, `$parse`). Any other JSON is taken as written.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use jsonata_core::ast::AstNode;
use jsonata_core::evaluator::{Context, Evaluator, EvaluatorError};
use jsonata_core::parser;
use jsonata_core::value::JValue;
use serde_json::{json, Value};

use crate::error::StatesError;
use crate::intrinsics;
use crate::path::Vars;

/// `States.QueryEvaluationError`: a JSONata expression failed or gave nothing.
pub const QUERY_ERROR: &str = "States.QueryEvaluationError";

/// Parsed expressions kept per thread: a machine's expressions are parsed once, not per state entered.
const CACHE_LIMIT: usize = 4096;

thread_local! {
    static PARSED: RefCell<HashMap<String, Rc<AstNode>>> = RefCell::new(HashMap::new());
}

/// The expression of a `{% … %}` string; `None` for any other string.
pub fn expression(s: &str) -> Option<&str> {
    s.strip_prefix("{%").and_then(|r| r.strip_suffix("%}")).map(str::trim)
}

fn parsed(expr: &str) -> Result<Rc<AstNode>, String> {
    if let Some(ast) = PARSED.with(|c| c.borrow().get(expr).cloned()) {
        return Ok(ast);
    }
    let ast = Rc::new(parser::parse(expr).map_err(|e| e.to_string())?);
    PARSED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_LIMIT {
            c.clear();
        }
        c.insert(expr.to_string(), ast.clone());
    });
    Ok(ast)
}

/// Problems with every `{% %}` string of a field's value (an expression that does not parse), for validation.
pub fn check(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_check(v, &mut out);
    out
}

fn walk_check(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(e) = expression(s) {
                if e.is_empty() {
                    out.push(format!("the JSONata expression {s:?} is empty"));
                } else if let Err(why) = parsed(e) {
                    out.push(format!("the JSONata expression {s:?} does not parse: {why}"));
                }
            }
        }
        Value::Object(m) => m.values().for_each(|v| walk_check(v, out)),
        Value::Array(a) => a.iter().for_each(|v| walk_check(v, out)),
        _ => {}
    }
}

/// Whether a field's value holds any `{% %}` expression.
pub fn has_expression(v: &Value) -> bool {
    match v {
        Value::String(s) => expression(s).is_some(),
        Value::Object(m) => m.values().any(has_expression),
        Value::Array(a) => a.iter().any(has_expression),
        _ => false,
    }
}

/// What an expression sees: `$states` and the workflow's variables.
pub struct Bindings<'a> {
    states: Value,
    vars: &'a Vars,
}

impl<'a> Bindings<'a> {
    /// `$states.input` and `$states.context` of a state, with the variables in scope.
    pub fn new(input: &Value, context: &Value, vars: &'a Vars) -> Self {
        Self { states: json!({"input": input, "context": context}), vars }
    }

    /// Adds `$states.result` (a Task's, Parallel's or Map's result).
    pub fn with_result(mut self, result: &Value) -> Self {
        self.states["result"] = result.clone();
        self
    }

    /// Adds `$states.errorOutput` (in a Catch).
    pub fn with_error_output(mut self, error: &Value) -> Self {
        self.states["errorOutput"] = error.clone();
        self
    }
}

/// Evaluates a field's value: `{% %}` strings evaluated (nothing at all, `undefined`, is an error), objects and
/// arrays walked, any other JSON as written. `field` names the field in errors (`Arguments/a/b`).
pub fn eval(v: &Value, b: &Bindings<'_>, field: &str) -> Result<Value, StatesError> {
    match v {
        Value::String(s) => match expression(s) {
            Some(e) => eval_expression(e, b, field),
            None => Ok(v.clone()),
        },
        Value::Object(m) => {
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, v) in m {
                out.insert(k.clone(), eval(v, b, &format!("{field}/{k}"))?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| eval(v, b, &format!("{field}[{i}]")))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        _ => Ok(v.clone()),
    }
}

/// AWS's cause: the expression and the field, then JSONata's own `<CODE>: <message>` (after `. `), or a message
/// without a code (after `: `).
fn query_error(expr: &str, field: &str, why: impl std::fmt::Display) -> StatesError {
    let why = why.to_string();
    let coded = why.len() > 6
        && why.as_bytes()[0].is_ascii_uppercase()
        && why[1..5].bytes().all(|b| b.is_ascii_digit())
        && why[5..].starts_with(':');
    let sep = if coded { ". " } else { ": " };
    StatesError::new(
        QUERY_ERROR,
        format!("The JSONata expression '{expr}' specified for the field '{field}' threw an error during evaluation{sep}{why}"),
    )
}

/// Evaluates one expression.
pub fn eval_expression(expr: &str, b: &Bindings<'_>, field: &str) -> Result<Value, StatesError> {
    let ast = parsed(expr).map_err(|e| query_error(expr, field, e))?;
    let mut context = Context::new();
    context.bind("states".into(), JValue::from(b.states.clone()));
    for (name, value) in b.vars {
        context.bind(name.clone(), JValue::from(value.clone()));
    }
    let mut evaluator = Evaluator::with_context(context);
    register_aws_functions(&mut evaluator);
    let out = evaluator.evaluate(&ast, &JValue::Undefined).map_err(|e| query_error(expr, field, message(&e)))?;
    if out.is_undefined() {
        return Err(StatesError::new(
            QUERY_ERROR,
            format!("The JSONata expression '{expr}' specified for the field '{field}' returned nothing (undefined)."),
        ));
    }
    to_json(&out).ok_or_else(|| {
        query_error(expr, field, "the result is a function or a number JSON cannot hold, not a JSON value")
    })
}

fn message(e: &EvaluatorError) -> String {
    e.message().to_string()
}

/// A JSONata value as JSON: integral numbers as integers (JSONata's numbers are all doubles); `None` for a
/// function, an infinite number or NaN.
pub fn to_json(v: &JValue) -> Option<Value> {
    Some(match v {
        JValue::Null => Value::Null,
        JValue::Bool(b) => Value::Bool(*b),
        JValue::Number(n) => {
            if !n.is_finite() {
                return None;
            }
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
                json!(*n as i64)
            } else {
                json!(*n)
            }
        }
        JValue::String(s) => Value::String(s.to_string()),
        JValue::Array(a) => Value::Array(a.iter().filter(|v| !v.is_undefined()).map(to_json).collect::<Option<_>>()?),
        JValue::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_undefined())
                .map(|(k, v)| Some((k.clone(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

fn from_states(e: StatesError) -> EvaluatorError {
    EvaluatorError::EvaluationError(e.cause)
}

fn args_json(args: &[JValue]) -> Result<Vec<Value>, EvaluatorError> {
    args.iter()
        .map(|a| to_json(a).ok_or_else(|| EvaluatorError::TypeError("arguments must be JSON values".into())))
        .collect()
}

fn back(v: Value) -> JValue {
    JValue::from(v)
}

/// AWS's functions beside JSONata's own, built on the intrinsics they mirror.
fn register_aws_functions(e: &mut Evaluator) {
    let simple: [(&str, &str); 3] =
        [("partition", "States.ArrayPartition"), ("range", "States.ArrayRange"), ("hash", "States.Hash")];
    for (name, intrinsic) in simple {
        let _ = e.register_fn(name, move |args: &[JValue]| {
            let mut args = args_json(args)?;
            // AWS rounds the integer arguments of its functions down.
            if intrinsic != "States.Hash" {
                for a in args.iter_mut().filter(|a| a.is_f64()) {
                    *a = json!(a.as_f64().unwrap_or_default().floor() as i64);
                }
            }
            intrinsics::apply(intrinsic, args).map(back).map_err(from_states)
        });
    }
    let _ = e.register_fn("uuid", |args: &[JValue]| {
        if !args.is_empty() {
            return Err(EvaluatorError::TypeError("$uuid() takes no arguments".into()));
        }
        Ok(JValue::string(uuid::Uuid::new_v4().to_string()))
    });
    let _ = e.register_fn("parse", |args: &[JValue]| {
        let [JValue::String(s)] = args else {
            return Err(EvaluatorError::TypeError("$parse takes one string, a JSON text".into()));
        };
        serde_json::from_str::<Value>(s)
            .map(back)
            .map_err(|err| EvaluatorError::EvaluationError(format!("$parse: the string is not JSON: {err}")))
    });
    // `$random(seed)`: AWS adds an optional integer seed to JSONata's `$random()`.
    let _ = e.register_fn_override("random", |args: &[JValue]| match args {
        [] => Ok(JValue::Number(rand::random::<f64>())),
        [JValue::Number(seed)] if seed.fract() == 0.0 => {
            use rand::{Rng, SeedableRng};
            Ok(JValue::Number(rand::rngs::StdRng::seed_from_u64(*seed as i64 as u64).random::<f64>()))
        }
        _ => Err(EvaluatorError::TypeError("$random takes no argument or an integer seed".into())),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expr: &str, input: Value, vars: &Vars) -> Result<Value, StatesError> {
        eval(&Value::String(expr.into()), &Bindings::new(&input, &json!({"Execution": {"Name": "x"}}), vars), "Output")
    }

    #[test]
    fn expressions_see_states_and_variables() {
        let mut vars = Vars::new();
        vars.insert("total".into(), json!(10));
        assert_eq!(run("{% $states.input.a + $total %}", json!({"a": 2}), &vars).unwrap(), json!(12));
        assert_eq!(run("{% $states.context.Execution.Name %}", json!({}), &vars).unwrap(), json!("x"));
        assert_eq!(run("plain text", json!({}), &vars).unwrap(), json!("plain text"));
        let t = json!({"sum": "{% $sum($states.input.n) %}", "list": ["{% 'a' & 'b' %}", 3]});
        let out = eval(&t, &Bindings::new(&json!({"n": [1, 2.5]}), &json!({}), &vars), "Arguments").unwrap();
        assert_eq!(out, json!({"sum": 3.5, "list": ["ab", 3]}));
    }

    #[test]
    fn nothing_and_failures_are_query_evaluation_errors() {
        let vars = Vars::new();
        let e = run("{% $states.input.missing %}", json!({}), &vars).unwrap_err();
        assert_eq!(e.error, QUERY_ERROR);
        assert!(e.cause.contains("returned nothing"), "{}", e.cause);
        let e = run("{% $number('x') %}", json!({}), &vars).unwrap_err();
        assert_eq!(e.error, QUERY_ERROR);
        assert!(
            e.cause.starts_with(
                "The JSONata expression '$number('x')' specified for the field 'Output' threw an error during \
                 evaluation. D3030: "
            ),
            "{}",
            e.cause
        );
        assert!(!check(&json!({"a": "{% 1 + %}"})).is_empty());
        assert!(check(&json!({"a": "{% 1 + 2 %}", "b": "{a}"})).is_empty());
    }

    #[test]
    fn aws_functions() {
        let vars = Vars::new();
        assert_eq!(run("{% $partition([1,2,3,4,5], 2) %}", json!({}), &vars).unwrap(), json!([[1, 2], [3, 4], [5]]));
        assert_eq!(run("{% $range(0, 10, 2) %}", json!({}), &vars).unwrap(), json!([0, 2, 4, 6, 8, 10]));
        assert_eq!(
            run("{% $hash('input data', 'SHA-1') %}", json!({}), &vars).unwrap(),
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
        );
        assert_eq!(run("{% $parse('{\"a\": [1]}') %}", json!({}), &vars).unwrap(), json!({"a": [1]}));
        assert_eq!(run("{% $length($uuid()) %}", json!({}), &vars).unwrap(), json!(36));
        assert_eq!(run("{% $random(7) = $random(7) %}", json!({}), &vars).unwrap(), json!(true));
    }
}
