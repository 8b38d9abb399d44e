//! The usage counters' part of the conformance suite.

use crate::each_backend;

#[tokio::test]
async fn usage_counts_never_pass_the_limit_under_concurrency() {
    each_backend!(|s| {
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.usage().take("key:a", 60_000, 25).await.unwrap() })
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
        assert_eq!(s.usage().take("key:a", 120_000, 25).await.unwrap(), Some(1));
        assert_eq!(s.usage().take("key:b", 60_000, 25).await.unwrap(), Some(1));
        assert_eq!(s.usage().take("key:c", 60_000, 0).await.unwrap(), None);
        assert_eq!(s.usage().delete_before(120_000).await.unwrap(), 2);
        assert_eq!(s.usage().take("key:a", 60_000, 25).await.unwrap(), Some(1), "a forgotten window starts over");
    });
}
