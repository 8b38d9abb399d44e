//! The mentors' part of the conformance suite.

use serde_json::json;
use strato_types::{AnswerType, Grade, UserQuestionRecord};

use crate::each_backend;
use crate::testing::ts;
use crate::UserQuestionFilter;

#[tokio::test]
async fn mentors_revisions_state_and_feedback() {
    each_backend!(|s| {
        assert!(s.mentors().state("m", "mentor:m").await.unwrap().is_none());
        let r1 = s.mentors().put("m", &json!({"id": "m"})).await.unwrap();
        let r2 = s.mentors().put("m", &json!({"id": "m", "name": "x"})).await.unwrap();
        assert!(r2 > r1, "every change bumps the revision");
        s.models().ensure("mentor:m", &json!({})).await.unwrap();
        assert_eq!(s.mentors().state("m", "mentor:m").await.unwrap(), Some((r2, None)));
        s.models().add_version("mentor:m", "k", &json!({}), &json!({}), None).await.unwrap();
        assert_eq!(s.mentors().state("m", "mentor:m").await.unwrap(), Some((r2, Some(1))));
        assert!(s.models().list().await.unwrap().is_empty(), "mentor models are not listed as text classifiers");

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
        s.mentors().insert_user_question(&q).await.unwrap();
        let f = UserQuestionFilter { ungraded: true, ..Default::default() };
        assert_eq!(s.mentors().user_questions("m", &f).await.unwrap(), vec![q.clone()]);
        let graded = s.mentors().grade("f1", &Grade::OffTopic).await.unwrap().unwrap();
        assert!(graded.graded_off_topic && graded.graded_at.is_some());
        assert!(s.mentors().user_questions("m", &f).await.unwrap().is_empty());
        assert_eq!(s.mentors().graded_questions("m").await.unwrap().len(), 1);
        let (rev, _) = s.mentors().state("m", "mentor:m").await.unwrap().unwrap();
        assert!(rev > r2, "a grade changes answering, so it bumps the revision");
        assert!(s.mentors().grade("nope", &Grade::OffTopic).await.unwrap().is_none());

        assert!(s.mentors().delete("m").await.unwrap());
        assert!(s.mentors().user_question("f1").await.unwrap().is_none());
        assert!(!s.mentors().delete("m").await.unwrap());
    });
}

#[tokio::test]
async fn concurrent_read_modify_writes_of_one_mentor_lose_nothing() {
    each_backend!(|s| {
        s.mentors().put("rmw", &json!({"id": "rmw", "answers": {}})).await.unwrap();
        // Ten writers each add their own answer to the document they read: a lost update would drop one.
        let writers = (0..10).map(|i| {
            let s = s.clone();
            async move {
                let mut tx = s.begin().await.unwrap();
                let row = tx.mentors().get_for_update("rmw").await.unwrap().unwrap();
                let mut body = row.body;
                tokio::task::yield_now().await;
                body["answers"][format!("a{i}")] = json!(i);
                tx.mentors().put("rmw", &body).await.unwrap();
                tx.commit().await.unwrap();
            }
        });
        futures::future::join_all(writers).await;
        let body = s.mentors().get("rmw").await.unwrap().unwrap().body;
        assert_eq!(body["answers"].as_object().unwrap().len(), 10, "{body}");
        let mut tx = s.begin().await.unwrap();
        assert!(tx.mentors().get_for_update("nobody").await.unwrap().is_none());
    });
}
