//! The States Language's intrinsic functions (`States.Format('{}', $.x)` in a `.$` field): parsed once, evaluated
//! against the state input and the context object. Arguments are quoted strings (`\'`, `\{`, `\}`, `\\` escape),
//! numbers, `true`/`false`/`null`, paths (`$.a`, `$$.Execution.Id`) and nested calls, at most 10 deep.

use base64::Engine;
use serde_json::{json, Value};

use crate::error::StatesError;
use crate::path;

/// Deepest nesting AWS allows.
const MAX_DEPTH: usize = 10;
/// Longest string `States.Base64Encode`/`Decode` and `States.Hash` take.
const MAX_DATA: usize = 10_000;
/// Most elements `States.ArrayRange` makes.
const MAX_RANGE: usize = 1000;

/// An argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// A literal: string, number, boolean or null.
    Literal(Value),
    /// A path into the input (`$…`) or the context object (`$$…`).
    Path(String),
    /// A nested call.
    Call(Call),
}

/// A call of an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Its name, e.g. `States.Format`.
    pub name: String,
    /// Its arguments.
    pub args: Vec<Arg>,
}

/// Whether a `.$` field's text is an intrinsic call rather than a path.
pub fn is_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

const FUNCTIONS: &[&str] = &[
    "States.Format",
    "States.StringToJson",
    "States.JsonToString",
    "States.Array",
    "States.ArrayPartition",
    "States.ArrayContains",
    "States.ArrayRange",
    "States.ArrayGetItem",
    "States.ArrayLength",
    "States.ArrayUnique",
    "States.Base64Encode",
    "States.Base64Decode",
    "States.Hash",
    "States.JsonMerge",
    "States.MathRandom",
    "States.MathAdd",
    "States.StringSplit",
    "States.UUID",
];

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn fail(&self, why: &str) -> String {
        format!("intrinsic {:?}: {why} at character {}", self.text, self.at + 1)
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn call(&mut self, depth: usize) -> Result<Call, String> {
        if depth > MAX_DEPTH {
            return Err(self.fail("more than 10 nested intrinsic functions"));
        }
        self.skip_ws();
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.') {
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        if !FUNCTIONS.contains(&name.as_str()) {
            return Err(self.fail(&format!("unknown function {name:?}")));
        }
        self.skip_ws();
        if self.chars.get(self.at) != Some(&'(') {
            return Err(self.fail("expected ("));
        }
        self.at += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.chars.get(self.at) == Some(&')') {
            self.at += 1;
            return Ok(Call { name, args });
        }
        loop {
            args.push(self.arg(depth)?);
            self.skip_ws();
            match self.chars.get(self.at) {
                Some(',') => self.at += 1,
                Some(')') => {
                    self.at += 1;
                    return Ok(Call { name, args });
                }
                _ => return Err(self.fail("expected , or )")),
            }
        }
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, String> {
        self.skip_ws();
        match self.chars.get(self.at) {
            Some('\'') => {
                self.at += 1;
                let mut s = String::new();
                loop {
                    match self.chars.get(self.at) {
                        None => return Err(self.fail("unterminated string")),
                        Some('\\') => {
                            // `\'`, `\{`, `\}`, `\\`: the character itself. Escaped braces stay marked for Format.
                            let next = *self.chars.get(self.at + 1).ok_or_else(|| self.fail("dangling \\"))?;
                            match next {
                                '{' => s.push('\u{E000}'),
                                '}' => s.push('\u{E001}'),
                                c => s.push(c),
                            }
                            self.at += 2;
                        }
                        Some('\'') => {
                            self.at += 1;
                            return Ok(Arg::Literal(Value::String(s)));
                        }
                        Some(c) => {
                            s.push(*c);
                            self.at += 1;
                        }
                    }
                }
            }
            Some('$') => {
                // A path runs to the next top-level `,` or `)`.
                let start = self.at;
                let mut depth_b = 0i32;
                let mut quote: Option<char> = None;
                while let Some(&c) = self.chars.get(self.at) {
                    match (quote, c) {
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '[' | '(') => depth_b += 1,
                        (None, ']') => depth_b -= 1,
                        (None, ')') if depth_b > 0 => depth_b -= 1,
                        (None, ',' | ')') if depth_b == 0 => break,
                        _ => {}
                    }
                    self.at += 1;
                }
                Ok(Arg::Path(self.chars[start..self.at].iter().collect::<String>().trim().to_string()))
            }
            Some(c) if c.is_ascii_alphabetic() && !matches!(c, 't' | 'f' | 'n') => Ok(Arg::Call(self.call(depth + 1)?)),
            Some(_) => {
                let start = self.at;
                while self.chars.get(self.at).is_some_and(|c| !matches!(c, ',' | ')') && !c.is_whitespace()) {
                    self.at += 1;
                }
                let word: String = self.chars[start..self.at].iter().collect();
                match serde_json::from_str::<Value>(&word) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => Ok(Arg::Literal(v)),
                    _ => Err(self.fail(&format!("{word:?} is not a string, number, boolean, null, path or call"))),
                }
            }
            None => Err(self.fail("expected an argument")),
        }
    }
}

/// Parses an intrinsic call.
pub fn parse(text: &str) -> Result<Call, String> {
    let mut p = Parser { chars: text.chars().collect(), at: 0, text };
    let call = p.call(1)?;
    p.skip_ws();
    if p.at != p.chars.len() {
        return Err(p.fail("unexpected text after the call"));
    }
    Ok(call)
}

fn unmark(s: &str) -> String {
    s.replace('\u{E000}', "{").replace('\u{E001}', "}")
}

/// A value as the result carries it: escaped braces become plain braces again.
fn clean(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(unmark(&s)),
        v => v,
    }
}

fn fail(name: &str, why: impl std::fmt::Display) -> StatesError {
    StatesError::intrinsic(format!("Invalid arguments in {name}: {why}"))
}

fn count(name: &str, args: &[Value], n: std::ops::RangeInclusive<usize>) -> Result<(), StatesError> {
    if n.contains(&args.len()) {
        Ok(())
    } else if n.start() == n.end() {
        Err(fail(name, format!("expected {} arguments, got {}", n.start(), args.len())))
    } else {
        Err(fail(name, format!("expected {} to {} arguments, got {}", n.start(), n.end(), args.len())))
    }
}

fn string<'v>(name: &str, v: &'v Value) -> Result<&'v str, StatesError> {
    v.as_str().ok_or_else(|| fail(name, format!("{v} is not a string")))
}

fn array<'v>(name: &str, v: &'v Value) -> Result<&'v Vec<Value>, StatesError> {
    v.as_array().ok_or_else(|| fail(name, format!("{v} is not an array")))
}

/// An integer argument; a fractional number is rounded to the nearest integer, as AWS does.
fn integer(name: &str, v: &Value) -> Result<i64, StatesError> {
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 9.0e15 => Ok(f.round() as i64),
        _ => Err(fail(name, format!("{v} is not a number"))),
    }
}

/// An integer argument that must fit in 32 bits (AWS's range for `States.MathAdd`).
fn int32(name: &str, v: &Value) -> Result<i64, StatesError> {
    let i = integer(name, v)?;
    if i32::try_from(i).is_err() {
        return Err(fail(name, format!("{i} is outside -2147483648..2147483647")));
    }
    Ok(i)
}

/// Evaluates a call against the state input and the context object.
pub fn eval(call: &Call, input: &Value, scope: path::Scope<'_>) -> Result<Value, StatesError> {
    let mut args = Vec::with_capacity(call.args.len());
    for a in &call.args {
        args.push(match a {
            Arg::Literal(v) => v.clone(),
            Arg::Path(p) => path::read(p, input, scope, &call.name)?,
            Arg::Call(c) => eval(c, input, scope)?,
        });
    }
    apply(&call.name, args)
}

/// Applies an intrinsic function (`States.…`) to argument values; JSONata's AWS functions reuse these.
pub fn apply(name: &str, args: Vec<Value>) -> Result<Value, StatesError> {
    let out = match name {
        "States.Format" => {
            let template = string(name, args.first().ok_or_else(|| fail(name, "a template is required"))?)?;
            let mut values = args[1..].iter();
            let mut out = String::new();
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '{' && chars.peek() == Some(&'}') {
                    chars.next();
                    let v = values.next().ok_or_else(|| fail(name, "fewer arguments than {} in the template"))?;
                    match v {
                        Value::String(s) => out.push_str(s),
                        Value::Number(_) | Value::Bool(_) | Value::Null => out.push_str(&v.to_string()),
                        _ => return Err(fail(name, "arguments must be strings, numbers, booleans or null")),
                    }
                } else {
                    out.push(c);
                }
            }
            if values.next().is_some() {
                return Err(fail(name, "more arguments than {} in the template"));
            }
            Value::String(out)
        }
        "States.StringToJson" => {
            count(name, &args, 1..=1)?;
            let s = unmark(string(name, &args[0])?);
            serde_json::from_str(&s).map_err(|e| fail(name, format!("the string is not JSON: {e}")))?
        }
        "States.JsonToString" => {
            count(name, &args, 1..=1)?;
            Value::String(serde_json::to_string(&clean(args[0].clone())).unwrap_or_default())
        }
        "States.Array" => Value::Array(args.into_iter().map(clean).collect()),
        "States.ArrayPartition" => {
            count(name, &args, 2..=2)?;
            let items = array(name, &args[0])?;
            let size = integer(name, &args[1])?;
            if size <= 0 {
                return Err(fail(name, "the chunk size must be a positive integer"));
            }
            Value::Array(items.chunks(size as usize).map(|c| Value::Array(c.to_vec())).collect())
        }
        "States.ArrayContains" => {
            count(name, &args, 2..=2)?;
            let looking = clean(args[1].clone());
            Value::Bool(array(name, &args[0])?.iter().any(|v| json_equal(v, &looking)))
        }
        "States.ArrayRange" => {
            count(name, &args, 3..=3)?;
            let (start, end, step) = (integer(name, &args[0])?, integer(name, &args[1])?, integer(name, &args[2])?);
            if step == 0 {
                return Err(fail(name, "the step must not be 0"));
            }
            let mut out = Vec::new();
            let mut i = start;
            while (step > 0 && i <= end) || (step < 0 && i >= end) {
                out.push(json!(i));
                if out.len() > MAX_RANGE {
                    return Err(fail(name, format!("the range has more than {MAX_RANGE} elements")));
                }
                i += step;
            }
            Value::Array(out)
        }
        "States.ArrayGetItem" => {
            count(name, &args, 2..=2)?;
            let items = array(name, &args[0])?;
            let i = integer(name, &args[1])?;
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| fail(name, format!("index {i} is out of bounds of an array of {}", items.len())))?
        }
        "States.ArrayLength" => {
            count(name, &args, 1..=1)?;
            json!(array(name, &args[0])?.len())
        }
        "States.ArrayUnique" => {
            count(name, &args, 1..=1)?;
            let mut out: Vec<Value> = Vec::new();
            for v in array(name, &args[0])? {
                if !out.iter().any(|o| json_equal(o, v)) {
                    out.push(v.clone());
                }
            }
            Value::Array(out)
        }
        "States.Base64Encode" => {
            count(name, &args, 1..=1)?;
            let s = unmark(string(name, &args[0])?);
            if s.chars().count() > MAX_DATA {
                return Err(fail(name, format!("the string is longer than {MAX_DATA} characters")));
            }
            Value::String(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))
        }
        "States.Base64Decode" => {
            count(name, &args, 1..=1)?;
            let s = string(name, &args[0])?;
            if s.chars().count() > MAX_DATA {
                return Err(fail(name, format!("the string is longer than {MAX_DATA} characters")));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| fail(name, format!("not base64: {e}")))?;
            Value::String(String::from_utf8(bytes).map_err(|_| fail(name, "the decoded bytes are not UTF-8"))?)
        }
        "States.Hash" => {
            count(name, &args, 2..=2)?;
            let data = match &args[0] {
                Value::String(s) => unmark(s),
                Value::Null => return Err(fail(name, "the data must not be null")),
                v => v.to_string(),
            };
            if data.chars().count() > MAX_DATA {
                return Err(fail(name, format!("the data is longer than {MAX_DATA} characters")));
            }
            let algorithm = string(name, &args[1])?;
            use sha2::Digest;
            let digest = match algorithm {
                "MD5" => hex::encode(md5::Md5::digest(data.as_bytes())),
                "SHA-1" => hex::encode(sha1::Sha1::digest(data.as_bytes())),
                "SHA-256" => hex::encode(sha2::Sha256::digest(data.as_bytes())),
                "SHA-384" => hex::encode(sha2::Sha384::digest(data.as_bytes())),
                "SHA-512" => hex::encode(sha2::Sha512::digest(data.as_bytes())),
                other => {
                    return Err(fail(
                        name,
                        format!("algorithm {other:?} is not one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"),
                    ))
                }
            };
            Value::String(digest)
        }
        "States.JsonMerge" => {
            count(name, &args, 3..=3)?;
            if args[2] != Value::Bool(false) {
                return Err(fail(name, "only a shallow merge is supported: the third argument must be false"));
            }
            let (Value::Object(a), Value::Object(b)) = (clean(args[0].clone()), clean(args[1].clone())) else {
                return Err(fail(name, "both values must be JSON objects"));
            };
            let mut merged = a;
            merged.extend(b);
            Value::Object(merged)
        }
        "States.MathRandom" => {
            count(name, &args, 2..=3)?;
            let (start, end) = (integer(name, &args[0])?, integer(name, &args[1])?);
            if start >= end {
                return Err(fail(name, "the start must be less than the end"));
            }
            let n = match args.get(2) {
                Some(seed) => {
                    use rand::{Rng, SeedableRng};
                    rand::rngs::StdRng::seed_from_u64(integer(name, seed)? as u64).random_range(start..end)
                }
                None => rand::random_range(start..end),
            };
            json!(n)
        }
        "States.MathAdd" => {
            count(name, &args, 2..=2)?;
            let (a, b) = (int32(name, &args[0])?, int32(name, &args[1])?);
            json!(a + b)
        }
        "States.StringSplit" => {
            count(name, &args, 2..=2)?;
            let s = unmark(string(name, &args[0])?);
            let delimiters: Vec<char> = unmark(string(name, &args[1])?).chars().collect();
            Value::Array(
                s.split(|c| delimiters.contains(&c))
                    .filter(|t| !t.is_empty())
                    .map(|t| Value::String(t.into()))
                    .collect(),
            )
        }
        "States.UUID" => {
            count(name, &args, 0..=0)?;
            Value::String(uuid::Uuid::new_v4().to_string())
        }
        other => return Err(StatesError::intrinsic(format!("unknown intrinsic function {other}"))),
    };
    Ok(clean(out))
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, input: Value) -> Result<Value, StatesError> {
        eval(
            &parse(text).unwrap(),
            &input,
            path::Scope::new(&json!({"Execution": {"Name": "run-1"}}), &path::Vars::new()),
        )
    }

    #[test]
    fn calls_parse_with_literals_paths_and_nesting() {
        let c =
            parse("States.Format('a {} \\'b\\' \\{\\}', $.x, 3, true, null, States.Array($$.Execution.Name))").unwrap();
        assert_eq!(c.args.len(), 6);
        assert_eq!(c.args[1], Arg::Path("$.x".into()));
        assert!(matches!(&c.args[5], Arg::Call(n) if n.name == "States.Array"));
        for bad in ["States.Nope()", "States.Array(", "States.Array($.a) x", "States.Array('a)", "States.Array(foo)"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let deep = (0..11).fold("1".to_string(), |acc, _| format!("States.Array({acc})"));
        assert!(parse(&deep).unwrap_err().contains("10 nested"));
    }

    #[test]
    fn format_fills_placeholders_and_keeps_escaped_braces() {
        assert_eq!(
            run("States.Format('Hello, my name is {}.', $.name)", json!({"name": "Arnav"})).unwrap(),
            json!("Hello, my name is Arnav.")
        );
        assert_eq!(
            run("States.Format('{} \\{x\\} {} {}', 1.5, true, null)", json!({})).unwrap(),
            json!("1.5 {x} true null")
        );
        assert_eq!(run("States.Format('{}', $.o)", json!({"o": {}})).unwrap_err().error, "States.IntrinsicFailure");
        assert!(run("States.Format('{} {}', 1)", json!({})).is_err());
    }

    #[test]
    fn the_rest_behave_as_documented() {
        let r = |t: &str, i: Value| run(t, i).unwrap();
        assert_eq!(r("States.Array($.Id)", json!({"Id": 123456})), json!([123456]));
        assert_eq!(
            r("States.ArrayPartition($.a, 4)", json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]})),
            json!([[1, 2, 3, 4], [5, 6, 7, 8], [9]])
        );
        assert_eq!(r("States.ArrayContains($.a, $.v)", json!({"a": [1, 2, 3], "v": 3.0})), json!(true));
        assert_eq!(r("States.ArrayRange(1, 9, 2)", json!({})), json!([1, 3, 5, 7, 9]));
        assert_eq!(r("States.ArrayRange(5, 1, -2)", json!({})), json!([5, 3, 1]));
        assert_eq!(r("States.ArrayGetItem($.a, 5)", json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]})), json!(6));
        assert_eq!(r("States.ArrayLength($.a)", json!({"a": [1, 2, 3]})), json!(3));
        assert_eq!(r("States.ArrayUnique($.a)", json!({"a": [1, 2, 3, 3, 3, 3, 3, 3, 4]})), json!([1, 2, 3, 4]));
        assert_eq!(r("States.Base64Encode($.s)", json!({"s": "Data to encode"})), json!("RGF0YSB0byBlbmNvZGU="));
        assert_eq!(r("States.Base64Decode($.s)", json!({"s": "RGF0YSB0byBlbmNvZGU="})), json!("Data to encode"));
        assert_eq!(
            r("States.Hash($.Data, $.Algorithm)", json!({"Data": "input data", "Algorithm": "SHA-1"})),
            json!("aaff4a450a104cd177d28d18d74485e8cae074b7")
        );
        assert_eq!(
            r("States.JsonMerge($.a, $.b, false)", json!({"a": {"x": 1, "y": {"z": 1}}, "b": {"y": 2}})),
            json!({"x": 1, "y": 2})
        );
        assert_eq!(r("States.MathAdd($.v, -1)", json!({"v": 111})), json!(110));
        assert_eq!(
            r("States.StringSplit($.s, $.d)", json!({"s": "This.is+a,test=string", "d": ".+,="})),
            json!(["This", "is", "a", "test", "string"])
        );
        assert_eq!(r("States.StringToJson($.s)", json!({"s": "{\"number\": 20}"})), json!({"number": 20}));
        assert_eq!(r("States.JsonToString($.o)", json!({"o": {"a": [1, "b"]}})), json!("{\"a\":[1,\"b\"]}"));
        let n = r("States.MathRandom(1, 10)", json!({})).as_i64().unwrap();
        assert!((1..10).contains(&n));
        assert_eq!(
            r("States.MathRandom(1, 1000, 7)", json!({})),
            r("States.MathRandom(1, 1000, 7)", json!({})),
            "seeded"
        );
        assert_eq!(r("States.UUID()", json!({})).as_str().unwrap().len(), 36);
        assert_eq!(r("States.ArrayPartition($.a, 1.6)", json!({"a": [1, 2]})), json!([[1, 2]]), "1.6 rounds to 2");
        for bad in [
            "States.ArrayGetItem($.a, 9)",
            "States.ArrayPartition($.a, 0)",
            "States.MathAdd(2147483648, -1)",
            "States.JsonMerge($.a, $.a, true)",
            "States.Hash($.a, 'SHA-2')",
            "States.ArrayRange(1, 2000, 1)",
            "States.Base64Decode('%%%')",
        ] {
            assert_eq!(run(bad, json!({"a": [1]})).unwrap_err().error, "States.IntrinsicFailure", "{bad}");
        }
    }
}
