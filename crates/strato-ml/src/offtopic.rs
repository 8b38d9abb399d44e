//! Off-topic detection learned at training time, with or without off-topic examples.
//!
//! Chosen by measurement (BENCHMARKS.md: CLINC150's open-intent protocol with all its data, and the few-shot mentor
//! protocol of `crate::fewshot`). A query is scored by up to two signals, z-normalised and averaged —
//! - f1 = log of the classifier's top probability;
//! - f2 = how similar the query is to the training questions of the predicted answer: the mean of its top-5
//!   cosines to them, standardised by that answer's own spread (μ_c, σ_c from leave-one-out top-5 means).
//!
//! S = (z1 + w·z2) / (1 + w); the query is off-topic when S < t. Everything is learned from the mentor's own questions
//! by cross-validation: whole answers are held out as pseudo off-topic questions (so no real off-topic data is
//! needed), a fifth of the remaining rows as in-scope ones. w ∈ {0, 1} and t maximise the held-out accuracy —
//! in-scope questions answered right plus off-topic ones rejected — with off-topic questions assumed to be 40 % of
//! all questions ([`OFF_TOPIC_SHARE`]); small mentors pick w = 0 (with a few phrasings per answer the similarity
//! signal is noise), large ones w = 1. The same held-out questions calibrate the confidence: a logistic fit of
//! "the answer given is right" on S (Platt scaling). A mentor without paraphrases has no held-out in-scope
//! question; its threshold rejects what scores like the lowest [`NO_PARAPHRASE_QUANTILE`] of other answers'
//! questions, and its confidence uses a calibration fitted once on a public dataset ([`NO_PARAPHRASE_CALIBRATION`]).
//! Real off-topic examples (utterances, graded user questions) join the held-out off-topic questions.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::logreg::{self, FitOptions, LinearWeights};
use crate::MlError;

/// Top-k used by the similarity signal.
const K: usize = 5;
/// Assumed share of off-topic questions among those asked: the prior behind the threshold and the confidence.
/// Chosen by measurement (BENCHMARKS.md): on few-shot mentors whose off-topic questions are 36 % of those asked
/// (the share of the issue's hidden mentor is 20-39 %) 0.4 does best; 0.5 gains on CLINC150's 67 % but moves the
/// full-data open-intent operating point to in-scope accuracy 0.90.
pub const OFF_TOPIC_SHARE: f64 = 0.4;
/// Without held-out in-scope questions (no answer has two phrasings), the share of other answers' questions whose
/// score a question must beat to be answered.
pub const NO_PARAPHRASE_QUANTILE: f64 = 0.6;
/// Platt scaling (a, b) for mentors without paraphrases, which have no held-out in-scope question to fit their own:
/// fitted by `strato-bench fewshot … --calibrate-k0 true` on CLINC150's val split (k = 0 mentors of 50 answers, 10
/// draws; the 36 %-off-topic draws give 0.98 / −0.32, the same-domain ones 0.95 / −0.37). Their S is standardised by
/// the held-out answers' scores, which makes it comparable across mentors.
pub const NO_PARAPHRASE_CALIBRATION: [f64; 2] = [0.955, -0.367];
/// Fewest held-out in-scope questions from which a threshold is learned.
const MIN_IN_SCOPE: usize = 5;
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
    /// Held-out estimate of off-topic F1 at the chosen threshold (on pseudo off-topic data, at the assumed share).
    pub cv_f1: Option<f64>,
    /// Weight w of the similarity signal in S (artifacts written before it existed used 1).
    #[serde(default = "one")]
    pub f2_weight: f64,
    /// Platt scaling (a, b): the confidence is σ(a·S + b); `None` in artifacts written before it existed and when no
    /// rule was learned (the classifier's probability is reported instead).
    #[serde(default)]
    pub calibration: Option<[f64; 2]>,
    /// Held-out estimate of the accuracy at the chosen threshold (at the assumed share).
    #[serde(default)]
    pub cv_accuracy: Option<f64>,
}

fn one() -> f64 {
    1.0
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
        let w = self.f2_weight;
        ((f1 - self.m[0]) / self.s[0] + w * (f2 - self.m[1]) / self.s[1]) / (1.0 + w)
    }

    /// The calibrated probability that the answer picked for a query of score `s` is right, when calibrated.
    pub fn confidence(&self, s: f64) -> Option<f64> {
        self.calibration.map(|[a, b]| 1.0 / (1.0 + (-(a * s + b)).exp()))
    }
}

/// One held-out question of the cross-validation.
#[derive(Debug, Clone, Copy)]
struct Held {
    f1: f64,
    f2: f64,
    /// A pseudo (held-out answer) or real off-topic question.
    off: bool,
    /// An in-scope question the fold's classifier answered right.
    right: bool,
    weight: f64,
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
    // 1. Held-out questions.
    let mut scored: Vec<Held> = Vec::new();
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
            let r = Reference { x: &fx, d, groups: &fgroups, mu: &fmu, sigma: &fsigma };
            let mut eval = |q: &[f32], off: bool, truth: Option<usize>, weight: f64| {
                let (f1, f2, c) = signals(&w, &r, q, &mut buf);
                scored.push(Held { f1, f2, off, right: truth == Some(c), weight });
            };
            for i in 0..y.len() {
                let c = y[i] as usize;
                if held_classes[c] {
                    eval(&x[i * d..(i + 1) * d], true, None, 1.0);
                } else if part[i] == f && !fgroups[map[c] as usize].is_empty() {
                    eval(&x[i * d..(i + 1) * d], false, Some(map[c] as usize), 1.0);
                }
            }
            // Each real off-topic example counts once over all folds.
            for q in negatives {
                eval(q, true, None, 1.0 / folds as f64);
            }
        }
    }
    let n_in = scored.iter().filter(|h| !h.off).count();
    let n_off = scored.iter().filter(|h| h.off).count();
    let none = |method: &str| OffTopicParams {
        m: [0.0, 0.0],
        s: [1.0, 1.0],
        threshold: None,
        class_mu: class_mu.clone(),
        class_sigma: class_sigma.clone(),
        method: method.into(),
        cv_f1: None,
        f2_weight: 0.0,
        calibration: None,
        cv_accuracy: None,
    };
    if n_off == 0 {
        // Too little data to learn a rule: never call a question off-topic on its own (the mentor can set a
        // probability threshold instead).
        return Ok(none("none: too few answers to hold any out"));
    }
    if n_in < MIN_IN_SCOPE {
        // No paraphrases: only the other answers' questions say what an off-topic score looks like.
        let (m1, s1) = mean_sd(scored.iter().filter(|h| h.off).map(|h| (h.f1, h.weight)));
        let mut p = none("no paraphrases: quantile of held-out answers' scores");
        p.m = [m1, 0.0];
        p.s = [s1, 1.0];
        let mut offs: Vec<(f64, f64)> =
            scored.iter().filter(|h| h.off).map(|h| (p.score(h.f1, h.f2), h.weight)).collect();
        offs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = offs.iter().map(|o| o.1).sum();
        let mut acc = 0.0;
        let mut t = offs[offs.len() - 1].0;
        for o in &offs {
            acc += o.1;
            if acc >= NO_PARAPHRASE_QUANTILE * total {
                t = o.0;
                break;
            }
        }
        p.threshold = Some(t);
        p.calibration = Some(NO_PARAPHRASE_CALIBRATION);
        return Ok(p);
    }
    // 2. Normalisers from the in-scope held-out rows.
    let (m1, s1) = mean_sd(scored.iter().filter(|h| !h.off).map(|h| (h.f1, 1.0)));
    let (m2, s2) = mean_sd(scored.iter().filter(|h| !h.off).map(|h| (h.f2, 1.0)));
    let mut best: Option<(OffTopicParams, f64)> = None;
    for w in [0.0, 1.0] {
        let mut params = OffTopicParams {
            m: [m1, m2],
            s: [s1, s2],
            f2_weight: w,
            method: "leave-answers-out cross-validation".into(),
            ..none("")
        };
        let pts: Vec<(f64, Held)> = scored.iter().map(|h| (params.score(h.f1, h.f2), *h)).collect();
        let (t, accuracy, f1) = best_threshold(&pts);
        params.threshold = Some(t);
        params.cv_accuracy = Some(accuracy);
        params.cv_f1 = Some(f1);
        if best.as_ref().is_none_or(|b| accuracy > b.1) {
            best = Some((params, accuracy));
        }
    }
    let Some((mut params, _)) = best else { return Ok(none("none")) };
    let pts: Vec<(f64, Held)> = scored.iter().map(|h| (params.score(h.f1, h.f2), *h)).collect();
    params.calibration = Some(platt(&pts));
    Ok(params)
}

/// Weighted mean and standard deviation.
fn mean_sd(it: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let v: Vec<(f64, f64)> = it.collect();
    let w: f64 = v.iter().map(|a| a.1).sum::<f64>().max(1e-12);
    let m = v.iter().map(|a| a.0 * a.1).sum::<f64>() / w;
    let var = v.iter().map(|a| (a.0 - m).powi(2) * a.1).sum::<f64>() / w;
    (m, var.sqrt().max(1e-6))
}

/// Factors for in-scope and off-topic questions' weights (given as (off, weight)) so that the two classes make up
/// 1 − share and share of the objective.
fn class_weights(pts: impl Iterator<Item = (bool, f64)>) -> (f64, f64) {
    let (mut w_in, mut w_off) = (0.0, 0.0);
    for (off, w) in pts {
        if off {
            w_off += w;
        } else {
            w_in += w;
        }
    }
    ((1.0 - OFF_TOPIC_SHARE) / f64::max(w_in, 1e-12), OFF_TOPIC_SHARE / f64::max(w_off, 1e-12))
}

/// The threshold on S maximising the held-out accuracy; returns it with that accuracy and the off-topic F1 there.
fn best_threshold(pts: &[(f64, Held)]) -> (f64, f64, f64) {
    let (k_in, k_off) = class_weights(pts.iter().map(|p| (p.1.off, p.1.weight)));
    let mut pts: Vec<&(f64, Held)> = pts.iter().collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Rejecting everything below the cut: off-topic rejected (tp), in-scope rejected (fp), right answers kept.
    let right_total: f64 = pts.iter().filter(|p| !p.1.off && p.1.right).map(|p| p.1.weight * k_in).sum();
    let off_total: f64 = pts.iter().filter(|p| p.1.off).map(|p| p.1.weight * k_off).sum();
    let (mut tp, mut fp, mut right_rejected) = (0.0, 0.0, 0.0);
    let f1_at = |tp: f64, fp: f64| 2.0 * tp / (2.0 * tp + fp + (off_total - tp)).max(1e-12);
    let mut best = (pts[0].0 - 1.0, right_total, f1_at(0.0, 0.0));
    for i in 0..pts.len() {
        let h = pts[i].1;
        if h.off {
            tp += h.weight * k_off;
        } else {
            fp += h.weight * k_in;
            if h.right {
                right_rejected += h.weight * k_in;
            }
        }
        if i + 1 < pts.len() && pts[i + 1].0 == pts[i].0 {
            continue;
        }
        let accuracy = tp + right_total - right_rejected;
        if accuracy > best.1 {
            let next = pts.get(i + 1).map(|p| p.0).unwrap_or(pts[i].0 + 1.0);
            best = ((pts[i].0 + next) / 2.0, accuracy, f1_at(tp, fp));
        }
    }
    best
}

/// Platt scaling of held-out questions: (a, b) of the logistic fit of "the answer given is right" on S, in-scope
/// and off-topic questions weighted to the assumed share.
fn platt(pts: &[(f64, Held)]) -> [f64; 2] {
    let v: Vec<Calibrating> = pts
        .iter()
        .map(|(s, h)| Calibrating { score: *s, right: h.right && !h.off, off: h.off, weight: h.weight })
        .collect();
    platt_fit(&v)
}

/// One question for [`platt_fit`].
#[derive(Debug, Clone, Copy)]
pub struct Calibrating {
    /// Its score S.
    pub score: f64,
    /// Whether the answer picked for it is right.
    pub right: bool,
    /// Whether it is off-topic.
    pub off: bool,
    /// Its weight within its class (in-scope or off-topic).
    pub weight: f64,
}

/// Platt scaling: (a, b) of the weighted logistic fit of `right` on the score (Newton's method, a little ridge so
/// separable data still gives finite values), in-scope and off-topic questions weighted to [`OFF_TOPIC_SHARE`].
pub fn platt_fit(pts: &[Calibrating]) -> [f64; 2] {
    let (k_in, k_off) = class_weights(pts.iter().map(|p| (p.off, p.weight)));
    let (mut a, mut b) = (1.0, 0.0);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (1e-3 * a, 1e-3 * b, 1e-3, 0.0, 1e-3);
        for p in pts {
            let w = p.weight * if p.off { k_off } else { k_in };
            let y = if p.right { 1.0 } else { 0.0 };
            let q = 1.0 / (1.0 + (-(a * p.score + b)).exp());
            let g = w * (q - y);
            ga += g * p.score;
            gb += g;
            let v = w * q * (1.0 - q);
            haa += v * p.score * p.score;
            hab += v * p.score;
            hbb += v;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-18 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-9 {
            break;
        }
    }
    [a, b]
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    /// `k` classes around random unit centres in 32 dimensions, `per` rows each (unit vectors).
    fn clusters(k: usize, per: usize, noise: f32, seed: u64) -> (Vec<f32>, Vec<u32>, Vec<Vec<f32>>) {
        let d = 32;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let unit = |v: Vec<f32>| {
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.into_iter().map(|a| a / n).collect::<Vec<f32>>()
        };
        let centres: Vec<Vec<f32>> =
            (0..k).map(|_| unit((0..d).map(|_| rng.random_range(-1.0..1.0)).collect())).collect();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..per {
                x.extend(unit(centre.iter().map(|a| a + noise * rng.random_range(-1.0f32..1.0)).collect()));
                y.push(c as u32);
            }
        }
        (x, y, centres)
    }

    fn opts() -> FitOptions {
        FitOptions { c: 10.0, balanced: false, max_iter: 200, tol: 1e-4 }
    }

    #[test]
    fn small_mentors_get_a_threshold_and_a_calibrated_confidence() {
        let (x, y, _) = clusters(20, 5, 0.6, 1);
        let p = fit(&x, 32, &y, 20, &[], &opts(), 42).unwrap();
        assert!(p.threshold.is_some(), "{p:?}");
        let [a, _] = p.calibration.expect("calibrated");
        assert!(a > 0.0, "confidence must rise with the score: {p:?}");
        let (lo, hi) = (p.confidence(-5.0).unwrap(), p.confidence(5.0).unwrap());
        assert!((0.0..0.5).contains(&lo) && (0.5..=1.0).contains(&hi), "{lo} {hi}");
        assert!(p.cv_accuracy.is_some_and(|v| (0.0..=1.0).contains(&v)));
    }

    #[test]
    fn a_mentor_without_paraphrases_still_rejects_some_questions() {
        let (x, y, _) = clusters(30, 1, 0.0, 2);
        let p = fit(&x, 32, &y, 30, &[], &opts(), 42).unwrap();
        let t = p.threshold.expect("a threshold without paraphrases");
        assert!(p.method.starts_with("no paraphrases"), "{p:?}");
        assert!(t.is_finite() && p.calibration == Some(NO_PARAPHRASE_CALIBRATION));
    }

    #[test]
    fn too_few_answers_call_nothing_off_topic() {
        let (x, y, _) = clusters(3, 4, 0.3, 3);
        let p = fit(&x, 32, &y, 3, &[], &opts(), 42).unwrap();
        assert_eq!(p.threshold, None);
    }

    #[test]
    fn artifacts_written_before_the_weights_existed_keep_their_rule() {
        // An off-topic rule as stop 32 serialised it: no f2_weight, calibration or cv_accuracy.
        let old = r#"{"m":[-0.5,1.0],"s":[0.25,2.0],"threshold":-0.3,"class_mu":[0.5],"class_sigma":[0.1],
            "method":"leave-answers-out cross-validation","cv_f1":0.8}"#;
        let p: OffTopicParams = serde_json::from_str(old).unwrap();
        assert_eq!(p.f2_weight, 1.0);
        assert_eq!(p.confidence(0.0), None);
        let (f1, f2) = (-0.4, 3.0);
        let before = 0.5 * ((f1 - -0.5) / 0.25 + (f2 - 1.0) / 2.0);
        assert!((p.score(f1, f2) - before).abs() < 1e-12);
    }
}
