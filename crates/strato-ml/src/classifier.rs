//! Text classifiers: training on embeddings (hold out, evaluate, refit) and the versioned model artifact.

use std::collections::{BTreeMap, HashMap};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::dataset::{Example, Split};
use crate::logreg::{self, FitInfo, FitOptions, LinearWeights};
use crate::MlError;

/// Artifact format version. Bump it (and keep a reader for the old one) when the layout changes.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "strato-classifier";

/// Training parameters (the `params` of a train request).
///
/// # Warning
/// Stored with every model version: new fields need defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Inverse L2 strength. Default 10: measured on CLINC150 (see BENCHMARKS.md), C=10 beats C=1 by a point.
    #[serde(default = "default_c", rename = "C", alias = "c")]
    pub c: f64,
    /// `"balanced"` weights classes inversely to their frequency.
    #[serde(default)]
    pub class_weight: Option<String>,
    /// Optimiser iteration cap.
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// The fit stops when the largest component of the gradient falls below this: scikit-learn's `tol`, on the
    /// same objective (scaled by the sample weights' sum), so the default 1e-4 is its default too.
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Fraction held out per label for validation when the dataset has no `split` column.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Seed of the validation split.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_c() -> f64 {
    10.0
}
fn default_max_iter() -> usize {
    500
}
fn default_tol() -> f64 {
    1e-4
}
fn default_val_fraction() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    42
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            c: default_c(),
            class_weight: None,
            max_iter: default_max_iter(),
            tol: default_tol(),
            val_fraction: default_val_fraction(),
            seed: default_seed(),
        }
    }
}

impl TrainParams {
    /// What a mentor's training uses: no stratified hold-out (most answers have a handful of questions, and the
    /// off-topic rule's cross-validation already holds data out).
    pub fn mentor() -> Self {
        Self { val_fraction: 0.0, ..Self::default() }
    }

    /// Checks values a user may get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.c > 0.0 && self.c.is_finite()) {
            return Err(format!("params.C must be a positive number, not {}", self.c));
        }
        if let Some(cw) = &self.class_weight {
            if cw != "balanced" {
                return Err(format!("params.class_weight must be \"balanced\" or null, not {cw:?}"));
            }
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return Err(format!("params.val_fraction must be in [0, 0.9), not {}", self.val_fraction));
        }
        if self.max_iter == 0 || self.max_iter > 100_000 {
            return Err(format!("params.max_iter must be between 1 and 100000, not {}", self.max_iter));
        }
        if !(self.tol > 0.0 && self.tol < 1.0) {
            return Err(format!("params.tol must be a number in (0, 1), not {}", self.tol));
        }
        Ok(())
    }

    /// The optimiser's settings these parameters ask for.
    pub(crate) fn fit_options(&self) -> FitOptions {
        FitOptions { c: self.c, balanced: self.class_weight.is_some(), max_iter: self.max_iter, tol: self.tol }
    }
}

/// Precision, recall, F1 and support of one label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    /// Examples of this label in the evaluated set.
    pub support: usize,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

/// Evaluation of a classifier on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Examples evaluated.
    pub n: usize,
    /// Accuracy.
    pub accuracy: f64,
    /// Unweighted mean of per-label F1 over labels with support.
    pub macro_f1: f64,
    /// Per label.
    pub per_label: BTreeMap<String, LabelMetrics>,
}

/// Everything training reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    /// Held-out validation metrics (None when the data is too small to hold anything out).
    pub validation: Option<EvalMetrics>,
    /// Metrics on the dataset's `test` split, when it has one.
    pub test: Option<EvalMetrics>,
    /// Examples in the final fit.
    pub n_train: usize,
    /// Labels.
    pub n_labels: usize,
    /// Examples per label in the final fit.
    pub support: BTreeMap<String, usize>,
    /// Optimiser iterations of the final fit.
    pub iterations: usize,
    /// Whether the final fit converged.
    pub converged: bool,
}

/// A trained classifier over embeddings, with everything needed to serve and audit it.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    /// Labels; index i is row i of the weights.
    pub labels: Vec<String>,
    /// Embedding dimension.
    pub dim: usize,
    /// Weights.
    pub weights: LinearWeights,
    /// Embedding model name the features came from.
    pub embedding_model: String,
    /// SHA-256 of that model's weights.
    pub embedding_sha256: String,
    /// Metrics at training time.
    pub metrics: TrainMetrics,
    /// Parameters used.
    pub params: TrainParams,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// A label and its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// Label.
    pub label: String,
    /// Probability.
    pub score: f32,
}

impl Classifier {
    /// Top `n` labels by probability for one embedding, highest first.
    pub fn predict(&self, embedding: &[f32], n: usize) -> Vec<Scored> {
        let mut p = Vec::with_capacity(self.labels.len());
        logreg::predict_proba(&self.weights, embedding, &mut p);
        let mut idx: Vec<usize> = (0..p.len()).collect();
        let by_score = |a: &usize, b: &usize| p[*b].total_cmp(&p[*a]);
        // Only the top n need ordering.
        if n < idx.len() {
            idx.select_nth_unstable_by(n, by_score);
            idx.truncate(n);
        }
        idx.sort_unstable_by(by_score);
        idx.into_iter().map(|i| Scored { label: self.labels[i].clone(), score: p[i] }).collect()
    }

    fn argmax(&self, embedding: &[f32], buf: &mut Vec<f32>) -> usize {
        logreg::predict_proba(&self.weights, embedding, buf);
        buf.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
    }

    /// Serialises to the artifact format: safetensors with `weight` [k, d], `bias` [k], and metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MlError> {
        self.to_bytes_with(Vec::new(), Vec::new())
    }

    /// The artifact with extra tensors (name, dtype, shape, little-endian bytes) and metadata entries.
    pub fn to_bytes_with(
        &self,
        extra_tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
        extra_meta: Vec<(String, String)>,
    ) -> Result<Vec<u8>, MlError> {
        let k = self.labels.len();
        let w: Vec<u8> = self.weights.weights.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b: Vec<u8> = self.weights.bias.iter().flat_map(|v| v.to_le_bytes()).collect();
        let err = |e: safetensors::SafeTensorError| MlError::Artifact(e.to_string());
        let mut tensors = vec![
            ("weight".to_string(), TensorView::new(Dtype::F32, vec![k, self.dim], &w).map_err(err)?),
            ("bias".to_string(), TensorView::new(Dtype::F32, vec![k], &b).map_err(err)?),
        ];
        for (name, dtype, shape, bytes) in &extra_tensors {
            tensors.push((name.clone(), TensorView::new(*dtype, shape.clone(), bytes).map_err(err)?));
        }
        let json = |v: &dyn erased::Json| v.to_json();
        let meta: HashMap<String, String> = [
            ("format", FORMAT_NAME.to_string()),
            ("format_version", FORMAT_VERSION.to_string()),
            ("embedding_model", self.embedding_model.clone()),
            ("embedding_sha256", self.embedding_sha256.clone()),
            ("labels", json(&self.labels)?),
            ("metrics", json(&self.metrics)?),
            ("params", json(&self.params)?),
            ("created_at", self.created_at.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(extra_meta)
        .collect();
        safetensors::serialize(tensors, Some(meta)).map_err(err)
    }

    /// Reads an artifact written by [`Classifier::to_bytes`], refusing unknown formats and versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlError> {
        let bad = |m: String| MlError::Artifact(m);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).cloned().ok_or_else(|| bad(format!("artifact metadata lacks {k:?}")));
        if get("format")? != FORMAT_NAME {
            return Err(bad("not a Strato classifier artifact".into()));
        }
        let version: u32 = get("format_version")?.parse().map_err(|_| bad("bad format_version".into()))?;
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "artifact format version {version} is not supported (this build reads {FORMAT_VERSION})"
            )));
        }
        let parse = |k: &str| -> Result<serde_json::Value, MlError> {
            serde_json::from_str(&get(k)?).map_err(|e| bad(format!("bad {k}: {e}")))
        };
        let labels: Vec<String> = serde_json::from_value(parse("labels")?).map_err(|e| bad(e.to_string()))?;
        let metrics: TrainMetrics = serde_json::from_value(parse("metrics")?).map_err(|e| bad(e.to_string()))?;
        let params: TrainParams = serde_json::from_value(parse("params")?).map_err(|e| bad(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let floats = |name: &str| -> Result<(Vec<usize>, Vec<f32>), MlError> {
            let t = st.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(format!("{name} must be F32")));
            }
            let v = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok((t.shape().to_vec(), v))
        };
        let (wshape, weights) = floats("weight")?;
        let (bshape, bias) = floats("bias")?;
        if wshape.len() != 2 || wshape[0] != labels.len() || bshape != [labels.len()] {
            return Err(bad(format!("weight shape {wshape:?} / bias {bshape:?} do not match {} labels", labels.len())));
        }
        Ok(Self {
            dim: wshape[1],
            labels,
            weights: LinearWeights { weights, bias },
            embedding_model: get("embedding_model")?,
            embedding_sha256: get("embedding_sha256")?,
            metrics,
            params,
            created_at: get("created_at")?,
        })
    }
}

mod erased {
    /// Lets the metadata table serialise values of different types in one array.
    pub trait Json {
        fn to_json(&self) -> Result<String, crate::MlError>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<String, crate::MlError> {
            serde_json::to_string(self).map_err(|e| crate::MlError::Artifact(e.to_string()))
        }
    }
}

/// Identity of the embedding model the features come from.
#[derive(Debug, Clone)]
pub struct EmbeddingIdentity {
    /// Name.
    pub name: String,
    /// SHA-256 of the weights.
    pub sha256: String,
}

/// Trains a classifier on examples and their embeddings (same order).
///
/// 1. Split: the dataset's `split` column when present (train → fit, val → validate, test → report only),
///    else a stratified `val_fraction` hold-out per label.
/// 2. Fit on the training part and evaluate on the held-out part.
/// 3. Refit on train + val, warm-started from step 2's weights; test rows are never trained on.
pub fn train(
    examples: &[Example],
    embeddings: &[Vec<f32>],
    params: &TrainParams,
    identity: &EmbeddingIdentity,
    created_at: String,
) -> Result<Classifier, MlError> {
    params.validate().map_err(MlError::Train)?;
    if examples.len() != embeddings.len() || embeddings.is_empty() {
        return Err(MlError::Train("examples and embeddings differ in length".into()));
    }
    let dim = embeddings[0].len();
    let labels: Vec<String> = examples
        .iter()
        .filter(|e| e.split != Some(Split::Test))
        .map(|e| e.label.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if labels.len() < 2 {
        return Err(MlError::Train(format!("need at least 2 labels to train, found {}", labels.len())));
    }
    let index: HashMap<&str, u32> = labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();

    // 1. Split.
    let has_split = examples.iter().any(|e| e.split.is_some());
    let (fit_rows, val_rows, test_rows): (Vec<usize>, Vec<usize>, Vec<usize>) = if has_split {
        let by = |s: Split| (0..examples.len()).filter(|&i| examples[i].split.unwrap_or(Split::Train) == s).collect();
        (by(Split::Train), by(Split::Val), by(Split::Test))
    } else {
        let (f, v) = stratified_holdout(examples, params.val_fraction, params.seed);
        (f, v, Vec::new())
    };
    let final_rows: Vec<usize> = fit_rows.iter().chain(&val_rows).copied().collect();
    let gather = |rows: &[usize]| -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::with_capacity(rows.len() * dim);
        let mut y = Vec::with_capacity(rows.len());
        for &r in rows {
            x.extend_from_slice(&embeddings[r]);
            y.push(index.get(examples[r].label.as_str()).copied().unwrap_or(u32::MAX));
        }
        (x, y)
    };
    let opts = params.fit_options();

    // 2. Fit on the training part, evaluate on the hold-out.
    let fit_labels: std::collections::BTreeSet<&str> = fit_rows.iter().map(|&r| examples[r].label.as_str()).collect();
    let (validation, warm) = if !val_rows.is_empty() && fit_labels.len() == labels.len() {
        let (x, y) = gather(&fit_rows);
        let (w, _) = logreg::fit(&x, dim, &y, labels.len(), &opts, None)?;
        let probe = Classifier::bare(labels.clone(), dim, w.clone());
        (Some(probe.evaluate(examples, embeddings, &val_rows)), Some(w))
    } else {
        (None, None)
    };

    // 3. Refit on everything but test.
    let (x, y) = gather(&final_rows);
    let (w, info): (LinearWeights, FitInfo) = logreg::fit(&x, dim, &y, labels.len(), &opts, warm.as_ref())?;
    let mut model = Classifier::bare(labels.clone(), dim, w);
    let test = (!test_rows.is_empty()).then(|| model.evaluate(examples, embeddings, &test_rows));
    let mut support = BTreeMap::new();
    for &r in &final_rows {
        *support.entry(examples[r].label.clone()).or_insert(0) += 1;
    }
    model.metrics = TrainMetrics {
        validation,
        test,
        n_train: final_rows.len(),
        n_labels: labels.len(),
        support,
        iterations: info.iterations,
        converged: info.converged,
    };
    model.params = params.clone();
    model.embedding_model = identity.name.clone();
    model.embedding_sha256 = identity.sha256.clone();
    model.created_at = created_at;
    Ok(model)
}

impl Classifier {
    fn bare(labels: Vec<String>, dim: usize, weights: LinearWeights) -> Self {
        Self {
            labels,
            dim,
            weights,
            embedding_model: String::new(),
            embedding_sha256: String::new(),
            metrics: TrainMetrics {
                validation: None,
                test: None,
                n_train: 0,
                n_labels: 0,
                support: BTreeMap::new(),
                iterations: 0,
                converged: false,
            },
            params: TrainParams::default(),
            created_at: String::new(),
        }
    }

    /// Accuracy, macro-F1 and per-label metrics over `rows` of a labelled set.
    pub fn evaluate(&self, examples: &[Example], embeddings: &[Vec<f32>], rows: &[usize]) -> EvalMetrics {
        let truth: Vec<&str> = rows.iter().map(|&r| examples[r].label.as_str()).collect();
        let mut buf = Vec::new();
        let pred: Vec<&str> =
            rows.iter().map(|&r| self.labels[self.argmax(&embeddings[r], &mut buf)].as_str()).collect();
        eval_metrics(&truth, &pred)
    }
}

/// Accuracy, macro-F1 and per-label metrics from true and predicted labels.
pub fn eval_metrics(truth: &[&str], pred: &[&str]) -> EvalMetrics {
    #[derive(Default)]
    struct Counts {
        tp: usize,
        fp: usize,
        support: usize,
    }
    let mut c: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut correct = 0;
    for (&t, &p) in truth.iter().zip(pred) {
        c.entry(t).or_default().support += 1;
        if t == p {
            correct += 1;
            c.entry(t).or_default().tp += 1;
        } else {
            c.entry(p).or_default().fp += 1;
        }
    }
    let mut per_label = BTreeMap::new();
    let mut f1_sum = 0.0;
    let mut with_support = 0;
    for (label, k) in &c {
        if k.support == 0 {
            continue;
        }
        let precision = if k.tp + k.fp == 0 { 0.0 } else { k.tp as f64 / (k.tp + k.fp) as f64 };
        let recall = k.tp as f64 / k.support as f64;
        let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
        f1_sum += f1;
        with_support += 1;
        per_label.insert(label.to_string(), LabelMetrics { support: k.support, precision, recall, f1 });
    }
    EvalMetrics {
        n: truth.len(),
        accuracy: if truth.is_empty() { 0.0 } else { correct as f64 / truth.len() as f64 },
        macro_f1: if with_support == 0 { 0.0 } else { f1_sum / with_support as f64 },
        per_label,
    }
}

/// Per label, holds out `round(count · fraction)` examples, always leaving at least one to train on.
fn stratified_holdout(examples: &[Example], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        by_label.entry(e.label.as_str()).or_default().push(i);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut fit, mut val) = (Vec::new(), Vec::new());
    for rows in by_label.values_mut() {
        rows.shuffle(&mut rng);
        let take = ((rows.len() as f64 * fraction).round() as usize).min(rows.len() - 1);
        val.extend_from_slice(&rows[..take]);
        fit.extend_from_slice(&rows[take..]);
    }
    fit.sort_unstable();
    val.sort_unstable();
    (fit, val)
}

#[cfg(test)]
#[path = "classifier_test.rs"]
mod tests;
