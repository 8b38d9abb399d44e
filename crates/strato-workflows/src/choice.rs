//! Choice rules (JSONPath): a comparison of a `Variable` with a literal or another path, `Is*` tests, and
//! `And`/`Or`/`Not` over rules.

use serde_json::Value;

use crate::error::StatesError;
use crate::intrinsics::json_equal;
use crate::path::{self, Scope};

/// A parsed rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Every rule holds.
    And(Vec<Rule>),
    /// Some rule holds.
    Or(Vec<Rule>),
    /// The rule does not hold.
    Not(Box<Rule>),
    /// `Variable` compared by `op` with a literal or (for `…Path` operators) another path's value.
    Compare { variable: String, op: Op, operand: Operand },
}

/// What a comparison compares with.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A literal from the definition.
    Literal(Value),
    /// A path into the input (`…Path` operators).
    Path(String),
}

/// The comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

const OPS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringLessThan", Op::StringLessThan),
    ("StringGreaterThan", Op::StringGreaterThan),
    ("StringLessThanEquals", Op::StringLessThanEquals),
    ("StringGreaterThanEquals", Op::StringGreaterThanEquals),
    ("StringMatches", Op::StringMatches),
    ("NumericEquals", Op::NumericEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("BooleanEquals", Op::BooleanEquals),
    ("TimestampEquals", Op::TimestampEquals),
    ("TimestampLessThan", Op::TimestampLessThan),
    ("TimestampGreaterThan", Op::TimestampGreaterThan),
    ("TimestampLessThanEquals", Op::TimestampLessThanEquals),
    ("TimestampGreaterThanEquals", Op::TimestampGreaterThanEquals),
    ("IsNull", Op::IsNull),
    ("IsPresent", Op::IsPresent),
    ("IsNumeric", Op::IsNumeric),
    ("IsString", Op::IsString),
    ("IsBoolean", Op::IsBoolean),
    ("IsTimestamp", Op::IsTimestamp),
];

impl Op {
    fn is_test(self) -> bool {
        matches!(self, Op::IsNull | Op::IsPresent | Op::IsNumeric | Op::IsString | Op::IsBoolean | Op::IsTimestamp)
    }
}

impl Rule {
    /// Parses a rule; `top` rules carry `Next` (checked by the definition), nested ones must not.
    pub fn parse(v: &Value, top: bool) -> Result<Rule, String> {
        let obj = v.as_object().ok_or("a choice rule must be an object")?;
        let allowed_extra = |k: &str| (top && k == "Next") || k == "Comment" || k == "Assign" || k == "Output";
        if let Some(list) = obj.get("And").or_else(|| obj.get("Or")) {
            let rules = list.as_array().filter(|l| !l.is_empty()).ok_or("And/Or take a non-empty array of rules")?;
            let parsed = rules.iter().map(|r| Rule::parse(r, false)).collect::<Result<Vec<_>, _>>()?;
            if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "And" | "Or") && !allowed_extra(k)) {
                return Err(format!("unexpected field {k:?} beside And/Or"));
            }
            return Ok(if obj.contains_key("And") { Rule::And(parsed) } else { Rule::Or(parsed) });
        }
        if let Some(inner) = obj.get("Not") {
            return Ok(Rule::Not(Box::new(Rule::parse(inner, false)?)));
        }
        let variable = obj.get("Variable").and_then(Value::as_str).ok_or("a comparison needs Variable (a path)")?;
        path::check(variable)?;
        let mut found = None;
        for (k, v) in obj {
            if k == "Variable" || allowed_extra(k) {
                continue;
            }
            let (name, is_path) = match k.strip_suffix("Path") {
                Some(n) if !n.is_empty() && OPS.iter().any(|(o, _)| *o == n) => (n, true),
                _ => (k.as_str(), false),
            };
            let Some((_, op)) = OPS.iter().find(|(o, _)| *o == name) else {
                return Err(format!("{k:?} is not a comparison operator"));
            };
            if found.is_some() {
                return Err("a comparison takes exactly one operator".into());
            }
            let operand = if is_path {
                if op.is_test() {
                    return Err(format!("{k} is not an operator"));
                }
                let p = v.as_str().ok_or_else(|| format!("{k} takes a path"))?;
                path::check(p)?;
                Operand::Path(p.to_string())
            } else {
                let ok = match op {
                    Op::StringEquals
                    | Op::StringLessThan
                    | Op::StringGreaterThan
                    | Op::StringLessThanEquals
                    | Op::StringGreaterThanEquals
                    | Op::StringMatches
                    | Op::TimestampEquals
                    | Op::TimestampLessThan
                    | Op::TimestampGreaterThan
                    | Op::TimestampLessThanEquals
                    | Op::TimestampGreaterThanEquals => v.is_string(),
                    Op::NumericEquals
                    | Op::NumericLessThan
                    | Op::NumericGreaterThan
                    | Op::NumericLessThanEquals
                    | Op::NumericGreaterThanEquals => v.is_number(),
                    _ => v.is_boolean(),
                };
                if !ok {
                    return Err(format!("{k} does not take {v}"));
                }
                Operand::Literal(v.clone())
            };
            found = Some((*op, operand));
        }
        let (op, operand) = found.ok_or("a comparison needs an operator")?;
        Ok(Rule::Compare { variable: variable.to_string(), op, operand })
    }

    /// Whether the rule holds for `input`.
    pub fn holds(&self, input: &Value, scope: Scope<'_>) -> Result<bool, StatesError> {
        match self {
            Rule::And(rules) => {
                for r in rules {
                    if !r.holds(input, scope)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if r.holds(input, scope)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!r.holds(input, scope)?),
            Rule::Compare { variable, op, operand } => {
                let value = select(variable, input, scope)?;
                if *op == Op::IsPresent {
                    return Ok(value.is_some() == (operand_bool(operand)));
                }
                let Some(value) = value else {
                    return Err(StatesError::runtime(format!(
                        "Invalid path '{variable}': The choice state's condition path references an invalid value."
                    )));
                };
                let expected = match operand {
                    Operand::Literal(v) => v.clone(),
                    Operand::Path(p) => select(p, input, scope)?.ok_or_else(|| {
                        StatesError::runtime(format!(
                            "Invalid path '{p}': The choice state's condition path references an invalid value."
                        ))
                    })?,
                };
                Ok(compare(*op, &value, &expected))
            }
        }
    }
}

fn operand_bool(o: &Operand) -> bool {
    matches!(o, Operand::Literal(Value::Bool(true)))
}

fn select(p: &str, input: &Value, scope: Scope<'_>) -> Result<Option<Value>, StatesError> {
    match path::read(p, input, scope, "Variable") {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.error == "States.Runtime" && e.cause.contains("could not be found") => Ok(None),
        Err(e) => Err(e),
    }
}

/// A timestamp as the States Language takes it: RFC 3339 with an uppercase `T` and, without an offset, an
/// uppercase `Z` (RFC 3339 itself also allows a space and lowercase letters).
fn timestamp(v: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let s = v.as_str()?;
    if s.as_bytes().get(10) != Some(&b'T') || s.ends_with('z') {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are literal.
pub fn wildcard_match(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => toks.push(Tok::Char(chars.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Classic two-pointer glob with backtracking to the last star.
    let (mut t, mut p) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < toks.len() && toks[p] == Tok::Char(text[t]) {
            t += 1;
            p += 1;
        } else if p < toks.len() && toks[p] == Tok::Star {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < toks.len() && toks[p] == Tok::Star {
        p += 1;
    }
    p == toks.len()
}

fn compare(op: Op, value: &Value, expected: &Value) -> bool {
    use std::cmp::Ordering::*;
    let strings = || Some((value.as_str()?, expected.as_str()?));
    let numbers = || Some((value.as_f64()?, expected.as_f64()?));
    let times = || Some((timestamp(value)?, timestamp(expected)?));
    let ord = |o: Option<std::cmp::Ordering>, want: &[std::cmp::Ordering]| o.is_some_and(|o| want.contains(&o));
    match op {
        Op::StringEquals => strings().is_some_and(|(a, b)| a == b),
        Op::StringLessThan => ord(strings().map(|(a, b)| a.cmp(b)), &[Less]),
        Op::StringGreaterThan => ord(strings().map(|(a, b)| a.cmp(b)), &[Greater]),
        Op::StringLessThanEquals => ord(strings().map(|(a, b)| a.cmp(b)), &[Less, Equal]),
        Op::StringGreaterThanEquals => ord(strings().map(|(a, b)| a.cmp(b)), &[Greater, Equal]),
        Op::StringMatches => strings().is_some_and(|(a, b)| wildcard_match(a, b)),
        Op::NumericEquals => value.is_number() && expected.is_number() && json_equal(value, expected),
        Op::NumericLessThan => ord(numbers().and_then(|(a, b)| a.partial_cmp(&b)), &[Less]),
        Op::NumericGreaterThan => ord(numbers().and_then(|(a, b)| a.partial_cmp(&b)), &[Greater]),
        Op::NumericLessThanEquals => ord(numbers().and_then(|(a, b)| a.partial_cmp(&b)), &[Less, Equal]),
        Op::NumericGreaterThanEquals => ord(numbers().and_then(|(a, b)| a.partial_cmp(&b)), &[Greater, Equal]),
        Op::BooleanEquals => value.is_boolean() && value == expected,
        Op::TimestampEquals => ord(times().map(|(a, b)| a.cmp(&b)), &[Equal]),
        Op::TimestampLessThan => ord(times().map(|(a, b)| a.cmp(&b)), &[Less]),
        Op::TimestampGreaterThan => ord(times().map(|(a, b)| a.cmp(&b)), &[Greater]),
        Op::TimestampLessThanEquals => ord(times().map(|(a, b)| a.cmp(&b)), &[Less, Equal]),
        Op::TimestampGreaterThanEquals => ord(times().map(|(a, b)| a.cmp(&b)), &[Greater, Equal]),
        Op::IsNull => value.is_null() == (expected == &Value::Bool(true)),
        Op::IsNumeric => value.is_number() == (expected == &Value::Bool(true)),
        Op::IsString => value.is_string() == (expected == &Value::Bool(true)),
        Op::IsBoolean => value.is_boolean() == (expected == &Value::Bool(true)),
        Op::IsTimestamp => timestamp(value).is_some() == (expected == &Value::Bool(true)),
        Op::IsPresent => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, input: Value) -> Result<bool, StatesError> {
        Rule::parse(&rule, false).unwrap().holds(&input, Scope::new(&json!({}), &path::Vars::new()))
    }

    #[test]
    fn comparisons_tests_and_combinators() {
        let i = json!({"type": "Private", "value": 42, "flag": true, "at": "2016-03-14T01:59:00Z", "other": 42.0, "n": null});
        assert!(holds(json!({"Variable": "$.type", "StringEquals": "Private"}), i.clone()).unwrap());
        assert!(holds(json!({"Variable": "$.value", "NumericGreaterThanEquals": 20}), i.clone()).unwrap());
        assert!(holds(json!({"Variable": "$.value", "NumericEqualsPath": "$.other"}), i.clone()).unwrap());
        assert!(
            holds(json!({"Variable": "$.at", "TimestampLessThan": "2016-03-14T02:00:00+00:00"}), i.clone()).unwrap()
        );
        assert!(holds(json!({"Variable": "$.flag", "BooleanEquals": true}), i.clone()).unwrap());
        let rule = Rule::parse(&json!({"Variable": "$$.Execution.Name", "StringEquals": "run-1"}), false).unwrap();
        assert!(
            rule.holds(&json!({}), Scope::new(&json!({"Execution": {"Name": "run-1"}}), &path::Vars::new())).unwrap(),
            "the context object"
        );
        assert!(holds(json!({"Variable": "$.n", "IsNull": true}), i.clone()).unwrap());
        assert!(holds(json!({"Variable": "$.missing", "IsPresent": false}), i.clone()).unwrap());
        assert!(holds(json!({"Variable": "$.at", "IsTimestamp": true}), i.clone()).unwrap());
        assert!(!holds(json!({"Variable": "$.value", "StringEquals": "42"}), i.clone()).unwrap(), "types differ");
        assert!(holds(
            json!({"And": [{"Variable": "$.value", "NumericGreaterThan": 1}, {"Not": {"Variable": "$.type", "StringEquals": "Public"}}]}),
            i.clone()
        )
        .unwrap());
        assert!(holds(json!({"Or": [{"Variable": "$.value", "NumericLessThan": 1}, {"Variable": "$.flag", "BooleanEquals": true}]}), i.clone()).unwrap());
        let e = holds(json!({"Variable": "$.missing", "StringEquals": "x"}), i).unwrap_err();
        assert_eq!(e.error, "States.Runtime");
    }

    #[test]
    fn string_matches_wildcards() {
        assert!(wildcard_match("log-2023-01.txt", "log-*.txt"));
        assert!(wildcard_match("abc", "*"));
        assert!(wildcard_match("a*c", "a\\*c"));
        assert!(!wildcard_match("abc", "a\\*c"));
        assert!(wildcard_match("", "*"));
        assert!(!wildcard_match("abd", "*c"));
        assert!(wildcard_match("xaybzc", "*a*b*c"));
    }

    #[test]
    fn malformed_rules_are_refused() {
        for bad in [
            json!({"Variable": "$.x"}),
            json!({"Variable": "$.x", "StringEquals": 1}),
            json!({"Variable": "$.x", "NumericEquals": "1"}),
            json!({"Variable": "$.x", "Bogus": 1}),
            json!({"Variable": "$.x", "StringEquals": "a", "StringMatches": "b"}),
            json!({"And": []}),
            json!({"Variable": "x", "StringEquals": "a"}),
            json!({"Variable": "$.x", "IsNullPath": "$.y"}),
        ] {
            assert!(Rule::parse(&bad, false).is_err(), "{bad}");
        }
    }
}
