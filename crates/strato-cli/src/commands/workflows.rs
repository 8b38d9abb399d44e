//! `strato workflows`: state machine definitions, checked here without a server.

use std::io::Read;

use anyhow::{Context, Result};

use crate::config::WorkflowsCommand;

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) fn workflows(cmd: WorkflowsCommand) -> Result<()> {
    match cmd {
        WorkflowsCommand::Validate { file } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading the definition from standard input")?;
                s
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
            };
            match strato_workflows::Machine::parse(&text) {
                Ok(m) => println!("OK: {} states, starting at {:?}", m.states.len(), m.start_at),
                Err(problems) => {
                    for p in &problems {
                        let at = if p.location.is_empty() { "/".to_string() } else { p.location.clone() };
                        println!("{}  {}  {}", p.code, at, p.message);
                    }
                    anyhow::bail!("{} problem(s) in {}", problems.len(), file.display());
                }
            }
        }
    }
    Ok(())
}
