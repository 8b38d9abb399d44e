//! The few-shot mentor protocol (issue 27) on CLINC150: mentors of a few dozen answers, each one question and k
//! paraphrases from the train split, no off-topic examples; every test utterance of the draw's intents is asked and
//! those of intents the mentor lacks must come back off-topic.
//!
//! The targets are relative to the peers (`strato-bench fewshot --peer`, BENCHMARKS.md "Few-shot mentors"):
//! at k = 4, N = 50 of 150 intents MentorPal's algorithm reaches overall accuracy 0.493 / off-topic F1 0.430, and a
//! logistic regression with its threshold tuned on the labelled val split 0.860 / 0.899. The issue asks for the
//! best peer + 0.05, which no rule on these frozen embeddings reaches even with its threshold tuned on the test set
//! (0.863 / 0.903, see BENCHMARKS.md); this test guards what Strato reaches without any labelled off-topic data, and
//! that it stays ahead of MentorPal's algorithm by the margin.

use std::collections::HashMap;
use std::path::PathBuf;

use strato_ml::fewshot::{self, Draw, FewShotMetrics, IntentData};
use strato_ml::Embedder;

fn data_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data")).join(name)
}

struct Setup {
    data: IntentData,
    emb: HashMap<String, Vec<f32>>,
}

/// Embeds the draws' phrasings and the test utterances once.
fn embed(e: &Embedder, data: IntentData, draws: &[&Draw]) -> Setup {
    let mut texts: Vec<&str> = data.test.iter().map(|(t, _)| t.as_str()).collect();
    for d in draws {
        texts.extend(d.answers.iter().flat_map(|a| a.phrasings.iter().map(String::as_str)));
    }
    texts.sort_unstable();
    texts.dedup();
    let v = e.embed_all(&texts, |_, _| true).unwrap();
    let emb = texts.iter().map(|t| t.to_string()).zip(v).collect();
    Setup { data, emb }
}

fn mean_over(s: &Setup, draws: &[Draw], k: usize) -> (FewShotMetrics, Vec<(f32, bool)>, f64) {
    let (mut all, mut conf, mut fit) = (Vec::new(), Vec::new(), 0.0f64);
    for d in draws {
        let run = fewshot::run_mentor(d, k, &s.data.test, |t| s.emb[t].as_slice()).unwrap();
        all.push(run.tally.metrics());
        conf.extend(run.confidences);
        fit = fit.max(run.fit_s);
    }
    (FewShotMetrics::mean_sd(&all).0, conf, fit)
}

#[test]
fn clinc150_few_shot_mentors() {
    let Some(dir) = std::env::var_os("STRATO_TEST_MODEL_DIR") else {
        eprintln!("SKIPPED: set STRATO_TEST_MODEL_DIR (scripts/test.sh does)");
        return;
    };
    let e = Embedder::load(&PathBuf::from(dir)).unwrap();
    let data = IntentData::from_csv(&data_path("clinc150.csv")).unwrap();
    // The benchmark's draws (seeds 1000…): 50 of the 150 intents, the other 100 asked as off-topic (67 %).
    let wide: Vec<Draw> = (0..10).map(|s| Draw::new(&data, 50, 4, 1000 + s)).collect();
    // 48 answers among 75 intents, 36 % off-topic: the share of the hidden mentor.
    let narrow: Vec<Draw> = (0..5)
        .map(|s| {
            let mut u: Vec<String> = data.train.keys().cloned().collect();
            let n = u.len();
            u.rotate_left((s as usize * 37) % n);
            u.truncate(75);
            Draw::within(&data, u, 48, 4, 2000 + s)
        })
        .collect();
    let s = embed(&e, data.clone(), &wide.iter().chain(&narrow).collect::<Vec<_>>());

    let (k4, _, fit) = mean_over(&s, &wide, 4);
    eprintln!("N=50 of 150, k=4: {k4:?} (slowest fit {fit:.3} s)");
    assert!(k4.overall_accuracy >= 0.80, "overall accuracy {:.3} fell below the measured 0.815", k4.overall_accuracy);
    assert!(k4.off_topic_f1 >= 0.84, "off-topic F1 {:.3} fell below the measured 0.855", k4.off_topic_f1);
    // MentorPal's algorithm on the same draws: 0.493 / 0.430 (bench/peer_fewshot.py).
    assert!(k4.overall_accuracy >= 0.493 + 0.05 && k4.off_topic_f1 >= 0.430 + 0.05);
    assert!(fit < 2.0, "training a 50-answer mentor's classifier took {fit:.2} s");

    let (k0, _, _) = mean_over(&s, &wide, 0);
    eprintln!("N=50 of 150, k=0: {k0:?}");
    assert!(k0.in_scope_accuracy >= 0.6, "without paraphrases in-scope accuracy {:.3} collapsed", k0.in_scope_accuracy);
    assert!(k0.off_topic_recall >= 0.5, "without paraphrases nothing much is called off-topic: {k0:?}");

    let (n4, conf, _) = mean_over(&s, &narrow, 4);
    eprintln!("N=48 of 75, k=4: {n4:?}");
    assert!(n4.overall_accuracy >= 0.78 && n4.off_topic_f1 >= 0.72, "{n4:?}");
    // The confidence is calibrated at an off-topic share near the one assumed (40 %).
    let bins = fewshot::reliability(&conf);
    let ece = fewshot::expected_calibration_error(&bins);
    eprintln!("reliability (ECE {ece:.3}): {bins:?}");
    assert!(ece <= 0.05, "expected calibration error {ece:.3}");
    // Without paraphrases the calibration comes from CLINC150's val split (offtopic::NO_PARAPHRASE_CALIBRATION).
    let (_, conf, _) = mean_over(&s, &narrow, 0);
    let ece = fewshot::expected_calibration_error(&fewshot::reliability(&conf));
    eprintln!("k=0 expected calibration error {ece:.3}");
    assert!(ece <= 0.07, "expected calibration error without paraphrases {ece:.3}");
}
