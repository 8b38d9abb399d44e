//! Paths over JSON, as the States Language uses them: reference paths (`$.a.b[0]`, `$['key']`), which name one
//! node and are where `ResultPath` writes; and JSONPath queries (`$.items[*].id`, filters), which `InputPath`,
//! `OutputPath` and `.$` fields read. A query that can match several nodes (wildcards, slices, unions, filters,
//! descent) yields an array, as AWS's JSONPath (Jayway's) does; a definite one yields the node, and a missing node is
//! an error.

use serde_json::Value;

use crate::error::StatesError;

/// One step of a reference path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Field(String),
    /// An array element.
    Index(usize),
}

/// A reference path: `$` and steps naming a single node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePath(pub Vec<Step>);

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

impl ReferencePath {
    /// Parses `$`, `$.a.b`, `$['a b'].c[2]`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        let bad = |why: &str| PathError(format!("{text:?} is not a reference path: {why}"));
        let rest = text.strip_prefix('$').ok_or_else(|| bad("it must start with $"))?;
        let chars: Vec<char> = rest.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                        j += 1;
                    }
                    let name: String = chars[start..j].iter().collect();
                    if name.is_empty() || name == "*" || name.contains(['(', ')', '@', '?', ',', ':', '*']) {
                        return Err(bad("a field name is empty or holds an operator"));
                    }
                    steps.push(Step::Field(name));
                    i = j;
                }
                '[' => {
                    let close =
                        chars[i..].iter().position(|c| *c == ']').map(|p| p + i).ok_or_else(|| bad("unclosed ["))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                        steps.push(Step::Field(q.to_string()));
                    } else if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        steps.push(Step::Field(q.to_string()));
                    } else if let Ok(n) = inner.parse::<usize>() {
                        steps.push(Step::Index(n));
                    } else {
                        return Err(bad("only a quoted name or an index may stand in brackets"));
                    }
                    i = close + 1;
                }
                _ => return Err(bad("expected . or [")),
            }
        }
        Ok(Self(steps))
    }

    /// The node the path names, if present.
    pub fn get<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        let mut at = root;
        for s in &self.0 {
            at = match (s, at) {
                (Step::Field(f), Value::Object(m)) => m.get(f)?,
                (Step::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// Writes `value` at the path inside `root`, creating missing objects on the way, as `ResultPath` does; a step
    /// into a value that is not an object (or an array index out of range) cannot be written.
    pub fn set(&self, root: &mut Value, value: Value) -> Result<(), String> {
        let Some((last, init)) = self.0.split_last() else {
            *root = value;
            return Ok(());
        };
        let mut at = root;
        for s in init {
            at = match (s, at) {
                (Step::Field(f), Value::Object(m)) => {
                    m.entry(f.clone()).or_insert_with(|| Value::Object(Default::default()))
                }
                (Step::Index(i), Value::Array(a)) if *i < a.len() => &mut a[*i],
                (s, _) => return Err(format!("{s:?} cannot be followed")),
            };
        }
        match (last, at) {
            (Step::Field(f), Value::Object(m)) => {
                m.insert(f.clone(), value);
                Ok(())
            }
            (Step::Index(i), Value::Array(a)) if *i < a.len() => {
                a[*i] = value;
                Ok(())
            }
            (s, _) => Err(format!("{s:?} cannot be written")),
        }
    }
}

/// A JSONPath query as a States Language field holds it.
#[derive(Debug, Clone)]
pub struct Query {
    text: String,
    path: serde_json_path::JsonPath,
    definite: bool,
}

impl Query {
    /// Parses a query starting with `$`.
    pub fn parse(text: &str) -> Result<Self, PathError> {
        if !text.starts_with('$') {
            return Err(PathError(format!("{text:?} is not a JSONPath: it must start with $")));
        }
        let path = serde_json_path::JsonPath::parse(text)
            .map_err(|e| PathError(format!("{text:?} is not a valid JSONPath: {e}")))?;
        Ok(Self { text: text.to_string(), definite: is_definite(text), path })
    }

    /// The query as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it names at most one node (no wildcard, slice, union, filter or descent).
    pub fn is_definite(&self) -> bool {
        self.definite
    }

    /// The node (definite query) or the array of matched nodes; `None` when a definite query matches nothing.
    pub fn select(&self, root: &Value) -> Option<Value> {
        let nodes = self.path.query(root);
        if self.definite {
            nodes.first().map(|v| (*v).clone())
        } else {
            Some(Value::Array(nodes.all().into_iter().cloned().collect()))
        }
    }
}

/// Scans a path for what makes it indefinite, outside quoted names.
fn is_definite(text: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut depth = 0;
    let mut prev = '\0';
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q && prev != '\\' => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            (None, '*' | '?') => return false,
            (None, ',' | ':') if depth > 0 => return false,
            (None, '.') if prev == '.' => return false,
            _ => {}
        }
        prev = c;
    }
    true
}

/// Workflow variables by name (`Assign`; read as `$name`).
pub type Vars = serde_json::Map<String, Value>;

/// What a path reads besides the state input: the context object (`$$…`) and the workflow's variables (`$name…`).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    /// The context object.
    pub context: &'a Value,
    /// The variables in scope.
    pub vars: &'a Vars,
}

impl<'a> Scope<'a> {
    /// A scope of a context object and variables.
    pub fn new(context: &'a Value, vars: &'a Vars) -> Self {
        Self { context, vars }
    }
}

/// Where a path starts.
#[derive(Debug, PartialEq, Eq)]
pub enum Root<'t> {
    /// `$…`: the state input (or, in `Assign`, the state's result).
    Input,
    /// `$$…`: the context object.
    Context,
    /// `$name…`: a variable.
    Variable(&'t str),
}

/// A path's root and the `$…` query applied to it.
pub fn split(text: &str) -> (Root<'_>, String) {
    if let Some(rest) = text.strip_prefix("$$") {
        return (Root::Context, format!("${rest}"));
    }
    if let Some(rest) = text.strip_prefix('$') {
        if rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            return (Root::Variable(&rest[..end]), format!("${}", &rest[end..]));
        }
    }
    (Root::Input, text.to_string())
}

/// Checks a path of any root (input, context object or variable), for validation.
pub fn check(text: &str) -> Result<(), String> {
    Query::parse(&split(text).1).map(|_| ()).map_err(|e| e.0)
}

/// Reads a query from the state input (or the context object when it starts with `$$`, or a variable when it
/// starts with `$name`), for a `.$` field or a path field named `field`; a definite query that matches nothing is
/// `States.Runtime`, as AWS reports it.
pub fn read(text: &str, input: &Value, scope: Scope<'_>, field: &str) -> Result<Value, StatesError> {
    let (root, query) = split(text);
    let root = match root {
        Root::Input => input,
        Root::Context => scope.context,
        Root::Variable(name) => scope.vars.get(name).ok_or_else(|| {
            StatesError::runtime(format!(
                "The JSONPath '{text}' specified for the field '{field}' references the variable '{name}', which is \
                 not assigned"
            ))
        })?,
    };
    let q = Query::parse(&query).map_err(|e| StatesError::runtime(e.0))?;
    q.select(root).ok_or_else(|| {
        StatesError::runtime(format!(
            "The JSONPath '{text}' specified for the field '{field}' could not be found in the input '{}'",
            serde_json::to_string(root).unwrap_or_default()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_paths_read_and_write_single_nodes() {
        let p = ReferencePath::parse("$.a['b c'][1]").unwrap();
        assert_eq!(p.0, vec![Step::Field("a".into()), Step::Field("b c".into()), Step::Index(1)]);
        let v = json!({"a": {"b c": [1, 2]}});
        assert_eq!(p.get(&v), Some(&json!(2)));
        let mut root = json!({"x": 1});
        ReferencePath::parse("$.result.inner").unwrap().set(&mut root, json!("r")).unwrap();
        assert_eq!(root, json!({"x": 1, "result": {"inner": "r"}}));
        ReferencePath::parse("$").unwrap().set(&mut root, json!(7)).unwrap();
        assert_eq!(root, json!(7));
        let mut scalar = json!({"x": 1});
        assert!(ReferencePath::parse("$.x.y").unwrap().set(&mut scalar, json!(1)).is_err());
        for bad in ["a.b", "$.", "$.a[*]", "$..a", "$.a[?(@.b)]", "$[1:2]"] {
            assert!(ReferencePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_are_definite_unless_they_can_match_many() {
        let v = json!({"items": [{"id": 1, "p": 5}, {"id": 2, "p": 15}], "a": {"b": "c"}, "k.j": 3});
        assert_eq!(Query::parse("$.a.b").unwrap().select(&v), Some(json!("c")));
        assert_eq!(Query::parse("$.items[*].id").unwrap().select(&v), Some(json!([1, 2])));
        assert_eq!(Query::parse("$.items[?(@.p > 10)].id").unwrap().select(&v), Some(json!([2])));
        assert_eq!(Query::parse("$..id").unwrap().select(&v), Some(json!([1, 2])));
        assert_eq!(Query::parse("$.items[0:1]").unwrap().select(&v), Some(json!([{"id": 1, "p": 5}])));
        assert_eq!(Query::parse("$['k.j']").unwrap().select(&v), Some(json!(3)));
        assert_eq!(Query::parse("$.missing").unwrap().select(&v), None);
        assert_eq!(Query::parse("$.nothing[*]").unwrap().select(&v), Some(json!([])));
        assert!(Query::parse("items").is_err());
    }

    #[test]
    fn reading_a_missing_path_is_a_runtime_error_naming_it() {
        let vars = Vars::new();
        let e = read("$.nope", &json!({"a": 1}), Scope::new(&json!({}), &vars), "x.$").unwrap_err();
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(
            e.cause,
            "The JSONPath '$.nope' specified for the field 'x.$' could not be found in the input '{\"a\":1}'"
        );
        assert_eq!(
            read("$$.Execution.Id", &json!({}), Scope::new(&json!({"Execution": {"Id": "e"}}), &vars), "id.$").unwrap(),
            json!("e")
        );
    }

    #[test]
    fn variables_are_read_by_name_then_path() {
        let mut vars = Vars::new();
        vars.insert("order".into(), json!({"items": [3, 4]}));
        vars.insert("n_1".into(), json!(7));
        let ctx = json!({});
        let scope = Scope::new(&ctx, &vars);
        assert_eq!(read("$order.items[1]", &json!({}), scope, "f").unwrap(), json!(4));
        assert_eq!(read("$n_1", &json!({}), scope, "f").unwrap(), json!(7));
        assert_eq!(read("$['order']", &json!({"order": 1}), scope, "f").unwrap(), json!(1), "bracket: the input");
        assert_eq!(split("$.a"), (Root::Input, "$.a".into()));
        assert_eq!(split("$x"), (Root::Variable("x"), "$".into()));
        assert!(read("$missing.a", &json!({}), scope, "f").unwrap_err().cause.contains("not assigned"));
        assert!(check("$order.items[0]").is_ok() && check("$order..[").is_err());
    }
}
