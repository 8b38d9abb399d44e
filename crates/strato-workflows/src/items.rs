//! A Map's items from storage and its results to storage, as Distributed Map's `ItemReader` and `ResultWriter`
//! do on S3: here the bucket and key name one of Strato's files (`/v1/files`), `<Bucket>/<Key>`. `ItemBatcher`
//! groups items into batches (`{"Items": [...], "BatchInput": ...}`).
//!
//! Readers: `arn:aws:states:::s3:getObject` with `ReaderConfig.InputType` `JSON` (an array), `JSONL` (one value a
//! line) or `CSV` (rows as objects by the header row, or by `CSVHeaders` with `CSVHeaderLocation: GIVEN`), and
//! `arn:aws:states:::s3:listObjectsV2` (the files under a prefix: `Key`, `Size`, `Etag`, `LastModified`,
//! `StorageClass`); `MaxItems` limits any. A reader that fails is `States.ItemReaderFailed`.

use serde_json::{json, Map, Value};
use strato_blob::BlobStore;

use crate::error::StatesError;

/// Where files live in the blob store (as Strato's files API keeps them).
const FILES: &str = "files/";

/// The largest object a reader loads.
const MAX_OBJECT: u64 = 256 * 1024 * 1024;

fn failed(cause: impl Into<String>) -> StatesError {
    StatesError::new("States.ItemReaderFailed", cause)
}

/// Strato's files, for readers and writers.
#[derive(Clone)]
pub struct ItemStore {
    blobs: BlobStore,
}

fn file_key(bucket: &Value, key: &str) -> Result<String, String> {
    let bucket =
        bucket.as_str().filter(|b| !b.is_empty() && !b.contains('/')).ok_or("Bucket must be a name without /")?;
    let key = key.trim_start_matches('/');
    if key.split('/').any(|s| s == "..") || key.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!("{key:?} is not a file key"));
    }
    Ok(format!("{bucket}/{key}"))
}

impl ItemStore {
    /// Over the service's blob store.
    pub fn new(blobs: BlobStore) -> Self {
        Self { blobs }
    }

    /// The items an `ItemReader` names (`params`: its evaluated `Parameters` or `Arguments`).
    pub async fn read(&self, reader: &Value, params: &Value) -> Result<Vec<Value>, StatesError> {
        let resource = reader.get("Resource").and_then(Value::as_str).unwrap_or_default();
        let config = reader.get("ReaderConfig").cloned().unwrap_or(json!({}));
        let max = config.get("MaxItems").and_then(Value::as_u64).map(|m| m as usize);
        let bucket = params.get("Bucket").cloned().unwrap_or(Value::Null);
        let mut items = match resource {
            "arn:aws:states:::s3:listObjectsV2" => {
                let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or_default();
                let full = file_key(&bucket, prefix).map_err(failed)?;
                let found = self
                    .blobs
                    .list(&format!("{FILES}{full}"), 100_000)
                    .await
                    .map_err(|e| failed(format!("listing {full:?} failed: {e}")))?;
                let strip = format!("{FILES}{}/", bucket.as_str().unwrap_or_default());
                found
                    .into_iter()
                    .map(|o| {
                        json!({"Etag": o.e_tag.unwrap_or_default(), "Key": o.key.strip_prefix(&strip).unwrap_or(&o.key),
                            "LastModified": o.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            "Size": o.size, "StorageClass": "STANDARD"})
                    })
                    .collect()
            }
            "arn:aws:states:::s3:getObject" => {
                let key = params
                    .get("Key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| failed("ItemReader's Parameters need Key"))?;
                let full = file_key(&bucket, key).map_err(failed)?;
                let blob = format!("{FILES}{full}");
                let head = self.blobs.head(&blob).await.map_err(|e| failed(format!("reading {full:?} failed: {e}")))?;
                if head.size > MAX_OBJECT {
                    return Err(failed(format!("{full:?} is {} bytes, over the 256 MiB a reader loads", head.size)));
                }
                let bytes = self.blobs.get(&blob).await.map_err(|e| failed(format!("reading {full:?} failed: {e}")))?;
                let text = std::str::from_utf8(&bytes).map_err(|_| failed(format!("{full:?} is not UTF-8 text")))?;
                parse(text, &config).map_err(|e| failed(format!("{full:?}: {e}")))?
            }
            other => {
                return Err(failed(format!("ItemReader resource {other:?} is not s3:getObject or s3:listObjectsV2")))
            }
        };
        if let Some(m) = max {
            items.truncate(m);
        }
        Ok(items)
    }

    /// Writes a Map's results under `Prefix` as AWS's `ResultWriter` does (a manifest, then the succeeded and failed
    /// iterations), and returns what the Map outputs instead of its results.
    pub async fn write(
        &self,
        params: &Value,
        run: &str,
        run_arn: &str,
        results: &[Result<Value, StatesError>],
    ) -> Result<Value, StatesError> {
        let bucket = params.get("Bucket").cloned().unwrap_or(Value::Null);
        let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or_default().trim_end_matches('/');
        let base = if prefix.is_empty() { run.to_string() } else { format!("{prefix}/{run}") };
        let dir = file_key(&bucket, &base).map_err(|e| StatesError::runtime(format!("ResultWriter: {e}")))?;
        let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(v) => succeeded.push(json!({"Name": format!("{run}-{i}"), "Status": "SUCCEEDED",
                    "Output": v.to_string(), "OutputDetails": {"Included": true}})),
                Err(e) => failed.push(json!({"Name": format!("{run}-{i}"), "Status": "FAILED", "Error": e.error,
                    "Cause": e.cause})),
            }
        }
        // Keys in the manifest and the output are within the bucket, as S3's are.
        let in_bucket = |key: &str| key.split_once('/').map_or(key, |(_, k)| k).to_string();
        let mut files = Map::new();
        for (status, list) in [("SUCCEEDED", succeeded), ("FAILED", failed)] {
            let mut entries = Vec::new();
            if !list.is_empty() {
                let key = format!("{dir}/{status}_0.json");
                self.put(&key, &Value::Array(list.clone())).await?;
                entries.push(json!({"Key": in_bucket(&key), "Size": list.len()}));
            }
            files.insert(status.to_string(), Value::Array(entries));
        }
        files.insert("PENDING".into(), json!([]));
        let manifest = json!({"DestinationBucket": bucket, "MapRunArn": run_arn, "ResultFiles": files});
        let manifest_key = format!("{dir}/manifest.json");
        self.put(&manifest_key, &manifest).await?;
        Ok(json!({"MapRunArn": run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": in_bucket(&manifest_key)}}))
    }

    async fn put(&self, key: &str, v: &Value) -> Result<(), StatesError> {
        self.blobs
            .put(&format!("{FILES}{key}"), bytes::Bytes::from(v.to_string()))
            .await
            .map_err(|e| StatesError::runtime(format!("ResultWriter: writing {key:?} failed: {e}")))
    }
}

/// An object's items by `ReaderConfig.InputType`.
fn parse(text: &str, config: &Value) -> Result<Vec<Value>, String> {
    match config.get("InputType").and_then(Value::as_str).unwrap_or("JSON") {
        "JSON" => match serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))? {
            Value::Array(a) => Ok(a),
            _ => Err("a JSON ItemReader object must hold an array".into()),
        },
        "JSONL" => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {} is not JSON: {e}", i + 1)))
            .collect(),
        "CSV" => {
            let given = config.get("CSVHeaderLocation").and_then(Value::as_str) == Some("GIVEN");
            let mut r = csv::ReaderBuilder::new().has_headers(!given).flexible(false).from_reader(text.as_bytes());
            let headers: Vec<String> = if given {
                config
                    .get("CSVHeaders")
                    .and_then(Value::as_array)
                    .ok_or("CSVHeaderLocation GIVEN needs CSVHeaders")?
                    .iter()
                    .map(|h| h.as_str().unwrap_or_default().to_string())
                    .collect()
            } else {
                r.headers().map_err(|e| format!("the header row: {e}"))?.iter().map(String::from).collect()
            };
            let mut out = Vec::new();
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| format!("row {}: {e}", i + 1))?;
                let row: Map<String, Value> =
                    headers.iter().zip(rec.iter()).map(|(h, v)| (h.clone(), Value::String(v.to_string()))).collect();
                out.push(Value::Object(row));
            }
            Ok(out)
        }
        other => Err(format!("InputType {other:?} is not JSON, JSONL or CSV")),
    }
}

/// Groups items as `ItemBatcher` says (`MaxItemsPerBatch`, `MaxInputBytesPerBatch`), each batch
/// `{"Items": [...], "BatchInput": batch_input}` (without `BatchInput` when it is absent).
pub fn batch(items: Vec<Value>, batcher: &Value, batch_input: Option<Value>) -> Result<Vec<Value>, StatesError> {
    let max_items = batcher.get("MaxItemsPerBatch").and_then(Value::as_u64).map(|n| n as usize);
    let max_bytes = batcher.get("MaxInputBytesPerBatch").and_then(Value::as_u64).map(|n| n as usize);
    if max_items.is_none() && max_bytes.is_none() {
        return Err(StatesError::runtime("ItemBatcher needs MaxItemsPerBatch or MaxInputBytesPerBatch"));
    }
    let mut batches: Vec<Vec<Value>> = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let size = item.to_string().len();
        let full = max_items.is_some_and(|m| current.len() >= m) || max_bytes.is_some_and(|m| bytes + size > m);
        if full && !current.is_empty() {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches
        .into_iter()
        .map(|items| {
            let mut b = json!({"Items": items});
            if let Some(i) = &batch_input {
                b["BatchInput"] = i.clone();
            }
            b
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_parse_json_lines_and_csv() {
        assert_eq!(parse("[1, {\"a\": 2}]", &json!({})).unwrap(), vec![json!(1), json!({"a": 2})]);
        assert_eq!(parse("{\"a\":1}\n\n{\"a\":2}\n", &json!({"InputType": "JSONL"})).unwrap().len(), 2);
        let rows = parse("name,age\nann,31\nbo,7\n", &json!({"InputType": "CSV"})).unwrap();
        assert_eq!(rows, vec![json!({"name": "ann", "age": "31"}), json!({"name": "bo", "age": "7"})]);
        let given = json!({"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["x", "y"]});
        assert_eq!(parse("1,2\n", &given).unwrap(), vec![json!({"x": "1", "y": "2"})]);
        assert!(parse("{}", &json!({})).is_err());
        assert!(parse("a,b\n1\n", &json!({"InputType": "CSV"})).is_err(), "a short row");
    }

    #[test]
    fn batches_by_count_and_bytes() {
        let items: Vec<Value> = (0..5).map(|i| json!(i)).collect();
        let b = batch(items.clone(), &json!({"MaxItemsPerBatch": 2}), Some(json!({"k": 1}))).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], json!({"Items": [0, 1], "BatchInput": {"k": 1}}));
        assert_eq!(b[2], json!({"Items": [4], "BatchInput": {"k": 1}}));
        let b = batch(items, &json!({"MaxInputBytesPerBatch": 3}), None).unwrap();
        assert_eq!(b[0], json!({"Items": [0, 1, 2]}));
        assert!(batch(vec![], &json!({}), None).is_err());
    }
}
