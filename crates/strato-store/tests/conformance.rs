//! The same behaviour from every `MetaStore` backend: SQLite always; PostgreSQL when `STRATO_TEST_DATABASE_URL`
//! is set (`.ci/run` sets it), each test in a schema of its own.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;
use strato_store::{
    AddVersion, CancelOutcome, EnqueueOutcome, FailOutcome, Heartbeat, MetaStore, TrainSubmission, UserQuestionFilter,
};
use strato_types::{
    AnswerType, AttemptEnd, DatasetRecord, Grade, JobKind, JobStatus, NewJob, Timestamp, UserQuestionRecord,
};

mod backends;

const LEASE: Duration = Duration::from_secs(30);

fn job(priority: i32) -> NewJob {
    NewJob { priority, max_attempts: 2, ..NewJob::new(JobKind::Noop, json!({"p": priority})) }
}

fn keyed(key: &str) -> NewJob {
    NewJob { key: Some(key.into()), ..NewJob::new(JobKind::Noop, json!({})) }
}

fn ts(ms: i64) -> Timestamp {
    Utc.timestamp_millis_opt(ms).single().unwrap()
}

/// Runs `body` once per backend, naming the backend on failure.
macro_rules! each_backend {
    (|$s:ident| $body:block) => {{
        for (name, store) in backends::all().await {
            let $s: &Arc<dyn MetaStore> = &store.store;
            let run = async { $body };
            let r = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run)).await;
            if let Err(p) = r {
                eprintln!("failed on backend {name}");
                std::panic::resume_unwind(p);
            }
        }
    }};
}

async fn enqueue(s: &Arc<dyn MetaStore>, j: NewJob) -> strato_types::JobRecord {
    s.enqueue(j).await.unwrap().job
}

#[tokio::test]
async fn claims_by_priority_then_age_and_only_once() {
    each_backend!(|s| {
        let a = enqueue(s, job(0)).await;
        let b = enqueue(s, job(5)).await;
        let c = enqueue(s, job(0)).await;
        assert_eq!(s.claim("w1", LEASE).await.unwrap().unwrap().id, b.id);
        assert_eq!(s.claim("w1", LEASE).await.unwrap().unwrap().id, a.id);
        let third = s.claim("w2", LEASE).await.unwrap().unwrap();
        assert_eq!((third.id.as_str(), third.attempts, third.status), (c.id.as_str(), 1, JobStatus::InProgress));
        assert!(s.claim("w3", LEASE).await.unwrap().is_none());
    });
}

#[tokio::test]
async fn lapsed_lease_is_reclaimed_and_old_owner_cannot_finish() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.claim("w1", Duration::from_millis(1)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let again = s.claim("w2", LEASE).await.unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), (j.id.as_str(), 2));
        assert_eq!(s.heartbeat(&j.id, "w1", LEASE, Some(50)).await.unwrap(), Heartbeat::Lost);
        assert!(!s.complete(&j.id, "w1", &json!("stale")).await.unwrap(), "the lapsed owner must not overwrite");
        assert_eq!(s.fail(&j.id, "w1", "late", Some(Duration::ZERO), false).await.unwrap(), FailOutcome::LeaseLost);
        assert_eq!(
            s.heartbeat(&j.id, "w2", LEASE, Some(50)).await.unwrap(),
            Heartbeat::Held { cancel_requested: false }
        );
        assert!(s.complete(&j.id, "w2", &json!({"ok": true})).await.unwrap());
        let done = s.get_job(&j.id).await.unwrap().unwrap();
        assert_eq!((done.status, done.progress, done.result), (JobStatus::Success, 100, Some(json!({"ok": true}))));
        assert!(done.finished_at.is_some() && done.lease_owner.is_none());
        let log = s.job_attempts(&j.id).await.unwrap();
        let ends: Vec<_> = log.iter().map(|a| (a.attempt, a.worker.as_str(), a.outcome)).collect();
        assert_eq!(ends, vec![(1, "w1", AttemptEnd::LeaseExpired), (2, "w2", AttemptEnd::Succeeded)]);
        assert!(log.iter().all(|a| a.finished_at.is_some()));
    });
}

#[tokio::test]
async fn retryable_failures_end_in_the_dead_letter_queue_and_replay() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.claim("w", LEASE).await.unwrap();
        assert_eq!(s.fail(&j.id, "w", "boom", Some(Duration::ZERO), false).await.unwrap(), FailOutcome::Retrying);
        let r = s.get_job(&j.id).await.unwrap().unwrap();
        assert_eq!((r.status, r.error.as_deref()), (JobStatus::Queued, Some("boom")));
        s.claim("w", LEASE).await.unwrap().unwrap();
        let FailOutcome::DeadLettered(dead) = s.fail(&j.id, "w", "slow", Some(Duration::ZERO), true).await.unwrap()
        else {
            panic!("max_attempts is 2: the second failure dead-letters")
        };
        assert_eq!((dead.status, dead.attempts), (JobStatus::Failure, 2));
        assert!(dead.dead_lettered_at.is_some() && dead.finished_at.is_some());
        assert!(s.claim("w", LEASE).await.unwrap().is_none());
        let dlq = s.list_dead_letters(10).await.unwrap();
        assert_eq!(dlq.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![j.id.as_str()]);
        let log = s.job_attempts(&j.id).await.unwrap();
        let ends: Vec<_> = log.iter().map(|a| (a.outcome, a.error.as_deref())).collect();
        assert_eq!(ends, vec![(AttemptEnd::Failed, Some("boom")), (AttemptEnd::TimedOut, Some("slow"))]);

        let replayed = s.replay_dead_letter(&j.id).await.unwrap().unwrap();
        assert_eq!((replayed.status, replayed.attempts, replayed.dead_lettered_at), (JobStatus::Queued, 0, None));
        assert!(s.replay_dead_letter(&j.id).await.unwrap().is_none(), "no longer in the DLQ");
        assert!(s.list_dead_letters(10).await.unwrap().is_empty());
        let again = s.claim("w", LEASE).await.unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), (j.id.as_str(), 1));
        assert!(s.complete(&j.id, "w", &json!(1)).await.unwrap());
        assert_eq!(s.job_attempts(&j.id).await.unwrap().len(), 3, "history survives the replay");
    });
}

#[tokio::test]
async fn permanent_failure_does_not_retry_and_backoff_delays() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.claim("w", LEASE).await.unwrap();
        assert_eq!(s.fail(&j.id, "w", "bad data", None, false).await.unwrap(), FailOutcome::Failed);
        let r = s.get_job(&j.id).await.unwrap().unwrap();
        assert_eq!((r.status, r.dead_lettered_at), (JobStatus::Failure, None), "bad input is not for the DLQ");

        let k = enqueue(s, job(0)).await;
        s.claim("w", LEASE).await.unwrap();
        s.fail(&k.id, "w", "flaky", Some(Duration::from_secs(60)), false).await.unwrap();
        assert!(s.claim("w", LEASE).await.unwrap().is_none(), "not due yet");
        let due = s.next_due_in().await.unwrap().unwrap();
        assert!(due > Duration::from_secs(50), "{due:?}");
    });
}

#[tokio::test]
async fn lapsed_last_attempt_is_dead_lettered_by_the_reaper() {
    each_backend!(|s| {
        let j = enqueue(s, NewJob { max_attempts: 1, ..job(0) }).await;
        s.claim("w1", Duration::from_millis(1)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s.claim("w2", LEASE).await.unwrap().is_none(), "no attempts left: not claimable");
        let reaped = s.reap_expired_leases().await.unwrap();
        assert_eq!(reaped.dead_lettered.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![j.id.as_str()]);
        assert!(s.reap_expired_leases().await.unwrap().dead_lettered.is_empty(), "reaping is idempotent");
        let log = s.job_attempts(&j.id).await.unwrap();
        assert_eq!(log.iter().map(|a| a.outcome).collect::<Vec<_>>(), vec![AttemptEnd::LeaseExpired]);
    });
}

#[tokio::test]
async fn idempotency_key_returns_the_first_job() {
    each_backend!(|s| {
        let first = s.enqueue(NewJob { idempotency_key: Some("k-1".into()), ..job(0) }).await.unwrap();
        let second = s.enqueue(NewJob { idempotency_key: Some("k-1".into()), ..job(3) }).await.unwrap();
        assert_eq!((first.outcome, second.outcome), (EnqueueOutcome::Created, EnqueueOutcome::Idempotent));
        assert_eq!(first.job.id, second.job.id);
        assert_eq!(second.job.priority, 0, "the repeat changes nothing");
        let other = s.enqueue(NewJob { idempotency_key: Some("k-2".into()), ..job(0) }).await.unwrap();
        assert_ne!(other.job.id, first.job.id);
        let meta = json!({});
        let t1 = NewJob { idempotency_key: Some("t-1".into()), ..job(0) };
        let TrainSubmission::Queued(a) = s.submit_training("m", &meta, false, t1.clone(), None).await.unwrap() else {
            panic!("first training is queued")
        };
        // The model exists now, and force is false: the same key still answers with the same job.
        let TrainSubmission::Queued(b) = s.submit_training("m", &meta, false, t1, None).await.unwrap() else {
            panic!("an idempotent repeat is not a conflict")
        };
        assert_eq!((a.job.id.as_str(), b.outcome), (b.job.id.as_str(), EnqueueOutcome::Idempotent));
    });
}

#[tokio::test]
async fn same_key_coalesces_while_queued_and_never_runs_twice_at_once() {
    each_backend!(|s| {
        let a = s.enqueue(NewJob { coalesce: true, payload: json!({"v": 1}), ..keyed("model:x") }).await.unwrap();
        let b = s.enqueue(NewJob { coalesce: true, payload: json!({"v": 2}), ..keyed("model:x") }).await.unwrap();
        assert_eq!((b.outcome, b.job.id.as_str()), (EnqueueOutcome::Coalesced, a.job.id.as_str()));
        assert_eq!(b.job.payload, json!({"v": 2}), "the latest request wins");
        assert_eq!(b.replaced_payload, Some(json!({"v": 1})), "the caller learns what it replaced");
        let running = s.claim("w1", LEASE).await.unwrap().unwrap();
        // While it runs, a new request queues a second job (it will train the newer data) …
        let c = s.enqueue(NewJob { coalesce: true, ..keyed("model:x") }).await.unwrap();
        assert_eq!(c.outcome, EnqueueOutcome::Created);
        let other = enqueue(s, keyed("model:y")).await;
        // … which waits for the first: the other key's job is claimed instead.
        assert_eq!(s.claim("w2", LEASE).await.unwrap().unwrap().id, other.id);
        assert!(s.claim("w2", LEASE).await.unwrap().is_none(), "model:x is busy");
        assert!(s.complete(&running.id, "w1", &json!(1)).await.unwrap());
        assert_eq!(s.claim("w2", LEASE).await.unwrap().unwrap().id, c.job.id);
    });
}

#[tokio::test]
async fn cancel_queued_at_once_and_running_by_request() {
    each_backend!(|s| {
        let q = enqueue(s, job(0)).await;
        let CancelOutcome::Cancelled(c) = s.cancel_job(&q.id).await.unwrap() else { panic!("queued → cancelled") };
        assert_eq!(c.status, JobStatus::Cancelled);
        assert!(s.claim("w", LEASE).await.unwrap().is_none(), "a cancelled job never runs");
        assert!(matches!(s.cancel_job(&q.id).await.unwrap(), CancelOutcome::AlreadyFinished(_)));
        assert!(matches!(s.cancel_job("nope").await.unwrap(), CancelOutcome::NotFound));

        let r = enqueue(s, job(0)).await;
        s.claim("w", LEASE).await.unwrap().unwrap();
        let CancelOutcome::Requested(req) = s.cancel_job(&r.id).await.unwrap() else { panic!("running → requested") };
        assert!(req.cancel_requested && req.status == JobStatus::InProgress);
        assert_eq!(s.heartbeat(&r.id, "w", LEASE, None).await.unwrap(), Heartbeat::Held { cancel_requested: true });
        assert!(!s.finish_cancelled(&r.id, "other").await.unwrap());
        assert!(s.finish_cancelled(&r.id, "w").await.unwrap());

        // A cancel request also stops retries: the failing attempt ends the job instead of requeueing it.
        let f = enqueue(s, job(0)).await;
        s.claim("w", LEASE).await.unwrap().unwrap();
        s.cancel_job(&f.id).await.unwrap();
        assert_eq!(s.fail(&f.id, "w", "stopped", Some(Duration::ZERO), false).await.unwrap(), FailOutcome::Cancelled);
        assert_eq!(s.get_job(&f.id).await.unwrap().unwrap().status, JobStatus::Cancelled);
        let done = s.get_job(&r.id).await.unwrap().unwrap();
        assert_eq!((done.status, done.lease_owner), (JobStatus::Cancelled, None));
        let log = s.job_attempts(&r.id).await.unwrap();
        assert_eq!(log.iter().map(|a| a.outcome).collect::<Vec<_>>(), vec![AttemptEnd::Cancelled]);

        // A worker that died after the cancel request: the reaper finishes the cancel instead of re-running it.
        let d = enqueue(s, job(0)).await;
        s.claim("w", Duration::from_millis(1)).await.unwrap().unwrap();
        s.cancel_job(&d.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s.claim("w2", LEASE).await.unwrap().is_none());
        assert_eq!(s.reap_expired_leases().await.unwrap().cancelled, 1);
        assert_eq!(s.get_job(&d.id).await.unwrap().unwrap().status, JobStatus::Cancelled);
    });
}

#[tokio::test]
async fn release_requeues_without_spending_an_attempt() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.claim("w", LEASE).await.unwrap().unwrap();
        assert!(!s.release(&j.id, "other").await.unwrap());
        assert!(s.release(&j.id, "w").await.unwrap());
        let r = s.get_job(&j.id).await.unwrap().unwrap();
        assert_eq!((r.status, r.attempts, r.lease_owner), (JobStatus::Queued, 0, None));
        assert_eq!(s.claim("w2", LEASE).await.unwrap().unwrap().id, j.id);
        let log = s.job_attempts(&j.id).await.unwrap();
        let ends: Vec<_> = log.iter().map(|a| (a.attempt, a.outcome)).collect();
        assert_eq!(ends, vec![(1, AttemptEnd::Released), (1, AttemptEnd::Running)]);
    });
}

#[tokio::test]
async fn finished_jobs_expire_and_dead_letters_can_be_deleted() {
    each_backend!(|s| {
        let done = enqueue(s, job(0)).await;
        s.claim("w", LEASE).await.unwrap();
        s.complete(&done.id, "w", &json!(1)).await.unwrap();
        let dead = enqueue(s, NewJob { max_attempts: 1, ..job(0) }).await;
        let waiting = enqueue(s, job(0)).await;
        assert_eq!(s.claim("w", LEASE).await.unwrap().unwrap().id, dead.id);
        s.fail(&dead.id, "w", "x", Some(Duration::ZERO), false).await.unwrap();

        assert_eq!(s.delete_finished_before(Utc::now() - chrono::Duration::hours(1)).await.unwrap(), 0);
        assert!(s.delete_dead_letter(&dead.id).await.unwrap());
        assert!(!s.delete_dead_letter(&dead.id).await.unwrap());
        assert!(!s.delete_dead_letter(&done.id).await.unwrap(), "a finished job is not a DLQ entry");
        assert!(s.get_job(&dead.id).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.delete_finished_before(Utc::now()).await.unwrap(), 1);
        assert!(s.get_job(&done.id).await.unwrap().is_none());
        assert!(s.job_attempts(&done.id).await.unwrap().is_empty(), "attempts go with their job");
        assert!(s.get_job(&waiting.id).await.unwrap().is_some(), "unfinished jobs never expire");
    });
}

#[tokio::test]
async fn enqueue_signals_idle_workers() {
    each_backend!(|s| {
        let signal = s.job_signal();
        let woke = tokio::spawn(async move { signal.notified().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        enqueue(s, job(0)).await;
        tokio::time::timeout(Duration::from_secs(5), woke).await.expect("woken within 5 s").unwrap();
    });
}

#[tokio::test]
async fn training_submission_versions_and_delete() {
    each_backend!(|s| {
        let meta = json!({"source": "test"});
        let queued = |r| matches!(r, TrainSubmission::Queued(_));
        assert!(queued(s.submit_training("m", &meta, false, job(0), None).await.unwrap()));
        assert!(matches!(
            s.submit_training("m", &meta, false, job(0), None).await.unwrap(),
            TrainSubmission::ModelExists
        ));
        assert!(queued(s.submit_training("m", &meta, true, job(0), None).await.unwrap()));
        assert_eq!(s.get_model("m").await.unwrap().unwrap().active_version, None);

        let v1 = s.add_version("m", "k1", &json!({}), &json!({}), None).await.unwrap();
        let j = enqueue(s, job(0)).await;
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
    });
}

#[tokio::test]
async fn datasets_round_trip() {
    each_backend!(|s| {
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
    });
}

#[tokio::test]
async fn mentors_revisions_state_and_feedback() {
    each_backend!(|s| {
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
    });
}

#[tokio::test]
async fn claims_race_safely_across_many_workers() {
    each_backend!(|s| {
        let n = 200;
        for _ in 0..n {
            enqueue(s, job(0)).await;
        }
        let claimed = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let shared = s.clone();
        let mut tasks = Vec::new();
        for w in 0..8 {
            let (s, claimed) = (shared.clone(), claimed.clone());
            tasks.push(tokio::spawn(async move {
                let worker = format!("w{w}");
                while let Some(j) = s.claim(&worker, LEASE).await.unwrap() {
                    assert!(s.complete(&j.id, &worker, &json!(null)).await.unwrap());
                    claimed.lock().push(j.id);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut ids = claimed.lock().clone();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!((before, ids.len()), (n, n), "every job claimed exactly once");
    });
}

#[tokio::test]
async fn concurrent_claims_share_a_batch_and_still_honour_keys() {
    each_backend!(|s| {
        let mut same_key = Vec::new();
        for _ in 0..3 {
            same_key.push(enqueue(s, keyed("model:k")).await);
        }
        let mut free = Vec::new();
        for _ in 0..3 {
            free.push(enqueue(s, job(0)).await);
        }
        let urgent = enqueue(s, job(5)).await;
        // Eight claims in flight at once (written as one group commit): one job per claimer, never two of a key.
        let claims = (0..8).map(|w| {
            let s = s.clone();
            async move { (format!("w{w}"), s.claim(&format!("w{w}"), LEASE).await.unwrap()) }
        });
        let got: Vec<(String, strato_types::JobRecord)> =
            futures::future::join_all(claims).await.into_iter().filter_map(|(w, j)| j.map(|j| (w, j))).collect();
        let mut ids: Vec<&str> = got.iter().map(|(_, j)| j.id.as_str()).collect();
        ids.sort();
        let mut want: Vec<&str> = free.iter().chain([&urgent, &same_key[0]]).map(|j| j.id.as_str()).collect();
        want.sort();
        assert_eq!(ids, want, "the oldest of the key, every free job and the urgent one");
        for (w, j) in &got {
            assert_eq!((j.lease_owner.as_deref(), j.attempts, j.status), (Some(w.as_str()), 1, JobStatus::InProgress));
            let log = s.job_attempts(&j.id).await.unwrap();
            assert_eq!(log.len(), 1);
            assert_eq!((log[0].worker.as_str(), log[0].outcome), (w.as_str(), AttemptEnd::Running));
        }
        // Completions in flight at once, one of them by a worker that does not hold the job.
        let done = futures::future::join_all(got.iter().map(|(w, j)| {
            let s = s.clone();
            async move { s.complete(&j.id, w, &json!({"by": w})).await.unwrap() }
        }))
        .await;
        assert!(done.iter().all(|d| *d));
        assert!(!s.complete(&urgent.id, "w-stranger", &json!(null)).await.unwrap());
        for (w, j) in &got {
            let after = s.get_job(&j.id).await.unwrap().unwrap();
            assert_eq!((after.status, after.result), (JobStatus::Success, Some(json!({"by": w}))));
            assert_eq!(s.job_attempts(&j.id).await.unwrap()[0].outcome, AttemptEnd::Succeeded);
        }
        // The key is free again: its next job is claimable.
        assert_eq!(s.claim("w9", LEASE).await.unwrap().unwrap().id, same_key[1].id);
    });
}

#[tokio::test]
async fn complete_and_claim_records_the_success_then_hands_out_the_next_job() {
    each_backend!(|s| {
        let a = enqueue(s, keyed("model:k")).await;
        let b = enqueue(s, keyed("model:k")).await;
        let c = enqueue(s, job(0)).await;
        assert_eq!(s.claim("w1", LEASE).await.unwrap().unwrap().id, a.id);
        // The completion is applied first, so the job waiting behind the same key is the next one.
        let (done, next) = s.complete_and_claim(&a.id, "w1", &json!("a"), LEASE).await.unwrap();
        assert!(done);
        let next = next.unwrap();
        assert_eq!((next.id.as_str(), next.lease_owner.as_deref()), (b.id.as_str(), Some("w1")));
        assert_eq!(s.get_job(&a.id).await.unwrap().unwrap().status, JobStatus::Success);
        assert_eq!(s.job_attempts(&b.id).await.unwrap()[0].worker, "w1");
        // A worker that lost the job records nothing, but may still take work.
        let (done, next) = s.complete_and_claim(&b.id, "w-stale", &json!("b"), LEASE).await.unwrap();
        assert!(!done);
        assert_eq!(next.unwrap().id, c.id);
        assert_eq!(s.get_job(&b.id).await.unwrap().unwrap().status, JobStatus::InProgress);
        // Nothing left: the claim half comes back empty.
        let (done, next) = s.complete_and_claim(&b.id, "w1", &json!("b"), LEASE).await.unwrap();
        assert!(done && next.is_none());
    });
}

#[tokio::test]
async fn api_keys_round_trip_and_revoke_once() {
    each_backend!(|s| {
        let key = strato_types::ApiKeyRecord {
            id: "ak_1".into(),
            name: "app".into(),
            secret_hash: "abc123".into(),
            role: "user".into(),
            models: vec!["m1".into()],
            mentors: vec!["*".into()],
            plan: strato_types::UsagePlan { rate_per_sec: Some(2.5), burst: Some(5), daily_quota: Some(100) },
            created_at: ts(1_000),
            revoked_at: None,
        };
        s.insert_api_key(&key).await.unwrap();
        assert!(s.insert_api_key(&key).await.is_err(), "ids are unique");
        assert_eq!(s.api_key_by_hash("abc123").await.unwrap().as_ref(), Some(&key));
        assert_eq!(s.api_key_by_hash("other").await.unwrap(), None);
        assert_eq!(s.list_api_keys().await.unwrap(), vec![key.clone()]);
        let revoked = s.revoke_api_key("ak_1", ts(2_000)).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(ts(2_000)));
        let again = s.revoke_api_key("ak_1", ts(3_000)).await.unwrap().unwrap();
        assert_eq!(again.revoked_at, Some(ts(2_000)), "the first revocation time is kept");
        assert_eq!(s.revoke_api_key("nope", ts(3_000)).await.unwrap(), None);
    });
}

#[tokio::test]
async fn usage_counts_never_pass_the_limit_under_concurrency() {
    each_backend!(|s| {
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.take_usage("key:a", 60_000, 25).await.unwrap() })
            })
            .collect();
        let mut granted: Vec<u64> = Vec::new();
        for t in tasks {
            if let Some(n) = t.await.unwrap() {
                granted.push(n);
            }
        }
        granted.sort_unstable();
        assert_eq!(granted, (1..=25).collect::<Vec<u64>>(), "each count handed out once, none past the limit");
        // Another window and another subject start from zero.
        assert_eq!(s.take_usage("key:a", 120_000, 25).await.unwrap(), Some(1));
        assert_eq!(s.take_usage("key:b", 60_000, 25).await.unwrap(), Some(1));
        assert_eq!(s.take_usage("key:c", 60_000, 0).await.unwrap(), None);
        assert_eq!(s.delete_usage_before(120_000).await.unwrap(), 2);
        assert_eq!(s.take_usage("key:a", 60_000, 25).await.unwrap(), Some(1), "a forgotten window starts over");
    });
}
