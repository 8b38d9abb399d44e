//! Documents: small JSON records keyed by kind and id, for capabilities whose aggregates need no columns or
//! indexes of their own (a function's configuration, its published versions, its aliases). Every write bumps the
//! revision, and updates are compare-and-swap on it, so two processes editing one document never lose a change
//! silently.

#[cfg(test)]
mod tests;

use strato_types::Timestamp;

use crate::db::{exec, fetch_all, fetch_optional, now_ms, sql, sql_for_update, Columns, Conn};
use crate::{Result, Store, StoreError, Tx};

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// What it is (`function`, `function-version`, …).
    pub kind: String,
    /// Its id within the kind.
    pub id: String,
    /// 1 when created, one more per update.
    pub revision: i64,
    /// The content.
    pub body: serde_json::Value,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last written.
    pub updated_at: Timestamp,
}

fn document_from_row(r: &impl Columns) -> Result<Document> {
    let body =
        serde_json::from_str(&r.text("body")?).map_err(|e| StoreError::Corrupt(format!("document body: {e}")))?;
    Ok(Document {
        kind: r.text("kind")?,
        id: r.text("id")?,
        revision: r.i64("revision")?,
        body,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
    })
}

fn text(body: &serde_json::Value) -> Result<String> {
    serde_json::to_string(body).map_err(|e| StoreError::Corrupt(format!("document body: {e}")))
}

/// Documents on the store's pools.
pub struct Documents<'s> {
    pub(crate) store: &'s Store,
}

impl Documents<'_> {
    /// One document.
    pub async fn get(&self, kind: &str, id: &str) -> Result<Option<Document>> {
        get(&mut self.store.inner.db.read().await?.conn(), kind, id, false).await
    }

    /// The documents of a kind whose ids start with `prefix`, by id.
    pub async fn list(&self, kind: &str, prefix: &str) -> Result<Vec<Document>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_all!(
            &mut c.conn(),
            document_from_row,
            sql!("SELECT * FROM documents WHERE kind = $1 AND substr(id, 1, length($2)) = $2 ORDER BY id"),
            kind,
            prefix
        ))
    }

    /// Creates a document (revision 1); `None` when one with that kind and id exists.
    pub async fn create(&self, kind: &str, id: &str, body: &serde_json::Value) -> Result<Option<Document>> {
        create(&mut self.store.inner.db.write().await?.conn(), kind, id, body).await
    }

    /// Replaces a document's body if its revision is still `revision`; `None` when it changed or is gone.
    pub async fn update(
        &self,
        kind: &str,
        id: &str,
        revision: i64,
        body: &serde_json::Value,
    ) -> Result<Option<Document>> {
        update(&mut self.store.inner.db.write().await?.conn(), kind, id, revision, body).await
    }

    /// Deletes a document; whether there was one.
    pub async fn delete(&self, kind: &str, id: &str) -> Result<bool> {
        delete(&mut self.store.inner.db.write().await?.conn(), kind, id).await
    }
}

/// Documents inside a caller's transaction.
pub struct TxDocuments<'t> {
    pub(crate) tx: &'t mut Tx,
}

impl TxDocuments<'_> {
    /// One document, locked until the transaction ends (PostgreSQL; SQLite's write transaction holds the whole
    /// database), so a read-modify-write in the transaction cannot interleave with another.
    pub async fn get_for_update(&mut self, kind: &str, id: &str) -> Result<Option<Document>> {
        get(&mut self.tx.conn.conn(), kind, id, true).await
    }

    /// The documents of a kind whose ids start with `prefix`, by id.
    pub async fn list(&mut self, kind: &str, prefix: &str) -> Result<Vec<Document>> {
        let c = &mut self.tx.conn.conn();
        Ok(fetch_all!(
            c,
            document_from_row,
            sql!("SELECT * FROM documents WHERE kind = $1 AND substr(id, 1, length($2)) = $2 ORDER BY id"),
            kind,
            prefix
        ))
    }

    /// [`Documents::create`] in the transaction.
    pub async fn create(&mut self, kind: &str, id: &str, body: &serde_json::Value) -> Result<Option<Document>> {
        create(&mut self.tx.conn.conn(), kind, id, body).await
    }

    /// [`Documents::update`] in the transaction.
    pub async fn update(
        &mut self,
        kind: &str,
        id: &str,
        revision: i64,
        body: &serde_json::Value,
    ) -> Result<Option<Document>> {
        update(&mut self.tx.conn.conn(), kind, id, revision, body).await
    }

    /// [`Documents::delete`] in the transaction.
    pub async fn delete(&mut self, kind: &str, id: &str) -> Result<bool> {
        delete(&mut self.tx.conn.conn(), kind, id).await
    }

    /// Deletes every document of a kind whose id starts with `prefix`; how many.
    pub async fn delete_prefix(&mut self, kind: &str, prefix: &str) -> Result<u64> {
        let c = &mut self.tx.conn.conn();
        Ok(exec!(c, sql!("DELETE FROM documents WHERE kind = $1 AND substr(id, 1, length($2)) = $2"), kind, prefix))
    }
}

async fn get(c: &mut Conn<'_>, kind: &str, id: &str, lock: bool) -> Result<Option<Document>> {
    Ok(if lock {
        fetch_optional!(
            c,
            document_from_row,
            sql_for_update!("SELECT * FROM documents WHERE kind = $1 AND id = $2"),
            kind,
            id
        )
    } else {
        fetch_optional!(c, document_from_row, sql!("SELECT * FROM documents WHERE kind = $1 AND id = $2"), kind, id)
    })
}

async fn create(c: &mut Conn<'_>, kind: &str, id: &str, body: &serde_json::Value) -> Result<Option<Document>> {
    let now = now_ms();
    Ok(fetch_optional!(
        c,
        document_from_row,
        sql!(
            "INSERT INTO documents (kind, id, revision, body, created_at, updated_at) VALUES ($1, $2, 1, $3, $4, $4) \
             ON CONFLICT (kind, id) DO NOTHING RETURNING *"
        ),
        kind,
        id,
        text(body)?,
        now
    ))
}

async fn update(
    c: &mut Conn<'_>,
    kind: &str,
    id: &str,
    revision: i64,
    body: &serde_json::Value,
) -> Result<Option<Document>> {
    Ok(fetch_optional!(
        c,
        document_from_row,
        sql!(
            "UPDATE documents SET revision = revision + 1, body = $4, updated_at = $5 \
             WHERE kind = $1 AND id = $2 AND revision = $3 RETURNING *"
        ),
        kind,
        id,
        revision,
        text(body)?,
        now_ms()
    ))
}

async fn delete(c: &mut Conn<'_>, kind: &str, id: &str) -> Result<bool> {
    Ok(exec!(c, sql!("DELETE FROM documents WHERE kind = $1 AND id = $2"), kind, id) > 0)
}
