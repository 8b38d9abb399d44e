//! Mentors over real HTTP: native routes, the MentorPal-compatible routes, the feedback loop, small mentors and
//! follow-ups, with the real embedding model.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{assert_error, model_dir, no_model, start, status_json, Options, TestServer};

fn answer(id: &str, q: &str, paraphrases: &[&str], transcript: &str, category: &str) -> Value {
    json!({
        "id": id,
        "question": {"id": format!("q-{id}"), "text": q, "paraphrases": paraphrases, "topics": ["Background"], "type": "QUESTION", "name": ""},
        "transcript": transcript,
        "markdown": format!("*{transcript}*"),
        "status": "COMPLETE",
        "media": [
            {"type": "video", "tag": "web", "url": format!("https://media.example/{id}/web.mp4")},
            {"type": "video", "tag": "mobile", "url": format!("https://media.example/{id}/mobile.mp4")},
            {"type": "subtitles", "tag": "en", "url": format!("https://media.example/{id}/en.vtt")}
        ],
        "external_video_ids": {"wistiaId": id},
        "category": category,
    })
}

fn mentor() -> Value {
    json!({
        "id": "clint",
        "name": "Clint Anderson",
        "type": "VIDEO",
        "answers": [
            answer("a-name", "What is your name?", &["Who are you?", "Tell me your name"], "My name is Clint Anderson.", "about"),
            answer("a-job", "What do you do for work?", &["What is your job?", "Where do you work?"], "I am a nuclear electrician's mate in the Navy.", "career"),
            answer("a-grow", "Where did you grow up?", &["Where are you from?", "What is your hometown?"], "I grew up in Los Angeles with my mom and my brother. Later I studied at USC.", "about"),
            answer("a-hobby", "What do you do for fun?", &["What are your hobbies?", "What do you like to do in your free time?"], "I like surfing, hiking and playing guitar.", "about"),
            answer("a-school", "Did you go to college?", &["Where did you study?", "What was your education?"], "I went to the University of Southern California and studied engineering.", "career"),
            answer("a-advice", "What advice do you have for students?", &["Any tips for students?", "What should students know?"], "Work hard, ask questions, and never stop learning.", "career"),
            {"id": "a-skip", "question": {"id": "q-skip", "text": "What is your favorite food?", "paraphrases": [], "type": "QUESTION"}, "transcript": "", "status": "SKIP"},
            {"id": "u-off1", "question": {"id": "q-off", "text": "_OFF_TOPIC_", "paraphrases": [], "type": "UTTERANCE", "name": "_OFF_TOPIC_"}, "transcript": "Sorry, I don't know about that.", "status": "COMPLETE"},
        ]
    })
}

async fn put_and_train(s: &TestServer, m: &Value) -> Value {
    let id = m["id"].as_str().unwrap();
    let r = s.client.put(s.url(&format!("/v1/mentors/{id}"))).json(m).send().await.unwrap();
    let (code, v) = status_json(r).await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.post(&format!("/v1/mentors/{id}/train"), &json!({})).await;
    assert_eq!(code, 202, "{v}");
    let job = s.wait_job(v["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");
    job
}

#[tokio::test]
async fn answers_exact_paraphrase_classifier_and_off_topic() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    let job = put_and_train(&s, &mentor()).await;
    assert!(job["result"]["off_topic"]["threshold"].is_number(), "{job}");

    let ask = |q: &str| format!("/v1/mentors/clint/answer?query={}&chat_session_id=s1", urlencode(q));
    let (code, a) = s.get(&ask("  what is YOUR name?! ")).await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(
        (a["answer_id"].clone(), a["answer_type"].clone(), a["confidence"].clone()),
        (json!("a-name"), json!("EXACT"), json!(1.0))
    );
    assert_eq!(a["answer_media"]["web_media"]["url"], "https://media.example/a-name/web.mp4");
    assert_eq!(a["answer_media"]["vtt_media"]["tag"], "en");
    assert_eq!(a["answer_markdown_text"], "*My name is Clint Anderson.*");
    let (_, a) = s.get(&ask("what are your hobbies")).await;
    assert_eq!((a["answer_id"].clone(), a["answer_type"].clone()), (json!("a-hobby"), json!("PARAPHRASE")));

    let (_, a) = s.get(&ask("which city were you raised in?")).await;
    assert_eq!((a["answer_id"].clone(), a["answer_type"].clone()), (json!("a-grow"), json!("CLASSIFIER")), "{a}");
    let c = a["confidence"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&c), "{a}");

    let (_, a) = s.get(&ask("how do I bake sourdough bread at high altitude?")).await;
    assert_eq!(a["answer_type"], "OFF_TOPIC", "{a}");
    assert_eq!((a["answer_id"].clone(), a["question_id"].clone()), (json!("u-off1"), json!("")));
    assert_eq!(a["answer_text"], "Sorry, I don't know about that.");

    // Feedback: every answer was recorded; grade the off-topic one to an answer and it matches exactly at once.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list) = s.get("/v1/mentors/clint/user-questions?ungraded=true").await;
    let qs = list["user_questions"].as_array().unwrap();
    assert_eq!(qs.len(), 4, "{list}");
    assert!(qs.iter().all(|q| q["chat_session_id"] == "s1"));
    let (_, off) = s.get("/v1/mentors/clint/user-questions?type=OFF_TOPIC").await;
    let fid = off["user_questions"][0]["id"].as_str().unwrap().to_string();
    let r = s
        .client
        .put(s.url(&format!("/v1/user-questions/{fid}/grade")))
        .json(&json!({"answer_id": "a-hobby"}))
        .send()
        .await
        .unwrap();
    let (code, g) = status_json(r).await;
    assert_eq!((code, g["graded_answer_id"].clone()), (200, json!("a-hobby")), "{g}");
    let (_, a) = s.get(&ask("how do I bake sourdough bread at high altitude?")).await;
    assert_eq!((a["answer_id"].clone(), a["answer_type"].clone()), (json!("a-hobby"), json!("PARAPHRASE")), "{a}");
    // Questions are recorded off the request path: give the last one a moment to land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list) = s.get("/v1/mentors/clint/user-questions?ungraded=true").await;
    assert_eq!(list["user_questions"].as_array().unwrap().len(), 4, "4 ungraded: 5 asked, 1 graded");

    // At the next training the graded question is training data: one more question than before.
    let before = job["result"]["off_topic"]["n_questions"].as_i64().unwrap();
    let (_, v) = s.post("/v1/mentors/clint/train", &json!({})).await;
    let again = s.wait_job(v["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(again["result"]["off_topic"]["n_questions"].as_i64().unwrap(), before + 1, "{again}");
    assert_eq!(again["result"]["version"], 2);

    let r =
        s.client.put(s.url("/v1/user-questions/nope/grade")).json(&json!({"off_topic": true})).send().await.unwrap();
    assert_error(&status_json(r).await, 404, "feedback_not_found");
    let r = s
        .client
        .put(s.url(&format!("/v1/user-questions/{fid}/grade")))
        .json(&json!({"answer_id": "zzz"}))
        .send()
        .await
        .unwrap();
    assert_error(&status_json(r).await, 400, "invalid_request");

    // A removed answer the classifier still predicts comes back as answer_missing with the off-topic reply.
    let mut m = mentor();
    m["answers"].as_array_mut().unwrap().retain(|a| a["id"] != "a-grow");
    let r = s.client.put(s.url("/v1/mentors/clint")).json(&m).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, a) = s.get(&ask("which city were you raised in?")).await;
    assert_eq!((a["answer_missing"].clone(), a["answer_type"].clone()), (json!(true), json!("OFF_TOPIC")), "{a}");
    s.stop().await;
}

#[tokio::test]
async fn mentorpal_compatible_routes() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    let r = s.client.put(s.url("/v1/mentors/clint")).json(&mentor()).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let (code, v) = s.get("/classifier/questions?mentor=clint&query=hello").await;
    assert_eq!((code, v), (404, json!({"message": "No models found for mentor clint."})));

    let (code, v) = s.post("/classifier/train", &json!({"mentor": "clint"})).await;
    assert_eq!(code, 200, "{v}");
    let d = &v["data"];
    let id = d["id"].as_str().unwrap().to_string();
    assert_eq!((d["mentor"].clone(), d["status"].clone()), (json!("clint"), json!("QUEUED")));
    assert_eq!(d["statusUrl"], format!("/classifier/train/status/{id}"));
    let st = loop {
        let (code, st) = s.get(&format!("/classifier/train/status/{id}")).await;
        assert_eq!(code, 200, "{st}");
        if st["data"]["status"] == "SUCCESS" || st["data"]["status"] == "FAILURE" {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(st["data"]["state"], st["data"]["status"]);
    assert_eq!((st["data"]["status"].clone(), st["data"]["mentor"].clone()), (json!("SUCCESS"), json!("clint")));
    assert!(st["data"]["updated"].is_string());
    assert_eq!(
        s.get("/classifier/train/status/nope").await,
        (400, json!({"data": {"error": "not found", "message": "nope not found"}}))
    );

    let (code, a) = s.get("/classifier/questions?mentor=clint&query=Who%20are%20you%3F&chatsessionid=c1").await;
    assert_eq!(code, 200, "{a}");
    for k in [
        "question",
        "question_id",
        "answer_id",
        "answer_text",
        "answer_markdown_text",
        "answer_media",
        "external_video_ids",
        "confidence",
        "feedback_id",
        "classifier",
        "answer_missing",
    ] {
        assert!(a.get(k).is_some(), "missing {k}: {a}");
    }
    assert!(a.get("data").is_none(), "not wrapped in data");
    assert_eq!((a["answer_id"].clone(), a["question"].clone()), (json!("a-name"), json!("Who are you?")));
    for k in ["web_media", "mobile_media", "vtt_media"] {
        assert!(a["answer_media"].get(k).is_some(), "{a}");
    }

    let r = s.client.get(s.url("/classifier/trainingdata/clint")).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/csv");
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=clint-trainingdata.csv");
    let body: Value = r.json().await.unwrap();
    let csv = body["data"].as_str().unwrap();
    assert!(csv.starts_with("id,question,paraphrases,answer,topic\n"), "{csv}");
    assert!(
        csv.contains("a-name,What is your name?,Who are you?|Tell me your name,My name is Clint Anderson.,Background"),
        "{csv}"
    );
    assert!(!csv.contains("a-skip") && !csv.contains("_OFF_TOPIC_"), "not answerable or utterances: {csv}");

    let (code, f) = s.post("/classifier/followups/category/about/clint", &json!({})).await;
    assert_eq!(code, 200, "{f}");
    let fs = f["data"]["followups"].as_array().unwrap();
    let qs: Vec<&str> = fs.iter().map(|x| x["question"].as_str().unwrap()).collect();
    assert!(qs.contains(&"What was Los Angeles like?"), "{f}");
    assert!(qs.contains(&"Can you tell me more about your mom?"), "{f}");
    assert!(qs.contains(&"What is USC?"), "{f}");
    assert!(!qs.iter().any(|q| q.contains("Clint")), "the mentor's own name is dropped: {f}");
    assert!(fs.iter().all(|x| x["entityType"].is_string() && x["template"].as_str().unwrap().contains("$entity")));
    let r = s
        .client
        .post(s.url("/classifier/me/followups/category/career"))
        .header("x-mentor-id", "clint")
        .send()
        .await
        .unwrap();
    let (code, f) = status_json(r).await;
    assert_eq!(code, 200, "{f}");
    assert!(
        f["data"]["followups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["question"] == "Can you tell me more about University of Southern California?"),
        "{f}"
    );
    s.stop().await;
}

#[tokio::test]
async fn small_mentors_csv_import_and_errors() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    // No paraphrases at all, two answers: trains and answers (the original crashed here).
    let csv = "id,question,paraphrases,answer,topic\nq1,What is your name?,,I am Ada.,About\nq2,What do you do?,,I write software.,Work\n";
    let r = s
        .client
        .post(s.url("/v1/mentors/ada/import"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (code, m) = status_json(r).await;
    assert_eq!(code, 200, "{m}");
    assert_eq!(m["answers"].as_array().unwrap().len(), 2);
    let (code, v) = s.post("/v1/mentors/ada/train", &json!({})).await;
    assert_eq!(code, 202, "{v}");
    let job = s.wait_job(v["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(job["status"], "SUCCESS", "{job}");
    let (code, a) = s.get("/v1/mentors/ada/answer?query=what%20is%20your%20job").await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["answer_id"], "q2", "{a}");
    let r = s.client.get(s.url("/v1/mentors/ada/trainingdata")).send().await.unwrap();
    assert_eq!(r.headers()["content-disposition"], "attachment; filename=ada-trainingdata.csv");
    assert_eq!(r.text().await.unwrap(), "id,question,paraphrases,answer,topic\nq1,What is your name?,,I am Ada.,About\nq2,What do you do?,,I write software.,Work\n");

    // One answer is a clear 400.
    let csv1 = "id,question,paraphrases,answer,topic\nq1,What is your name?,,I am Bo.,About\n";
    s.client.post(s.url("/v1/mentors/bo/import")).body(csv1).send().await.unwrap();
    let r = s.post("/v1/mentors/bo/train", &json!({})).await;
    assert_error(&r, 400, "invalid_request");
    assert!(r.1["error"]["message"].as_str().unwrap().contains("at least 2"), "{}", r.1);
    let (code, _) = s.post("/classifier/train", &json!({"mentor": "bo"})).await;
    assert_eq!(code, 400);

    let r = s.client.delete(s.url("/v1/mentors/ada")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_error(&s.get("/v1/mentors/ada").await, 404, "mentor_not_found");
    assert_error(&s.get("/v1/mentors/ada/answer?query=hi").await, 404, "mentor_not_found");
    s.stop().await;
}

#[tokio::test]
async fn mentor_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), no_model())).await;
    let put = |body: Value| {
        let c = s.client.put(s.url("/v1/mentors/m1")).json(&body);
        async move { status_json(c.send().await.unwrap()).await }
    };
    assert_error(&put(json!({"id": "other", "answers": []})).await, 400, "invalid_request");
    let dup = json!({"id": "m1", "answers": [answer("a", "q?", &[], "t", "c"), answer("a", "q2?", &[], "t", "c")]});
    let r = put(dup).await;
    assert_error(&r, 400, "invalid_request");
    assert!(r.1["error"]["message"].as_str().unwrap().contains("used twice"), "{}", r.1);
    assert_error(&put(json!({"id": "m1", "answers": [{"id": "a"}]})).await, 400, "invalid_request");
    let r = s.client.post(s.url("/v1/mentors/m1/import")).body("nope,header\nx,y\n").send().await.unwrap();
    assert_error(&status_json(r).await, 400, "invalid_dataset");
    let r = s.client.post(s.url("/v1/mentors/m1/import")).body("id,question\nx,\n").send().await.unwrap();
    let r = status_json(r).await;
    assert_error(&r, 400, "invalid_dataset");
    assert!(r.1["error"]["message"].as_str().unwrap().starts_with("line 2"), "{}", r.1);
    assert_error(&s.get("/v1/mentors/m1").await, 404, "mentor_not_found");
    assert_error(&s.post("/v1/mentors/m1/train", &json!({})).await, 404, "mentor_not_found");
    assert_error(&s.get("/v1/mentors/m1/answer").await, 400, "invalid_request");
    assert_eq!(
        s.get("/classifier/questions?mentor=m1&query=hi").await,
        (404, json!({"message": "No models found for mentor m1."}))
    );
    s.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The issue 27 procedure over HTTP, on a small CLINC150 mentor: 24 answers of one question + 4 paraphrases and three
/// `_OFF_TOPIC_` utterances, trained through `POST /classifier/train`, then test utterances of its 24 intents and of
/// 16 others asked through `GET /classifier/questions` (the others must get an off-topic utterance).
#[tokio::test]
async fn few_shot_mentor_over_mentorpal_routes() {
    let Some(model) = model_dir() else { return };
    let data = strato_ml::fewshot::IntentData::from_csv(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/clinc150.csv"
    )))
    .unwrap();
    let universe: Vec<String> = data.train.keys().step_by(3).take(40).cloned().collect();
    let draw = strato_ml::fewshot::Draw::within(&data, universe, 24, 4, 7);
    let mut answers: Vec<Value> = draw
        .answers
        .iter()
        .map(|a| {
            let p: Vec<&str> = a.phrasings[1..].iter().map(String::as_str).collect();
            answer(&a.intent, &a.phrasings[0], &p, &format!("About {}.", a.intent), "about")
        })
        .collect();
    for i in 0..3 {
        answers.push(json!({"id": format!("u-off{i}"), "question": {"id": format!("q-off{i}"), "text": "_OFF_TOPIC_",
            "paraphrases": [], "type": "UTTERANCE", "name": "_OFF_TOPIC_"}, "transcript": "Sorry, I don't know.",
            "status": "COMPLETE"}));
    }
    let dir = tempfile::tempdir().unwrap();
    let s = start(Options::new(dir.path(), model)).await;
    let r =
        s.client.put(s.url("/v1/mentors/few")).json(&json!({"id": "few", "name": "Few", "answers": answers})).send();
    assert_eq!(r.await.unwrap().status(), 200);
    let (code, v) = s.post("/classifier/train", &json!({"mentor": "few"})).await;
    assert_eq!(code, 200, "{v}");
    let status = format!("/classifier/train/status/{}", v["data"]["id"].as_str().unwrap());
    loop {
        let (_, st) = s.get(&status).await;
        if st["data"]["status"] == "SUCCESS" {
            break;
        }
        assert_ne!(st["data"]["status"], "FAILURE", "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut tally = strato_ml::fewshot::Tally::default();
    let (mut conf_right, mut conf_off) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for (text, intent) in data.test.iter().filter(|(_, i)| draw.asks(i)) {
        // Five questions per intent keep the test short.
        let n = seen.entry(intent.as_str()).or_default();
        *n += 1;
        if *n > 5 {
            continue;
        }
        let q = url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
        let (code, a) = s.get(&format!("/classifier/questions?mentor=few&query={q}")).await;
        assert_eq!(code, 200, "{a}");
        let id = a["answer_id"].as_str().unwrap();
        let c = a["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c), "{a}");
        let truth = draw.knows(intent).then_some(intent.as_str());
        let given = (!id.starts_with("u-off")).then_some(id);
        if given.is_some() && given == truth {
            conf_right.push(c);
        }
        if truth.is_none() {
            conf_off.push(c);
        }
        tally.add(truth, given);
    }
    let m = tally.metrics();
    eprintln!("few-shot mentor over HTTP: {m:?}");
    assert!(m.overall_accuracy >= 0.75 && m.off_topic_f1 >= 0.7, "{m:?}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    assert!(mean(&conf_right) > mean(&conf_off) + 0.3, "{} vs {}", mean(&conf_right), mean(&conf_off));
    s.stop().await;
}
