//! `strato jobs`: list, show and cancel jobs.

use anyhow::{Context, Result};

use super::{err, open, print_job, print_jobs};
use crate::config::{Global, JobsCommand};

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) async fn jobs(g: &Global, cmd: JobsCommand) -> Result<()> {
    let strato = open(g).await?;
    match cmd {
        JobsCommand::List { status, kind, queue, limit } => {
            let status = status
                .map(|s| {
                    strato_types::JobStatus::parse(&s.to_ascii_uppercase())
                        .with_context(|| format!("unknown status {s:?}"))
                })
                .transpose()?;
            let kind = kind.map(|k| strato_types::JobKind::parse(&k)).transpose().map_err(err)?;
            let queue = queue.map(|q| strato_types::QueueName::parse(&q)).transpose().map_err(err)?;
            let filter = strato_store::JobFilter { status, kind, queue, key: None, limit: Some(limit) };
            print_jobs(&strato.jobs().list(&filter).await.map_err(err)?);
        }
        JobsCommand::Show { id } => {
            let (job, attempts) = strato.jobs().with_attempts(&id).await.map_err(err)?;
            print_job(&job, &attempts);
        }
        JobsCommand::Cancel { id } => match strato.jobs().cancel(&id).await.map_err(err)? {
            (strato_service::Cancellation::Cancelled, _) => println!("cancelled {id}"),
            (strato_service::Cancellation::Requested, _) => {
                println!("cancel requested for {id}: it stops at its next check (within a heartbeat)")
            }
        },
    }
    Ok(())
}
