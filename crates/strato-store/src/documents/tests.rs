//! The documents' part of the conformance suite.

use serde_json::json;

use crate::each_backend;

#[tokio::test]
async fn documents_are_created_once_updated_by_revision_and_listed_by_prefix() {
    each_backend!(|s| {
        let d = s.documents();
        let made = d.create("function", "echo", &json!({"runtime": "python3.11"})).await.unwrap().unwrap();
        assert_eq!((made.revision, &made.body), (1, &json!({"runtime": "python3.11"})));
        assert!(d.create("function", "echo", &json!({})).await.unwrap().is_none(), "a second create is refused");
        // Another kind, same id: its own document.
        assert!(d.create("function-version", "echo", &json!(1)).await.unwrap().is_some());

        let v2 = d.update("function", "echo", 1, &json!({"runtime": "provided"})).await.unwrap().unwrap();
        assert_eq!(v2.revision, 2);
        assert!(d.update("function", "echo", 1, &json!({"lost": true})).await.unwrap().is_none(), "a stale revision");
        assert_eq!(d.get("function", "echo").await.unwrap().unwrap().body, json!({"runtime": "provided"}));

        // `_` and `%` in a prefix are plain characters, not patterns.
        for id in ["a_b:1", "a_b:2", "axb:1", "a_c"] {
            d.create("v", id, &json!(id)).await.unwrap().unwrap();
        }
        let ids = |docs: Vec<crate::Document>| docs.into_iter().map(|d| d.id).collect::<Vec<_>>();
        assert_eq!(ids(d.list("v", "a_b:").await.unwrap()), ["a_b:1", "a_b:2"]);
        assert_eq!(ids(d.list("v", "").await.unwrap()).len(), 4);

        // In a transaction: all or nothing.
        {
            let mut tx = s.begin().await.unwrap();
            let mut docs = tx.documents();
            let f = docs.get_for_update("function", "echo").await.unwrap().unwrap();
            docs.update("function", "echo", f.revision, &json!({"gone": true})).await.unwrap().unwrap();
            assert_eq!(docs.delete_prefix("v", "a_b:").await.unwrap(), 2);
            drop(tx);
        }
        assert_eq!(d.get("function", "echo").await.unwrap().unwrap().revision, 2, "rolled back");
        assert_eq!(d.list("v", "a_b:").await.unwrap().len(), 2);
        let mut tx = s.begin().await.unwrap();
        assert_eq!(tx.documents().delete_prefix("v", "a_b:").await.unwrap(), 2);
        tx.commit().await.unwrap();
        assert_eq!(ids(d.list("v", "").await.unwrap()), ["a_c", "axb:1"]);
        assert!(d.delete("function", "echo").await.unwrap());
        assert!(!d.delete("function", "echo").await.unwrap());
    });
}
