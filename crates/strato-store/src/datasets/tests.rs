//! The datasets' part of the conformance suite.

use strato_types::DatasetRecord;

use crate::each_backend;
use crate::testing::ts;

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
        assert!(s.datasets().put(&rec).await.unwrap().is_none());
        assert_eq!(s.datasets().put(&rec).await.unwrap(), Some(rec.clone()));
        assert_eq!(s.datasets().list().await.unwrap(), vec![rec.clone()]);
        assert_eq!(s.datasets().delete("d").await.unwrap(), Some(rec));
        assert!(s.datasets().get("d").await.unwrap().is_none());
    });
}
