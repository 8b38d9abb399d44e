//! Queueing a training: the model's row and its job are written in one transaction of the store (enqueue inside
//! the caller's transaction), with the outcomes the store's `submit_training` had before it was replaced by that:
//! refused when the model exists unless forced, answered with the first job on an idempotent repeat. Both
//! backends; no embedding model is needed to queue.

use serde_json::json;
use strato_blob::BlobStore;
use strato_ml::{Example, TrainParams};
use strato_service::{DataSource, Strato, StratoOptions, TrainRequest};
use strato_store::testing::all as backends;
use strato_store::JobFilter;
use strato_types::{ErrorCode, JobStatus};

fn request(model: &str, force: bool, idempotency_key: Option<&str>) -> TrainRequest {
    let rows = [("hello", "greet"), ("hi there", "greet"), ("bye", "leave"), ("see you", "leave")];
    TrainRequest {
        model_id: model.into(),
        data: DataSource::Inline(
            rows.iter().map(|(t, l)| Example { text: (*t).into(), label: (*l).into(), split: None }).collect(),
        ),
        params: TrainParams::default(),
        force_update: force,
        meta: json!({"source": "test"}),
        idempotency_key: idempotency_key.map(String::from),
    }
}

#[tokio::test]
async fn a_training_is_refused_for_an_existing_model_unless_forced_and_repeats_answer_with_the_first_job() {
    for (name, b) in backends().await {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::local(&dir.path().join("blobs")).unwrap();
        let s = Strato::with_parts(b.store.clone(), blobs, StratoOptions::new(dir.path())).unwrap();
        let models = s.models();

        let first = models.submit_training(request("m", false, Some("t-1"))).await.unwrap();
        assert_eq!(first.status, JobStatus::Queued, "{name}");
        assert_eq!(first.resource.as_ref().map(ToString::to_string).as_deref(), Some("model:m"));
        assert_eq!(s.models().get("m").await.unwrap().model.meta, json!({"source": "test"}));
        // The model exists now, and force is false: the same idempotency key still answers with the same job …
        let repeat = models.submit_training(request("m", false, Some("t-1"))).await.unwrap();
        assert_eq!(repeat.id, first.id, "{name}: an idempotent repeat is not a conflict");
        // … and a new request is refused.
        let refused = models.submit_training(request("m", false, None)).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::ModelExists, "{name}");
        // Forced: queued (coalesced into the job still waiting, which now carries the newest request).
        let forced = models.submit_training(request("m", true, None)).await.unwrap();
        assert_eq!(forced.status, JobStatus::Queued);
        let jobs = s.jobs().list(&JobFilter { key: Some("model:m".into()), ..Default::default() }).await.unwrap();
        assert_eq!(jobs.len(), 1, "{name}: one queued training per model");
        assert_eq!(s.models().get("m").await.unwrap().model.active_version, None);
    }
}
