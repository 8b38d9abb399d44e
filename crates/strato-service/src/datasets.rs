//! Datasets: validated on upload, stored as uploaded, listed, downloaded, deleted.

use bytes::Bytes;
use chrono::Utc;
use strato_ml::{parse_dataset, DatasetFormat};
use strato_types::{validate_name, DatasetRecord, ErrorCode, StratoError};

use strato_blob::BlobStore;
use strato_store::Store;

use crate::{blob_storage, internal, storage, Result};

/// A dataset's record and its file.
pub struct StoredDataset {
    /// Metadata.
    pub record: DatasetRecord,
    /// The file as uploaded.
    pub bytes: Bytes,
    /// `Content-Type` to serve it with.
    pub content_type: &'static str,
}

/// Parses a dataset upload on a blocking thread, enforcing the size limit first.
pub(crate) async fn parse_upload(bytes: Bytes, format: DatasetFormat, max_bytes: usize) -> Result<strato_ml::Dataset> {
    if bytes.len() > max_bytes {
        return Err(StratoError::new(
            ErrorCode::PayloadTooLarge,
            format!("the dataset is {} bytes; the limit is {max_bytes} bytes (STRATO_MAX_DATASET_BYTES)", bytes.len()),
        ));
    }
    tokio::task::spawn_blocking(move || parse_dataset(&bytes, format))
        .await
        .map_err(internal("dataset parsing task failed"))?
        .map_err(|e| StratoError::new(ErrorCode::InvalidDataset, e.0))
}

fn format_from(content_type: Option<&str>) -> Result<DatasetFormat> {
    let ct = content_type.unwrap_or("");
    DatasetFormat::from_content_type(ct).ok_or_else(|| {
        StratoError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "unsupported Content-Type {ct:?}: send text/csv (header text,label[,split]), application/x-ndjson \
                 (one {{\"text\",\"label\"}} per line) or application/json (an array of {{\"text\",\"label\"}} or \
                 spaCy {{\"text\",\"cats\"}})"
            ),
        )
    })
}

/// Stored datasets: what a training names instead of sending its data.
#[derive(Clone)]
pub struct Datasets {
    store: Store,
    blobs: BlobStore,
    max_bytes: usize,
}

impl Datasets {
    pub(crate) fn new(store: Store, blobs: BlobStore, max_bytes: usize) -> Self {
        Self { store, blobs, max_bytes }
    }

    /// The largest dataset accepted, in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Validates and stores a dataset, replacing one of the same name. Nothing is stored when it is invalid.
    pub async fn put(&self, name: &str, content_type: Option<&str>, bytes: Bytes) -> Result<DatasetRecord> {
        validate_name("dataset", name)?;
        let format = format_from(content_type)?;
        let size = bytes.len();
        let ds = parse_upload(bytes.clone(), format, self.max_bytes).await?;
        let ext = match ds.format {
            DatasetFormat::Csv => "csv",
            DatasetFormat::Jsonl => "jsonl",
            DatasetFormat::Json | DatasetFormat::Spacy => "json",
        };
        // A fresh key per upload: a training job that captured the old key keeps reading the old file.
        let key = format!("datasets/{name}/{}.{ext}", uuid::Uuid::now_v7());
        self.blobs.put(&key, bytes).await.map_err(blob_storage("storing the dataset failed"))?;
        let record = DatasetRecord {
            name: name.to_string(),
            format: ds.format.as_str().to_string(),
            rows: ds.examples.len() as i64,
            labels: ds.labels(),
            size_bytes: size as i64,
            blob_key: key.clone(),
            created_at: Utc::now(),
        };
        match self.store.datasets().put(&record).await {
            Ok(Some(old)) => {
                if let Err(e) = self.blobs.delete(&old.blob_key).await {
                    tracing::warn!(key = %old.blob_key, error = %e, "could not delete the replaced dataset file");
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = self.blobs.delete(&key).await;
                return Err(internal("recording the dataset failed")(e));
            }
        }
        Ok(record)
    }

    /// All datasets.
    pub async fn list(&self) -> Result<Vec<DatasetRecord>> {
        self.store.datasets().list().await.map_err(storage("listing datasets failed"))
    }

    /// A dataset's record.
    pub async fn get(&self, name: &str) -> Result<DatasetRecord> {
        self.store
            .datasets()
            .get(name)
            .await
            .map_err(internal("reading the dataset failed"))?
            .ok_or_else(|| StratoError::new(ErrorCode::DatasetNotFound, format!("dataset {name:?} not found")))
    }

    /// A dataset with its file.
    pub async fn file(&self, name: &str) -> Result<StoredDataset> {
        let record = self.get(name).await?;
        let bytes = self.blobs.get(&record.blob_key).await.map_err(blob_storage("reading the dataset file failed"))?;
        let content_type = match record.format.as_str() {
            "csv" => "text/csv",
            "jsonl" => "application/x-ndjson",
            _ => "application/json",
        };
        Ok(StoredDataset { record, bytes, content_type })
    }

    /// Deletes a dataset and its file.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let record = self
            .store
            .datasets()
            .delete(name)
            .await
            .map_err(internal("deleting the dataset failed"))?
            .ok_or_else(|| StratoError::new(ErrorCode::DatasetNotFound, format!("dataset {name:?} not found")))?;
        if let Err(e) = self.blobs.delete(&record.blob_key).await {
            tracing::warn!(key = %record.blob_key, error = %e, "could not delete the dataset file");
        }
        Ok(())
    }
}
