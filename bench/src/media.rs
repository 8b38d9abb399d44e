//! `strato-bench media --clip FILE --whisper DIR [--trim START-END] [--runs N]`: one answer upload end to end
//! (probe, trim, web and mobile renditions, thumbnail, transcript and subtitles, the mentor's update) through the
//! shipped workflow on SQLite, against the same work done bare in the same run: each ffmpeg command Strato's steps
//! run (the same arguments, started directly, one after another) and the Whisper model called directly on the
//! extracted audio. One JSON line per run: `strato_s`, `bare_ffmpeg_s` (per command too), `bare_transcribe_s`,
//! `overhead` = strato_s / (bare_ffmpeg_s + bare_transcribe_s) − 1.
//!
//! Steps run one at a time (`media=1`, the default), as the bare commands do. The model is loaded before timing in
//! both (a serving process loads it on its first upload).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use strato_media::renditions::{arguments, Rendition, RenditionOptions};
use strato_media::upload::{Trim, UploadStatus};
use strato_media::{AnswerUpload, MediaOptions, MediaSlot, Probe, Tools};
use strato_service::{QueueConcurrency, Strato, StratoOptions, WorkerPoolOptions};

fn ffmpeg(args: &[String]) -> Result<f64> {
    let t = Instant::now();
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
        .args(args)
        .output()
        .context("running ffmpeg")?;
    if !out.status.success() {
        bail!("ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The steps' ffmpeg commands run bare: seconds per command.
async fn bare(clip: &Path, trim: Trim, dir: &Path, tools: &Tools) -> Result<(Vec<(&'static str, f64)>, PathBuf)> {
    let probe = Probe::of(tools, clip).await.map_err(|e| anyhow!("{e}"))?;
    let mut times = Vec::new();
    let original = dir.join("original.mp4");
    let a = arguments(
        Rendition::Trim { start: trim.start, end: trim.end },
        clip,
        &probe,
        RenditionOptions::default(),
        &original,
    )
    .map_err(|e| anyhow!("{e}"))?;
    times.push(("trim", ffmpeg(&a)?));
    let probe = Probe::of(tools, &original).await.map_err(|e| anyhow!("{e}"))?;
    let opts = RenditionOptions::default();
    for (name, r, file) in [
        ("web", Rendition::Web, "web.mp4"),
        ("mobile", Rendition::Mobile, "mobile.mp4"),
        ("thumbnail", Rendition::Thumbnail { at: 1.0 }, "thumbnail.jpg"),
    ] {
        let a = arguments(r, &original, &probe, opts, &dir.join(file)).map_err(|e| anyhow!("{e}"))?;
        times.push((name, ffmpeg(&a)?));
    }
    let pcm = dir.join("audio.f32");
    let a: Vec<String> = ["-i", &original.to_string_lossy(), "-vn", "-ac", "1", "-ar", "16000", "-f", "f32le"]
        .iter()
        .map(|s| s.to_string())
        .chain([pcm.to_string_lossy().to_string()])
        .collect();
    times.push(("audio", ffmpeg(&a)?));
    Ok((times, pcm))
}

pub async fn run(args: &[String]) -> Result<()> {
    let mut clip = None;
    let mut whisper = None;
    let mut trim = Trim { start: 0.0, end: f64::MAX };
    let mut runs = 1;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--clip" => clip = it.next().map(PathBuf::from),
            "--whisper" => whisper = it.next().map(PathBuf::from),
            "--trim" => {
                let (s, e) = it.next().and_then(|v| v.split_once('-')).context("--trim START-END")?;
                trim = Trim { start: s.parse()?, end: e.parse()? };
            }
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let clip = clip.context("--clip FILE")?;
    let whisper = whisper.context("--whisper DIR")?;
    let tools = Tools { timeout: Duration::from_secs(3600), ..Tools::default() };
    let probe = Probe::of(&tools, &clip).await.map_err(|e| anyhow!("{e}"))?;
    if trim.end > probe.duration {
        trim.end = probe.duration;
    }
    let model = strato_whisper::Whisper::load(&whisper)?;
    for run in 0..runs {
        // 1. Bare.
        let dir = tempfile::tempdir()?;
        let (times, pcm) = bare(&clip, trim, dir.path(), &tools).await?;
        let bytes = std::fs::read(&pcm)?;
        let samples: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let t = Instant::now();
        let transcript = model.transcribe(&samples, &Default::default(), &mut |_| true)?;
        let bare_transcribe = t.elapsed().as_secs_f64();
        let _vtt = strato_whisper::webvtt(&transcript.segments);
        let bare_ffmpeg: f64 = times.iter().map(|(_, s)| s).sum();

        // 2. Strato: the same upload through the shipped workflow.
        let data = tempfile::tempdir()?;
        let mut opts = StratoOptions::new(data.path());
        opts.embedding_model = Some("/nonexistent/strato-bench-model".into());
        let functions = strato_functions::FunctionsSlot::default();
        let workflows = strato_workflows::WorkflowsSlot::default();
        let media = MediaSlot::default();
        let media_opts = MediaOptions {
            tools: tools.clone(),
            transcriber: Some(strato_media::whisper::loader(whisper.clone(), Some("en".into()))),
            ..Default::default()
        };
        let strato = Strato::builder(opts)
            .register(functions.registrar(strato_functions::FunctionsOptions::new(data.path().join("functions"))))
            .register(workflows.registrar(functions.clone()))
            .register(media.registrar(media_opts, workflows.clone()))
            .open()
            .await
            .map_err(|e| anyhow!(e.message))?;
        let m = media.get().context("media not registered")?;
        m.install_machine().await.map_err(|e| anyhow!("{e}"))?;
        m.transcriber().await.map_err(|e| anyhow!("{e}"))?;
        let mentor: strato_types::Mentor = serde_json::from_value(json!({"id": "bench", "answers": [
            {"id": "a1", "question": {"id": "q1", "text": "Who are you?"}},
            {"id": "a2", "question": {"id": "q2", "text": "What do you do?"}}]}))?;
        strato.mentors().put("bench", mentor).await.map_err(|e| anyhow!(e.message))?;
        let file = tokio::fs::File::open(&clip).await?;
        let body = tokio_util_stream(file);
        strato.files().put("uploads/bench/clip", body).await.map_err(|e| anyhow!(e.message))?;
        let pool = strato.start_workers(WorkerPoolOptions {
            queues: QueueConcurrency::parse("default=1,workflows=4,media=1,media-control=2")?,
            poll_interval: Duration::from_millis(200),
            ..Default::default()
        });
        let req = AnswerUpload {
            mentor: "bench".into(),
            question: "q1".into(),
            video: "uploads/bench/clip".into(),
            trim: Some(trim),
            has_edited_transcript: false,
            maintain_original_aspect_ratio: false,
            generate_thumbnail: true,
            is_vbg_video: false,
            external_video_ids: None,
            retrain: Some(false),
        };
        let t = Instant::now();
        let u = m.start_upload(req, "bench").await.map_err(|e| anyhow!("{e}"))?;
        let done = loop {
            let u = m.uploads().get(&u.id).await.map_err(|e| anyhow!("{e}"))?;
            if u.status != UploadStatus::InProgress {
                break u;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let strato_s = t.elapsed().as_secs_f64();
        pool.shutdown().await;
        strato.close().await;
        if done.status != UploadStatus::Done {
            bail!("the upload ended {:?}: {:?}", done.status, done.error);
        }
        let per: serde_json::Map<String, serde_json::Value> =
            times.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        println!(
            "{}",
            json!({"bench": "media_end_to_end", "run": run, "clip_s": probe.duration, "trim": [trim.start, trim.end],
                "strato_s": strato_s, "bare_ffmpeg_s": bare_ffmpeg, "bare_ffmpeg": per,
                "bare_transcribe_s": bare_transcribe, "overhead": strato_s / (bare_ffmpeg + bare_transcribe) - 1.0,
                "words": transcript.text.split_whitespace().count(),
                "strato_words": done.results.transcript.as_deref().unwrap_or("").split_whitespace().count()})
        );
    }
    Ok(())
}

/// A file as a stream of chunks (what `Files::put` takes).
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<bytes::Bytes, String>> + Send + Unpin + 'static {
    use futures::TryStreamExt;
    tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map_err(|e| e.to_string())
}
