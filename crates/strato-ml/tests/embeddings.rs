//! Every encoder must match sentence-transformers: cosine ≥ 0.9999 against its own vectors for every fixture
//! sentence (accents, CJK, emoji, a text long enough to be truncated), singly and batched with padding; ≥ 0.999
//! for int8 and ≥ 0.9995 for bf16, the reduced-precision modes, on each set of kernels.

use std::path::PathBuf;

use strato_ml::{Embedder, Engine, LoadOptions, Precision};

fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("STRATO_TEST_MODEL_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!(
                "SKIPPED: set STRATO_TEST_MODEL_DIR to a sentence-transformers model directory (scripts/test.sh does)"
            );
            None
        }
    }
}

#[derive(serde::Deserialize)]
struct Fixture {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(serde::Deserialize)]
struct Item {
    text: String,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/minilm_reference_embeddings.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture JSON")
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn the_packed_encoder_matches_sentence_transformers() {
    matches_sentence_transformers(Engine::Packed, Precision::F32, 0.9999);
}

#[test]
fn the_packed_encoder_with_portable_kernels_matches_sentence_transformers() {
    matches_sentence_transformers(Engine::PackedPortable, Precision::F32, 0.9999);
}

#[test]
fn the_candle_encoder_matches_sentence_transformers() {
    matches_sentence_transformers(Engine::Candle, Precision::F32, 0.9999);
}

#[test]
fn int8_stays_close_to_sentence_transformers() {
    matches_sentence_transformers(Engine::Packed, Precision::Int8, 0.999);
}

#[test]
fn int8_with_portable_kernels_stays_close_to_sentence_transformers() {
    matches_sentence_transformers(Engine::PackedPortable, Precision::Int8, 0.999);
}

#[test]
fn bf16_stays_close_to_sentence_transformers() {
    matches_sentence_transformers(Engine::Packed, Precision::Bf16, 0.9995);
}

#[test]
fn bf16_with_portable_kernels_stays_close_to_sentence_transformers() {
    matches_sentence_transformers(Engine::PackedPortable, Precision::Bf16, 0.9995);
}

#[test]
fn candle_refuses_int8() {
    let Some(dir) = model_dir() else { return };
    let err = Embedder::load_opts(&dir, LoadOptions { engine: Engine::Candle, precision: Precision::Int8 })
        .err()
        .expect("candle cannot run int8");
    assert!(err.to_string().contains("packed engine"), "{err}");
}

fn matches_sentence_transformers(engine: Engine, precision: Precision, min_cosine: f64) {
    let Some(dir) = model_dir() else { return };
    let e = Embedder::load_opts(&dir, LoadOptions { engine, precision }).unwrap();
    let f = fixture();
    assert_eq!(e.max_seq_length(), f.max_seq_length);
    assert_eq!(e.dim(), 384);
    let texts: Vec<&str> = f.items.iter().map(|i| i.text.as_str()).collect();

    // Batched with padding, in fixture order (mixed lengths in one batch exercise the attention mask).
    let batched = e.embed_batch(&texts).unwrap();
    // One at a time: no padding at all.
    for (item, got) in f.items.iter().zip(&batched) {
        let single = &e.embed_batch(&[item.text.as_str()]).unwrap()[0];
        let (cb, cs) = (cosine(got, &item.embedding), cosine(single, &item.embedding));
        assert!(cb >= min_cosine, "batched {:?}: cosine {cb}", item.text);
        assert!(cs >= min_cosine, "single {:?}: cosine {cs}", item.text);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
    }
    // Length-sorted batching returns vectors in input order.
    let all = e.embed_all(&texts, |_, _| true).unwrap();
    for (item, got) in f.items.iter().zip(&all) {
        assert!(cosine(got, &item.embedding) >= min_cosine, "embed_all {:?}", item.text);
    }
}

#[test]
fn missing_files_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Embedder::load(dir.path()).err().expect("must fail").to_string();
    assert!(err.contains("config.json"), "{err}");
}

/// Many batches: each thread of a pool takes whole batches; the vectors still come back in input order, progress
/// counts every text once, and a `false` from progress cancels the rest.
#[test]
fn embed_all_spreads_batches_over_threads_in_order() {
    let Some(dir) = model_dir() else { return };
    let e = Embedder::load(&dir).unwrap();
    let f = fixture();
    // Five copies of the fixture: more than three batches of mixed lengths.
    let items: Vec<&Item> = (0..5).flat_map(|_| &f.items).collect();
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    assert!(texts.len() > 3 * strato_ml::embedder::BATCH_SIZE);
    // Three threads whatever the machine, called from inside the pool as well as from outside it.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    for inside in [false, true] {
        let mut seen = Vec::new();
        let mut run = || {
            e.embed_all(&texts, |done, total| {
                seen.push((done, total));
                true
            })
        };
        let all = if inside { pool.install(run) } else { run() }.unwrap();
        for (item, got) in items.iter().zip(&all) {
            assert!(cosine(got, &item.embedding) >= 0.9999, "embed_all {:?}", item.text);
        }
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{seen:?}");
        assert_eq!(seen.last(), Some(&(texts.len(), texts.len())), "{seen:?}");
    }
    let mut calls = 0;
    let err = pool
        .install(|| {
            e.embed_all(&texts, |_, _| {
                calls += 1;
                false
            })
        })
        .expect_err("cancelled");
    assert!(matches!(err, strato_ml::MlError::Cancelled), "{err}");
    assert_eq!(calls, 1);
}

/// A long `embed_all` (a training run) leaves rayon's pool to the rest of the process: a single text embedded
/// meanwhile, as a prediction would be, does not wait for the whole run to end.
#[test]
fn embed_all_does_not_hold_up_single_embeddings() {
    let Some(dir) = model_dir() else { return };
    let e = Embedder::load(&dir).unwrap();
    let f = fixture();
    let texts: Vec<&str> = (0..40).flat_map(|_| &f.items).map(|i| i.text.as_str()).collect();
    let started = std::sync::Barrier::new(2);
    let (all_s, single_s) = std::thread::scope(|s| {
        let all = s.spawn(|| {
            let t = std::time::Instant::now();
            let mut first = true;
            e.embed_all(&texts, |_, _| {
                if std::mem::take(&mut first) {
                    started.wait();
                }
                true
            })
            .unwrap();
            t.elapsed()
        });
        started.wait();
        let t = std::time::Instant::now();
        let v = e.embed_batch(&[f.items[0].text.as_str()]).unwrap();
        let single = t.elapsed();
        assert!(cosine(&v[0], &f.items[0].embedding) >= 0.9999);
        (all.join().unwrap(), single)
    });
    // The single text costs a few milliseconds, the run hundreds of times that: it must not have waited for it.
    assert!(single_s * 4 < all_s, "single text {single_s:?} during a run of {all_s:?}");
}
