//! The reduced-precision modes on CLINC150: trained on the train split and scored on the test split exactly as
//! f32 is, their accuracy must stay within 0.3 points of f32's, and every test utterance's embedding within
//! cosine 0.999 (int8) or 0.9995 (bf16) of its f32 embedding.

use std::path::PathBuf;

use strato_ml::{Embedder, EmbeddingIdentity, Example, LoadOptions, Precision, Split, TrainParams};

fn data(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data")).join(name)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn reduced_precision_keeps_clinc150_accuracy() {
    let Some(dir) = std::env::var_os("STRATO_TEST_MODEL_DIR") else {
        eprintln!("SKIPPED: set STRATO_TEST_MODEL_DIR (scripts/test.sh does)");
        return;
    };
    let dir = PathBuf::from(dir);
    let mut examples = Vec::new();
    for r in csv::Reader::from_path(data("clinc150.csv")).unwrap().records() {
        let r = r.unwrap();
        let split = match &r[2] {
            "train" => Split::Train,
            "test" => Split::Test,
            _ => continue,
        };
        examples.push(Example { text: r[0].into(), label: r[1].into(), split: Some(split) });
    }
    let texts: Vec<&str> = examples.iter().map(|x| x.text.as_str()).collect();
    let id = EmbeddingIdentity { name: "test".into(), sha256: String::new() };
    let embed = |precision: Precision, texts: &[&str]| {
        let e = Embedder::load_opts(&dir, LoadOptions { precision, ..Default::default() }).unwrap();
        e.embed_all(texts, |_, _| true).unwrap()
    };
    let score = |emb: &[Vec<f32>]| {
        let model = strato_ml::classifier::train(&examples, emb, &TrainParams::default(), &id, String::new()).unwrap();
        model.metrics.test.expect("the test split is scored").accuracy
    };
    let f32_emb = embed(Precision::F32, &texts);
    let f32_accuracy = score(&f32_emb);
    assert!(f32_accuracy >= 0.965, "f32 accuracy {f32_accuracy:.4}");
    for (precision, min_cosine) in [(Precision::Int8, 0.999), (Precision::Bf16, 0.9995)] {
        let emb = if precision.is_native() {
            embed(precision, &texts)
        } else {
            // Without AMX or AVX512-BF16, bf16 runs on portable kernels several times slower than f32: the test
            // split alone is embedded in bf16 and scored by a classifier trained on the f32 train split, which
            // keeps this test within CI's time limit on such CPUs.
            let test: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].split == Some(Split::Test)).collect();
            let reduced = embed(precision, &test.iter().map(|&i| texts[i]).collect::<Vec<_>>());
            let mut mixed = f32_emb.clone();
            for (k, &i) in test.iter().enumerate() {
                mixed[i] = reduced[k].clone();
            }
            mixed
        };
        let accuracy = score(&emb);
        let cosines: Vec<f64> = examples
            .iter()
            .zip(f32_emb.iter().zip(&emb))
            .filter(|(x, _)| x.split == Some(Split::Test))
            .map(|(_, (a, b))| cosine(a, b))
            .collect();
        let worst = cosines.iter().copied().fold(1.0, f64::min);
        let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;
        eprintln!(
            "CLINC150 test accuracy: f32 {f32_accuracy:.4}, {precision:?} {accuracy:.4}; {precision:?} vs f32 \
             cosine: worst {worst:.6}, mean {mean:.6} over {} texts",
            cosines.len()
        );
        assert_eq!(cosines.len(), 2250);
        assert!((f32_accuracy - accuracy).abs() <= 0.003, "{precision:?} {accuracy:.4} vs f32 {f32_accuracy:.4}");
        assert!(worst >= min_cosine, "worst {precision:?} cosine {worst}");
    }
}
