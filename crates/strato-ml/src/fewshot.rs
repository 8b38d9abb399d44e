//! The few-shot mentor protocol (issue 27), shared by the test and `strato-bench fewshot`.
//!
//! A real mentor has a few dozen answers, each with one question and a handful of paraphrases. From an intent
//! dataset (CLINC150): a draw picks `n` intents as the mentor's answers and, for each, `1 + k` utterances of its
//! train split as the question and its paraphrases (nested: the `k = 2` phrasings are the first three of the
//! `k = 4` ones); every test utterance is then asked, and those of the intents not drawn must come back off-topic.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use crate::mentor_model::MentorModel;
use crate::{EmbeddingIdentity, Example, MlError, TrainParams};

/// An intent dataset split by intent: train utterances per intent, and the (text, intent) pairs to ask.
#[derive(Debug, Clone, Default)]
pub struct IntentData {
    /// Train utterances of each intent, in file order.
    pub train: BTreeMap<String, Vec<String>>,
    /// Test utterances with their intents.
    pub test: Vec<(String, String)>,
    /// Validation utterances with their intents (only the validation-tuned peer may look at them).
    pub val: Vec<(String, String)>,
}

impl IntentData {
    /// Reads a `text,label,split` CSV (CLINC150's layout in `tests/data/clinc150.csv`).
    pub fn from_csv(path: &std::path::Path) -> Result<Self, csv::Error> {
        let mut d = Self::default();
        for r in csv::Reader::from_path(path)?.records() {
            let r = r?;
            let (text, label) = (r[0].to_string(), r[1].to_string());
            match &r[2] {
                "train" => d.train.entry(label).or_default().push(text),
                "test" => d.test.push((text, label)),
                "val" => d.val.push((text, label)),
                _ => {}
            }
        }
        Ok(d)
    }
}

/// One answer of a drawn mentor: the intent it stands for and its phrasings (the question first).
#[derive(Debug, Clone, Serialize)]
pub struct DrawnAnswer {
    /// The intent (used as the answer's id).
    pub intent: String,
    /// The question, then up to `k_max` paraphrases.
    pub phrasings: Vec<String>,
}

/// A drawn mentor.
#[derive(Debug, Clone, Serialize)]
pub struct Draw {
    /// The draw's seed.
    pub seed: u64,
    /// The answers.
    pub answers: Vec<DrawnAnswer>,
    /// The intents whose test utterances are asked (the answers' and the off-topic ones).
    pub universe: Vec<String>,
}

impl Draw {
    /// Picks `n` of all intents and `1 + k_max` train utterances of each, reproducibly from `seed`; every intent
    /// is asked.
    pub fn new(data: &IntentData, n: usize, k_max: usize, seed: u64) -> Self {
        Self::within(data, data.train.keys().cloned().collect(), n, k_max, seed)
    }

    /// Like [`Draw::new`] with only the intents of `universe` asked (and answers drawn from them).
    pub fn within(data: &IntentData, mut universe: Vec<String>, n: usize, k_max: usize, seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        universe.retain(|i| data.train.contains_key(i));
        universe.shuffle(&mut rng);
        let answers = universe
            .iter()
            .take(n)
            .map(|intent| {
                let mut u = data.train[intent].clone();
                u.shuffle(&mut rng);
                u.truncate(1 + k_max);
                DrawnAnswer { intent: intent.clone(), phrasings: u }
            })
            .collect();
        universe.sort();
        Self { seed, answers, universe }
    }

    /// Whether utterances of `intent` are asked.
    pub fn asks(&self, intent: &str) -> bool {
        self.universe.binary_search_by(|u| u.as_str().cmp(intent)).is_ok()
    }

    /// The training rows at `k` paraphrases: (text, intent).
    pub fn rows(&self, k: usize) -> Vec<(&str, &str)> {
        self.answers
            .iter()
            .flat_map(|a| a.phrasings.iter().take(1 + k).map(move |t| (t.as_str(), a.intent.as_str())))
            .collect()
    }

    /// Whether `intent` is one of the mentor's answers.
    pub fn knows(&self, intent: &str) -> bool {
        self.answers.iter().any(|a| a.intent == intent)
    }
}

/// One drawn mentor trained and asked.
#[derive(Debug, Clone)]
pub struct MentorRun {
    /// The outcomes.
    pub tally: Tally,
    /// Training time (classifier and off-topic rule; the embeddings were computed before), seconds.
    pub fit_s: f64,
    /// Each question's confidence and whether the answer picked was right (an off-topic question's never is).
    pub confidences: Vec<(f32, bool)>,
    /// Each question's off-topic score S, whether the answer picked was right and whether it is off-topic.
    pub scores: Vec<(f64, bool, bool)>,
}

/// Trains a mentor model on a draw at `k` paraphrases the way a `train_mentor` job does (no off-topic
/// examples) and answers every test utterance of the draw's intents. `embedding` gives each text's vector.
pub fn run_mentor<'a>(
    draw: &Draw,
    k: usize,
    test: &[(String, String)],
    embedding: impl Fn(&str) -> &'a [f32],
) -> Result<MentorRun, MlError> {
    let rows = draw.rows(k);
    let examples: Vec<Example> =
        rows.iter().map(|(t, l)| Example { text: (*t).into(), label: (*l).into(), split: None }).collect();
    let x: Vec<Vec<f32>> = rows.iter().map(|(t, _)| embedding(t).to_vec()).collect();
    let id = EmbeddingIdentity { name: "fewshot".into(), sha256: String::new() };
    let t = std::time::Instant::now();
    let model = MentorModel::train(&examples, &x, &[], &TrainParams::mentor(), &id, String::new())?;
    let fit_s = t.elapsed().as_secs_f64();
    let mut tally = Tally::default();
    let (mut confidences, mut scores) = (Vec::new(), Vec::new());
    for (text, intent) in test.iter().filter(|(_, i)| draw.asks(i)) {
        let d = model.decide(embedding(text), None);
        let truth = draw.knows(intent).then_some(intent.as_str());
        tally.add(truth, (!d.off_topic).then_some(d.label.as_str()));
        let right = truth == Some(d.label.as_str());
        confidences.push((d.confidence, right));
        scores.push((d.score, right, truth.is_none()));
    }
    Ok(MentorRun { tally, fit_s, confidences, scores })
}

/// A reliability table: questions binned by confidence (tenths), each bin's count, mean confidence and share of
/// right answers.
pub fn reliability(confidences: &[(f32, bool)]) -> Vec<ReliabilityBin> {
    let mut bins = vec![(0usize, 0f64, 0usize); 10];
    for &(c, right) in confidences {
        let b = &mut bins[((c.clamp(0.0, 1.0) * 10.0) as usize).min(9)];
        b.0 += 1;
        b.1 += c as f64;
        b.2 += usize::from(right);
    }
    bins.iter()
        .enumerate()
        .filter(|(_, b)| b.0 > 0)
        .map(|(i, b)| ReliabilityBin {
            from: i as f64 / 10.0,
            to: (i + 1) as f64 / 10.0,
            count: b.0,
            mean_confidence: b.1 / b.0 as f64,
            accuracy: b.2 as f64 / b.0 as f64,
        })
        .collect()
}

/// Expected calibration error of a reliability table: the count-weighted mean gap between confidence and accuracy.
pub fn expected_calibration_error(bins: &[ReliabilityBin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.count).sum();
    bins.iter().map(|b| b.count as f64 * (b.mean_confidence - b.accuracy).abs()).sum::<f64>() / n.max(1) as f64
}

/// One bin of a reliability table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// Lower bound of the bin's confidences.
    pub from: f64,
    /// Upper bound.
    pub to: f64,
    /// Questions in the bin.
    pub count: usize,
    /// Their mean confidence.
    pub mean_confidence: f64,
    /// The share of them answered right.
    pub accuracy: f64,
}

/// Counts of the protocol's outcomes; off-topic is the positive class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    /// In-scope questions given their answer.
    pub in_right: usize,
    /// In-scope questions given another answer.
    pub in_wrong: usize,
    /// In-scope questions called off-topic.
    pub in_rejected: usize,
    /// Off-topic questions called off-topic.
    pub off_rejected: usize,
    /// Off-topic questions given an answer.
    pub off_answered: usize,
}

impl Tally {
    /// Adds one question: its true intent is known to the mentor or not, and the answer given (None: off-topic).
    pub fn add(&mut self, truth: Option<&str>, given: Option<&str>) {
        match (truth, given) {
            (Some(t), Some(g)) if t == g => self.in_right += 1,
            (Some(_), Some(_)) => self.in_wrong += 1,
            (Some(_), None) => self.in_rejected += 1,
            (None, None) => self.off_rejected += 1,
            (None, Some(_)) => self.off_answered += 1,
        }
    }

    /// The protocol's metrics.
    pub fn metrics(&self) -> FewShotMetrics {
        let n_in = self.in_right + self.in_wrong + self.in_rejected;
        let n_off = self.off_rejected + self.off_answered;
        let called_off = self.off_rejected + self.in_rejected;
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let p = ratio(self.off_rejected, called_off);
        let r = ratio(self.off_rejected, n_off);
        FewShotMetrics {
            overall_accuracy: ratio(self.in_right + self.off_rejected, n_in + n_off),
            in_scope_accuracy: ratio(self.in_right, n_in),
            off_topic_precision: p,
            off_topic_recall: r,
            off_topic_f1: if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) },
        }
    }
}

/// What the protocol reports for one mentor (or the mean over draws).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct FewShotMetrics {
    /// Share of all questions answered right (an off-topic question is right when called off-topic).
    pub overall_accuracy: f64,
    /// Share of in-scope questions given their answer.
    pub in_scope_accuracy: f64,
    /// Precision of the off-topic calls.
    pub off_topic_precision: f64,
    /// Share of off-topic questions called off-topic.
    pub off_topic_recall: f64,
    /// F1 of the two.
    pub off_topic_f1: f64,
}

impl FewShotMetrics {
    fn fields(&self) -> [f64; 5] {
        [
            self.overall_accuracy,
            self.in_scope_accuracy,
            self.off_topic_precision,
            self.off_topic_recall,
            self.off_topic_f1,
        ]
    }

    fn from_fields(f: [f64; 5]) -> Self {
        Self {
            overall_accuracy: f[0],
            in_scope_accuracy: f[1],
            off_topic_precision: f[2],
            off_topic_recall: f[3],
            off_topic_f1: f[4],
        }
    }

    /// Mean and (population) standard deviation of each metric over draws.
    pub fn mean_sd(all: &[FewShotMetrics]) -> (FewShotMetrics, FewShotMetrics) {
        let n = all.len().max(1) as f64;
        let mut mean = [0.0; 5];
        for m in all {
            for (acc, v) in mean.iter_mut().zip(m.fields()) {
                *acc += v / n;
            }
        }
        let mut sd = [0.0; 5];
        for m in all {
            for ((acc, v), mu) in sd.iter_mut().zip(m.fields()).zip(mean) {
                *acc += (v - mu).powi(2) / n;
            }
        }
        (Self::from_fields(mean), Self::from_fields(sd.map(f64::sqrt)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> IntentData {
        let mut d = IntentData::default();
        for i in 0..10 {
            d.train.insert(format!("i{i}"), (0..8).map(|j| format!("i{i} u{j}")).collect());
        }
        d
    }

    #[test]
    fn draws_are_reproducible_and_nested() {
        let d = data();
        let a = Draw::new(&d, 4, 4, 7);
        let b = Draw::new(&d, 4, 4, 7);
        assert_eq!(a.rows(4), b.rows(4));
        assert_eq!(a.answers.len(), 4);
        assert_eq!(a.rows(0).len(), 4);
        assert_eq!(a.rows(2).len(), 12);
        let k2 = a.rows(2);
        assert!(a.rows(0).iter().all(|r| k2.contains(r)));
        assert!(a.rows(4).iter().all(|(t, i)| t.starts_with(i)));
        assert_ne!(a.rows(4), Draw::new(&d, 4, 4, 8).rows(4));
    }

    #[test]
    fn tally_counts_each_outcome() {
        let mut t = Tally::default();
        t.add(Some("a"), Some("a"));
        t.add(Some("a"), Some("b"));
        t.add(Some("a"), None);
        t.add(None, None);
        t.add(None, None);
        t.add(None, Some("a"));
        let m = t.metrics();
        assert!((m.overall_accuracy - 0.5).abs() < 1e-12);
        assert!((m.in_scope_accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.off_topic_precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.off_topic_recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.off_topic_f1 - 2.0 / 3.0).abs() < 1e-12);
    }
}
