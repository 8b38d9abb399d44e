//! `strato workflows` (state machine definitions, checked here without a server) and `strato executions`.

use std::io::Read;

use anyhow::{Context, Result};
use serde_json::Value;

use super::{open_parts, options};
use crate::config::{ExecutionsCommand, Global, WorkflowsCommand};

async fn open_workflows(g: &Global) -> Result<strato_workflows::Workflows> {
    Ok(open_parts(g, options(g)).await?.workflows)
}

fn werr(e: strato_workflows::WorkflowError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) async fn workflows(g: &Global, cmd: WorkflowsCommand) -> Result<()> {
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
        WorkflowsCommand::Put { name, file, r#type } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let w = open_workflows(g).await?;
            match w.get(&name).await {
                Ok(_) => {
                    w.update(&name, Some(&text), None).await.map_err(werr)?;
                    println!("updated {}", w.arn(&name));
                }
                Err(strato_workflows::WorkflowError::NotFound(..)) => {
                    w.create(&name, &text, "", &r#type, "").await.map_err(werr)?;
                    println!("created {}", w.arn(&name));
                }
                Err(e) => return Err(werr(e)),
            }
        }
        WorkflowsCommand::List => {
            let w = open_workflows(g).await?;
            for sm in w.list().await.map_err(werr)? {
                println!("{:<40} {:<9} {}", sm.name, sm.kind, sm.created_at.to_rfc3339());
            }
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) async fn executions(g: &Global, cmd: ExecutionsCommand) -> Result<()> {
    let w = open_workflows(g).await?;
    let show = |x: &strato_workflows::durable::ExecutionRecord| {
        println!("{}  {}", w.execution_arn(&x.machine, &x.name), x.status);
        println!("  started {}", x.started.to_rfc3339());
        if let Some(t) = x.stopped {
            println!("  stopped {}", t.to_rfc3339());
        }
        println!("  input   {}", x.input);
        if let Some(o) = &x.output {
            println!("  output  {o}");
        }
        if let Some(e) = &x.error {
            println!("  error   {e}: {}", x.cause.as_deref().unwrap_or(""));
        }
        if x.redrive_count > 0 {
            println!("  redriven {} time(s)", x.redrive_count);
        }
    };
    match cmd {
        ExecutionsCommand::Start { machine, input, name } => {
            let x = w.start_execution(&machine, name.as_deref(), &input, None).await.map_err(werr)?;
            println!("{}", w.execution_arn(&x.machine, &x.name));
        }
        ExecutionsCommand::Describe { machine, name } => {
            show(&w.execution(&format!("{machine}:{name}")).await.map_err(werr)?)
        }
        ExecutionsCommand::List { machine, status } => {
            let mut next = None;
            loop {
                let page = w.list_executions(&machine, status.as_deref(), 1000, next.as_deref()).await.map_err(werr)?;
                for x in &page.executions {
                    println!("{:<40} {:<10} {}", x.name, x.status, x.started.to_rfc3339());
                }
                match page.next_token {
                    Some(t) => next = Some(t),
                    None => break,
                }
            }
        }
        ExecutionsCommand::History { machine, name } => {
            let key = format!("{machine}:{name}");
            let mut next = None;
            loop {
                let page = w.history(&key, false, true, 1000, next.as_deref()).await.map_err(werr)?;
                for e in &page.events {
                    println!("{}", timeline_line(e));
                }
                match page.next_token {
                    Some(t) => next = Some(t),
                    None => break,
                }
            }
        }
        ExecutionsCommand::Stop { machine, name, error, cause } => {
            let x = w
                .stop_execution(&format!("{machine}:{name}"), error.as_deref(), cause.as_deref())
                .await
                .map_err(werr)?;
            show(&x);
        }
        ExecutionsCommand::Redrive { machine, name } => {
            let x = w.redrive_execution(&format!("{machine}:{name}")).await.map_err(werr)?;
            show(&x);
        }
        ExecutionsCommand::MapRuns { machine, name } => {
            for r in w.map_runs(&format!("{machine}:{name}")).await.map_err(werr)? {
                let c = &r.executions;
                println!(
                    "{}  {}  children: {} succeeded, {} failed, {} timed out, {} aborted, {} running, {} pending of {}",
                    w.map_run_arn(&r.key),
                    r.status,
                    c.succeeded,
                    c.failed,
                    c.timed_out,
                    c.aborted,
                    c.running,
                    c.pending,
                    c.total
                );
            }
        }
    }
    Ok(())
}

/// One history event as a line: id, time, type, and what matters of its details.
fn timeline_line(e: &Value) -> String {
    let at = e["timestamp"].as_f64().unwrap_or(0.0);
    let time = chrono::DateTime::from_timestamp_millis((at * 1000.0) as i64)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let kind = e["type"].as_str().unwrap_or("?");
    let details = e
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.ends_with("EventDetails")).map(|(_, v)| v.clone()))
        .unwrap_or(Value::Null);
    let mut what = Vec::new();
    for f in ["name", "index", "resource", "error", "cause", "output", "input", "length", "redriveCount"] {
        if let Some(v) = details.get(f) {
            let text = match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let short: String = text.chars().take(120).collect();
            what.push(format!("{f}={short}"));
        }
    }
    format!("{:>5}  {time}  {kind:<26} {}", e["id"], what.join("  "))
}
