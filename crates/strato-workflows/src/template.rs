//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`): JSON copied as written, except fields whose
//! name ends in `.$`, whose value — a path into the input, a path into the context object (`$$.…`) or an
//! intrinsic call — is evaluated, and the field renamed without the suffix.

use serde_json::{Map, Value};

use crate::error::StatesError;
use crate::intrinsics;
use crate::path::{self, Scope};

/// Problems with a template's `.$` fields, for validation.
pub fn check(template: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_check(template, &mut out);
    out
}

fn walk_check(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k.ends_with(".$") {
                    match v.as_str() {
                        Some(t) if intrinsics::is_call(t) => {
                            if let Err(e) = intrinsics::parse(t) {
                                out.push(format!("field {k:?}: {e}"));
                            }
                        }
                        Some(t) => {
                            if let Err(e) = path::check(t) {
                                out.push(format!("field {k:?}: {e}"));
                            }
                        }
                        None => out.push(format!(
                            "field {k:?} ends in .$, so its value must be a path or an intrinsic function"
                        )),
                    }
                } else {
                    walk_check(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| walk_check(v, out)),
        _ => {}
    }
}

/// Evaluates a template against the input, the context object and the variables.
pub fn apply(template: &Value, input: &Value, scope: Scope<'_>) -> Result<Value, StatesError> {
    match template {
        Value::Object(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                match k.strip_suffix(".$") {
                    Some(name) => {
                        let text = v.as_str().ok_or_else(|| {
                            StatesError::runtime(format!(
                                "The value of the field '{k}' must be a path or an intrinsic function"
                            ))
                        })?;
                        let value = if intrinsics::is_call(text) {
                            let call = intrinsics::parse(text).map_err(StatesError::intrinsic)?;
                            intrinsics::eval(&call, input, scope)?
                        } else {
                            path::read(text, input, scope, k)?
                        };
                        out.insert(name.to_string(), value);
                    }
                    None => {
                        out.insert(k.clone(), apply(v, input, scope)?);
                    }
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(a) => a.iter().map(|v| apply(v, input, scope)).collect::<Result<Vec<_>, _>>().map(Value::Array),
        v => Ok(v.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dollar_fields_are_evaluated_and_renamed() {
        let t = json!({"flagged": true, "parts": {"first.$": "$.vals[0]", "last3.$": "$.vals[-3:]"},
            "weekday.$": "$$.DayOfWeek", "formattedOutput.$": "States.Format('Today is {}', $$.DayOfWeek)"});
        let input = json!({"flagged": 7, "vals": [0, 10, 20, 30, 40, 50]});
        let vars = path::Vars::new();
        let out = apply(&t, &input, Scope::new(&json!({"DayOfWeek": "TUESDAY"}), &vars)).unwrap();
        assert_eq!(
            out,
            json!({"flagged": true, "parts": {"first": 0, "last3": [30, 40, 50]}, "weekday": "TUESDAY",
                "formattedOutput": "Today is TUESDAY"})
        );
        assert!(check(&t).is_empty());
        assert_eq!(check(&json!({"a.$": 3, "b": [{"c.$": "nope"}]})).len(), 2);
    }
}
