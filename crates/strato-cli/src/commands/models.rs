//! `strato models` and `strato predict`: the stored models, and predictions with their active versions.

use anyhow::Result;

use super::{err, open};
use crate::config::{Global, ModelsCommand, PredictArgs};

pub(super) async fn predict(g: &Global, args: PredictArgs) -> Result<()> {
    let strato = open(g).await?;
    let p = strato
        .models()
        .predict(&args.model, args.texts.clone(), args.n_top)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    for (text, preds) in args.texts.iter().zip(&p.predictions) {
        println!("{text}");
        for s in preds {
            println!("  {:<32} {:.4}", s.label, s.score);
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) async fn models(g: &Global, cmd: ModelsCommand) -> Result<()> {
    let strato = open(g).await?;
    match cmd {
        ModelsCommand::List => {
            let all = strato.models().list().await.map_err(err)?;
            if all.is_empty() {
                println!("no models");
            }
            for m in all {
                let v = m.active_version.map(|v| format!("v{v}")).unwrap_or_else(|| "untrained".into());
                println!("{:<32} {:<10} updated {}", m.id, v, m.updated_at.to_rfc3339());
            }
        }
        ModelsCommand::Show { id } => {
            let d = strato.models().get(&id).await.map_err(err)?;
            println!(
                "{} (active: {})",
                d.model.id,
                d.model.active_version.map(|v| format!("v{v}")).unwrap_or("none".into())
            );
            for v in d.versions {
                let acc = v.metrics["validation"]["accuracy"].as_f64();
                println!(
                    "  v{:<4} {} validation accuracy {} params {}",
                    v.version,
                    v.created_at.to_rfc3339(),
                    acc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "-".into()),
                    v.params
                );
            }
        }
        ModelsCommand::Delete { id } => {
            strato.models().delete(&id).await.map_err(err)?;
            println!("deleted {id}");
        }
    }
    Ok(())
}
