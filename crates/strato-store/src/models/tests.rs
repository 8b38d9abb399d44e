//! The models' part of the conformance suite, and the transaction that changes a model and queues its training.

use serde_json::json;
use strato_types::JobStatus;

use crate::each_backend;
use crate::testing::{enqueue, job, LEASE};
use crate::{AddVersion, EnqueueOutcome, JobFilter};

#[tokio::test]
async fn versions_fenced_by_a_lease_activation_and_delete() {
    each_backend!(|s| {
        s.models().ensure("m", &json!({"source": "test"})).await.unwrap();
        assert_eq!(s.models().get("m").await.unwrap().unwrap().active_version, None);

        let v1 = s.models().add_version("m", "k1", &json!({}), &json!({}), None).await.unwrap();
        let j = enqueue(s, job(0)).await;
        // Queued, not held by "w": the fence refuses.
        assert_eq!(
            s.models().add_version("m", "kx", &json!({}), &json!({}), Some((&j.id, "w"))).await.unwrap(),
            AddVersion::LeaseLost
        );
        let claimed = loop {
            let c = s.queue().claim("w", LEASE).await.unwrap().unwrap();
            if c.id == j.id {
                break c;
            }
        };
        let v2 = s.models().add_version("m", "k2", &json!({}), &json!({}), Some((&claimed.id, "w"))).await.unwrap();
        assert_eq!((v1, v2), (AddVersion::Added(1), AddVersion::Added(2)));
        assert_eq!(s.models().versions("m").await.unwrap().len(), 2, "the refused add left nothing behind");
        assert_eq!(s.models().get("m").await.unwrap().unwrap().active_version, Some(2));
        assert!(s.models().activate("m", 1).await.unwrap());
        assert!(!s.models().activate("m", 9).await.unwrap());
        assert_eq!(s.models().get("m").await.unwrap().unwrap().active_version, Some(1));

        let (_, versions) = s.models().delete("m").await.unwrap().unwrap();
        assert_eq!(versions.len(), 2);
        assert!(s.models().get("m").await.unwrap().is_none());
        assert!(s.models().versions("m").await.unwrap().is_empty());
        assert_eq!(
            s.models().add_version("m", "k3", &json!({}), &json!({}), None).await.unwrap(),
            AddVersion::ModelMissing
        );
    });
}

#[tokio::test]
async fn a_model_row_and_its_job_commit_together_or_not_at_all() {
    each_backend!(|s| {
        // Rolled back (dropped uncommitted, as when the caller's future is cancelled): neither the row nor the job.
        {
            let mut tx = s.begin().await.unwrap();
            tx.models().upsert("m", &json!({"v": 1})).await.unwrap();
            let e = tx.queue().enqueue(&job(0)).await.unwrap();
            assert_eq!(e.outcome, EnqueueOutcome::Created);
            tx.rollback().await.unwrap();
        }
        {
            let mut tx = s.begin().await.unwrap();
            tx.models().upsert("m", &json!({"v": 1})).await.unwrap();
            tx.queue().enqueue(&job(0)).await.unwrap();
            drop(tx);
        }
        assert!(s.models().get("m").await.unwrap().is_none(), "no model row after a rollback");
        assert!(s.queue().list(&JobFilter::default()).await.unwrap().is_empty(), "no job after a rollback");
        assert!(s.queue().claim("w", LEASE).await.unwrap().is_none());

        // Committed: both, and the job is claimable at once (its workers are woken by the commit).
        let signal = s.job_signal().queue(&strato_types::QueueName::DEFAULT);
        let woken = tokio::spawn(async move { signal.notified().await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut tx = s.begin().await.unwrap();
        tx.models().upsert("m", &json!({"v": 2})).await.unwrap();
        let queued = tx.queue().enqueue(&job(0)).await.unwrap().job;
        tx.commit().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), woken).await.expect("woken by the commit").unwrap();
        assert_eq!(s.models().get("m").await.unwrap().unwrap().meta, json!({"v": 2}));
        let got = s.queue().get(&queued.id).await.unwrap().unwrap();
        assert_eq!(got.status, JobStatus::Queued);
        assert_eq!(s.queue().claim("w", LEASE).await.unwrap().unwrap().id, queued.id);
    });
}

#[tokio::test]
async fn a_write_dropped_mid_transaction_rolls_back_and_later_writes_succeed() {
    each_backend!(|s| {
        // A caller that goes away while its transaction is open, as a stopped worker or a gone HTTP client does.
        let dropped = tokio::time::timeout(std::time::Duration::from_millis(100), async {
            let mut tx = s.begin().await.unwrap();
            tx.models().upsert("half", &json!({})).await.unwrap();
            std::future::pending::<()>().await;
        })
        .await;
        assert!(dropped.is_err(), "the write was meant to be cut off mid-transaction");
        s.models().ensure("after", &json!({})).await.expect("the writer connection is usable again");
        assert!(s.models().get("after").await.unwrap().is_some());
        assert!(s.models().get("half").await.unwrap().is_none(), "the cut-off transaction was rolled back");
    });
}
