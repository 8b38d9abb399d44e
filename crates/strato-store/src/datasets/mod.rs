//! Stored datasets: a record per name; the file itself is a blob.

#[cfg(test)]
mod tests;

use strato_types::DatasetRecord;

use crate::db::{exec, fetch_all, fetch_optional, in_tx, json, sql, sql_for_update, Columns, Conn};
use crate::{Result, Store, StoreError, Tx};

fn dataset_from_row(r: &impl Columns) -> Result<DatasetRecord> {
    let labels: Vec<String> =
        serde_json::from_value(r.json("labels")?).map_err(|e| StoreError::Corrupt(format!("labels: {e}")))?;
    Ok(DatasetRecord {
        name: r.text("name")?,
        format: r.text("format")?,
        rows: r.i64("rows")?,
        labels,
        size_bytes: r.i64("size_bytes")?,
        blob_key: r.text("blob_key")?,
        created_at: r.ts("created_at")?,
    })
}

/// Datasets on the store's pools.
pub struct Datasets<'s> {
    pub(crate) store: &'s Store,
}

impl Datasets<'_> {
    /// Inserts or replaces a dataset record; returns the replaced one.
    pub async fn put(&self, rec: &DatasetRecord) -> Result<Option<DatasetRecord>> {
        Ok(in_tx!(self.store.inner.db, |c| put(c, rec)))
    }

    /// One dataset.
    pub async fn get(&self, name: &str) -> Result<Option<DatasetRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_optional!(&mut c.conn(), dataset_from_row, sql!("SELECT * FROM datasets WHERE name = $1"), name))
    }

    /// All datasets by name.
    pub async fn list(&self) -> Result<Vec<DatasetRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_all!(&mut c.conn(), dataset_from_row, sql!("SELECT * FROM datasets ORDER BY name")))
    }

    /// Deletes a dataset record; returns it.
    pub async fn delete(&self, name: &str) -> Result<Option<DatasetRecord>> {
        let c = &mut self.store.inner.db.write().await?;
        Ok(fetch_optional!(
            &mut c.conn(),
            dataset_from_row,
            sql!("DELETE FROM datasets WHERE name = $1 RETURNING *"),
            name
        ))
    }
}

/// Datasets inside a caller's transaction.
pub struct TxDatasets<'t> {
    pub(crate) tx: &'t mut Tx,
}

impl TxDatasets<'_> {
    /// Inserts or replaces a dataset record; returns the replaced one.
    pub async fn put(&mut self, rec: &DatasetRecord) -> Result<Option<DatasetRecord>> {
        put(&mut self.tx.conn.conn(), rec).await
    }
}

async fn put(c: &mut Conn<'_>, rec: &DatasetRecord) -> Result<Option<DatasetRecord>> {
    let old =
        fetch_optional!(c, dataset_from_row, sql_for_update!("SELECT * FROM datasets WHERE name = $1"), &rec.name);
    let labels = serde_json::json!(rec.labels);
    exec!(
        c,
        sql!(
            "INSERT INTO datasets (name, format, rows, labels, size_bytes, blob_key, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET format = excluded.format, rows = excluded.rows, \
               labels = excluded.labels, size_bytes = excluded.size_bytes, blob_key = excluded.blob_key, \
               created_at = excluded.created_at"
        ),
        &rec.name,
        &rec.format,
        rec.rows,
        json(&labels),
        rec.size_bytes,
        &rec.blob_key,
        rec.created_at.timestamp_millis()
    );
    Ok(old)
}
