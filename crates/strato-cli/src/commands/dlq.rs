//! `strato dlq`: the dead-letter queue.

use anyhow::Result;

use super::{err, open, print_job, print_jobs};
use crate::config::{DlqCommand, Global};

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) async fn dlq(g: &Global, cmd: DlqCommand) -> Result<()> {
    let strato = open(g).await?;
    match cmd {
        DlqCommand::List { limit } => print_jobs(&strato.jobs().dead_letters(limit).await.map_err(err)?),
        DlqCommand::Show { id } => {
            let (job, attempts) = strato.jobs().dead_letter(&id).await.map_err(err)?;
            print_job(&job, &attempts);
        }
        DlqCommand::Replay { id } => {
            strato.jobs().replay_dead_letter(&id).await.map_err(err)?;
            println!("replayed {id}: queued with fresh attempts");
        }
        DlqCommand::Delete { id } => {
            strato.jobs().delete_dead_letter(&id).await.map_err(err)?;
            println!("deleted {id}");
        }
    }
    Ok(())
}
