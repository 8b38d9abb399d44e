//! The upload processor end to end, over a real socket with the real ffmpeg: MentorPal's upload API (a presigned
//! upload, `POST /upload/answer`, the status URL), the shipped state machine run by the workflows engine, the
//! mentor's answer updated in one step, its media streamed with range requests — and every kind of bad input
//! refused with its reason, the mentor unchanged; mentor transfers. Transcription needs the Whisper model
//! (`STRATO_TEST_WHISPER_DIR`, set by `scripts/test.sh`) and espeak-ng for spoken clips; the other uploads keep
//! their edited transcripts. Skips, saying so, where ffmpeg (or, for transcription, the model) is missing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use strato_http::auth::{AuthOptions, JwtOptions};
use strato_http::HttpOptions;
use strato_media::{MediaOptions, MediaService, MediaSlot, Tools};
use strato_service::{QueueConcurrency, Strato, StratoOptions, WorkerPool, WorkerPoolOptions};
use strato_types::{Answer, Mentor};

const SECRET: &str = "a-mentorpal-jwt-secret-of-some-length";

fn ffmpeg_installed() -> bool {
    let ok = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: ffmpeg is not installed (apt-get install ffmpeg; .ci/run does)");
    }
    ok
}

/// Makes a clip with ffmpeg's test sources.
fn clip(path: &Path, video: Option<&str>, seconds: f64, extra: &[&str]) {
    let mut c = std::process::Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if let Some(v) = video {
        c.args(["-f", "lavfi", "-i", &format!("{v}:duration={seconds}")]);
    }
    c.args(["-f", "lavfi", "-i", &format!("sine=frequency=440:duration={seconds}")]);
    c.args(extra).arg(path);
    assert!(c.status().unwrap().success(), "ffmpeg could not make {}", path.display());
}

fn token(user: &str, mentors: &[&str]) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    let claims = json!({"id": user, "role": "USER", "mentorIds": mentors, "exp": exp});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

struct Server {
    base: String,
    client: reqwest::Client,
    strato: Strato,
    media: MediaService,
    pool: Option<WorkerPool>,
    _dir: tempfile::TempDir,
}

async fn serve() -> Server {
    serve_with(None).await
}

async fn serve_with(transcriber: Option<strato_media::service::TranscriberLoader>) -> Server {
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut opts = StratoOptions::new(dir.path());
    opts.embedding_model = Some("/nonexistent/strato-test-model".into());
    opts.public_url = Some(base.clone());
    let functions = strato_functions::FunctionsSlot::default();
    let workflows = strato_workflows::WorkflowsSlot::default();
    let media = MediaSlot::default();
    let tools = Tools { timeout: Duration::from_secs(120), threads: 2, ..Tools::default() };
    // Transfers may copy from this machine's test servers (127.0.0.1), not from `localhost` or private networks.
    let media_opts =
        MediaOptions { tools, public_url: Some(base.clone()), transcriber, transfer_hosts: vec!["127.0.0.1".into()] };
    let strato = Strato::builder(opts)
        .register(functions.registrar(strato_functions::FunctionsOptions::new(dir.path().join("functions"))))
        .register(workflows.registrar(functions.clone()))
        .register(media.registrar(media_opts, workflows.clone()))
        .open()
        .await
        .unwrap();
    let media = media.get().unwrap();
    media.install_machine().await.unwrap();
    let pool = strato.start_workers(WorkerPoolOptions {
        queues: QueueConcurrency::parse("default=1,workflows=4,media=1,media-control=2").unwrap(),
        poll_interval: Duration::from_millis(100),
        heartbeat: Duration::from_millis(300),
        ..Default::default()
    });
    let auth = AuthOptions {
        jwt: Some(JwtOptions { hs256_secret: Some(SECRET.into()), ..Default::default() }),
        public_routes: vec!["GET /media/*".into()],
        ..Default::default()
    };
    let http = HttpOptions { auth, ..Default::default() };
    let app = strato_http::router_with(strato.clone(), http, vec![strato_media::http::routes(media.clone())]);
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    Server { base, client: reqwest::Client::new(), strato, media, pool: Some(pool), _dir: dir }
}

fn answer(q: &str, text: &str, transcript: &str) -> Answer {
    serde_json::from_value(json!({"id": format!("a-{q}"), "question": {"id": q, "text": text},
        "transcript": transcript, "status": "INCOMPLETE"}))
    .unwrap()
}

impl Server {
    async fn mentor(&self, id: &str) -> Mentor {
        self.strato.mentors().get(id).await.unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str, tok: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(tok);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /upload/url`, then a PUT of the file to it: the key to name in `POST /upload/answer`.
    async fn upload_file(&self, tok: &str, file: &Path) -> String {
        let (s, v) = self.call(reqwest::Method::GET, "/upload/url", tok, None).await;
        assert_eq!(s, 200, "{v}");
        let url = v["data"]["url"].as_str().unwrap();
        let put = self.client.put(url).body(std::fs::read(file).unwrap()).send().await.unwrap();
        assert!(put.status().is_success(), "{:?}", put.text().await);
        v["data"]["fields"]["key"].as_str().unwrap().to_string()
    }

    /// Follows the status URL until the upload ends.
    async fn wait(&self, tok: &str, status_url: &str) -> Value {
        let start = Instant::now();
        loop {
            let (s, v) = self.call(reqwest::Method::GET, status_url, tok, None).await;
            assert_eq!(s, 200, "{v}");
            if v["data"]["status"] != "IN_PROGRESS" {
                return v["data"].clone();
            }
            assert!(start.elapsed() < Duration::from_secs(180), "the upload did not end: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The upload's execution once it has ended (the upload's status is written by a step before the execution's
    /// last state runs).
    async fn execution_ended(&self, upload: &str) -> strato_workflows::durable::ExecutionRecord {
        let start = Instant::now();
        loop {
            let x = self.media.workflows().execution(&format!("strato-upload-processor:{upload}")).await.unwrap();
            if x.status != "RUNNING" {
                return x;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "the execution did not end: {x:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn fetch(&self, url: &str, range: Option<&str>) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let mut r = self.client.get(url);
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        let r = r.send().await.unwrap();
        let (s, h) = (r.status().as_u16(), r.headers().clone());
        (s, h, r.bytes().await.unwrap().to_vec())
    }

    async fn stop(mut self) {
        if let Some(p) = self.pool.take() {
            p.shutdown().await;
        }
        self.strato.close().await;
    }
}

/// ffprobe's JSON of a file.
fn probe(path: &Path) -> Value {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"])
        .arg(path)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stream<'a>(p: &'a Value, kind: &str) -> &'a Value {
    p["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == kind).unwrap_or(&Value::Null)
}

/// Whether an MP4's `moov` box comes before its `mdat` (`+faststart`: playable before it is all downloaded).
fn faststart(bytes: &[u8]) -> bool {
    let (mut i, mut moov, mut mdat) = (0usize, None, None);
    while i + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
        match &bytes[i + 4..i + 8] {
            b"moov" => moov = Some(i),
            b"mdat" => mdat = Some(i),
            _ => {}
        }
        if size < 8 {
            break;
        }
        i += size;
    }
    matches!((moov, mdat), (Some(a), Some(b)) if a < b)
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_upload_is_trimmed_transcoded_and_published_to_the_mentor() {
    if !ffmpeg_installed() {
        return;
    }
    let s = serve().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut mentor: Mentor = serde_json::from_value(json!({"id": "m1", "name": "Clint"})).unwrap();
    mentor.answers = vec![answer("q1", "Who are you?", "I am Clint."), answer("q2", "Where do you work?", "")];
    s.strato.mentors().put("m1", mentor).await.unwrap();
    let owner = token("u1", &["m1"]);

    // A 1080p landscape answer with sound, 4 s, trimmed to 0.5-3.0 s.
    let source = tmp.path().join("answer.mp4");
    clip(
        &source,
        Some("testsrc2=size=1920x1080:rate=30"),
        4.0,
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"],
    );
    let key = s.upload_file(&owner, &source).await;
    assert!(key.starts_with("uploads/u1/"), "{key}");
    let body = json!({"mentor": "m1", "question": "q1", "video": key, "trim": {"start": 0.5, "end": 3.0},
        "hasEditedTranscript": true, "generateThumbnail": true});
    let (st, v) = s.call(reqwest::Method::POST, "/upload/answer", &owner, Some(body.clone())).await;
    assert_eq!(st, 200, "{v}");
    let tasks: Vec<&str> =
        v["data"]["taskList"].as_array().unwrap().iter().map(|t| t["task_name"].as_str().unwrap()).collect();
    assert_eq!(
        tasks,
        ["trim-upload", "transcoding-web", "transcoding-mobile"],
        "no transcription: the transcript was edited"
    );
    assert!(v["data"]["taskList"].as_array().unwrap().iter().all(|t| t["status"] == "QUEUED"), "{v}");
    let status_url = v["data"]["statusUrl"].as_str().unwrap().to_string();

    // A second upload of the same answer while this one runs is refused.
    let (st, refused) = s.call(reqwest::Method::POST, "/upload/answer", &owner, Some(body.clone())).await;
    assert_eq!(st, 409, "{refused}");
    assert_eq!(refused["data"]["error"], "upload_in_progress");
    assert!(refused["data"]["message"].as_str().unwrap().starts_with("upload in progress"), "{refused}");

    let done = s.wait(&owner, &status_url).await;
    assert_eq!(done["status"], "DONE", "{done}");
    assert!(
        done["taskList"].as_array().unwrap().iter().all(|t| t["status"] == "DONE" && t["progress"] == 100),
        "{done}"
    );
    let x = s.execution_ended(done["id"].as_str().unwrap()).await;
    assert_eq!(x.status, "SUCCEEDED", "the upload ran as a workflow execution: {x:?}");

    // The mentor's answer has its media, in MentorPal's shape, and only once the whole upload succeeded.
    let m = s.mentor("m1").await;
    let a = m.answers.iter().find(|a| a.question.id == "q1").unwrap();
    assert_eq!(a.transcript, "I am Clint.", "an edited transcript is kept");
    assert_eq!(a.status, strato_types::AnswerStatus::Complete);
    let web = a.media.iter().find(|x| x.media_type == "video" && x.tag == "web").expect("web video");
    let mobile = a.media.iter().find(|x| x.media_type == "video" && x.tag == "mobile").expect("mobile video");
    let thumb = a.media.iter().find(|x| x.tag == "thumbnail").expect("thumbnail");
    let sha1 = sha1_hex(&std::fs::read(&source).unwrap());
    assert_eq!(web.hash.as_deref(), Some(sha1.as_str()), "the SHA-1 of the original upload");
    assert!((web.duration.unwrap() - 2.5).abs() < 0.15, "trimmed to 2.5 s: {:?}", web.duration);
    assert!(web.metadata.is_some() && web.url.starts_with(&s.base), "{web:?}");

    // Players stream it with range requests, without credentials.
    let (st, h, bytes) = s.fetch(&web.url, None).await;
    assert_eq!(st, 200);
    assert_eq!(h["content-type"], "video/mp4");
    assert_eq!(h["accept-ranges"], "bytes");
    assert!(faststart(&bytes), "moov before mdat");
    let (st, h, part) = s.fetch(&web.url, Some("bytes=100-199")).await;
    assert_eq!((st, part.as_slice()), (206, &bytes[100..200]));
    assert_eq!(h["content-range"], format!("bytes 100-199/{}", bytes.len()));
    let p = probe(&save(tmp.path(), "web.mp4", &bytes));
    let (v, au) = (stream(&p, "video"), stream(&p, "audio"));
    assert_eq!(
        (v["codec_name"].as_str(), v["width"].as_u64(), v["height"].as_u64()),
        (Some("h264"), Some(1280), Some(720))
    );
    assert_eq!(v["avg_frame_rate"], "30/1");
    assert_eq!(au["codec_name"], "aac");
    let d: f64 = p["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((d - 2.5).abs() < 0.15, "{d}");
    let (_, _, mob) = s.fetch(&mobile.url, None).await;
    let p = probe(&save(tmp.path(), "mobile.mp4", &mob));
    assert_eq!((stream(&p, "video")["width"].as_u64(), stream(&p, "video")["height"].as_u64()), (Some(480), Some(480)));
    let (st, h, jpg) = s.fetch(&thumb.url, None).await;
    assert_eq!((st, &jpg[..3]), (200, &[0xff, 0xd8, 0xff][..]), "a JPEG");
    assert_eq!(h["content-type"], "image/jpeg");

    // The native view of the same upload; nothing is left in the staging area.
    let (st, latest) = s.call(reqwest::Method::GET, "/v1/mentors/m1/answers/q1/media", &owner, None).await;
    assert_eq!((st, &latest["status"]), (200, &json!("DONE")), "{latest}");
    assert!(s.strato.blobs().list("media-staging/", 10).await.unwrap().is_empty());

    // Someone else's mentor, or no credentials: refused.
    let stranger = token("u2", &["m9"]);
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/answer",
            &stranger,
            Some(json!({"mentor": "m1", "question": "q2", "video": key})),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    let r = s.client.get(format!("{}/upload/url", s.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Storage outside answer media is not served by /media.
    let (st, _, _) = s.fetch(&format!("{}/media/files/{key}", s.base), None).await;
    assert_eq!(st, 404);
    s.stop().await;
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    hex::encode(sha1::Sha1::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_fail_with_their_reason_and_leave_the_mentor_as_it_was() {
    if !ffmpeg_installed() {
        return;
    }
    let s = serve().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut mentor: Mentor = serde_json::from_value(json!({"id": "m2"})).unwrap();
    mentor.answers = ["q1", "q2", "q3", "q4", "q5"].iter().map(|q| answer(q, "A question?", "before")).collect();
    s.strato.mentors().put("m2", mentor.clone()).await.unwrap();
    let tok = token("u3", &["m2"]);

    // Refused at once, before any work: not a video by its content, a trim that is not a range, unknown answer.
    let text = save(tmp.path(), "notes.mp4", b"these are my notes, not a video at all");
    let key = s.upload_file(&tok, &text).await;
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/answer",
            &tok,
            Some(json!({"mentor": "m2", "question": "q1", "video": key})),
        )
        .await;
    assert_eq!((st, v["data"]["error"].as_str()), (400, Some("not_media")), "{v}");
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/answer",
            &tok,
            Some(json!({"mentor": "m2", "question": "q1", "video": key, "trim": {"start": 3, "end": 1}})),
        )
        .await;
    assert_eq!((st, v["data"]["error"].as_str()), (400, Some("invalid_trim")), "{v}");
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/answer",
            &tok,
            Some(json!({"mentor": "m2", "question": "nope", "video": key})),
        )
        .await;
    assert_eq!((st, v["data"]["error"].as_str()), (404, Some("answer_not_found")), "{v}");
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/answer",
            &tok,
            Some(json!({"mentor": "m2", "question": "q1", "video": "uploads/u3/missing"})),
        )
        .await;
    assert_eq!((st, v["data"]["error"].as_str()), (404, Some("video_not_found")), "{v}");
    let (st, v) = s.call(reqwest::Method::POST, "/upload/answer", &tok, Some(json!({"mentor": "m2"}))).await;
    assert_eq!(st, 400, "a body missing fields: {v}");

    // Found out by the probe step: each fails its upload with a readable reason, and the execution fails.
    let audio_only = tmp.path().join("audio.m4a");
    clip(&audio_only, None, 3.0, &["-c:a", "aac"]);
    let short = tmp.path().join("short.mp4");
    clip(
        &short,
        Some("testsrc2=size=320x240:rate=25"),
        0.5,
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"],
    );
    let whole = tmp.path().join("whole.mp4");
    clip(
        &whole,
        Some("testsrc2=size=320x240:rate=25"),
        3.0,
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"],
    );
    let bytes = std::fs::read(&whole).unwrap();
    let cut = save(tmp.path(), "cut.mp4", &bytes[..bytes.len() / 2]);
    let cases = [
        ("q1", &audio_only, "no video track"),
        ("q2", &short, "at least 1 s"),
        ("q3", &cut, "not a video ffmpeg can read"),
    ];
    for (q, file, reason) in cases {
        let key = s.upload_file(&tok, file).await;
        let (st, v) = s
            .call(
                reqwest::Method::POST,
                "/upload/answer",
                &tok,
                Some(json!({"mentor": "m2", "question": q, "video": key, "hasEditedTranscript": true})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let done = s.wait(&tok, v["data"]["statusUrl"].as_str().unwrap()).await;
        assert_eq!(done["status"], "FAILED", "{q}: {done}");
        assert!(done["error"].as_str().unwrap().contains(reason), "{q}: {done}");
        for t in done["taskList"].as_array().unwrap() {
            assert_eq!(t["status"], "FAILED", "{q}: {done}");
            assert!(t["error"].as_str().unwrap().contains(reason), "{q}: {done}");
        }
        let x = s.execution_ended(done["id"].as_str().unwrap()).await;
        assert_eq!(x.status, "FAILED", "a failed execution is a dead letter: {x:?}");
    }
    assert_eq!(s.mentor("m2").await, mentor, "no failed upload changed the mentor");
    assert!(!s.strato.blobs().exists("videos/m2/q1/web.mp4").await.unwrap(), "nothing half-made is served");

    // Cancelled while it runs: the tasks stop, the execution is stopped, the mentor is unchanged.
    let long = tmp.path().join("long.mp4");
    clip(
        &long,
        Some("testsrc2=size=1920x1080:rate=30"),
        20.0,
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"],
    );
    let key = s.upload_file(&tok, &long).await;
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/answer",
            &tok,
            Some(json!({"mentor": "m2", "question": "q4", "video": key, "hasEditedTranscript": true})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let started = Instant::now();
    loop {
        let u = s.media.uploads().of_answer("m2", "q4").await.unwrap().unwrap();
        if u.tasks.iter().any(|t| t.status == strato_media::upload::TaskStatus::InProgress) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{u:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (st, c) = s.call(reqwest::Method::POST, "/v1/mentors/m2/answers/q4/media/cancel", &tok, None).await;
    assert_eq!((st, &c["status"]), (200, &json!("CANCELLED")), "{c}");
    let done = s.wait(&tok, v["data"]["statusUrl"].as_str().unwrap()).await;
    assert_eq!(done["status"], "CANCELLED", "{done}");
    assert!(
        done["taskList"].as_array().unwrap().iter().all(|t| t["status"] == "CANCELLED" || t["status"] == "DONE"),
        "{done}"
    );
    let name = done["id"].as_str().unwrap().to_string();
    let x = s.execution_ended(&name).await;
    assert_eq!(x.status, "ABORTED", "{x:?}");
    // The running encode was killed: its job ends well before a 20 s 1080p encode could.
    let stopped = Instant::now();
    loop {
        let jobs = s.strato.store().queue().list(&Default::default()).await.unwrap();
        if jobs.iter().filter(|j| j.kind.as_str() == "media.step").all(|j| j.status.is_final()) {
            break;
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "the cancelled step is still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.mentor("m2").await, mentor, "a cancelled upload changes nothing");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subtitles_and_pictures_are_checked_by_content() {
    if !ffmpeg_installed() {
        return;
    }
    let s = serve().await;
    let mut mentor: Mentor = serde_json::from_value(json!({"id": "m3"})).unwrap();
    let mut a = answer("q1", "What do you do?", "I build robots. They help people every day.");
    a.media.push(serde_json::from_value(json!({"type": "video", "tag": "web", "url": "x", "duration": 6.0})).unwrap());
    mentor.answers = vec![a, answer("q2", "Hobbies?", "")];
    s.strato.mentors().put("m3", mentor).await.unwrap();
    let tok = token("u4", &["m3"]);
    let form = |parts: Vec<(&str, reqwest::multipart::Part)>| {
        parts.into_iter().fold(reqwest::multipart::Form::new(), |f, (n, p)| f.part(n.to_string(), p))
    };
    let post = |path: &'static str, f: reqwest::multipart::Form| {
        let r = s.client.post(format!("{}{path}", s.base)).bearer_auth(&tok).multipart(f);
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let text = |t: &str| reqwest::multipart::Part::text(t.to_string());
    let file = |b: &[u8], name: &str| reqwest::multipart::Part::bytes(b.to_vec()).file_name(name.to_string());

    // WebVTT: refused unless it is one, stored and recorded on the answer when it is.
    let (st, v) = post(
        "/upload/vtt",
        form(vec![
            ("mentor", text("m3")),
            ("question", text("q1")),
            ("vtt_file", file(b"00:00:00.000 --> 00:00:01.000\nhi\n", "en.vtt")),
        ]),
    )
    .await;
    assert_eq!((st, v["data"]["error"].as_str()), (400, Some("invalid_vtt")), "{v}");
    assert!(v["data"]["message"].as_str().unwrap().contains("WEBVTT"), "{v}");
    let good = "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nI build robots.\n";
    let (st, v) = post(
        "/upload/vtt",
        form(vec![("mentor", text("m3")), ("question", text("q1")), ("vtt_file", file(good.as_bytes(), "en.vtt"))]),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["data"]["vtt_path"].as_str(), v["data"]["vtt_text"].as_str()),
        (Some("videos/m3/q1/en.vtt"), Some(good))
    );
    let m = s.mentor("m3").await;
    let subs = m.answers[0].media.iter().find(|x| x.media_type == "subtitles").unwrap();
    assert_eq!((subs.tag.as_str(), subs.vtt_text.as_deref()), ("en", Some(good)));
    let (st, h, body) = s.fetch(&subs.url, None).await;
    assert_eq!((st, body.as_slice()), (200, good.as_bytes()));
    assert_eq!(h["content-type"], "text/vtt; charset=utf-8");

    // Rebuilt from the transcript over the video's 6 s.
    let (st, v) =
        s.call(reqwest::Method::POST, "/upload/regen_vtt", &tok, Some(json!({"mentor": "m3", "question": "q1"}))).await;
    assert_eq!((st, &v["data"]["regen_vtt"]), (200, &json!(true)), "{v}");
    let regen = v["data"]["new_vtt_text"].as_str().unwrap();
    assert!(
        regen.starts_with("WEBVTT") && regen.contains("00:00:06.000") && regen.contains("I build robots."),
        "{regen}"
    );
    let (st, v) =
        s.call(reqwest::Method::POST, "/upload/regen_vtt", &tok, Some(json!({"mentor": "m3", "question": "q2"}))).await;
    assert_eq!((st, v["data"]["error"].as_str()), (400, Some("invalid_request")), "no video to time by: {v}");

    // Pictures: PNG or JPEG by content, whatever the name says.
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let (st, v) = post(
        "/upload/thumbnail",
        form(vec![("body", text(r#"{"mentor": "m3"}"#)), ("thumbnail", file(gif, "me.png"))]),
    )
    .await;
    assert_eq!((st, v["data"]["error"].as_str()), (415, Some("invalid_image")), "{v}");
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\r\xefF\xb8\x00\x00\x00\x00IEND\xaeB`\x82";
    let (st, v) = post(
        "/upload/thumbnail",
        form(vec![("body", text(r#"{"mentor": "m3"}"#)), ("thumbnail", file(png, "me.gif"))]),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let url = v["data"]["thumbnail"].as_str().unwrap();
    assert!(url.contains("/media/mentor/thumbnails/m3/"), "{url}");
    assert_eq!(s.mentor("m3").await.thumbnail.as_deref(), Some(url));
    let (st, _, body) = s.fetch(url, None).await;
    assert_eq!((st, body.as_slice()), (200, &png[..]));
    let (st, v) = post(
        "/upload/vbg",
        form(vec![("body", text(r#"{"mentor": "m3"}"#)), ("background_image", file(png, "bg.png"))]),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["data"]["virtualBackground"].as_str().unwrap().contains("/media/mentor/virtual_backgrounds/m3/"), "{v}");
    let (st, v) =
        post("/upload/thumbnail", form(vec![("body", text(r#"{"mentor": "m1"}"#)), ("thumbnail", file(png, "x.png"))]))
            .await;
    assert_eq!(st, 403, "another's mentor: {v}");
    let (st, v) = post("/upload/thumbnail", form(vec![("thumbnail", file(png, "x.png"))])).await;
    assert_eq!((st, v["data"]["error"].as_str()), (400, Some("invalid_form")), "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mentor_export_is_imported_with_its_media_copied_as_a_tracked_job() {
    if !ffmpeg_installed() {
        return;
    }
    let s = serve().await;
    let tmp = tempfile::tempdir().unwrap();
    let video = tmp.path().join("web.mp4");
    clip(
        &video,
        Some("testsrc2=size=320x240:rate=25"),
        1.5,
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"],
    );
    let video_bytes = std::fs::read(&video).unwrap();
    let vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello.\n";
    // Another deployment's storage: a plain HTTP server.
    let other = {
        let (v, t) = (video_bytes.clone(), vtt.to_string());
        let app = axum::Router::new()
            .route(
                "/v/web.mp4",
                axum::routing::get(move || {
                    let v = v.clone();
                    async move { v }
                }),
            )
            .route(
                "/v/en.vtt",
                axum::routing::get(move || {
                    let t = t.clone();
                    async move { t }
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        port
    };
    let tok = token("u5", &["m5", "m6"]);
    let export = |host: &str| {
        json!({
        "id": "exported-1",
        "mentorInfo": {"name": "Dana", "mentorType": "VIDEO", "thumbnail": ""},
        "subjects": [], "userQuestions": [],
        "questions": [{"_id": "q1", "question": "What is your job?", "paraphrases": ["What do you do?"]}],
        "answers": [
            {"_id": "a1", "question": {"_id": "q1", "question": "What is your job?"}, "transcript": "I fly planes.",
             "status": "COMPLETE", "media": [
                {"type": "video", "tag": "web", "url": format!("http://{host}:{other}/v/web.mp4"), "needsTransfer": true},
                {"type": "subtitles", "tag": "en", "url": format!("http://{host}:{other}/v/en.vtt"), "needsTransfer": true}]},
            {"_id": "a2", "question": {"_id": "off", "question": "_OFF_TOPIC_", "type": "UTTERANCE", "name": "_OFF_TOPIC_"},
             "transcript": "Ask me about flying.", "media": [
                {"type": "video", "tag": "mobile", "url": "https://cdn.example/off.mp4", "needsTransfer": false}]}]})
    };

    // A schema failure names the field and queues nothing.
    let mut broken = export("127.0.0.1");
    broken["answers"][0]["question"].as_object_mut().unwrap().remove("_id");
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/transfer/mentor",
            &tok,
            Some(json!({"mentor": "m5", "mentorExportJson": broken})),
        )
        .await;
    assert_eq!((st, v["data"]["error"].as_str()), (400, Some("invalid_export")), "{v}");
    assert!(
        v["data"]["message"].as_str().unwrap().contains("mentorExportJson.answers[0].question: missing field `_id`"),
        "{v}"
    );

    let (st, v) = s.call(reqwest::Method::POST, "/upload/transfer/mentor", &tok, Some(json!({"mentor": "m5", "mentorExportJson": export("127.0.0.1"), "replacedMentorDataChanges": {"questionChanges": [], "answerChanges": []}}))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["data"]["mentor"].as_str(), v["data"]["status"].as_str()), (Some("m5"), Some("QUEUED")));
    let status_url = format!("/upload{}", v["data"]["statusUrl"].as_str().unwrap());
    assert!(status_url.starts_with("/upload/transfer/status/"), "{status_url}");
    let t = loop {
        let (st, v) = s.call(reqwest::Method::GET, &status_url, &tok, None).await;
        assert_eq!(st, 200, "{v}");
        if matches!(v["data"]["status"].as_str(), Some("DONE" | "FAILED")) {
            break v["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (t["status"].as_str(), t["progress"].as_u64(), t["media_done"].as_u64()),
        (Some("DONE"), Some(100), Some(2)),
        "{t}"
    );
    let m = s.mentor("m5").await;
    assert_eq!(m.name, "Dana");
    let a = m.answers.iter().find(|a| a.question.id == "q1").unwrap();
    assert_eq!(
        (a.transcript.as_str(), a.question.paraphrases.as_slice()),
        ("I fly planes.", &["What do you do?".to_string()][..])
    );
    let web = a.media.iter().find(|x| x.tag == "web").unwrap();
    assert!(web.url.starts_with(&format!("{}/media/videos/m5/q1/web.mp4", s.base)), "{web:?}");
    assert_eq!(s.fetch(&web.url, None).await.2, video_bytes, "the copy is the original's bytes");
    let subs = a.media.iter().find(|x| x.tag == "en").unwrap();
    assert_eq!(s.fetch(&subs.url, None).await.2, vtt.as_bytes());
    let off = m.answers.iter().find(|a| a.question.id == "off").unwrap();
    assert_eq!(off.question.question_type, strato_types::QuestionType::Utterance);
    assert_eq!(off.media[0].url, "https://cdn.example/off.mp4", "media not needing transfer keep their URL");

    // Media on a host that is neither public nor allowed: the transfer fails, says why, and imports nothing.
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/transfer/mentor",
            &tok,
            Some(json!({"mentor": "m6", "mentorExportJson": export("localhost")})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let status_url = format!("/upload{}", v["data"]["statusUrl"].as_str().unwrap());
    let t = loop {
        let (_, v) = s.call(reqwest::Method::GET, &status_url, &tok, None).await;
        if matches!(v["data"]["status"].as_str(), Some("DONE" | "FAILED")) {
            break v["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(t["status"], "FAILED", "{t}");
    assert!(t["errors"][0].as_str().unwrap().contains("--media-transfer-hosts"), "{t}");
    assert!(s.strato.mentors().get("m6").await.is_err(), "nothing imported");
    s.stop().await;
}

/// Word error rate: word-level edit distance over the reference's length, case and punctuation ignored.
fn wer(reference: &str, hypothesis: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| w.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>().to_lowercase())
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (words(reference), words(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut cur = vec![i; h.len() + 1];
        for j in 1..=h.len() {
            let sub = prev[j - 1] + usize::from(r[i - 1] != h[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

fn seconds_of(path: &Path) -> f64 {
    probe(path)["format"]["duration"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoken_answer_is_transcribed_with_subtitles_timed_by_the_model() {
    if !ffmpeg_installed() {
        return;
    }
    let Some(model) = std::env::var_os("STRATO_TEST_WHISPER_DIR").map(PathBuf::from) else {
        eprintln!("SKIPPED: STRATO_TEST_WHISPER_DIR is unset (scripts/test.sh pulls tiny.en and sets it)");
        return;
    };
    if std::process::Command::new("espeak-ng").arg("--version").output().is_err() {
        eprintln!("SKIPPED: espeak-ng is not installed (apt-get install espeak-ng; .ci/run does)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sentences = [
        "My name is Clint Anderson.",
        "I was a nuclear electrician in the Navy.",
        "Now I study computer science at the university.",
    ];
    // Each sentence spoken by espeak-ng, then laid out with known pauses: sentence i starts at `starts[i]`.
    let mut parts = Vec::new();
    for (i, text) in sentences.iter().enumerate() {
        let wav = tmp.path().join(format!("s{i}.wav"));
        let ok = std::process::Command::new("espeak-ng").args(["-s", "150", "-w"]).arg(&wav).arg(text).status();
        assert!(ok.unwrap().success());
        parts.push((wav.clone(), seconds_of(&wav)));
    }
    let mut starts = Vec::new();
    let (mut t, mut filter, mut inputs) = (0.7, String::new(), Vec::new());
    for (i, (wav, len)) in parts.iter().enumerate() {
        starts.push(t);
        let lead = if i == 0 { format!("adelay={}:all=1,", (t * 1000.0) as u64) } else { String::new() };
        let slot = len + 1.2 + if i == 0 { t } else { 0.0 };
        filter.push_str(&format!("[{i}:a]{lead}apad=whole_dur={slot:.3}[a{i}];"));
        inputs.push(wav.clone());
        t += len + 1.2;
    }
    filter.push_str(&format!(
        "{}concat=n={}:v=0:a=1[a]",
        (0..parts.len()).map(|i| format!("[a{i}]")).collect::<String>(),
        parts.len()
    ));
    let video = tmp.path().join("spoken.mp4");
    let mut c = std::process::Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-y"]);
    for w in &inputs {
        c.arg("-i").arg(w);
    }
    c.args(["-f", "lavfi", "-i", &format!("testsrc2=size=640x360:rate=25:duration={t:.3}")]);
    c.args(["-filter_complex", &filter, "-map", &format!("{}:v", inputs.len()), "-map", "[a]"]);
    c.args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]).arg(&video);
    assert!(c.status().unwrap().success(), "ffmpeg could not mux the spoken clip");

    let s = serve_with(Some(strato_media::whisper::loader(model, Some("en".into())))).await;
    let mut mentor: Mentor = serde_json::from_value(json!({"id": "m7"})).unwrap();
    let mut studied = answer("q2", "What do you study?", "Computer science.");
    studied.status = strato_types::AnswerStatus::Complete;
    mentor.answers = vec![answer("q1", "Tell me about yourself.", ""), studied];
    s.strato.mentors().put("m7", mentor).await.unwrap();
    let tok = token("u7", &["m7"]);
    let key = s.upload_file(&tok, &video).await;
    let (st, v) = s
        .call(
            reqwest::Method::POST,
            "/upload/answer",
            &tok,
            Some(json!({"mentor": "m7", "question": "q1", "video": key})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let names: Vec<&str> =
        v["data"]["taskList"].as_array().unwrap().iter().map(|t| t["task_name"].as_str().unwrap()).collect();
    assert!(names.contains(&"transcribing"), "{names:?}");
    let done = s.wait(&tok, v["data"]["statusUrl"].as_str().unwrap()).await;
    assert_eq!(done["status"], "DONE", "{done}");

    let reference = sentences.join(" ");
    let m = s.mentor("m7").await;
    let a = m.answers.iter().find(|a| a.question.id == "q1").unwrap();
    let e = wer(&reference, &a.transcript);
    assert!(e <= 0.15, "word error rate {e:.3}: {:?} for {reference:?}", a.transcript);
    let subs = a.media.iter().find(|x| x.media_type == "subtitles").expect("subtitles");
    let vtt = subs.vtt_text.clone().unwrap();
    strato_media::vtt::validate(&vtt).unwrap();
    assert_eq!(s.fetch(&subs.url, None).await.2, vtt.as_bytes(), "the served file is the recorded text");
    let cue_starts: Vec<f64> =
        vtt.lines().filter_map(|l| l.split_once(" --> ").and_then(|(a, _)| strato_media::vtt::timestamp(a))).collect();
    for (i, start) in starts.iter().enumerate() {
        let nearest = cue_starts.iter().map(|c| (c - start).abs()).fold(f64::MAX, f64::min);
        assert!(
            nearest <= 1.0,
            "sentence {i} is spoken at {start:.2} s; the nearest cue starts {nearest:.2} s away: {vtt}"
        );
    }
    for line in vtt.lines().filter(|l| !l.contains("-->") && !l.is_empty() && *l != "WEBVTT") {
        assert!(line.chars().count() <= 42, "a line of readable length: {line:?}");
    }
    // The transcript changed, so the mentor's classifier is retrained (queued with the mentor's update).
    let jobs = s.strato.store().queue().list(&Default::default()).await.unwrap();
    let training: Vec<_> = jobs.iter().filter(|j| j.kind.as_str() == "train_mentor").collect();
    assert_eq!(training.len(), 1, "{jobs:?}");
    assert_eq!(training[0].resource.as_ref().map(|r| r.id.as_str()), Some("m7"));
    s.stop().await;
}
