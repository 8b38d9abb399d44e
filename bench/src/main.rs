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

/// Open-intent (off-topic) evaluation on CLINC150: train a mentor model on the known intents' train rows, then
/// score the test split (unknown intents must come back off-topic).
fn offtopic(args: &[String]) -> Result<serde_json::Value> {
    let [dir, csv, known, ..] = args else { bail!("usage: offtopic MODEL_DIR CSV KNOWN_INTENTS") };
    let known: std::collections::HashSet<String> =
        std::fs::read_to_string(known)?.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let e = strato_ml::Embedder::load(&PathBuf::from(dir))?;
    let mut train = Vec::new();
    let mut test = Vec::new();
    for r in csv::Reader::from_path(csv)?.records() {
        let r = r?;
        match (&r[2], known.contains(&r[1])) {
            ("train", true) => train.push(strato_ml::Example { text: r[0].into(), label: r[1].into(), split: None }),
            ("test", _) => test.push((r[0].to_string(), r[1].to_string())),
            _ => {}
        }
    }
    let t = Instant::now();
    let texts: Vec<&str> = train.iter().map(|x| x.text.as_str()).collect();
    let emb = e.embed_all(&texts, |_, _| true)?;
    let embed_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let id = strato_ml::EmbeddingIdentity { name: "bench".into(), sha256: String::new() };
    let params = strato_ml::TrainParams { val_fraction: 0.0, ..Default::default() };
    let model = strato_ml::mentor_model::MentorModel::train(&train, &emb, &[], &params, &id, String::new())?;
    let fit_s = t.elapsed().as_secs_f64();
    let test_texts: Vec<&str> = test.iter().map(|(t, _)| t.as_str()).collect();
    let test_emb = e.embed_all(&test_texts, |_, _| true)?;
    let (mut tp, mut fp, mut fn_, mut in_ok, mut n_in) = (0, 0, 0, 0, 0);
    for ((_, label), q) in test.iter().zip(&test_emb) {
        let d = model.decide(q, None);
        let off = !known.contains(label);
        match (off, d.off_topic) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
        if !off {
            n_in += 1;
            in_ok += usize::from(!d.off_topic && &d.label == label);
        }
    }
    let p = tp as f64 / (tp + fp).max(1) as f64;
    let r = tp as f64 / (tp + fn_).max(1) as f64;
    Ok(json!({
        "off_topic_precision": p, "off_topic_recall": r, "off_topic_f1": 2.0 * p * r / (p + r).max(1e-12),
        "in_scope_accuracy": in_ok as f64 / n_in.max(1) as f64, "threshold": model.offtopic.threshold,
        "cv_f1": model.offtopic.cv_f1, "embed_s": embed_s, "fit_s": fit_s,
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.first().map(String::as_str) {
        Some("embed") => embed(&args[1..])?,
        Some("predict") => predict(&args[1..]).await?,
        Some("offtopic") => offtopic(&args[1..])?,
        _ => bail!("usage: strato-bench embed|predict …"),
    };
    println!("{out}");
    Ok(())
}
