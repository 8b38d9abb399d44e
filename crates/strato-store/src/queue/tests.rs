//! The queue's part of the conformance suite: the same behaviour from both backends.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use strato_types::{AttemptEnd, JobStatus, NewJob};

use crate::each_backend;
use crate::testing::{any, enqueue, job, keyed, LEASE};
use crate::{CancelOutcome, ClaimFilter, EnqueueOutcome, FailOutcome, Heartbeat};

#[tokio::test]
async fn claims_by_priority_then_age_and_only_once() {
    each_backend!(|s| {
        let a = enqueue(s, job(0)).await;
        let b = enqueue(s, job(5)).await;
        let c = enqueue(s, job(0)).await;
        assert_eq!(s.queue().claim("w1", LEASE).await.unwrap().unwrap().id, b.id);
        assert_eq!(s.queue().claim("w1", LEASE).await.unwrap().unwrap().id, a.id);
        let third = s.queue().claim("w2", LEASE).await.unwrap().unwrap();
        assert_eq!((third.id.as_str(), third.attempts, third.status), (c.id.as_str(), 1, JobStatus::InProgress));
        assert!(s.queue().claim("w3", LEASE).await.unwrap().is_none());
    });
}

#[tokio::test]
async fn lapsed_lease_is_reclaimed_and_old_owner_cannot_finish() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.queue().claim("w1", Duration::from_millis(1)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let again = s.queue().claim("w2", LEASE).await.unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), (j.id.as_str(), 2));
        assert_eq!(s.queue().heartbeat(&j.id, "w1", LEASE, Some(50)).await.unwrap(), Heartbeat::Lost);
        assert!(
            !s.queue().complete(&j.id, "w1", &json!("stale")).await.unwrap(),
            "the lapsed owner must not overwrite"
        );
        assert_eq!(
            s.queue().fail(&j.id, "w1", "late", Some(Duration::ZERO), false).await.unwrap(),
            FailOutcome::LeaseLost
        );
        assert_eq!(
            s.queue().heartbeat(&j.id, "w2", LEASE, Some(50)).await.unwrap(),
            Heartbeat::Held { cancel_requested: false }
        );
        assert!(s.queue().complete(&j.id, "w2", &json!({"ok": true})).await.unwrap());
        let done = s.queue().get(&j.id).await.unwrap().unwrap();
        assert_eq!((done.status, done.progress, done.result), (JobStatus::Success, 100, Some(json!({"ok": true}))));
        assert!(done.finished_at.is_some() && done.lease_owner.is_none());
        let log = s.queue().attempts(&j.id).await.unwrap();
        let ends: Vec<_> = log.iter().map(|a| (a.attempt, a.worker.as_str(), a.outcome)).collect();
        assert_eq!(ends, vec![(1, "w1", AttemptEnd::LeaseExpired), (2, "w2", AttemptEnd::Succeeded)]);
        assert!(log.iter().all(|a| a.finished_at.is_some()));
    });
}

#[tokio::test]
async fn retryable_failures_end_in_the_dead_letter_queue_and_replay() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.queue().claim("w", LEASE).await.unwrap();
        assert_eq!(
            s.queue().fail(&j.id, "w", "boom", Some(Duration::ZERO), false).await.unwrap(),
            FailOutcome::Retrying
        );
        let r = s.queue().get(&j.id).await.unwrap().unwrap();
        assert_eq!((r.status, r.error.as_deref()), (JobStatus::Queued, Some("boom")));
        s.queue().claim("w", LEASE).await.unwrap().unwrap();
        let FailOutcome::DeadLettered(dead) =
            s.queue().fail(&j.id, "w", "slow", Some(Duration::ZERO), true).await.unwrap()
        else {
            panic!("max_attempts is 2: the second failure dead-letters")
        };
        assert_eq!((dead.status, dead.attempts), (JobStatus::Failure, 2));
        assert!(dead.dead_lettered_at.is_some() && dead.finished_at.is_some());
        assert!(s.queue().claim("w", LEASE).await.unwrap().is_none());
        let dlq = s.queue().dead_letters(10).await.unwrap();
        assert_eq!(dlq.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![j.id.as_str()]);
        let log = s.queue().attempts(&j.id).await.unwrap();
        let ends: Vec<_> = log.iter().map(|a| (a.outcome, a.error.as_deref())).collect();
        assert_eq!(ends, vec![(AttemptEnd::Failed, Some("boom")), (AttemptEnd::TimedOut, Some("slow"))]);

        let replayed = s.queue().replay_dead_letter(&j.id).await.unwrap().unwrap();
        assert_eq!((replayed.status, replayed.attempts, replayed.dead_lettered_at), (JobStatus::Queued, 0, None));
        assert!(s.queue().replay_dead_letter(&j.id).await.unwrap().is_none(), "no longer in the DLQ");
        assert!(s.queue().dead_letters(10).await.unwrap().is_empty());
        let again = s.queue().claim("w", LEASE).await.unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempts), (j.id.as_str(), 1));
        assert!(s.queue().complete(&j.id, "w", &json!(1)).await.unwrap());
        assert_eq!(s.queue().attempts(&j.id).await.unwrap().len(), 3, "history survives the replay");
    });
}

#[tokio::test]
async fn permanent_failure_does_not_retry_and_backoff_delays() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.queue().claim("w", LEASE).await.unwrap();
        assert_eq!(s.queue().fail(&j.id, "w", "bad data", None, false).await.unwrap(), FailOutcome::Failed);
        let r = s.queue().get(&j.id).await.unwrap().unwrap();
        assert_eq!((r.status, r.dead_lettered_at), (JobStatus::Failure, None), "bad input is not for the DLQ");

        let k = enqueue(s, job(0)).await;
        s.queue().claim("w", LEASE).await.unwrap();
        s.queue().fail(&k.id, "w", "flaky", Some(Duration::from_secs(60)), false).await.unwrap();
        assert!(s.queue().claim("w", LEASE).await.unwrap().is_none(), "not due yet");
        let due = s.queue().next_due_in(&ClaimFilter::default()).await.unwrap().unwrap();
        assert!(due > Duration::from_secs(50), "{due:?}");
    });
}

#[tokio::test]
async fn lapsed_last_attempt_is_dead_lettered_by_the_reaper() {
    each_backend!(|s| {
        let j = enqueue(s, NewJob { max_attempts: 1, ..job(0) }).await;
        s.queue().claim("w1", Duration::from_millis(1)).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s.queue().claim("w2", LEASE).await.unwrap().is_none(), "no attempts left: not claimable");
        let reaped = s.queue().reap_expired_leases().await.unwrap();
        assert_eq!(reaped.dead_lettered.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), vec![j.id.as_str()]);
        assert!(s.queue().reap_expired_leases().await.unwrap().dead_lettered.is_empty(), "reaping is idempotent");
        let log = s.queue().attempts(&j.id).await.unwrap();
        assert_eq!(log.iter().map(|a| a.outcome).collect::<Vec<_>>(), vec![AttemptEnd::LeaseExpired]);
    });
}

#[tokio::test]
async fn idempotency_key_returns_the_first_job() {
    each_backend!(|s| {
        let first = s.queue().enqueue(NewJob { idempotency_key: Some("k-1".into()), ..job(0) }).await.unwrap();
        let second = s.queue().enqueue(NewJob { idempotency_key: Some("k-1".into()), ..job(3) }).await.unwrap();
        assert_eq!((first.outcome, second.outcome), (EnqueueOutcome::Created, EnqueueOutcome::Idempotent));
        assert_eq!(first.job.id, second.job.id);
        assert_eq!(second.job.priority, 0, "the repeat changes nothing");
        let other = s.queue().enqueue(NewJob { idempotency_key: Some("k-2".into()), ..job(0) }).await.unwrap();
        assert_ne!(other.job.id, first.job.id);
    });
}

#[tokio::test]
async fn same_key_coalesces_while_queued_and_never_runs_twice_at_once() {
    each_backend!(|s| {
        let a =
            s.queue().enqueue(NewJob { coalesce: true, payload: json!({"v": 1}), ..keyed("model:x") }).await.unwrap();
        let b =
            s.queue().enqueue(NewJob { coalesce: true, payload: json!({"v": 2}), ..keyed("model:x") }).await.unwrap();
        assert_eq!((b.outcome, b.job.id.as_str()), (EnqueueOutcome::Coalesced, a.job.id.as_str()));
        assert_eq!(b.job.payload, json!({"v": 2}), "the latest request wins");
        assert_eq!(b.replaced_payload, Some(json!({"v": 1})), "the caller learns what it replaced");
        let running = s.queue().claim("w1", LEASE).await.unwrap().unwrap();
        // While it runs, a new request queues a second job (it will train the newer data) …
        let c = s.queue().enqueue(NewJob { coalesce: true, ..keyed("model:x") }).await.unwrap();
        assert_eq!(c.outcome, EnqueueOutcome::Created);
        let other = enqueue(s, keyed("model:y")).await;
        // … which waits for the first: the other key's job is claimed instead.
        assert_eq!(s.queue().claim("w2", LEASE).await.unwrap().unwrap().id, other.id);
        assert!(s.queue().claim("w2", LEASE).await.unwrap().is_none(), "model:x is busy");
        assert!(s.queue().complete(&running.id, "w1", &json!(1)).await.unwrap());
        assert_eq!(s.queue().claim("w2", LEASE).await.unwrap().unwrap().id, c.job.id);
    });
}

#[tokio::test]
async fn cancel_queued_at_once_and_running_by_request() {
    each_backend!(|s| {
        let q = enqueue(s, job(0)).await;
        let CancelOutcome::Cancelled(c) = s.queue().cancel(&q.id).await.unwrap() else {
            panic!("queued → cancelled")
        };
        assert_eq!(c.status, JobStatus::Cancelled);
        assert!(s.queue().claim("w", LEASE).await.unwrap().is_none(), "a cancelled job never runs");
        assert!(matches!(s.queue().cancel(&q.id).await.unwrap(), CancelOutcome::AlreadyFinished(_)));
        assert!(matches!(s.queue().cancel("nope").await.unwrap(), CancelOutcome::NotFound));

        let r = enqueue(s, job(0)).await;
        s.queue().claim("w", LEASE).await.unwrap().unwrap();
        let CancelOutcome::Requested(req) = s.queue().cancel(&r.id).await.unwrap() else {
            panic!("running → requested")
        };
        assert!(req.cancel_requested && req.status == JobStatus::InProgress);
        assert_eq!(
            s.queue().heartbeat(&r.id, "w", LEASE, None).await.unwrap(),
            Heartbeat::Held { cancel_requested: true }
        );
        assert!(!s.queue().finish_cancelled(&r.id, "other").await.unwrap());
        assert!(s.queue().finish_cancelled(&r.id, "w").await.unwrap());

        // A cancel request also stops retries: the failing attempt ends the job instead of requeueing it.
        let f = enqueue(s, job(0)).await;
        s.queue().claim("w", LEASE).await.unwrap().unwrap();
        s.queue().cancel(&f.id).await.unwrap();
        assert_eq!(
            s.queue().fail(&f.id, "w", "stopped", Some(Duration::ZERO), false).await.unwrap(),
            FailOutcome::Cancelled
        );
        assert_eq!(s.queue().get(&f.id).await.unwrap().unwrap().status, JobStatus::Cancelled);
        let done = s.queue().get(&r.id).await.unwrap().unwrap();
        assert_eq!((done.status, done.lease_owner), (JobStatus::Cancelled, None));
        let log = s.queue().attempts(&r.id).await.unwrap();
        assert_eq!(log.iter().map(|a| a.outcome).collect::<Vec<_>>(), vec![AttemptEnd::Cancelled]);

        // A worker that died after the cancel request: the reaper finishes the cancel instead of re-running it.
        let d = enqueue(s, job(0)).await;
        s.queue().claim("w", Duration::from_millis(1)).await.unwrap().unwrap();
        s.queue().cancel(&d.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(s.queue().claim("w2", LEASE).await.unwrap().is_none());
        assert_eq!(s.queue().reap_expired_leases().await.unwrap().cancelled, 1);
        assert_eq!(s.queue().get(&d.id).await.unwrap().unwrap().status, JobStatus::Cancelled);
    });
}

#[tokio::test]
async fn release_requeues_without_spending_an_attempt() {
    each_backend!(|s| {
        let j = enqueue(s, job(0)).await;
        s.queue().claim("w", LEASE).await.unwrap().unwrap();
        assert!(!s.queue().release(&j.id, "other").await.unwrap());
        assert!(s.queue().release(&j.id, "w").await.unwrap());
        let r = s.queue().get(&j.id).await.unwrap().unwrap();
        assert_eq!((r.status, r.attempts, r.lease_owner), (JobStatus::Queued, 0, None));
        assert_eq!(s.queue().claim("w2", LEASE).await.unwrap().unwrap().id, j.id);
        let log = s.queue().attempts(&j.id).await.unwrap();
        let ends: Vec<_> = log.iter().map(|a| (a.attempt, a.outcome)).collect();
        assert_eq!(ends, vec![(1, AttemptEnd::Released), (1, AttemptEnd::Running)]);
    });
}

#[tokio::test]
async fn finished_jobs_expire_and_dead_letters_can_be_deleted() {
    each_backend!(|s| {
        let done = enqueue(s, job(0)).await;
        s.queue().claim("w", LEASE).await.unwrap();
        s.queue().complete(&done.id, "w", &json!(1)).await.unwrap();
        let dead = enqueue(s, NewJob { max_attempts: 1, ..job(0) }).await;
        let waiting = enqueue(s, job(0)).await;
        assert_eq!(s.queue().claim("w", LEASE).await.unwrap().unwrap().id, dead.id);
        s.queue().fail(&dead.id, "w", "x", Some(Duration::ZERO), false).await.unwrap();

        assert_eq!(s.queue().delete_finished_before(Utc::now() - chrono::Duration::hours(1)).await.unwrap(), 0);
        assert!(s.queue().delete_dead_letter(&dead.id).await.unwrap());
        assert!(!s.queue().delete_dead_letter(&dead.id).await.unwrap());
        assert!(!s.queue().delete_dead_letter(&done.id).await.unwrap(), "a finished job is not a DLQ entry");
        assert!(s.queue().get(&dead.id).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(s.queue().delete_finished_before(Utc::now()).await.unwrap(), 1);
        assert!(s.queue().get(&done.id).await.unwrap().is_none());
        assert!(s.queue().attempts(&done.id).await.unwrap().is_empty(), "attempts go with their job");
        assert!(s.queue().get(&waiting.id).await.unwrap().is_some(), "unfinished jobs never expire");
    });
}

#[tokio::test]
async fn enqueue_signals_idle_workers() {
    each_backend!(|s| {
        let signal = s.job_signal().queue(&strato_types::QueueName::DEFAULT);
        let woke = tokio::spawn(async move { signal.notified().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        enqueue(s, job(0)).await;
        tokio::time::timeout(Duration::from_secs(5), woke).await.expect("woken within 5 s").unwrap();
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
                while let Some(j) = s.queue().claim(&worker, LEASE).await.unwrap() {
                    assert!(s.queue().complete(&j.id, &worker, &json!(null)).await.unwrap());
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
            async move { (format!("w{w}"), s.queue().claim(&format!("w{w}"), LEASE).await.unwrap()) }
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
            let log = s.queue().attempts(&j.id).await.unwrap();
            assert_eq!(log.len(), 1);
            assert_eq!((log[0].worker.as_str(), log[0].outcome), (w.as_str(), AttemptEnd::Running));
        }
        // Completions in flight at once, one of them by a worker that does not hold the job.
        let done = futures::future::join_all(got.iter().map(|(w, j)| {
            let s = s.clone();
            async move { s.queue().complete(&j.id, w, &json!({"by": w})).await.unwrap() }
        }))
        .await;
        assert!(done.iter().all(|d| *d));
        assert!(!s.queue().complete(&urgent.id, "w-stranger", &json!(null)).await.unwrap());
        for (w, j) in &got {
            let after = s.queue().get(&j.id).await.unwrap().unwrap();
            assert_eq!((after.status, after.result), (JobStatus::Success, Some(json!({"by": w}))));
            assert_eq!(s.queue().attempts(&j.id).await.unwrap()[0].outcome, AttemptEnd::Succeeded);
        }
        // The key is free again: its next job is claimable.
        assert_eq!(s.queue().claim("w9", LEASE).await.unwrap().unwrap().id, same_key[1].id);
    });
}

#[tokio::test]
async fn complete_and_claim_records_the_success_then_hands_out_the_next_job() {
    each_backend!(|s| {
        let a = enqueue(s, keyed("model:k")).await;
        let b = enqueue(s, keyed("model:k")).await;
        let c = enqueue(s, job(0)).await;
        assert_eq!(s.queue().claim("w1", LEASE).await.unwrap().unwrap().id, a.id);
        // The completion is applied first, so the job waiting behind the same key is the next one.
        let (done, next) = s.queue().complete_and_claim(&a.id, "w1", &json!("a"), &any(), LEASE).await.unwrap();
        assert!(done);
        let next = next.unwrap();
        assert_eq!((next.id.as_str(), next.lease_owner.as_deref()), (b.id.as_str(), Some("w1")));
        assert_eq!(s.queue().get(&a.id).await.unwrap().unwrap().status, JobStatus::Success);
        assert_eq!(s.queue().attempts(&b.id).await.unwrap()[0].worker, "w1");
        // A worker that lost the job records nothing, but may still take work.
        let (done, next) = s.queue().complete_and_claim(&b.id, "w-stale", &json!("b"), &any(), LEASE).await.unwrap();
        assert!(!done);
        assert_eq!(next.unwrap().id, c.id);
        assert_eq!(s.queue().get(&b.id).await.unwrap().unwrap().status, JobStatus::InProgress);
        // Nothing left: the claim half comes back empty.
        let (done, next) = s.queue().complete_and_claim(&b.id, "w1", &json!("b"), &any(), LEASE).await.unwrap();
        assert!(done && next.is_none());
    });
}

#[tokio::test]
async fn a_claim_takes_only_its_queue_and_the_kinds_its_process_runs() {
    each_backend!(|s| {
        use strato_types::{JobKind, QueueName};
        let media = enqueue(s, NewJob { queue: QueueName::new("media"), ..job(0) }).await;
        let newer = enqueue(s, NewJob::new(JobKind::new("from_a_newer_version"), json!({}))).await;
        let plain = enqueue(s, job(0)).await;
        let noop_only = Arc::new(ClaimFilter::new(QueueName::DEFAULT, [crate::testing::NOOP]));
        assert_eq!(s.queue().claim_from(&noop_only, "w", LEASE).await.unwrap().unwrap().id, plain.id);
        assert!(s.queue().claim_from(&noop_only, "w", LEASE).await.unwrap().is_none(), "media's, and an unknown kind");
        // Only the running job's lease (30 s) is ahead: the unknown kind, due now, does not keep its workers awake.
        let wait = s.queue().next_due_in(&noop_only).await.unwrap().unwrap();
        assert!(wait > Duration::from_secs(25), "{wait:?}");
        let media_noop = Arc::new(ClaimFilter::new(QueueName::new("media"), [crate::testing::NOOP]));
        assert_eq!(s.queue().next_due_in(&media_noop).await.unwrap(), Some(Duration::ZERO));
        assert_eq!(s.queue().claim_from(&media_noop, "w", LEASE).await.unwrap().unwrap().id, media.id);
        let left = s.queue().get(&newer.id).await.unwrap().unwrap();
        assert_eq!((left.status, left.attempts, left.queue.as_str()), (JobStatus::Queued, 0, "default"));
        // Any kind: the unknown one is claimable by a process that runs it.
        assert_eq!(s.queue().claim("w2", LEASE).await.unwrap().unwrap().id, newer.id);
    });
}

#[tokio::test]
async fn scheduled_jobs_wait_for_their_time_and_due_ones_go_first() {
    each_backend!(|s| {
        let soon = Utc::now() + chrono::Duration::milliseconds(400);
        let later = enqueue(s, NewJob { run_after: Some(soon), ..job(5) }).await;
        assert_eq!(later.run_after.timestamp_millis(), soon.timestamp_millis());
        // A time in the past counts as now: it cannot jump ahead of jobs that were due before it.
        let first = enqueue(s, job(0)).await;
        let past = enqueue(s, NewJob { run_after: Some(Utc::now() - chrono::Duration::hours(1)), ..job(0) }).await;
        assert!(past.run_after >= first.run_after);
        assert_eq!(s.queue().claim("w", LEASE).await.unwrap().unwrap().id, first.id, "the higher priority is not due");
        assert_eq!(s.queue().claim("w", LEASE).await.unwrap().unwrap().id, past.id);
        assert!(s.queue().claim("w", LEASE).await.unwrap().is_none(), "not due yet");
        let wait = s.queue().next_due_in(&ClaimFilter::default()).await.unwrap().unwrap();
        assert!(wait > Duration::from_millis(200) && wait <= Duration::from_millis(400), "{wait:?}");
        tokio::time::sleep(wait + Duration::from_millis(5)).await;
        assert_eq!(s.queue().claim("w", LEASE).await.unwrap().unwrap().id, later.id);
        for j in [&first, &past, &later] {
            assert!(s.queue().complete(&j.id, "w", &json!(1)).await.unwrap());
        }
        // Scheduled inside a transaction too.
        let mut tx = s.begin().await.unwrap();
        let far = NewJob { run_after: Some(Utc::now() + chrono::Duration::days(365)), ..job(0) };
        let far = tx.queue().enqueue(&far).await.unwrap().job;
        tx.commit().await.unwrap();
        assert!(s.queue().claim("w", LEASE).await.unwrap().is_none());
        let wait = s.queue().next_due_in(&ClaimFilter::default()).await.unwrap().unwrap();
        assert!(wait > Duration::from_secs(364 * 86_400), "{wait:?}");
        assert_eq!(s.queue().get(&far.id).await.unwrap().unwrap().status, JobStatus::Queued);
    });
}

#[tokio::test]
async fn a_queued_job_is_withdrawn_in_a_transaction_but_not_once_claimed() {
    each_backend!(|s| {
        let later = NewJob { run_after: Some(Utc::now() + chrono::Duration::seconds(60)), ..job(0) };
        let a = enqueue(s, later.clone()).await;
        let b = enqueue(s, job(0)).await;
        let claimed = s.queue().claim("w", LEASE).await.unwrap().unwrap();
        assert_eq!(claimed.id, b.id);
        let mut tx = s.begin().await.unwrap();
        assert!(tx.queue().withdraw(&a.id).await.unwrap());
        assert!(!tx.queue().withdraw(&b.id).await.unwrap(), "a claimed job is not withdrawn");
        assert!(!tx.queue().withdraw("no-such-job").await.unwrap());
        // Rolled back: still there.
        drop(tx);
        assert_eq!(s.queue().get(&a.id).await.unwrap().unwrap().status, JobStatus::Queued);
        let mut tx = s.begin().await.unwrap();
        assert!(tx.queue().withdraw(&a.id).await.unwrap());
        tx.commit().await.unwrap();
        assert!(s.queue().get(&a.id).await.unwrap().is_none(), "withdrawn as if never enqueued");
        assert_eq!(s.queue().get(&b.id).await.unwrap().unwrap().status, JobStatus::InProgress);
    });
}
