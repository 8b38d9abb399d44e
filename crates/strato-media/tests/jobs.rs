//! `media.render` through the durable job queue, with the real ffmpeg and the service's blob storage: a stored
//! upload becomes its web rendition at its key (progress published, the input and output probed in the result);
//! a stored file that is not a video fails at once with its reason, and nothing is written. Skips, saying so,
//! where ffmpeg is not installed.

use std::time::Duration;

use strato_media::jobs::{RenderArgs, RenditionSpec};
use strato_media::{MediaOptions, MediaSlot, Tools};
use strato_service::{Strato, StratoOptions, WorkerPoolOptions};
use strato_types::{JobStatus, NewJob};

fn ffmpeg_installed() -> bool {
    let ok = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: ffmpeg is not installed (apt-get install ffmpeg; .ci/run does)");
    }
    ok
}

async fn ended(s: &Strato, id: &str) -> strato_types::JobRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let j = s.store().queue().get(id).await.unwrap().unwrap();
        if matches!(j.status, JobStatus::Success | JobStatus::Failure | JobStatus::Cancelled) {
            return j;
        }
        assert!(std::time::Instant::now() < deadline, "{j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_upload_is_rendered_on_the_media_queue() {
    if !ffmpeg_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("answer.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=25:duration=2",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=duration=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let mut opts = StratoOptions::new(dir.path());
    opts.embedding_model = Some("/nonexistent/strato-test-model".into());
    let tools = Tools { timeout: Duration::from_secs(120), threads: 2, ..Tools::default() };
    // Without the workflows capability only the render kind is registered.
    let media = MediaSlot::default();
    let opts_media = MediaOptions { tools, ..Default::default() };
    let strato = Strato::builder(opts)
        .register(media.registrar(opts_media, strato_workflows::WorkflowsSlot::default()))
        .open()
        .await
        .unwrap();
    assert!(media.get().is_none(), "no upload processing without workflows");
    let blobs = strato.blobs();
    blobs.put("uploads/u1/abc", bytes::Bytes::from(std::fs::read(&clip).unwrap())).await.unwrap();
    blobs.put("uploads/u1/text", bytes::Bytes::from_static(b"not a video")).await.unwrap();
    let pool = strato.start_workers(WorkerPoolOptions {
        queues: strato_service::QueueConcurrency::parse("default=1,media=1").unwrap(),
        poll_interval: Duration::from_millis(100),
        ..Default::default()
    });

    let args = RenderArgs {
        input: "uploads/u1/abc".into(),
        output: "videos/m1/q1/web.mp4".into(),
        rendition: RenditionSpec::Web,
        maintain_original_aspect_ratio: false,
    };
    let job = strato.store().queue().enqueue(NewJob::of(&args).unwrap()).await.unwrap().job;
    assert_eq!(job.queue.as_str(), "media");
    let done = ended(&strato, &job.id).await;
    assert_eq!(done.status, JobStatus::Success, "{done:?}");
    assert_eq!(done.progress, 100);
    let result = done.result.unwrap();
    assert_eq!(
        (result["probe"]["video"]["width"].as_u64(), result["probe"]["video"]["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(result["input"]["video"]["width"], 1920);
    let stored = blobs.get("videos/m1/q1/web.mp4").await.unwrap();
    assert_eq!(stored.len() as u64, result["size"].as_u64().unwrap());
    assert_eq!(&stored[4..8], b"ftyp", "an MP4");

    let bad = RenderArgs { input: "uploads/u1/text".into(), output: "videos/m1/q2/web.mp4".into(), ..args.clone() };
    let job = strato.store().queue().enqueue(NewJob::of(&bad).unwrap()).await.unwrap().job;
    let done = ended(&strato, &job.id).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Failure, 1), "not a video: no retry");
    assert!(done.error.as_deref().unwrap().starts_with("not_media"), "{:?}", done.error);
    assert!(!blobs.exists("videos/m1/q2/web.mp4").await.unwrap(), "nothing written");
    pool.shutdown().await;
}
