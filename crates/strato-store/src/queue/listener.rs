//! Cross-process wake-ups: a task that `LISTEN`s on this schema's job channel (and the shared manual one) and turns
//! each notification into a wake-up of every queue's idle workers (the payload does not say which queue).
//!
//! It owns a one-connection pool of its own, so it never competes with queries for a pooled connection. When the
//! connection breaks (a server restart, a network cut), it reconnects with backoff and wakes the workers, since
//! notifications sent meanwhile are lost; it logs at `warn` and never gives up. The task stops when the last
//! clone of the store is dropped.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::task::JoinHandle;

use super::ops::{CHANNEL, SCHEMA_CHANNEL};
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
        signal: Arc<super::JobSignal>,
        own_token: String,
    ) -> Result<Self> {
        // No lifetime or idle limits: the connection is busy listening, not idle.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with(connect.clone());
        let (schema, channel): (String, String) =
            sqlx::query_as(&format!("SELECT COALESCE(current_schema(), ''), {SCHEMA_CHANNEL}"))
                .fetch_one(&pool)
                .await?;
        let listener = listen(&pool, &channel).await?;
        Ok(Self(tokio::spawn(run(pool, listener, Channels { schema, channel }, signal, own_token))))
    }
}

/// What this store listens to: its schema's channel, and the manual one for notifications naming the schema.
struct Channels {
    schema: String,
    channel: String,
}

async fn listen(pool: &PgPool, channel: &str) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, channel]).await?;
    Ok(listener)
}

async fn run(pool: PgPool, listener: PgListener, on: Channels, signal: Arc<super::JobSignal>, own_token: String) {
    let mut listener = Some(listener);
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some(active) = listener.as_mut() else {
            // A fresh listener: sqlx's own reconnect only covers some I/O errors, and a listener that returned
            // another error may be stuck on a dead connection.
            match listen(&pool, &on.channel).await {
                Ok(l) => {
                    tracing::info!("job notifications: reconnected to PostgreSQL");
                    listener = Some(l);
                    signal.wake_all();
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
                // On the schema's channel the payload is empty or (from batch writers) the sending store's token:
                // this store's own batches woke its workers already. A manual `NOTIFY strato_jobs` wakes every
                // schema's workers, or with a schema as payload that schema's.
                let wake = if n.channel() == CHANNEL {
                    n.payload().is_empty() || n.payload() == on.schema
                } else {
                    n.payload() != own_token
                };
                if wake {
                    signal.wake_all();
                }
            }
            Ok(None) => {
                tracing::warn!("job notifications: connection lost and re-established; some may have been missed");
                signal.wake_all();
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
