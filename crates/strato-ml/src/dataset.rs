//! Training datasets: CSV, JSONL, JSON arrays and spaCy textcat JSON, parsed into labelled examples.
//!
//! Every error names the line (CSV, JSONL) or the array index (JSON) and says what is wrong, so a user can fix the
//! file; nothing is returned unless the whole file is valid.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// File formats a dataset can come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    /// CSV with header `text,label` and an optional `split` column.
    Csv,
    /// One `{"text","label"}` object per line.
    Jsonl,
    /// A JSON array of `{"text","label"}` objects.
    Json,
    /// spaCy textcat: `{"text","cats":{LABEL: score}}` objects (or `[text, {"cats": …}]` pairs); label = highest cat.
    Spacy,
}

impl DatasetFormat {
    /// Name used in API responses and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
            Self::Json => "json",
            Self::Spacy => "spacy",
        }
    }

    /// Format implied by an HTTP `Content-Type` (parameters such as `charset` ignored).
    /// `application/json` may turn out to be spaCy's format; [`parse_dataset`] decides from the content.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "text/csv" | "application/csv" => Some(Self::Csv),
            "application/x-ndjson" | "application/jsonl" | "application/x-jsonlines" | "application/jsonlines" => {
                Some(Self::Jsonl)
            }
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    /// Format implied by a file name's extension.
    pub fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            Some(Self::Csv)
        } else if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            Some(Self::Jsonl)
        } else if lower.ends_with(".json") {
            Some(Self::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` to serve the stored file with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv",
            Self::Jsonl => "application/x-ndjson",
            Self::Json | Self::Spacy => "application/json",
        }
    }
}

/// Which part of the data an example belongs to, when the dataset says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data: used for the reported metrics, then trained on in the final refit.
    Val,
    /// Test data: never trained on, only evaluated.
    Test,
}

/// One labelled text.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The text.
    pub text: String,
    /// Its label.
    pub label: String,
    /// Split, when the dataset has a `split` column.
    pub split: Option<Split>,
}

/// A parsed, validated dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Format it was parsed from.
    pub format: DatasetFormat,
    /// Examples in file order.
    pub examples: Vec<Example>,
}

impl Dataset {
    /// Distinct labels, sorted.
    pub fn labels(&self) -> Vec<String> {
        self.examples.iter().map(|e| e.label.clone()).collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// Builds a dataset from examples given inline (e.g. `"data": [...]` in a request), validating it.
    pub fn from_examples(examples: Vec<Example>) -> Result<Self, DatasetError> {
        for (i, e) in examples.iter().enumerate() {
            check_text_label(&e.text, &e.label).map_err(|m| DatasetError(format!("item {i}: {m}")))?;
        }
        let ds = Self { format: DatasetFormat::Json, examples };
        ds.validate()?;
        Ok(ds)
    }

    fn validate(&self) -> Result<(), DatasetError> {
        if self.examples.is_empty() {
            return Err(DatasetError("the dataset has no examples".into()));
        }
        let labels = self.labels();
        if labels.len() < 2 {
            return Err(DatasetError(format!(
                "the dataset has {} label{} ({}); a classifier needs at least 2",
                labels.len(),
                if labels.len() == 1 { "" } else { "s" },
                labels.join(", ")
            )));
        }
        // With a split column, every label must be trainable: a label seen only in val/test could never be predicted.
        if self.examples.iter().any(|e| e.split.is_some()) {
            let trainable: BTreeSet<&str> = self
                .examples
                .iter()
                .filter(|e| matches!(e.split, Some(Split::Train) | Some(Split::Val)))
                .map(|e| e.label.as_str())
                .collect();
            let missing: Vec<&str> = labels.iter().map(String::as_str).filter(|l| !trainable.contains(l)).collect();
            if !missing.is_empty() {
                return Err(DatasetError(format!(
                    "label(s) {} have no train or val examples (only test); add training examples or remove them",
                    missing.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// A dataset that cannot be used; the message names the place and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DatasetError(pub String);

fn check_text_label(text: &str, label: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("text is empty".into());
    }
    if label.trim().is_empty() {
        return Err("label is empty".into());
    }
    Ok(())
}

/// Parses and validates a dataset. `format` comes from the content type or file extension; JSON content is
/// recognised as spaCy textcat when its items carry `cats`.
pub fn parse_dataset(bytes: &[u8], format: DatasetFormat) -> Result<Dataset, DatasetError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        DatasetError(format!("line {line}: the file is not valid UTF-8"))
    })?;
    let ds = match format {
        DatasetFormat::Csv => parse_csv(text)?,
        DatasetFormat::Jsonl => parse_jsonl(text)?,
        DatasetFormat::Json | DatasetFormat::Spacy => parse_json(text)?,
    };
    ds.validate()?;
    Ok(ds)
}

fn parse_csv(text: &str) -> Result<Dataset, DatasetError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers =
        reader.headers().map_err(|e| DatasetError(format!("line 1: cannot read the CSV header: {e}")))?.clone();
    let find = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let (Some(text_col), Some(label_col)) = (find("text"), find("label")) else {
        return Err(DatasetError(format!(
            "line 1: the CSV header must have columns text,label (optionally split); found {:?}",
            headers.iter().collect::<Vec<_>>().join(",")
        )));
    };
    let split_col = find("split");
    let mut examples = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&e))?;
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let get = |i: usize| record.get(i).unwrap_or("");
        let (t, l) = (get(text_col), get(label_col));
        check_text_label(t, l).map_err(|m| DatasetError(format!("line {line}: {m}")))?;
        let split = match split_col {
            None => None,
            Some(c) => Some(parse_split(get(c)).map_err(|m| DatasetError(format!("line {line}: {m}")))?),
        };
        examples.push(Example { text: t.to_string(), label: l.trim().to_string(), split });
    }
    Ok(Dataset { format: DatasetFormat::Csv, examples })
}

fn csv_error(e: &csv::Error) -> DatasetError {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => DatasetError(format!(
            "line {}: expected {expected_len} fields like the header, found {len} (quote texts that contain commas)",
            pos.as_ref().map(|p| p.line()).unwrap_or(0)
        )),
        _ => DatasetError(format!("line {}: {e}", e.position().map(|p| p.line()).unwrap_or(0))),
    }
}

fn parse_split(s: &str) -> Result<Split, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "train" | "" => Ok(Split::Train),
        "val" | "valid" | "validation" | "dev" => Ok(Split::Val),
        "test" => Ok(Split::Test),
        other => Err(format!("split must be train, val or test, not {other:?}")),
    }
}

fn parse_jsonl(text: &str) -> Result<Dataset, DatasetError> {
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| DatasetError(format!("line {n}: invalid JSON: {e}")))?;
        examples.push(example_from_value(&v).map_err(|m| DatasetError(format!("line {n}: {m}")))?);
    }
    Ok(Dataset { format: DatasetFormat::Jsonl, examples })
}

fn parse_json(text: &str) -> Result<Dataset, DatasetError> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| DatasetError(format!("line {}: invalid JSON: {e}", e.line())))?;
    let Value::Array(items) = v else {
        return Err(DatasetError(
            "a JSON dataset must be an array of {\"text\",\"label\"} or spaCy {\"text\",\"cats\"} objects".into(),
        ));
    };
    let spacy = items.first().is_some_and(is_spacy_item);
    let mut examples = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let ex = if spacy { example_from_spacy(item) } else { example_from_value(item) };
        examples.push(ex.map_err(|m| DatasetError(format!("item {i}: {m}")))?);
    }
    if spacy {
        spacy_labels_have_examples(&items)?;
    }
    let format = if spacy { DatasetFormat::Spacy } else { DatasetFormat::Json };
    Ok(Dataset { format, examples })
}

fn is_spacy_item(v: &Value) -> bool {
    v.get("cats").is_some() || v.as_array().is_some_and(|a| a.len() == 2 && a[1].get("cats").is_some())
}

fn example_from_value(v: &Value) -> Result<Example, String> {
    let obj = v.as_object().ok_or("expected an object with \"text\" and \"label\"")?;
    let text = obj.get("text").and_then(Value::as_str).ok_or("\"text\" must be a string")?;
    let label = match obj.get("label") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("\"label\" must be a string".into()),
    };
    check_text_label(text, &label)?;
    let split = match obj.get("split") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_split(s)?),
        Some(_) => return Err("\"split\" must be a string".into()),
    };
    Ok(Example { text: text.to_string(), label: label.trim().to_string(), split })
}

fn spacy_parts(v: &Value) -> Result<(&str, &serde_json::Map<String, Value>), String> {
    let (text, cats) = match v {
        Value::Object(o) => (o.get("text"), o.get("cats")),
        Value::Array(a) if a.len() == 2 => (a.first(), a[1].get("cats")),
        _ => return Err("expected {\"text\", \"cats\"} or [text, {\"cats\": …}]".into()),
    };
    let text = text.and_then(Value::as_str).ok_or("\"text\" must be a string")?;
    let cats = cats.and_then(Value::as_object).ok_or("\"cats\" must be an object of label: score")?;
    Ok((text, cats))
}

fn example_from_spacy(v: &Value) -> Result<Example, String> {
    let (text, cats) = spacy_parts(v)?;
    let mut best: Option<(&str, f64)> = None;
    for (label, score) in cats {
        let s = score.as_f64().ok_or_else(|| format!("cat {label:?} must have a numeric score"))?;
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((label, s));
        }
    }
    let (label, _) = best.ok_or("\"cats\" is empty")?;
    check_text_label(text, label)?;
    Ok(Example { text: text.to_string(), label: label.to_string(), split: None })
}

/// spaCy files declare their label set in every item's `cats`; a declared label that never wins has no examples.
fn spacy_labels_have_examples(items: &[Value]) -> Result<(), DatasetError> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for item in items {
        if let Ok((_, cats)) = spacy_parts(item) {
            for label in cats.keys() {
                counts.entry(label.as_str()).or_default();
            }
        }
    }
    for item in items {
        if let Ok(ex) = example_from_spacy(item) {
            if let Some(c) = counts.get_mut(ex.label.as_str()) {
                *c += 1;
            }
        }
    }
    let empty: Vec<&str> = counts.iter().filter(|(_, &c)| c == 0).map(|(l, _)| *l).collect();
    if empty.is_empty() {
        Ok(())
    } else {
        Err(DatasetError(format!(
            "label(s) {} have no examples (no item has them as the highest cat); add examples or remove the label",
            empty.join(", ")
        )))
    }
}

#[cfg(test)]
#[path = "dataset_test.rs"]
mod tests;
