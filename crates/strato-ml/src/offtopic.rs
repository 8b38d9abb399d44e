//! Off-topic detection learned at training time, with or without off-topic examples.
//!
//! Chosen by measurement on CLINC150's open-intent protocol (see BENCHMARKS.md): a query is scored by two signals,
//! z-normalised and averaged —
//! - f1 = log of the classifier's top probability;
//! - f2 = how similar the query is to the training questions of the predicted answer: the mean of its top-5
//!   cosines to them, standardised by that answer's own spread (μ_c, σ_c from leave-one-out top-5 means).
//!
//! S = ½((f1 − m1)/s1 + (f2 − m2)/s2); the query is off-topic when S < t. m, s and t come from leave-answers-out
//! cross-validation: whole answers are held out as pseudo off-topic questions (so no real off-topic data is needed),
//! a fifth of the remaining rows as in-scope ones; t maximises off-topic F1 at an assumed off-topic share of 20 %.
//! Real off-topic examples (utterances, graded user questions) join the negatives when a mentor has them.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::logreg::{self, FitOptions, LinearWeights};
use crate::MlError;

/// Top-k used by the similarity signal.
const K: usize = 5;
/// Assumed share of off-topic questions when weighting pseudo off-topic examples.
const OFF_TOPIC_SHARE: f64 = 0.2;
/// Cross-validation folds over answers.
const FOLDS: usize = 5;

/// Learned parameters of the rule (serialised into the classifier artifact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffTopicParams {
    /// Means of (f1, f2) over held-out in-scope rows.
    pub m: [f64; 2],
    /// Standard deviations of (f1, f2).
    pub s: [f64; 2],
    /// Threshold on S; `None` when there was too little data to learn one (nothing is called off-topic).
    pub threshold: Option<f64>,
    /// Per-class mean of leave-one-out top-k similarity.
    pub class_mu: Vec<f32>,
    /// Per-class standard deviation of it.
    pub class_sigma: Vec<f32>,
    /// How the threshold was chosen, for reports.
    pub method: String,
    /// Held-out estimate of off-topic F1 at the chosen threshold (on pseudo off-topic data).
    pub cv_f1: Option<f64>,
}

/// Rows of one class, as indices into the training matrix.
fn by_class(y: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut g = vec![Vec::new(); k];
    for (i, &c) in y.iter().enumerate() {
        g[c as usize].push(i);
    }
    g
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Mean of the `K` highest cosines of `q` to `rows` of `x` (all unit vectors), skipping row `skip`.
fn topk_mean(q: &[f32], x: &[f32], d: usize, rows: &[usize], skip: Option<usize>) -> Option<f32> {
    let mut sims: Vec<f32> =
        rows.iter().filter(|&&r| Some(r) != skip).map(|&r| dot(q, &x[r * d..(r + 1) * d])).collect();
    if sims.is_empty() {
        return None;
    }
    let k = K.min(sims.len());
    sims.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    Some(sims[..k].iter().sum::<f32>() / k as f32)
}

/// μ_c and σ_c of leave-one-out top-k similarity per class; classes with < 2 rows get the median of the others.
fn class_stats(x: &[f32], d: usize, groups: &[Vec<usize>]) -> (Vec<f32>, Vec<f32>) {
    let mut mu = vec![f32::NAN; groups.len()];
    let mut sigma = vec![f32::NAN; groups.len()];
    for (c, rows) in groups.iter().enumerate() {
        if rows.len() < 2 {
            continue;
        }
        let v: Vec<f32> = rows.iter().filter_map(|&r| topk_mean(&x[r * d..(r + 1) * d], x, d, rows, Some(r))).collect();
        let m = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|a| (a - m).powi(2)).sum::<f32>() / v.len() as f32;
        mu[c] = m;
        sigma[c] = var.sqrt() + 1e-6;
    }
    let median = |v: &[f32], default: f32| {
        let mut ok: Vec<f32> = v.iter().copied().filter(|a| a.is_finite()).collect();
        ok.sort_by(f32::total_cmp);
        ok.get(ok.len() / 2).copied().unwrap_or(default)
    };
    let (mm, ms) = (median(&mu, 0.6), median(&sigma, 0.1));
    // Tiny classes have unreliable spreads: floor every σ at the median.
    for c in 0..groups.len() {
        if !mu[c].is_finite() {
            mu[c] = mm;
        }
        sigma[c] = if sigma[c].is_finite() { sigma[c].max(ms) } else { ms };
    }
    (mu, sigma)
}

/// The training rows and their per-class statistics that the similarity signal compares a query with.
pub struct Reference<'a> {
    /// Training embeddings, n×d.
    pub x: &'a [f32],
    /// Dimension.
    pub d: usize,
    /// Rows of each class.
    pub groups: &'a [Vec<usize>],
    /// Per-class μ.
    pub mu: &'a [f32],
    /// Per-class σ.
    pub sigma: &'a [f32],
}

/// Raw signals (f1, f2) and the predicted class for one query.
pub fn signals(w: &LinearWeights, r: &Reference, q: &[f32], buf: &mut Vec<f32>) -> (f64, f64, usize) {
    let Reference { x, d, groups, mu, sigma } = *r;
    logreg::predict_proba(w, q, buf);
    let (c, p) = buf.iter().enumerate().fold((0, 0f32), |best, (i, &p)| if p > best.1 { (i, p) } else { best });
    let f1 = (p.max(1e-12) as f64).ln();
    let f2 = topk_mean(q, x, d, &groups[c], None).map(|s| ((s - mu[c]) / sigma[c]) as f64).unwrap_or(0.0);
    (f1, f2, c)
}

impl OffTopicParams {
    /// S for the signals of one query.
    pub fn score(&self, f1: f64, f2: f64) -> f64 {
        0.5 * ((f1 - self.m[0]) / self.s[0] + (f2 - self.m[1]) / self.s[1])
    }
}

/// Learns the rule for a training set (`x` n×d unit rows, labels `y` < k); `negatives` are real off-topic examples.
pub fn fit(
    x: &[f32],
    d: usize,
    y: &[u32],
    k: usize,
    negatives: &[Vec<f32>],
    opts: &FitOptions,
    seed: u64,
) -> Result<OffTopicParams, MlError> {
    let groups = by_class(y, k);
    let (class_mu, class_sigma) = class_stats(x, d, &groups);
    // 1. Held-out scores: (f1, f2, is_off_topic, weight).
    let mut scored: Vec<(f64, f64, bool, f64)> = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let folds = FOLDS.min(k);
    let cv_opts = FitOptions { max_iter: opts.max_iter.min(100), ..opts.clone() };
    if k >= 4 {
        let mut classes: Vec<usize> = (0..k).collect();
        classes.shuffle(&mut rng);
        let part: Vec<usize> = (0..y.len()).map(|i| (i * 7919 + seed as usize) % folds).collect();
        for f in 0..folds {
            let held_classes: Vec<bool> = {
                let mut v = vec![false; k];
                for (i, &c) in classes.iter().enumerate() {
                    v[c] = i % folds == f;
                }
                v
            };
            // Re-index the classes kept in this fold.
            let mut map = vec![u32::MAX; k];
            let mut kept = 0u32;
            for c in 0..k {
                if !held_classes[c] {
                    map[c] = kept;
                    kept += 1;
                }
            }
            let train: Vec<usize> = (0..y.len()).filter(|&i| !held_classes[y[i] as usize] && part[i] != f).collect();
            let mut fx = Vec::with_capacity(train.len() * d);
            let mut fy = Vec::with_capacity(train.len());
            for &i in &train {
                fx.extend_from_slice(&x[i * d..(i + 1) * d]);
                fy.push(map[y[i] as usize]);
            }
            let fk = kept as usize;
            let fgroups = by_class(&fy, fk);
            if fgroups.iter().filter(|g| !g.is_empty()).count() < 2 {
                continue;
            }
            let (w, _) = logreg::fit(&fx, d, &fy, fk, &cv_opts, None)?;
            let (fmu, fsigma) = class_stats(&fx, d, &fgroups);
            let mut buf = Vec::new();
            let mut fold: Vec<(f64, f64, bool, f64)> = Vec::new();
            let mut eval = |q: &[f32], off: bool, weight: f64| {
                let r = Reference { x: &fx, d, groups: &fgroups, mu: &fmu, sigma: &fsigma };
                let (f1, f2, _) = signals(&w, &r, q, &mut buf);
                fold.push((f1, f2, off, weight));
            };
            let (mut n_in, mut n_off) = (0usize, 0usize);
            for i in 0..y.len() {
                let c = y[i] as usize;
                if held_classes[c] {
                    eval(&x[i * d..(i + 1) * d], true, 1.0);
                    n_off += 1;
                } else if part[i] == f && !fgroups[map[c] as usize].is_empty() {
                    eval(&x[i * d..(i + 1) * d], false, 1.0);
                    n_in += 1;
                }
            }
            // Weight pseudo off-topic rows so they make up OFF_TOPIC_SHARE of this fold's held-out questions.
            for q in negatives {
                eval(q, true, 1.0 / folds as f64);
            }
            let w_off = OFF_TOPIC_SHARE / (1.0 - OFF_TOPIC_SHARE) * n_in as f64 / n_off.max(1) as f64;
            for s in &mut fold[..n_in + n_off] {
                if s.2 {
                    s.3 = w_off;
                }
            }
            scored.extend(fold);
        }
    }
    let ins: Vec<&(f64, f64, bool, f64)> = scored.iter().filter(|s| !s.2).collect();
    if ins.len() < 5 || !scored.iter().any(|s| s.2) {
        // Too little data to learn a rule: never call a question off-topic on its own (the mentor can set a
        // probability threshold instead).
        return Ok(OffTopicParams {
            m: [0.0, 0.0],
            s: [1.0, 1.0],
            threshold: None,
            class_mu,
            class_sigma,
            method: "none: too few answers to hold any out".into(),
            cv_f1: None,
        });
    }
    // 2. Normalisers from the in-scope held-out rows.
    let stat = |f: fn(&(f64, f64, bool, f64)) -> f64| {
        let n = ins.len() as f64;
        let m = ins.iter().map(|s| f(s)).sum::<f64>() / n;
        let sd = (ins.iter().map(|s| (f(s) - m).powi(2)).sum::<f64>() / n).sqrt().max(1e-6);
        (m, sd)
    };
    let (m1, s1) = stat(|s| s.0);
    let (m2, s2) = stat(|s| s.1);
    let mut params = OffTopicParams {
        m: [m1, m2],
        s: [s1, s2],
        threshold: None,
        class_mu,
        class_sigma,
        method: "leave-answers-out cross-validation".into(),
        cv_f1: None,
    };
    // 3. Threshold maximising weighted off-topic F1 (off-topic = S below the threshold).
    let mut pts: Vec<(f64, bool, f64)> = scored.iter().map(|s| (params.score(s.0, s.1), s.2, s.3)).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total_off: f64 = pts.iter().filter(|p| p.1).map(|p| p.2).sum();
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut best = (f64::NEG_INFINITY, 0.0);
    for i in 0..pts.len() {
        if pts[i].1 {
            tp += pts[i].2;
        } else {
            fp += pts[i].2;
        }
        if i + 1 < pts.len() && pts[i + 1].0 == pts[i].0 {
            continue;
        }
        let f1 = 2.0 * tp / (2.0 * tp + fp + (total_off - tp));
        if f1 > best.1 {
            let next = pts.get(i + 1).map(|p| p.0).unwrap_or(pts[i].0 + 1.0);
            best = ((pts[i].0 + next) / 2.0, f1);
        }
    }
    params.threshold = Some(best.0);
    params.cv_f1 = Some(best.1);
    Ok(params)
}
