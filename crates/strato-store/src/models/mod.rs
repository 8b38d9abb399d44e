//! Text classifiers (`models`) and their trained versions (`model_versions`). A mentor's classifier is a model too,
//! under the id `mentor:<id>`, left out of [`Models::list`].

#[cfg(test)]
mod tests;

use strato_types::{ModelRecord, ModelVersionRecord};

use crate::db::{exec, fetch_all, fetch_optional, in_tx, json, now_ms, scalar, sql, sql_for_update, Columns, Conn};
use crate::{Result, Store, Tx};

/// Outcome of [`Models::add_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddVersion {
    /// Added and activated with this number.
    Added(i64),
    /// The model was deleted meanwhile.
    ModelMissing,
    /// The fencing job's lease is no longer held by the worker.
    LeaseLost,
}

fn model_from_row(r: &impl Columns) -> Result<ModelRecord> {
    Ok(ModelRecord {
        id: r.text("id")?,
        active_version: r.opt_i64("active_version")?,
        meta: r.json("meta")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
    })
}

fn version_from_row(r: &impl Columns) -> Result<ModelVersionRecord> {
    Ok(ModelVersionRecord {
        model_id: r.text("model_id")?,
        version: r.i64("version")?,
        blob_key: r.text("blob_key")?,
        metrics: r.json("metrics")?,
        params: r.json("params")?,
        job_id: r.opt_text("job_id")?,
        created_at: r.ts("created_at")?,
    })
}

/// Models on the store's pools.
pub struct Models<'s> {
    pub(crate) store: &'s Store,
}

impl Models<'_> {
    /// One model.
    pub async fn get(&self, id: &str) -> Result<Option<ModelRecord>> {
        get(&mut self.store.inner.db.read().await?.conn(), id, false).await
    }

    /// All text classifiers by id (mentors' classifiers left out).
    pub async fn list(&self) -> Result<Vec<ModelRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_all!(
            &mut c.conn(),
            model_from_row,
            sql!("SELECT * FROM models WHERE id NOT LIKE 'mentor:%' ORDER BY id")
        ))
    }

    /// Versions of a model, oldest first.
    pub async fn versions(&self, model_id: &str) -> Result<Vec<ModelVersionRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_all!(
            &mut c.conn(),
            version_from_row,
            sql!("SELECT * FROM model_versions WHERE model_id = $1 ORDER BY version"),
            model_id
        ))
    }

    /// One version.
    pub async fn version(&self, model_id: &str, version: i64) -> Result<Option<ModelVersionRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_optional!(
            &mut c.conn(),
            version_from_row,
            sql!("SELECT * FROM model_versions WHERE model_id = $1 AND version = $2"),
            model_id,
            version
        ))
    }

    /// Creates the model row if it does not exist (no version yet).
    pub async fn ensure(&self, model_id: &str, meta: &serde_json::Value) -> Result<()> {
        ensure(&mut self.store.inner.db.write().await?.conn(), model_id, meta).await
    }

    /// Makes a version active; false when the model or version does not exist.
    pub async fn activate(&self, model_id: &str, version: i64) -> Result<bool> {
        let c = &mut self.store.inner.db.write().await?;
        let done = exec!(
            &mut c.conn(),
            sql!(
                "UPDATE models SET active_version = $1, updated_at = $2 WHERE id = $3 \
                 AND EXISTS (SELECT 1 FROM model_versions WHERE model_id = $3 AND version = $1)"
            ),
            version,
            now_ms(),
            model_id
        );
        Ok(done == 1)
    }

    /// In one transaction: adds the next version of a model and makes it active. With a `fence` (job id, worker),
    /// nothing changes unless that worker still holds that job's lease, so an attempt that lost its lease can never
    /// publish a version beside the attempt that replaced it.
    pub async fn add_version(
        &self,
        model_id: &str,
        blob_key: &str,
        metrics: &serde_json::Value,
        params: &serde_json::Value,
        fence: Option<(&str, &str)>,
    ) -> Result<AddVersion> {
        let mut tx = self.store.begin().await?;
        if let Some((job, worker)) = fence {
            if !tx.queue().holds_lease(job, worker).await? {
                return Ok(AddVersion::LeaseLost);
            }
        }
        let Some(version) = tx.models().add_version(model_id, blob_key, metrics, params, fence.map(|f| f.0)).await?
        else {
            return Ok(AddVersion::ModelMissing);
        };
        tx.commit().await?;
        Ok(AddVersion::Added(version))
    }

    /// Deletes a model and its versions; returns what was deleted.
    pub async fn delete(&self, model_id: &str) -> Result<Option<(ModelRecord, Vec<ModelVersionRecord>)>> {
        Ok(in_tx!(self.store.inner.db, |c| delete(c, model_id)))
    }
}

/// Models inside a caller's transaction.
pub struct TxModels<'t> {
    pub(crate) tx: &'t mut Tx,
}

impl TxModels<'_> {
    /// The model, its row locked until the transaction ends (PostgreSQL), so a concurrent delete or training
    /// submission waits for this transaction.
    pub async fn get_for_update(&mut self, id: &str) -> Result<Option<ModelRecord>> {
        get(&mut self.tx.conn.conn(), id, true).await
    }

    /// Creates the model or replaces its metadata, keeping its versions and active version.
    pub async fn upsert(&mut self, id: &str, meta: &serde_json::Value) -> Result<()> {
        let now = now_ms();
        exec!(
            &mut self.tx.conn.conn(),
            sql!(
                "INSERT INTO models (id, meta, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (id) DO UPDATE SET meta = excluded.meta, updated_at = excluded.updated_at"
            ),
            id,
            json(meta),
            now
        );
        Ok(())
    }

    /// Creates the model row if it does not exist.
    pub async fn ensure(&mut self, id: &str, meta: &serde_json::Value) -> Result<()> {
        ensure(&mut self.tx.conn.conn(), id, meta).await
    }

    /// Adds the next version (made by job `job_id`, when one made it) and makes it active; `None` when the model
    /// does not exist. Locking the model row serialises version numbering per model.
    pub async fn add_version(
        &mut self,
        model_id: &str,
        blob_key: &str,
        metrics: &serde_json::Value,
        params: &serde_json::Value,
        job_id: Option<&str>,
    ) -> Result<Option<i64>> {
        let c = &mut self.tx.conn.conn();
        if get(c, model_id, true).await?.is_none() {
            return Ok(None);
        }
        let version = scalar!(
            c,
            i64,
            sql!("SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model_id = $1"),
            model_id
        );
        let now = now_ms();
        exec!(
            c,
            sql!(
                "INSERT INTO model_versions (model_id, version, blob_key, metrics, params, job_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            model_id,
            version,
            blob_key,
            json(metrics),
            json(params),
            job_id,
            now
        );
        exec!(c, sql!("UPDATE models SET active_version = $1, updated_at = $2 WHERE id = $3"), version, now, model_id);
        Ok(Some(version))
    }
}

async fn get(c: &mut Conn<'_>, id: &str, for_update: bool) -> Result<Option<ModelRecord>> {
    Ok(if for_update {
        fetch_optional!(c, model_from_row, sql_for_update!("SELECT * FROM models WHERE id = $1"), id)
    } else {
        fetch_optional!(c, model_from_row, sql!("SELECT * FROM models WHERE id = $1"), id)
    })
}

async fn ensure(c: &mut Conn<'_>, id: &str, meta: &serde_json::Value) -> Result<()> {
    exec!(
        c,
        sql!(
            "INSERT INTO models (id, meta, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO NOTHING"
        ),
        id,
        json(meta),
        now_ms()
    );
    Ok(())
}

async fn delete(c: &mut Conn<'_>, id: &str) -> Result<Option<(ModelRecord, Vec<ModelVersionRecord>)>> {
    let Some(model) = get(c, id, true).await? else { return Ok(None) };
    let versions =
        fetch_all!(c, version_from_row, sql!("DELETE FROM model_versions WHERE model_id = $1 RETURNING *"), id);
    exec!(c, sql!("DELETE FROM models WHERE id = $1"), id);
    Ok(Some((model, versions)))
}
