use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// A stored dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// Dataset name (unique).
    pub name: String,
    /// Detected format: `csv`, `jsonl`, `json`, `spacy`.
    pub format: String,
    /// Number of examples.
    pub rows: i64,
    /// Distinct labels, sorted.
    pub labels: Vec<String>,
    /// Size of the stored file in bytes.
    pub size_bytes: i64,
    /// Blob key of the original upload.
    pub blob_key: String,
    /// Upload time.
    pub created_at: Timestamp,
}

/// A model: a name with versions, one of which is active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Model id (unique).
    pub id: String,
    /// The version predictions use; `None` until the first training succeeds.
    pub active_version: Option<i64>,
    /// Free-form metadata (e.g. what an Albert-compatible client sent).
    pub meta: serde_json::Value,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// One trained version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersionRecord {
    /// Model id.
    pub model_id: String,
    /// Version number, from 1.
    pub version: i64,
    /// Blob key of the artifact.
    pub blob_key: String,
    /// Validation metrics.
    pub metrics: serde_json::Value,
    /// Training parameters.
    pub params: serde_json::Value,
    /// Job that produced it.
    pub job_id: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
}
