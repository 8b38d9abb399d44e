use super::*;

fn ex(text: &str, label: &str, split: Option<Split>) -> Example {
    Example { text: text.into(), label: label.into(), split }
}

/// Synthetic embeddings: label i points along axis i, with a little deterministic noise.
fn synthetic(n_per: usize, labels: &[&str], split: Option<Split>) -> (Vec<Example>, Vec<Vec<f32>>) {
    let mut exs = Vec::new();
    let mut embs = Vec::new();
    for (li, l) in labels.iter().enumerate() {
        for j in 0..n_per {
            let mut v = vec![0.05 * ((j * 7 % 5) as f32 - 2.0); 8];
            v[li] += 1.0;
            exs.push(ex(&format!("{l} {j}"), l, split));
            embs.push(v);
        }
    }
    (exs, embs)
}

fn identity() -> EmbeddingIdentity {
    EmbeddingIdentity { name: "test-model".into(), sha256: "ab".repeat(32) }
}

#[test]
fn trains_reports_and_round_trips() {
    let (exs, embs) = synthetic(20, &["a", "b", "c"], None);
    let model = train(&exs, &embs, &TrainParams::default(), &identity(), "2026-01-01T00:00:00Z".into()).unwrap();
    let val = model.metrics.validation.as_ref().unwrap();
    assert_eq!(val.n, 6, "2 of 20 per label held out");
    assert_eq!(val.accuracy, 1.0);
    assert_eq!(model.metrics.n_train, 60);
    assert_eq!(model.metrics.support["b"], 20);
    let top = model.predict(&embs[25], 3);
    assert_eq!(top[0].label, "b");
    assert!(top[0].score > top[1].score && top[1].score >= top[2].score);

    let bytes = model.to_bytes().unwrap();
    let back = Classifier::from_bytes(&bytes).unwrap();
    assert_eq!(back, model);
}

#[test]
fn split_column_is_respected() {
    let (mut exs, embs) = synthetic(10, &["a", "b"], Some(Split::Train));
    exs[0].split = Some(Split::Val);
    exs[10].split = Some(Split::Val);
    exs[1].split = Some(Split::Test);
    let model = train(&exs, &embs, &TrainParams::default(), &identity(), String::new()).unwrap();
    assert_eq!(model.metrics.validation.as_ref().unwrap().n, 2);
    assert_eq!(model.metrics.test.as_ref().unwrap().n, 1);
    assert_eq!(model.metrics.n_train, 19, "test rows are never trained on");
}

#[test]
fn tiny_data_trains_without_validation() {
    let (exs, embs) = synthetic(1, &["a", "b"], None);
    let model = train(&exs, &embs, &TrainParams::default(), &identity(), String::new()).unwrap();
    assert!(model.metrics.validation.is_none());
    assert_eq!(model.predict(&embs[1], 1)[0].label, "b");
}

#[test]
fn rejects_bad_artifacts_and_params() {
    assert!(matches!(Classifier::from_bytes(b"garbage"), Err(MlError::Artifact(_))));
    let p = TrainParams { c: -1.0, ..Default::default() };
    assert!(p.validate().unwrap_err().contains("params.C"));
    for tol in [0.0, -1e-4, 1.0, f64::NAN] {
        let p = TrainParams { tol, ..Default::default() };
        assert!(p.validate().unwrap_err().contains("params.tol"), "tol {tol}");
    }
    let p: TrainParams = serde_json::from_str(r#"{"tol": 1e-6}"#).unwrap();
    assert_eq!((p.tol, TrainParams::default().tol), (1e-6, 1e-4));
    let p: Result<TrainParams, _> = serde_json::from_str(r#"{"C": 1, "bogus": 2}"#);
    assert!(p.unwrap_err().to_string().contains("bogus"));
}

#[test]
fn metrics_are_computed_per_label() {
    let m = eval_metrics(&["a", "a", "b", "b"], &["a", "b", "b", "b"]);
    assert_eq!(m.accuracy, 0.75);
    let a = &m.per_label["a"];
    assert_eq!((a.precision, a.recall), (1.0, 0.5));
    let b = &m.per_label["b"];
    assert!((b.precision - 2.0 / 3.0).abs() < 1e-12 && b.recall == 1.0);
    assert!((m.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
}
