//! `strato-bench fewshot MODEL_DIR CSV OUT_DIR [--draws D] [--answers N] [--ks 0,2,4] [--peer PYTHON]`: the few-shot
//! mentor protocol (`strato_ml::fewshot`) on CLINC150, Strato beside the Python peers in one run.
//!
//! Every utterance of the CSV is embedded once (the same vectors for Strato and the peers, so the comparison is
//! about answering, not the encoder) and written to OUT_DIR (`texts.json`, `embeddings.f32`), with the draws
//! (`draws.json`). Strato trains each drawn mentor the way a `train_mentor` job does and answers every test
//! utterance; `bench/peer_fewshot.py` (run with `--peer`) does the same with MentorPal's algorithm and with a
//! logistic regression whose threshold is tuned on the labelled val split.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::json;
use strato_ml::fewshot::{Draw, FewShotMetrics, IntentData};

struct Args {
    model: PathBuf,
    csv: PathBuf,
    out: PathBuf,
    draws: usize,
    answers: usize,
    ks: Vec<usize>,
    peer: Option<String>,
    universe: Option<usize>,
    near: bool,
    calibrate_k0: bool,
}

fn parse(args: &[String]) -> Result<Args> {
    let [model, csv, out, rest @ ..] = args else {
        bail!("usage: fewshot MODEL_DIR CSV OUT_DIR [--draws D] [--answers N] [--ks 0,2,4] [--peer PYTHON] [--universe U [--near true]]")
    };
    let mut a = Args {
        model: model.into(),
        csv: csv.into(),
        out: out.into(),
        draws: 10,
        answers: 50,
        ks: vec![0, 2, 4],
        peer: None,
        universe: None,
        near: false,
        calibrate_k0: false,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--draws" => a.draws = v.parse()?,
            "--answers" => a.answers = v.parse()?,
            "--ks" => a.ks = v.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--peer" => a.peer = Some(v.clone()),
            "--universe" => a.universe = Some(v.parse()?),
            "--near" => a.near = v.parse()?,
            "--calibrate-k0" => a.calibrate_k0 = v.parse()?,
            _ => bail!("unknown option {flag}"),
        }
    }
    Ok(a)
}

/// Embeds every utterance once, reusing OUT_DIR's files when they hold the same texts.
fn embeddings(a: &Args, data: &IntentData) -> Result<HashMap<String, Vec<f32>>> {
    let mut texts: Vec<&str> = data.train.values().flatten().map(String::as_str).collect();
    texts.extend(data.test.iter().chain(&data.val).map(|(t, _)| t.as_str()));
    texts.sort_unstable();
    texts.dedup();
    let (tp, ep) = (a.out.join("texts.json"), a.out.join("embeddings.f32"));
    let cached: Option<Vec<String>> = std::fs::read(&tp).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let vectors: Vec<Vec<f32>> = match cached {
        Some(c) if c == texts => {
            let raw = std::fs::read(&ep)?;
            let d = raw.len() / 4 / texts.len();
            raw.chunks_exact(4 * d)
                .map(|row| row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
                .collect()
        }
        _ => {
            let e = strato_ml::Embedder::load(&a.model)?;
            let t = Instant::now();
            let v = e.embed_all(&texts, |_, _| true)?;
            eprintln!("embedded {} texts in {:.1} s", texts.len(), t.elapsed().as_secs_f64());
            std::fs::write(&tp, serde_json::to_vec(&texts)?)?;
            std::fs::write(&ep, v.iter().flatten().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())?;
            v
        }
    };
    Ok(texts.into_iter().map(String::from).zip(vectors).collect())
}

/// A draw over all intents, over U random ones, or (`--near`) over the U intents nearest to a random one (by their
/// train utterances' mean embedding): a mentor whose off-topic questions come from its own domain.
fn draw(a: &Args, data: &IntentData, emb: &HashMap<String, Vec<f32>>, k_max: usize, seed: u64) -> Draw {
    let Some(u) = a.universe else { return Draw::new(data, a.answers, k_max, seed) };
    let intents: Vec<&String> = data.train.keys().collect();
    let pick = |order: Vec<&String>| order.into_iter().take(u).cloned().collect::<Vec<String>>();
    if !a.near {
        let mut shuffled = intents.clone();
        // Draw::within shuffles again with the same seed; a different stream keeps the two choices independent.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
        shuffled.shuffle(&mut rng);
        return Draw::within(data, pick(shuffled), a.answers, k_max, seed);
    }
    let centroid = |i: &String| {
        let mut c = vec![0f32; emb[&data.train[i][0]].len()];
        for t in &data.train[i] {
            c.iter_mut().zip(&emb[t]).for_each(|(a, b)| *a += b);
        }
        let n = c.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        c.iter_mut().for_each(|v| *v /= n);
        c
    };
    let cs: Vec<Vec<f32>> = intents.iter().map(|i| centroid(i)).collect();
    let centre = (seed as usize * 7919) % intents.len();
    let mut order: Vec<usize> = (0..intents.len()).collect();
    let sim = |j: usize| cs[j].iter().zip(&cs[centre]).map(|(a, b)| a * b).sum::<f32>();
    order.sort_by(|&x, &y| sim(y).total_cmp(&sim(x)));
    Draw::within(data, pick(order.into_iter().map(|j| intents[j]).collect()), a.answers, k_max, seed)
}

fn summary(all: &[FewShotMetrics]) -> serde_json::Value {
    let (mean, sd) = FewShotMetrics::mean_sd(all);
    json!({"mean": mean, "sd": sd})
}

/// Runs the protocol; prints and returns one JSON object with Strato's and the peers' results.
pub fn run(args: &[String]) -> Result<serde_json::Value> {
    let a = parse(args)?;
    std::fs::create_dir_all(&a.out)?;
    let data = IntentData::from_csv(&a.csv)?;
    let emb = embeddings(&a, &data)?;
    let k_max = a.ks.iter().copied().max().unwrap_or(0);
    let draws: Vec<Draw> = (0..a.draws as u64).map(|s| draw(&a, &data, &emb, k_max, 1000 + s)).collect();
    std::fs::write(a.out.join("draws.json"), serde_json::to_vec(&json!({"ks": a.ks, "draws": draws}))?)?;
    if a.calibrate_k0 {
        return calibrate_k0(&draws, &data, &emb);
    }
    let mut strato = serde_json::Map::new();
    for &k in &a.ks {
        let (mut metrics, mut fit, mut conf) = (Vec::new(), Vec::new(), Vec::new());
        for d in &draws {
            let run = strato_ml::fewshot::run_mentor(d, k, &data.test, |t| emb[t].as_slice())?;
            metrics.push(run.tally.metrics());
            fit.push(run.fit_s);
            conf.extend(run.confidences);
        }
        let mut s = summary(&metrics);
        s["fit_s_mean"] = json!(fit.iter().sum::<f64>() / fit.len().max(1) as f64);
        let bins = strato_ml::fewshot::reliability(&conf);
        s["ece"] = json!(strato_ml::fewshot::expected_calibration_error(&bins));
        s["reliability"] = json!(bins);
        s["draws"] = json!(metrics);
        eprintln!("strato k={k}: {}", s["mean"]);
        strato.insert(k.to_string(), s);
    }
    let peers = match &a.peer {
        Some(python) => peer(python, &a.out, &a.csv)?,
        None => serde_json::Value::Null,
    };
    Ok(json!({"answers": a.answers, "draws": a.draws, "strato": strato, "peers": peers}))
}

/// Fits the Platt scaling that mentors without paraphrases use (they have no held-out in-scope question to fit
/// their own): k = 0 mentors of the draws answer CLINC150's val split (never the test split the tables report).
fn calibrate_k0(draws: &[Draw], data: &IntentData, emb: &HashMap<String, Vec<f32>>) -> Result<serde_json::Value> {
    let mut pts = Vec::new();
    for d in draws {
        let run = strato_ml::fewshot::run_mentor(d, 0, &data.val, |t| emb[t].as_slice())?;
        let n_in = run.scores.iter().filter(|s| !s.2).count().max(1) as f64;
        let n_off = run.scores.iter().filter(|s| s.2).count().max(1) as f64;
        pts.extend(run.scores.iter().map(|&(score, right, off)| strato_ml::offtopic::Calibrating {
            score,
            right,
            off,
            weight: 1.0 / if off { n_off } else { n_in },
        }));
    }
    let [a, b] = strato_ml::offtopic::platt_fit(&pts);
    Ok(json!({"no_paraphrase_calibration": [a, b], "questions": pts.len()}))
}

fn peer(python: &str, out: &Path, csv: &Path) -> Result<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peer_fewshot.py");
    let o = std::process::Command::new(python).arg(script).arg(out).arg(csv).output()?;
    if !o.status.success() {
        bail!("peer_fewshot.py failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(serde_json::from_slice(&o.stdout)?)
}
