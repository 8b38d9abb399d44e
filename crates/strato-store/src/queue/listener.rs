//! Cross-process wake-ups: a task that `LISTEN`s on the job channel and turns each notification for this schema
//! into a `notify_one()` on the store's signal.
//!
//! It owns a one-connection pool of its own, so it never competes with queries for a pooled connection. When the
//! connection breaks (a server restart, a network cut), it reconnects with backoff and wakes one worker, since
//! notifications sent meanwhile are lost; it logs at `warn` and never gives up. The task stops when the last
//! clone of the store is dropped.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::ops::CHANNEL;
use crate::Result;

/// First wait before reconnecting; doubles per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The running listener; aborts it when dropped.
pub(crate) struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ListenerTask {
    /// Starts listening before returning, so no notification sent after the store is connected is missed.
    pub(crate) async fn start(
        connect: &PgConnectOptions,
        acquire_timeout: Duration,
        signal: Arc<Notify>,
        own_token: String,
    ) -> Result<Self> {
        // No lifetime or idle limits: the connection is busy listening, not idle.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(connect.clone());
        let schema: String = sqlx::query_scalar("SELECT COALESCE(current_schema(), '')").fetch_one(&pool).await?;
        let listener = listen(&pool).await?;
        Ok(Self(tokio::spawn(run(pool, listener, schema, signal, own_token))))
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn run(pool: PgPool, listener: PgListener, schema: String, signal: Arc<Notify>, own_token: String) {
    let mut listener = Some(listener);
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(active) = listener.as_mut() else {
            // A fresh listener: sqlx's own reconnect only covers some I/O errors, and a listener that returned
            // another error may be stuck on a dead connection.
            match listen(&pool).await {
                Ok(l) => {
                    tracing::info!("job notifications: reconnected to PostgreSQL");
                    listener = Some(l);
                    signal.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "job notifications: reconnect failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        match active.try_recv().await {
            Ok(Some(n)) => {
                backoff = MIN_BACKOFF;
                // The payload is the schema, then (from batch writers) the sending store's token. An empty payload
                // is a manual `NOTIFY strato_jobs`: wake up too. This store's own batches woke its workers already.
                let (for_schema, from) = n.payload().split_once('\u{1f}').unwrap_or((n.payload(), ""));
                if (n.payload().is_empty() || for_schema == schema) && from != own_token {
                    signal.notify_one();
                }
            }
            Ok(None) => {
                tracing::warn!("job notifications: connection lost and re-established; some may have been missed");
                signal.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "job notifications: listener failed; reconnecting");
                listener = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
