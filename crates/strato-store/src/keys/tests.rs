//! The API keys' part of the conformance suite.

use crate::each_backend;
use crate::testing::ts;

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
            grants: vec![strato_types::Grant::new("widget", "w-*", strato_types::Actions::USE)],
            plan: strato_types::UsagePlan { rate_per_sec: Some(2.5), burst: Some(5), daily_quota: Some(100) },
            created_at: ts(1_000),
            revoked_at: None,
            access_key_id: None,
            sealed_secret: None,
        };
        s.keys().insert(&key).await.unwrap();
        assert!(s.keys().insert(&key).await.is_err(), "ids are unique");
        assert_eq!(s.keys().by_hash("abc123").await.unwrap().as_ref(), Some(&key));
        assert_eq!(s.keys().by_hash("other").await.unwrap(), None);
        assert_eq!(s.keys().list().await.unwrap(), vec![key.clone()]);
        let revoked = s.keys().revoke("ak_1", ts(2_000)).await.unwrap().unwrap();
        assert_eq!(revoked.revoked_at, Some(ts(2_000)));
        let again = s.keys().revoke("ak_1", ts(3_000)).await.unwrap().unwrap();
        assert_eq!(again.revoked_at, Some(ts(2_000)), "the first revocation time is kept");
        assert_eq!(s.keys().revoke("nope", ts(3_000)).await.unwrap(), None);

        // A SigV4 access key: found by its key id, which is unique.
        let sigv4 = strato_types::ApiKeyRecord {
            id: "ak_2".into(),
            secret_hash: "def456".into(),
            access_key_id: Some("AKIASTRATO0000000001".into()),
            sealed_secret: Some("v1:sealed".into()),
            ..key.clone()
        };
        s.keys().insert(&sigv4).await.unwrap();
        assert_eq!(s.keys().by_access_key_id("AKIASTRATO0000000001").await.unwrap().as_ref(), Some(&sigv4));
        assert_eq!(s.keys().by_access_key_id("AKIASTRATO0000000002").await.unwrap(), None);
        let twin = strato_types::ApiKeyRecord { id: "ak_3".into(), secret_hash: "ghi789".into(), ..sigv4.clone() };
        assert!(s.keys().insert(&twin).await.is_err(), "access key ids are unique");
    });
}
