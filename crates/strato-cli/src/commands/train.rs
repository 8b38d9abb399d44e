//! `strato train`: a model version trained in this process from a dataset file.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use strato_ml::{parse_dataset, DatasetFormat, TrainParams};
use strato_service::{AttemptOutcome, DataSource, TrainRequest};

use super::open;
use crate::config::{Global, TrainArgs};

/// `key=value` pairs to training parameters; values are JSON when they parse as JSON, else strings.
fn parse_params(pairs: &[String]) -> Result<TrainParams> {
    let mut map = serde_json::Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else { bail!("--param {p:?}: expected KEY=VALUE") };
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
        map.insert(k.trim().to_string(), value);
    }
    let params: TrainParams = serde_json::from_value(serde_json::Value::Object(map)).context("invalid --param")?;
    params.validate().map_err(anyhow::Error::msg)?;
    Ok(params)
}

pub(super) async fn train(g: &Global, args: TrainArgs) -> Result<()> {
    let params = parse_params(&args.params)?;
    let path = args.data.display().to_string();
    let format = DatasetFormat::from_path(&path)
        .with_context(|| format!("{path}: unknown file type; use .csv, .jsonl or .json"))?;
    let bytes = std::fs::read(&args.data).with_context(|| format!("cannot read {path}"))?;
    if bytes.len() > g.max_dataset_bytes {
        bail!("{path} is {} bytes; the limit is {} (--max-dataset-bytes)", bytes.len(), g.max_dataset_bytes);
    }
    let ds = parse_dataset(&bytes, format).map_err(|e| anyhow::anyhow!("{path}: {}", e.0))?;
    eprintln!("{path}: {} examples, {} labels ({})", ds.examples.len(), ds.labels().len(), ds.format.as_str());

    let strato = open(g).await?;
    strato
        .embeddings()
        .embedder()
        .await
        .map_err(|e| anyhow::anyhow!(e.message))
        .context("loading the embedding model")?;
    let bar = ProgressBar::new(100).with_style(
        ProgressStyle::with_template("{spinner} training [{bar:40}] {pos:>3}% {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let b = bar.clone();
    let (job, outcome) = strato
        .models()
        .train_now(
            TrainRequest {
                model_id: args.model.clone(),
                data: DataSource::Inline(ds.examples),
                params,
                force_update: args.force,
                meta: serde_json::json!({"file": path}),
                idempotency_key: None,
            },
            move |p| b.set_position(p as u64),
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    bar.finish_and_clear();
    match outcome {
        AttemptOutcome::Succeeded(result) => {
            print_metrics(&args.model, &result);
            Ok(())
        }
        AttemptOutcome::Failed(e) => bail!("training failed (job {}): {e}", job.id),
        AttemptOutcome::Cancelled => bail!("training job {} was cancelled", job.id),
        AttemptOutcome::LeaseLost => bail!("training job {} was taken over by another worker", job.id),
    }
}

fn print_metrics(model: &str, result: &serde_json::Value) {
    let version = result["version"].as_i64().unwrap_or(0);
    let m = &result["metrics"];
    println!("model {model} version {version} is active");
    println!("  examples trained on  {}", m["n_train"]);
    println!("  labels               {}", m["n_labels"]);
    println!("  optimiser iterations {} (converged: {})", m["iterations"], m["converged"]);
    for (name, set) in [("validation", &m["validation"]), ("test", &m["test"])] {
        if set.is_null() {
            continue;
        }
        println!(
            "  {name:<10} n={:<6} accuracy={:.4} macro-F1={:.4}",
            set["n"],
            set["accuracy"].as_f64().unwrap_or(0.0),
            set["macro_f1"].as_f64().unwrap_or(0.0)
        );
    }
    let Some(per) = m["validation"]["per_label"].as_object() else { return };
    let mut rows: Vec<(&String, &serde_json::Value)> = per.iter().collect();
    rows.sort_by(|a, b| a.1["f1"].as_f64().unwrap_or(0.0).total_cmp(&b.1["f1"].as_f64().unwrap_or(0.0)));
    let shown = if rows.len() > 20 { 10 } else { rows.len() };
    println!();
    println!(
        "  {:<32} {:>7} {:>9} {:>7} {:>7}",
        "label (validation, worst first)", "support", "precision", "recall", "f1"
    );
    for (label, v) in rows.iter().take(shown) {
        println!(
            "  {:<32} {:>7} {:>9.3} {:>7.3} {:>7.3}",
            label,
            v["support"],
            v["precision"].as_f64().unwrap_or(0.0),
            v["recall"].as_f64().unwrap_or(0.0),
            v["f1"].as_f64().unwrap_or(0.0)
        );
    }
    if shown < rows.len() {
        println!("  … {} more labels", rows.len() - shown);
    }
}
