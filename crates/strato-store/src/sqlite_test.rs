use super::*;
use crate::{AddVersion, UserQuestionFilter};
use serde_json::json;
use strato_types::{AnswerType, Grade, UserQuestionRecord};

async fn store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(&dir.path().join("meta.db")).await.unwrap(), dir)
}

fn job(priority: i32) -> NewJob {
    NewJob { kind: JobKind::TrainModel, payload: json!({"p": priority}), key: None, priority, max_attempts: 2 }
}

const LEASE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn claims_by_priority_then_age_and_only_once() {
    let (s, _d) = store().await;
    let a = s.enqueue(job(0)).await.unwrap();
    let b = s.enqueue(job(5)).await.unwrap();
    let c = s.enqueue(job(0)).await.unwrap();
    assert_eq!(s.claim("w1", LEASE).await.unwrap().unwrap().id, b.id);
    assert_eq!(s.claim("w1", LEASE).await.unwrap().unwrap().id, a.id);
    let third = s.claim("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((third.id.as_str(), third.attempts, third.status), (c.id.as_str(), 1, JobStatus::InProgress));
    assert!(s.claim("w3", LEASE).await.unwrap().is_none());
}

#[tokio::test]
async fn lapsed_lease_is_reclaimed_and_old_owner_cannot_finish() {
    let (s, _d) = store().await;
    let j = s.enqueue(job(0)).await.unwrap();
    s.claim("w1", Duration::from_millis(1)).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = s.claim("w2", LEASE).await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (j.id.as_str(), 2));
    assert!(!s.heartbeat(&j.id, "w1", LEASE, Some(50)).await.unwrap());
    assert!(!s.complete(&j.id, "w1", &json!("stale")).await.unwrap(), "the lapsed owner must not overwrite");
    assert!(s.heartbeat(&j.id, "w2", LEASE, Some(50)).await.unwrap());
    assert!(s.complete(&j.id, "w2", &json!({"ok": true})).await.unwrap());
    let done = s.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!((done.status, done.progress, done.result), (JobStatus::Success, 100, Some(json!({"ok": true}))));
    assert!(done.finished_at.is_some() && done.lease_owner.is_none());
}

#[tokio::test]
async fn failures_retry_until_attempts_run_out() {
    let (s, _d) = store().await;
    let j = s.enqueue(job(0)).await.unwrap();
    s.claim("w", LEASE).await.unwrap();
    assert!(s.fail(&j.id, "w", "boom", Some(Duration::ZERO)).await.unwrap());
    let r = s.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!((r.status, r.error.as_deref()), (JobStatus::Queued, Some("boom")));
    s.claim("w", LEASE).await.unwrap().unwrap();
    assert!(s.fail(&j.id, "w", "boom again", Some(Duration::ZERO)).await.unwrap());
    let r = s.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Failure, 2), "max_attempts is 2");
    assert!(s.claim("w", LEASE).await.unwrap().is_none());
}

#[tokio::test]
async fn permanent_failure_does_not_retry_and_backoff_delays() {
    let (s, _d) = store().await;
    let j = s.enqueue(job(0)).await.unwrap();
    s.claim("w", LEASE).await.unwrap();
    assert!(s.fail(&j.id, "w", "bad data", None).await.unwrap());
    assert_eq!(s.get_job(&j.id).await.unwrap().unwrap().status, JobStatus::Failure);

    let k = s.enqueue(job(0)).await.unwrap();
    s.claim("w", LEASE).await.unwrap();
    s.fail(&k.id, "w", "flaky", Some(Duration::from_secs(60))).await.unwrap();
    assert!(s.claim("w", LEASE).await.unwrap().is_none(), "not due yet");
    let due = s.next_due_in().await.unwrap().unwrap();
    assert!(due > Duration::from_secs(50), "{due:?}");
}

#[tokio::test]
async fn training_submission_versions_and_delete() {
    let (s, _d) = store().await;
    let meta = json!({"source": "test"});
    assert!(matches!(s.submit_training("m", &meta, false, job(0), None).await.unwrap(), TrainSubmission::Queued(_)));
    assert!(matches!(s.submit_training("m", &meta, false, job(0), None).await.unwrap(), TrainSubmission::ModelExists));
    assert!(matches!(s.submit_training("m", &meta, true, job(0), None).await.unwrap(), TrainSubmission::Queued(_)));
    assert_eq!(s.get_model("m").await.unwrap().unwrap().active_version, None);

    let v1 = s.add_version("m", "k1", &json!({}), &json!({}), None).await.unwrap();
    let j = s.enqueue(job(0)).await.unwrap();
    // Queued, not held by "w": the fence refuses.
    assert_eq!(
        s.add_version("m", "kx", &json!({}), &json!({}), Some((&j.id, "w"))).await.unwrap(),
        AddVersion::LeaseLost
    );
    let claimed = loop {
        let c = s.claim("w", LEASE).await.unwrap().unwrap();
        if c.id == j.id {
            break c;
        }
    };
    let v2 = s.add_version("m", "k2", &json!({}), &json!({}), Some((&claimed.id, "w"))).await.unwrap();
    assert_eq!((v1, v2), (AddVersion::Added(1), AddVersion::Added(2)));
    assert_eq!(s.list_versions("m").await.unwrap().len(), 2, "the refused add left nothing behind");
    assert_eq!(s.get_model("m").await.unwrap().unwrap().active_version, Some(2));
    assert!(s.activate_version("m", 1).await.unwrap());
    assert!(!s.activate_version("m", 9).await.unwrap());
    assert_eq!(s.get_model("m").await.unwrap().unwrap().active_version, Some(1));

    let (_, versions) = s.delete_model("m").await.unwrap().unwrap();
    assert_eq!(versions.len(), 2);
    assert!(s.get_model("m").await.unwrap().is_none());
    assert!(s.list_versions("m").await.unwrap().is_empty());
    assert_eq!(s.add_version("m", "k3", &json!({}), &json!({}), None).await.unwrap(), AddVersion::ModelMissing);
}

#[tokio::test]
async fn datasets_round_trip() {
    let (s, _d) = store().await;
    let rec = DatasetRecord {
        name: "d".into(),
        format: "csv".into(),
        rows: 3,
        labels: vec!["a".into(), "b".into()],
        size_bytes: 10,
        blob_key: "datasets/d".into(),
        created_at: ts(1_700_000_000_000),
    };
    assert!(s.put_dataset(&rec).await.unwrap().is_none());
    assert_eq!(s.put_dataset(&rec).await.unwrap(), Some(rec.clone()));
    assert_eq!(s.list_datasets().await.unwrap(), vec![rec.clone()]);
    assert_eq!(s.delete_dataset("d").await.unwrap(), Some(rec));
    assert!(s.get_dataset("d").await.unwrap().is_none());
}

#[tokio::test]
async fn release_requeues_without_spending_an_attempt() {
    let (s, _d) = store().await;
    let j = s.enqueue(job(0)).await.unwrap();
    s.claim("w", LEASE).await.unwrap().unwrap();
    assert!(!s.release(&j.id, "other").await.unwrap());
    assert!(s.release(&j.id, "w").await.unwrap());
    let r = s.get_job(&j.id).await.unwrap().unwrap();
    assert_eq!((r.status, r.attempts, r.lease_owner), (JobStatus::Queued, 0, None));
    assert_eq!(s.claim("w2", LEASE).await.unwrap().unwrap().id, j.id);
}

#[tokio::test]
async fn mentors_revisions_state_and_feedback() {
    let (s, _d) = store().await;
    assert!(s.mentor_state("m", "mentor:m").await.unwrap().is_none());
    let r1 = s.put_mentor("m", &json!({"id": "m"})).await.unwrap();
    let r2 = s.put_mentor("m", &json!({"id": "m", "name": "x"})).await.unwrap();
    assert!(r2 > r1, "every change bumps the revision");
    s.ensure_model("mentor:m", &json!({})).await.unwrap();
    assert_eq!(s.mentor_state("m", "mentor:m").await.unwrap(), Some((r2, None)));
    s.add_version("mentor:m", "k", &json!({}), &json!({}), None).await.unwrap();
    assert_eq!(s.mentor_state("m", "mentor:m").await.unwrap(), Some((r2, Some(1))));
    assert!(s.list_models().await.unwrap().is_empty(), "mentor models are not listed as text classifiers");

    let q = UserQuestionRecord {
        id: "f1".into(),
        mentor_id: "m".into(),
        text: "hi".into(),
        chat_session_id: Some("c".into()),
        answer_id: "a1".into(),
        answer_type: AnswerType::Classifier,
        confidence: 0.4,
        graded_answer_id: None,
        graded_off_topic: false,
        graded_at: None,
        created_at: ts(1_700_000_000_000),
    };
    s.insert_user_question(&q).await.unwrap();
    let f = UserQuestionFilter { ungraded: true, ..Default::default() };
    assert_eq!(s.list_user_questions("m", &f).await.unwrap(), vec![q.clone()]);
    let graded = s.grade_user_question("f1", &Grade::OffTopic).await.unwrap().unwrap();
    assert!(graded.graded_off_topic && graded.graded_at.is_some());
    assert!(s.list_user_questions("m", &f).await.unwrap().is_empty());
    assert_eq!(s.graded_user_questions("m").await.unwrap().len(), 1);
    let (rev, _) = s.mentor_state("m", "mentor:m").await.unwrap().unwrap();
    assert!(rev > r2, "a grade changes answering, so it bumps the revision");
    assert!(s.grade_user_question("nope", &Grade::OffTopic).await.unwrap().is_none());

    assert!(s.delete_mentor("m").await.unwrap());
    assert!(s.get_user_question("f1").await.unwrap().is_none());
    assert!(!s.delete_mentor("m").await.unwrap());
}
