//! API keys: only the secret's SHA-256 is stored. Grants (the `models` and `mentors` lists and grants over any
//! resource kind) and the usage plan are small JSON documents.

#[cfg(test)]
mod tests;

use strato_types::{ApiKeyRecord, Grant, Timestamp};

use crate::db::{exec, fetch_all, fetch_optional, sql, Columns};
use crate::{Result, Store, StoreError};

/// The stored grants document. Keys written before grants over any resource kind existed have no `grants`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Grants {
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    mentors: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    grants: Vec<Grant>,
}

fn key_from_row(r: &impl Columns) -> Result<ApiKeyRecord> {
    let g: Grants =
        serde_json::from_str(&r.text("grants")?).map_err(|e| StoreError::Corrupt(format!("api key grants: {e}")))?;
    let plan = serde_json::from_str(&r.text("plan")?).map_err(|e| StoreError::Corrupt(format!("api key plan: {e}")))?;
    Ok(ApiKeyRecord {
        id: r.text("id")?,
        name: r.text("name")?,
        secret_hash: r.text("secret_hash")?,
        role: r.text("role")?,
        models: g.models,
        mentors: g.mentors,
        grants: g.grants,
        plan,
        created_at: r.ts("created_at")?,
        revoked_at: r.opt_ts("revoked_at")?,
        access_key_id: r.opt_text("access_key_id")?,
        sealed_secret: r.opt_text("sealed_secret")?,
    })
}

/// API keys on the store's pools.
pub struct Keys<'s> {
    pub(crate) store: &'s Store,
}

impl Keys<'_> {
    /// Stores a new API key.
    pub async fn insert(&self, key: &ApiKeyRecord) -> Result<()> {
        let grants = Grants { models: key.models.clone(), mentors: key.mentors.clone(), grants: key.grants.clone() };
        let grants = serde_json::to_string(&grants).map_err(|e| StoreError::Corrupt(format!("api key grants: {e}")))?;
        let plan = serde_json::to_string(&key.plan).map_err(|e| StoreError::Corrupt(format!("api key plan: {e}")))?;
        let c = &mut self.store.inner.db.write().await?;
        exec!(
            &mut c.conn(),
            sql!(
                "INSERT INTO api_keys (id, name, secret_hash, role, grants, plan, created_at, revoked_at, \
                 access_key_id, sealed_secret) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            ),
            &key.id,
            &key.name,
            &key.secret_hash,
            &key.role,
            grants,
            plan,
            key.created_at.timestamp_millis(),
            key.revoked_at.map(|t| t.timestamp_millis()),
            &key.access_key_id,
            &key.sealed_secret
        );
        Ok(())
    }

    /// Every key, revoked ones included, newest first.
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_all!(&mut c.conn(), key_from_row, sql!("SELECT * FROM api_keys ORDER BY created_at DESC, id")))
    }

    /// The key whose secret hashes to `secret_hash`, revoked or not.
    pub async fn by_hash(&self, secret_hash: &str) -> Result<Option<ApiKeyRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_optional!(
            &mut c.conn(),
            key_from_row,
            sql!("SELECT * FROM api_keys WHERE secret_hash = $1"),
            secret_hash
        ))
    }

    /// The key with this SigV4 access key id, revoked or not.
    pub async fn by_access_key_id(&self, access_key_id: &str) -> Result<Option<ApiKeyRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_optional!(
            &mut c.conn(),
            key_from_row,
            sql!("SELECT * FROM api_keys WHERE access_key_id = $1"),
            access_key_id
        ))
    }

    /// Marks a key revoked (once; a second revoke keeps the first time); `None` when there is no such key.
    pub async fn revoke(&self, id: &str, at: Timestamp) -> Result<Option<ApiKeyRecord>> {
        let c = &mut self.store.inner.db.write().await?;
        Ok(fetch_optional!(
            &mut c.conn(),
            key_from_row,
            sql!("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *"),
            id,
            at.timestamp_millis()
        ))
    }
}
