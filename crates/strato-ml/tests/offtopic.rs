//! CLINC150 open-intent protocol for the mentor classifier's off-topic rule: train on the 112 known intents'
//! train rows (no off-topic examples at all), then the other 38 intents' test utterances must come back off-topic.
//!
//! The target is off-topic F1 ≥ 0.85 with in-scope accuracy ≥ 0.93. Measured (BENCHMARKS.md) the rule
//! reaches F1 0.815 with in-scope 0.913, without any off-topic training data (until issue 27 its threshold assumed a
//! 20 % off-topic share and sat at F1 0.811 / in-scope 0.934 on the same score; it now assumes 40 %, which serves
//! small mentors better); the Python peer's max-probability threshold tuned on labelled val data reaches 0.79 / 0.89.
//! This test guards what we reach, not the F1 target, which no rule we measured on frozen MiniLM embeddings
//! reached.

use std::collections::HashSet;
use std::path::PathBuf;

use strato_ml::mentor_model::MentorModel;
use strato_ml::{Embedder, EmbeddingIdentity, Example, TrainParams};

fn data(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data")).join(name)
}

#[test]
fn clinc150_open_intent() {
    let Some(dir) = std::env::var_os("STRATO_TEST_MODEL_DIR") else {
        eprintln!("SKIPPED: set STRATO_TEST_MODEL_DIR (scripts/test.sh does)");
        return;
    };
    let e = Embedder::load(&PathBuf::from(dir)).unwrap();
    let known: HashSet<String> = std::fs::read_to_string(data("clinc150_known_0.75.txt"))
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for r in csv::Reader::from_path(data("clinc150.csv")).unwrap().records() {
        let r = r.unwrap();
        match (&r[2], known.contains(&r[1])) {
            ("train", true) => train.push(Example { text: r[0].into(), label: r[1].into(), split: None }),
            ("test", _) => test.push((r[0].to_string(), r[1].to_string())),
            _ => {}
        }
    }
    let texts: Vec<&str> = train.iter().map(|x| x.text.as_str()).collect();
    let emb = e.embed_all(&texts, |_, _| true).unwrap();
    let id = EmbeddingIdentity { name: "test".into(), sha256: String::new() };
    let params = TrainParams { val_fraction: 0.0, ..Default::default() };
    let model = MentorModel::train(&train, &emb, &[], &params, &id, String::new()).unwrap();
    let queries: Vec<&str> = test.iter().map(|(t, _)| t.as_str()).collect();
    let q = e.embed_all(&queries, |_, _| true).unwrap();
    let m = model.open_intent_metrics(q.iter().zip(&test).map(|(v, (_, label))| (v.as_slice(), label.as_str())), |l| {
        known.contains(l)
    });
    let (p, r, f1, in_scope) = (m.off_topic_precision, m.off_topic_recall, m.off_topic_f1, m.in_scope_accuracy);
    eprintln!("open intent: off-topic precision {p:.3} recall {r:.3} F1 {f1:.3}; in-scope accuracy {in_scope:.3}");
    assert!(f1 >= 0.80, "off-topic F1 {f1:.3} fell below the measured level");
    assert!(in_scope >= 0.90, "in-scope accuracy {in_scope:.3} fell below the measured level");
}
