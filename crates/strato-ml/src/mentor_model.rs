//! A mentor's question classifier: the logistic-regression classifier over answers, its training questions'
//! embeddings (for the similarity signal) and the learned off-topic rule, in one artifact.

use std::collections::HashMap;

use safetensors::tensor::Dtype;

use crate::classifier::{self, Classifier, EmbeddingIdentity, TrainParams};
use crate::dataset::Example;
use crate::offtopic::{self, OffTopicParams};
use crate::MlError;

/// A trained mentor classifier.
#[derive(Debug, Clone)]
pub struct MentorModel {
    /// Classifier over answer ids.
    pub classifier: Classifier,
    /// Training embeddings, n×dim.
    x: Vec<f32>,
    /// Rows of each class.
    groups: Vec<Vec<usize>>,
    /// The off-topic rule.
    pub offtopic: OffTopicParams,
}

/// What the classifier decided for a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The most likely answer id.
    pub label: String,
    /// The probability that it is the right answer: calibrated on held-out questions when the model has a
    /// calibration (see `offtopic`), the classifier's probability otherwise.
    pub confidence: f32,
    /// Whether the query is off-topic.
    pub off_topic: bool,
    /// The off-topic score S (higher is more on-topic).
    pub score: f64,
}

impl MentorModel {
    /// Trains the classifier and learns the off-topic rule. `negatives` are embeddings of known off-topic questions.
    pub fn train(
        examples: &[Example],
        embeddings: &[Vec<f32>],
        negatives: &[Vec<f32>],
        params: &TrainParams,
        identity: &EmbeddingIdentity,
        created_at: String,
    ) -> Result<Self, MlError> {
        let classifier = classifier::train(examples, embeddings, params, identity, created_at)?;
        let index: HashMap<&str, u32> =
            classifier.labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
        let d = classifier.dim;
        let mut x = Vec::with_capacity(examples.len() * d);
        let mut y = Vec::with_capacity(examples.len());
        for (e, v) in examples.iter().zip(embeddings) {
            if let Some(&c) = index.get(e.label.as_str()) {
                x.extend_from_slice(v);
                y.push(c);
            }
        }
        let opts = crate::logreg::FitOptions { balanced: false, ..params.fit_options() };
        let offtopic = offtopic::fit(&x, d, &y, classifier.labels.len(), negatives, &opts, params.seed)?;
        let groups = groups(&y, classifier.labels.len());
        Ok(Self { classifier, x, groups, offtopic })
    }

    /// Decides for one query embedding. `threshold` overrides the learned rule with a probability cut-off.
    pub fn decide(&self, q: &[f32], threshold: Option<f64>) -> Decision {
        let mut buf = Vec::new();
        let d = self.classifier.dim;
        let reference = offtopic::Reference {
            x: &self.x,
            d,
            groups: &self.groups,
            mu: &self.offtopic.class_mu,
            sigma: &self.offtopic.class_sigma,
        };
        let (f1, f2, c) = offtopic::signals(&self.classifier.weights, &reference, q, &mut buf);
        let score = self.offtopic.score(f1, f2);
        let confidence = self.offtopic.confidence(score).map_or(buf[c], |p| p as f32);
        let off_topic = match threshold {
            Some(t) => (confidence as f64) < t,
            None => self.offtopic.threshold.is_some_and(|t| score < t),
        };
        Decision { label: self.classifier.labels[c].clone(), confidence, off_topic, score }
    }

    /// Serialises the artifact (a classifier artifact plus `train_x`, `train_y` and `offtopic` metadata).
    pub fn to_bytes(&self) -> Result<Vec<u8>, MlError> {
        let n = self.x.len() / self.classifier.dim.max(1);
        let mut y = vec![0u32; n];
        for (c, rows) in self.groups.iter().enumerate() {
            for &r in rows {
                y[r] = c as u32;
            }
        }
        let xb: Vec<u8> = self.x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let yb: Vec<u8> = y.iter().flat_map(|v| v.to_le_bytes()).collect();
        let meta = serde_json::to_string(&self.offtopic).map_err(|e| MlError::Artifact(e.to_string()))?;
        self.classifier.to_bytes_with(
            vec![
                ("train_x".into(), Dtype::F32, vec![n, self.classifier.dim], xb),
                ("train_y".into(), Dtype::U32, vec![n], yb),
            ],
            vec![("offtopic".into(), meta)],
        )
    }

    /// Reads an artifact written by [`MentorModel::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MlError> {
        let classifier = Classifier::from_bytes(bytes)?;
        let bad = |m: String| MlError::Artifact(m);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let meta = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("offtopic"))
            .ok_or_else(|| bad("not a mentor artifact: no off-topic rule".into()))?;
        let offtopic: OffTopicParams = serde_json::from_str(meta).map_err(|e| bad(e.to_string()))?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let tx = st.tensor("train_x").map_err(|e| bad(e.to_string()))?;
        let ty = st.tensor("train_y").map_err(|e| bad(e.to_string()))?;
        let x: Vec<f32> = tx.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let y: Vec<u32> = ty.data().chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let k = classifier.labels.len();
        if x.len() != y.len() * classifier.dim || y.iter().any(|&c| c as usize >= k) {
            return Err(bad("train_x / train_y do not match the classifier".into()));
        }
        Ok(Self { groups: groups(&y, k), classifier, x, offtopic })
    }
}

fn groups(y: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut g = vec![Vec::new(); k];
    for (i, &c) in y.iter().enumerate() {
        g[c as usize].push(i);
    }
    g
}

/// Off-topic detection quality on a labelled set (off-topic is the positive class).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OpenIntentMetrics {
    /// Precision of the off-topic calls.
    pub off_topic_precision: f64,
    /// Share of off-topic queries called off-topic.
    pub off_topic_recall: f64,
    /// F1 of the two.
    pub off_topic_f1: f64,
    /// Share of in-scope queries answered with the right label (a rejection counts as wrong).
    pub in_scope_accuracy: f64,
}

impl MentorModel {
    /// Scores the open-intent protocol: each query with its true label; `is_known` says whether that label was
    /// trained on (queries of unknown labels must come back off-topic).
    pub fn open_intent_metrics<'a>(
        &self,
        queries: impl IntoIterator<Item = (&'a [f32], &'a str)>,
        is_known: impl Fn(&str) -> bool,
    ) -> OpenIntentMetrics {
        let (mut tp, mut fp, mut fneg, mut in_ok, mut n_in) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for (q, label) in queries {
            let d = self.decide(q, None);
            let off = !is_known(label);
            match (off, d.off_topic) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fneg += 1,
                (false, false) => {}
            }
            if !off {
                n_in += 1;
                in_ok += usize::from(!d.off_topic && d.label == label);
            }
        }
        let p = tp as f64 / (tp + fp).max(1) as f64;
        let r = tp as f64 / (tp + fneg).max(1) as f64;
        OpenIntentMetrics {
            off_topic_precision: p,
            off_topic_recall: r,
            off_topic_f1: if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) },
            in_scope_accuracy: in_ok as f64 / n_in.max(1) as f64,
        }
    }
}
