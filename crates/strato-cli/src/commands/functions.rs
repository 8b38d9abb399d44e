//! `strato functions`: functions managed and invoked in this process, against the same database and storage as
//! the servers.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::{bail, Context, Result};
use strato_functions::{InvokeRequest, NewCode, NewFunction};

use super::{open_parts, options, Parts};
use crate::config::{FunctionsCommand, Global};

#[allow(clippy::print_stdout, clippy::print_stderr, reason = "the command's output")]
pub(super) async fn functions(g: &Global, cmd: FunctionsCommand) -> Result<()> {
    let Parts { strato, functions, .. } = open_parts(g, options(g)).await?;
    match cmd {
        FunctionsCommand::Create {
            name,
            runtime,
            handler,
            zip,
            dir,
            timeout,
            memory_size,
            reserved_concurrency,
            environment,
            description,
        } => {
            let code = match (zip, dir) {
                (Some(z), _) => {
                    NewCode::Zip(std::fs::read(&z).with_context(|| format!("reading {}", z.display()))?.into())
                }
                (None, Some(d)) => NewCode::Directory(d),
                (None, None) => bail!("give the code with --zip or --dir"),
            };
            let mut env = BTreeMap::new();
            for kv in environment {
                let Some((k, v)) = kv.split_once('=') else { bail!("--env {kv:?}: use KEY=VALUE") };
                env.insert(k.to_string(), v.to_string());
            }
            let f = NewFunction {
                name,
                runtime,
                handler,
                environment: env,
                timeout,
                memory_size,
                reserved_concurrency,
                description,
                role: String::new(),
                code,
                publish: false,
            };
            println!("{}", serde_json::to_string_pretty(&functions.create(f).await.map_err(fe)?)?);
        }
        FunctionsCommand::UpdateCode { name, zip } => {
            let bytes = std::fs::read(&zip).with_context(|| format!("reading {}", zip.display()))?;
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &functions.update_code(&name, NewCode::Zip(bytes.into())).await.map_err(fe)?
                )?
            );
        }
        FunctionsCommand::List => {
            let all = functions.list().await.map_err(fe)?;
            if all.is_empty() {
                println!("no functions");
            }
            for f in all {
                println!(
                    "{:<32} {:<16} {:<24} {:>4} s {:>6} MB  {}",
                    f.name, f.runtime, f.handler, f.timeout, f.memory_size, f.last_modified
                );
            }
        }
        FunctionsCommand::Show { name, qualifier } => println!(
            "{}",
            serde_json::to_string_pretty(&functions.get(&name, qualifier.as_deref()).await.map_err(fe)?)?
        ),
        FunctionsCommand::Invoke { name, payload } => {
            let payload = if payload == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s)?;
                s
            } else {
                payload
            };
            serde_json::from_str::<serde_json::Value>(&payload).context("--payload is not JSON")?;
            let (name, qualifier) = match name.rsplit_once(':') {
                Some((n, q)) if !n.contains(':') => (n.to_string(), Some(q.to_string())),
                _ => (name, None),
            };
            let req = InvokeRequest { payload: payload.into_bytes().into(), qualifier, ..Default::default() };
            let r = functions.invoke(&name, req).await.map_err(fe)?;
            functions.flush_logs().await;
            eprint!("{}", r.log);
            println!("{}", String::from_utf8_lossy(&r.payload));
            if let Some(e) = r.function_error {
                bail!("the function failed ({e})");
            }
        }
        FunctionsCommand::Publish { name } => {
            println!("{}", serde_json::to_string_pretty(&functions.publish(&name, None).await.map_err(fe)?)?)
        }
        FunctionsCommand::Logs { name, max_bytes } => {
            functions.exists(&name, None).await.map_err(fe)?;
            print!("{}", functions.logs(&name, max_bytes).await);
        }
        FunctionsCommand::Delete { name } => {
            functions.delete(&name).await.map_err(fe)?;
            println!("deleted {name}");
        }
    }
    drop(functions);
    strato.close().await;
    Ok(())
}

fn fe(e: strato_functions::FunctionError) -> anyhow::Error {
    anyhow::anyhow!(e.to_string())
}
