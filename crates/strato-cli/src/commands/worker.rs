//! `strato worker`: job workers only, beside API processes sharing the database and storage; and the worker
//! settings `serve` shares.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use strato_service::{QueueConcurrency, Strato, WorkerPoolOptions};

use super::{err, open_parts, options, Parts};
use crate::config::{Global, JobArgs, WorkerArgs};

pub(super) async fn worker(g: &Global, args: WorkerArgs) -> Result<()> {
    if args.jobs.workers == 0 && args.jobs.queues.is_none() {
        bail!("--workers must be at least 1 for `strato worker`");
    }
    let Parts { strato, functions, workflows, .. } = open_parts(g, options(g)).await?;
    functions.start_maintenance();
    let opts = worker_options(&args.jobs, &strato)?;
    workflows.keep_history_for(opts.job_ttl);
    strato.embeddings().embedder().await.map_err(err).context("loading the embedding model")?;
    let queues = opts.queues.to_string();
    let pool = strato.start_workers(opts);
    tracing::info!(%queues, "worker running ({})", strato.describe_backends());
    shutdown_signal().await;
    tracing::info!("shutting down; running jobs go back to the queue");
    pool.shutdown().await;
    functions.flush_logs().await;
    strato.close().await;
    Ok(())
}

/// The pool's settings: `--queues` as given, or `--workers` on the default queue and one worker on each other queue
/// a registered job kind waits in.
pub(super) fn worker_options(a: &JobArgs, strato: &Strato) -> Result<WorkerPoolOptions> {
    let queues = match &a.queues {
        Some(q) => QueueConcurrency::parse(q).map_err(err).context("--queues")?,
        None => QueueConcurrency::for_workers(a.workers, strato.jobs().registry()),
    };
    Ok(WorkerPoolOptions {
        queues,
        lease: Duration::from_secs(a.job_lease_secs.max(1)),
        heartbeat: Duration::from_secs((a.job_lease_secs / 5).max(1)),
        job_ttl: (!a.job_ttl.is_zero()).then_some(a.job_ttl),
        alerter: a
            .alert_webhook_url
            .as_ref()
            .map(|url| strato_service::Alerter::start(strato_service::AlerterOptions::new(url.clone()))),
        ..Default::default()
    })
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
