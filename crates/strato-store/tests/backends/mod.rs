//! The backends the conformance tests run on.

use std::any::Any;
use std::sync::Arc;

use strato_store::{MetaStore, SqliteStore};

/// A store plus whatever keeps it alive (temp dir, schema).
pub struct Backend {
    pub store: Arc<dyn MetaStore>,
    _guard: Box<dyn Any + Send>,
}

/// SQLite in a temp dir always; PostgreSQL when `STRATO_TEST_DATABASE_URL` is set.
pub async fn all() -> Vec<(&'static str, Backend)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("meta.db")).await.unwrap();
    vec![("sqlite", Backend { store: Arc::new(sqlite), _guard: Box::new(dir) })]
}
