//! In-process measurements for bench/run.py, printed as one JSON object:
//!
//! - `strato-bench embed MODEL_DIR CSV [N]`: batch-32 embedding throughput on CLINC150 texts (after a warm-up).
//! - `strato-bench predict DATA_DIR MODEL_DIR MODEL_ID CSV [N]`: single-query predict latency (embed one text +
//!   classify, through the service as the HTTP handler calls it) over N distinct test texts.

#![allow(clippy::print_stdout, reason = "prints its measurements")]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

fn texts(csv: &str, split: &[&str], n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for r in csv::Reader::from_path(csv).with_context(|| format!("reading {csv}"))?.records() {
        let r = r?;
        if split.contains(&&r[2]) {
            out.push(r[0].to_string());
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn embed(args: &[String]) -> Result<serde_json::Value> {
    let [dir, csv, rest @ ..] = args else { bail!("usage: embed MODEL_DIR CSV [N]") };
    let n: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(2048);
    let e = strato_ml::Embedder::load(&PathBuf::from(dir))?;
    let texts = texts(csv, &["test", "val"], n)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    e.embed_batch(&refs[..32])?;
    let t = Instant::now();
    for chunk in refs.chunks(32) {
        e.embed_batch(chunk)?;
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(json!({"embed_batch32_per_s": refs.len() as f64 / secs, "n": refs.len()}))
}

async fn predict(args: &[String]) -> Result<serde_json::Value> {
    let [data_dir, model_dir, model, csv, rest @ ..] = args else {
        bail!("usage: predict DATA_DIR MODEL_DIR MODEL_ID CSV [N]")
    };
    let n: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let mut opts = strato_service::StratoOptions::new(data_dir);
    opts.embedding_model = Some(PathBuf::from(model_dir));
    let s = strato_service::Strato::open(opts).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let texts = texts(csv, &["test"], n)?;
    for t in texts.iter().take(20) {
        s.predict(model, vec![t.clone()], 5).await.map_err(|e| anyhow::anyhow!(e.message))?;
    }
    let mut ms = Vec::with_capacity(texts.len());
    for t in &texts {
        let start = Instant::now();
        s.predict(model, vec![t.clone()], 5).await.map_err(|e| anyhow::anyhow!(e.message))?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(json!({"predict_p50_ms": percentile(&ms, 0.5), "predict_p99_ms": percentile(&ms, 0.99), "n": ms.len()}))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.first().map(String::as_str) {
        Some("embed") => embed(&args[1..])?,
        Some("predict") => predict(&args[1..]).await?,
        _ => bail!("usage: strato-bench embed|predict …"),
    };
    println!("{out}");
    Ok(())
}
