//! Usage counted per subject and quota window, shared by every API process.

#[cfg(test)]
mod tests;

use crate::db::{exec, scalar_optional, sql};
use crate::{Result, Store};

/// Quota counters on the store's pools.
pub struct Usage<'s> {
    pub(crate) store: &'s Store,
}

impl Usage<'_> {
    /// Counts one request for `subject` in the quota window starting at `window_start` (ms), unless `limit` requests
    /// were already counted there: `Some(count)` with the new count, or `None` when the quota is used up. Atomic
    /// across processes sharing the database: one conditional upsert, so concurrent callers never count past
    /// `limit`.
    pub async fn take(&self, subject: &str, window_start: i64, limit: u64) -> Result<Option<u64>> {
        if limit == 0 {
            return Ok(None);
        }
        let c = &mut self.store.inner.db.write().await?;
        let count = scalar_optional!(
            &mut c.conn(),
            i64,
            sql!(
                "INSERT INTO usage_counters (subject, window_start, count) VALUES ($1, $2, 1) \
                 ON CONFLICT (subject, window_start) DO UPDATE SET count = usage_counters.count + 1 \
                 WHERE usage_counters.count < $3 RETURNING count"
            ),
            subject,
            window_start,
            i64::try_from(limit).unwrap_or(i64::MAX)
        );
        Ok(count.map(|c| c.max(0) as u64))
    }

    /// Forgets usage windows that started before `cutoff` (ms).
    pub async fn delete_before(&self, cutoff: i64) -> Result<u64> {
        let c = &mut self.store.inner.db.write().await?;
        Ok(exec!(&mut c.conn(), sql!("DELETE FROM usage_counters WHERE window_start < $1"), cutoff))
    }
}
