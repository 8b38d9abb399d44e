//! The upload processor's steps as `media.step` jobs, each a Task resource of the shipped workflow
//! (`arn:aws:states:::strato:media.<step>.sync`): probe, trim, transcodeWeb, transcodeMobile, thumbnail, transcribe,
//! finish, markFailed.
//!
//! A step reads the upload's document for everything it needs, so the workflow passes only the upload's id. It
//! skips its work when its task was cancelled, marks the task `IN_PROGRESS` with its job, reports ffmpeg's progress
//! into the task, and writes its output under the answer's storage layout (`videos/<mentor>/<question>/…`), replaced
//! only once whole: a retried step overwrites its own outputs and nothing else. Failures are the job's (the
//! workflow's Retry and Catch decide what follows); the task is marked `FAILED` by `markFailed`, with the reason.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha1::Digest;
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, QueueName};

use crate::jobs::{blob_error, download, job_error, upload, MEDIA};
use crate::renditions::{render, Rendition, RenditionOptions};
use crate::service::MediaService;
use crate::upload::{Made, TaskStatus, Upload, UploadStatus, TASK_MOBILE, TASK_TRANSCRIBE, TASK_TRIM, TASK_WEB};
use crate::{MediaError, Probe};

/// The queue of the steps that only write records (finish, markFailed): never behind an encode.
pub const MEDIA_CONTROL: QueueName = QueueName::new("media-control");

/// A step of the upload processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// Checks the upload (a video track, at least 1 s), hashes it, and keeps it as the original unless trimmed.
    Probe,
    /// Cuts the upload to the trim, as the original.
    Trim,
    /// The web rendition (and VP9 WebM with alpha for virtual-background videos).
    TranscodeWeb,
    /// The mobile rendition.
    TranscodeMobile,
    /// The frame at 1 s, as a JPEG.
    Thumbnail,
    /// The transcript and subtitles, by the Whisper model in this process.
    Transcribe,
    /// Writes the answer's media and transcript to the mentor, in one transaction.
    Finish,
    /// Marks the upload and its unfinished tasks failed, with the caught error.
    MarkFailed,
}

impl Step {
    /// Every step, with its resource's action name.
    pub const ALL: [(Step, &'static str); 8] = [
        (Step::Probe, "media.probe"),
        (Step::Trim, "media.trim"),
        (Step::TranscodeWeb, "media.transcodeWeb"),
        (Step::TranscodeMobile, "media.transcodeMobile"),
        (Step::Thumbnail, "media.thumbnail"),
        (Step::Transcribe, "media.transcribe"),
        (Step::Finish, "media.finish"),
        (Step::MarkFailed, "media.markFailed"),
    ];

    /// The task it reports into, if any.
    fn task(self) -> Option<&'static str> {
        match self {
            Step::Trim => Some(TASK_TRIM),
            Step::TranscodeWeb => Some(TASK_WEB),
            Step::TranscodeMobile => Some(TASK_MOBILE),
            Step::Transcribe => Some(TASK_TRANSCRIBE),
            _ => None,
        }
    }
}

/// The `media.step` job: one step of one upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepArgs {
    /// The upload's id.
    pub upload: String,
    /// Which step.
    pub step: Step,
    /// What failed (`markFailed`: the workflow's caught error, `{Error, Cause}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl JobArgs for StepArgs {
    const KIND: JobKind = JobKind::new("media.step");

    fn defaults() -> JobDefaults {
        // One attempt: the workflow's Retry decides (with its own backoff) whether a step runs again.
        JobDefaults { queue: MEDIA, timeout: Duration::from_secs(1800), max_attempts: 1, priority: 0 }
    }
}

/// The job a step's Task state submits, from its parameters (`{"Upload": id}`, and `Error` for markFailed).
pub fn step_job(step: Step, params: &Value) -> Result<strato_types::NewJob, String> {
    let upload = params
        .get("Upload")
        .and_then(Value::as_str)
        .ok_or("media steps need Parameters.Upload, the upload's id (a string)")?
        .to_string();
    let args = StepArgs { upload, step, error: params.get("Error").cloned() };
    let mut job = strato_types::NewJob::of(&args).map_err(|e| e.to_string())?;
    if matches!(step, Step::Finish | Step::MarkFailed) {
        job.queue = MEDIA_CONTROL;
    }
    job.key = Some(format!("media:{}:{}", args.upload, serde_json::to_value(step).unwrap_or_default()));
    Ok(job)
}

/// Runs `media.step` jobs.
pub struct StepWorker {
    media: MediaService,
}

impl StepWorker {
    /// A worker of `media`.
    pub fn new(media: MediaService) -> Self {
        Self { media }
    }
}

fn retryable(e: MediaError) -> JobError {
    job_error(e)
}

#[async_trait]
impl Worker for StepWorker {
    type Args = StepArgs;

    async fn work(&self, a: StepArgs, job: &JobRecord, ctx: &JobContext) -> Result<Value, JobError> {
        let m = &self.media;
        let upload = m.uploads().get(&a.upload).await.map_err(|e| match e {
            MediaError::UploadNotFound(_) => JobError::Permanent(format!("upload_not_found: {e}")),
            e => retryable(e),
        })?;
        if let Some(task) = a.step.task() {
            match upload.task(task).map(|t| t.status) {
                Some(TaskStatus::Cancelled) => return Ok(json!({"skipped": "the task was cancelled"})),
                None => return Ok(json!({"skipped": format!("the upload has no {task} task")})),
                _ => {}
            }
            m.uploads()
                .update(&a.upload, |u| {
                    let Some(t) = u.tasks.iter_mut().find(|t| t.task_name == task) else { return false };
                    t.status = TaskStatus::InProgress;
                    t.progress = 0;
                    t.error = None;
                    t.job = Some(job.id.clone());
                    true
                })
                .await
                .map_err(retryable)?;
        } else if upload.status == UploadStatus::Cancelled && a.step != Step::MarkFailed {
            return Ok(json!({"skipped": "the upload was cancelled"}));
        }
        let run = self.run(&a, &upload, ctx);
        // A cancel request or the worker stopping ends the step here: dropping the run kills ffmpeg's group.
        let stopped = async {
            while !ctx.should_stop() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let out = tokio::select! {
            r = run => r?,
            _ = stopped => return Err(JobError::Retryable("the step was stopped; ffmpeg was killed".into())),
        };
        if let Some(task) = a.step.task() {
            m.uploads().set_task(&a.upload, task, TaskStatus::Done, Some(100), None).await.map_err(retryable)?;
        }
        ctx.set_progress(100);
        Ok(out)
    }
}

/// Publishes a step's progress into its task at most once a second (and the job's heartbeat at every report).
struct Reporter<'a> {
    media: &'a MediaService,
    upload: &'a str,
    task: Option<&'static str>,
    ctx: &'a JobContext,
    last: Option<Instant>,
}

impl Reporter<'_> {
    fn report(&mut self, fraction: f64) {
        let pct = (fraction.clamp(0.0, 1.0) * 99.0) as u8;
        self.ctx.set_progress(pct as i32);
        let due = self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if let (Some(task), true) = (self.task, due) {
            self.last = Some(Instant::now());
            let (uploads, id) = (self.media.uploads().clone(), self.upload.to_string());
            // Off the step's path: a slow store never slows the encode.
            tokio::spawn(async move {
                let _ = uploads.set_task(&id, task, TaskStatus::InProgress, Some(pct), None).await;
            });
        }
    }
}

/// SHA-1 (hex) of a file.
fn sha1_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = sha1::Sha1::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn io(e: std::io::Error) -> JobError {
    JobError::Retryable(format!("io: {e}"))
}

/// The original's extension: WebM stays WebM (it may carry alpha), everything else becomes MP4.
fn original_ext(probe: &Probe) -> &'static str {
    if probe.format.contains("webm") || probe.video.as_ref().is_some_and(|v| v.codec == "vp9" || v.codec == "vp8") {
        "webm"
    } else {
        "mp4"
    }
}

impl StepWorker {
    async fn run(&self, a: &StepArgs, u: &Upload, ctx: &JobContext) -> Result<Value, JobError> {
        let m = &self.media;
        let dir = tempfile::tempdir().map_err(io)?;
        let mut rep = Reporter { media: m, upload: &a.upload, task: a.step.task(), ctx, last: None };
        match a.step {
            Step::Probe => {
                let input = dir.path().join("upload");
                download(m.blobs(), &u.video_blob(), &input).await?;
                let probe = Probe::of(m.tools(), &input).await.map_err(job_error)?;
                probe.check_answer().map_err(job_error)?;
                if let Some(t) = u.trim {
                    let bad = !(t.start.is_finite() && t.end.is_finite())
                        || t.start < 0.0
                        || t.end <= t.start
                        || t.start >= probe.duration;
                    if bad {
                        let why = format!("{}-{} s of a {:.2} s video", t.start, t.end, probe.duration);
                        return Err(job_error(MediaError::InvalidTrim(why)));
                    }
                }
                let p = input.clone();
                let sha1 = tokio::task::spawn_blocking(move || sha1_of(&p)).await.map_err(|e| io(e.into()))?;
                let sha1 = sha1.map_err(io)?;
                let probe_json = serde_json::to_value(&probe).unwrap_or_default();
                let mut original = None;
                if u.trim.is_none() {
                    let key = format!("{}original.{}", u.staging(), original_ext(&probe));
                    let size = upload(m.blobs(), &input, &key).await?;
                    original =
                        Some(Made { key, size, duration: Some(probe.duration), probe: Some(probe_json.clone()) });
                }
                let (sha, pj) = (sha1.clone(), probe_json.clone());
                m.uploads()
                    .update(&a.upload, |u| {
                        u.results.sha1 = Some(sha.clone());
                        u.results.probe = Some(pj.clone());
                        if let Some(o) = &original {
                            u.results.files.insert("original".into(), o.clone());
                        }
                        true
                    })
                    .await
                    .map_err(retryable)?;
                Ok(json!({"sha1": sha1, "probe": probe_json}))
            }
            Step::Trim => {
                let t = u.trim.ok_or_else(|| JobError::Permanent("invalid_trim: the upload has no trim".into()))?;
                let input = dir.path().join("upload");
                download(m.blobs(), &u.video_blob(), &input).await?;
                let probe = Probe::of(m.tools(), &input).await.map_err(job_error)?;
                let ext = original_ext(&probe);
                let output = dir.path().join(format!("original.{ext}"));
                let r = Rendition::Trim { start: t.start, end: t.end };
                let mut cb = |p: crate::Progress| rep.report(p.fraction.unwrap_or(0.0));
                let made = render(m.tools(), r, &input, &probe, RenditionOptions::default(), &output, &mut cb)
                    .await
                    .map_err(job_error)?;
                let key = format!("{}original.{ext}", u.staging());
                self.store_file(a, "original", &output, key, Some(&made)).await
            }
            Step::TranscodeWeb | Step::TranscodeMobile | Step::Thumbnail => {
                let original = u.results.files.get("original").ok_or_else(|| {
                    JobError::Permanent("no_original: the upload's original is missing (probe or trim first)".into())
                })?;
                let input = dir.path().join("original");
                download(m.blobs(), &original.key, &input).await?;
                let probe = Probe::of(m.tools(), &input).await.map_err(job_error)?;
                let opts = RenditionOptions { maintain_original_aspect_ratio: u.maintain_original_aspect_ratio };
                let (rendition, name, file) = match a.step {
                    Step::TranscodeWeb => (Rendition::Web, "web", "web.mp4"),
                    Step::TranscodeMobile => (Rendition::Mobile, "mobile", "mobile.mp4"),
                    _ => (Rendition::Thumbnail { at: 1.0f64.min(probe.duration / 2.0) }, "thumbnail", "thumbnail.jpg"),
                };
                let output = dir.path().join(file);
                let alpha = u.is_vbg_video && probe.video.as_ref().is_some_and(|v| v.alpha);
                // The WebM with alpha counts for the first half of the web task's progress when there is one.
                let share = if alpha && a.step == Step::TranscodeWeb { 0.5 } else { 1.0 };
                let mut cb = |p: crate::Progress| rep.report(p.fraction.unwrap_or(0.0) * share);
                let made =
                    render(m.tools(), rendition, &input, &probe, opts, &output, &mut cb).await.map_err(job_error)?;
                let key = format!("{}{file}", u.staging());
                let mut out = self.store_file(a, name, &output, key, Some(&made)).await?;
                if alpha && a.step == Step::TranscodeWeb {
                    let webm = dir.path().join("web.webm");
                    let mut cb = |p: crate::Progress| rep.report(0.5 + p.fraction.unwrap_or(0.0) * 0.5);
                    let made = render(m.tools(), Rendition::WebAlpha, &input, &probe, opts, &webm, &mut cb)
                        .await
                        .map_err(job_error)?;
                    let key = format!("{}web.webm", u.staging());
                    out["web_alpha"] = self.store_file(a, "web_alpha", &webm, key, Some(&made)).await?;
                }
                Ok(out)
            }
            Step::Transcribe => self.transcribe(a, u, dir.path(), &mut rep).await,
            Step::Finish => m.finish(u).await.map_err(|e| match e {
                MediaError::MentorNotFound(_) | MediaError::AnswerNotFound { .. } => {
                    JobError::Permanent(format!("{}: {e}", e.code()))
                }
                e => retryable(e),
            }),
            Step::MarkFailed => {
                let error = a.error.clone().unwrap_or(Value::Null);
                m.mark_failed(&a.upload, &error).await.map_err(retryable)?;
                Ok(json!({"failed": a.upload}))
            }
        }
    }

    /// Streams a made file to `key` and records it in the upload as `name`.
    async fn store_file(
        &self,
        a: &StepArgs,
        name: &str,
        path: &Path,
        key: String,
        made: Option<&Probe>,
    ) -> Result<Value, JobError> {
        let size = upload(self.media.blobs(), path, &key).await?;
        let entry = Made {
            key: key.clone(),
            size,
            duration: made.filter(|p| p.video.is_some()).map(|p| p.duration),
            probe: made.map(|p| serde_json::to_value(p).unwrap_or_default()),
        };
        let e = entry.clone();
        self.media
            .uploads()
            .update(&a.upload, |u| {
                u.results.files.insert(name.to_string(), e.clone());
                true
            })
            .await
            .map_err(retryable)?;
        Ok(serde_json::to_value(entry).unwrap_or_default())
    }

    async fn transcribe(
        &self,
        a: &StepArgs,
        u: &Upload,
        dir: &Path,
        rep: &mut Reporter<'_>,
    ) -> Result<Value, JobError> {
        let m = &self.media;
        let transcriber = m.transcriber().await.map_err(|e| JobError::Permanent(format!("{}: {e}", e.code())))?;
        let original = u
            .results
            .files
            .get("original")
            .ok_or_else(|| JobError::Permanent("no_original: the upload's original is missing".into()))?;
        let input = dir.join("original");
        download(m.blobs(), &original.key, &input).await?;
        let probe = Probe::of(m.tools(), &input).await.map_err(job_error)?;
        let (text, vtt) = if probe.audio.is_none() {
            // A silent answer says nothing: an empty transcript and no subtitles.
            (String::new(), None)
        } else {
            let pcm_path = dir.join("audio.f32");
            let args: Vec<String> = ["-i", &input.to_string_lossy(), "-vn", "-ac", "1", "-ar", "16000", "-f", "f32le"]
                .iter()
                .map(|s| s.to_string())
                .chain([pcm_path.to_string_lossy().to_string()])
                .collect();
            let mut cb = |p: crate::Progress| rep.report(p.fraction.unwrap_or(0.0) * 0.05);
            m.tools().ffmpeg(&args, Some(probe.duration), &mut cb).await.map_err(job_error)?;
            let bytes = tokio::fs::read(&pcm_path).await.map_err(io)?;
            let pcm: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f32>();
            let stop = rep.ctx.clone();
            let t = transcriber.clone();
            let work = tokio::task::spawn_blocking(move || {
                let mut progress = |f: f32| {
                    let _ = tx.send(f);
                    !stop.should_stop()
                };
                t.transcribe(&pcm, &mut progress)
            });
            tokio::pin!(work);
            let out = loop {
                tokio::select! {
                    r = &mut work => break r,
                    Some(f) = rx.recv() => rep.report(0.05 + f as f64 * 0.95),
                }
            };
            let out = out.map_err(|e| JobError::Retryable(format!("transcription stopped: {e}")))?;
            let out = out.map_err(|e| JobError::Retryable(format!("transcription_failed: {e}")))?;
            (out.text, Some(out.vtt))
        };
        let mut made = None;
        if let Some(vtt) = &vtt {
            let key = format!("{}en.vtt", u.staging());
            let size = vtt.len() as u64;
            m.blobs().put(&key, bytes::Bytes::from(vtt.clone())).await.map_err(blob_error)?;
            made = Some(Made { key, size, duration: None, probe: None });
        }
        let (t, v) = (text.clone(), vtt.clone());
        m.uploads()
            .update(&a.upload, |u| {
                u.results.transcript = Some(t.clone());
                u.results.vtt_text = v.clone();
                if let Some(f) = &made {
                    u.results.files.insert("vtt".into(), f.clone());
                }
                true
            })
            .await
            .map_err(retryable)?;
        Ok(json!({"transcript": text, "subtitles": vtt.is_some()}))
    }
}

/// Speech to text, run in a blocking thread: the transcript and its WebVTT subtitles.
pub trait Transcriber: Send + Sync + 'static {
    /// Transcribes 16 kHz mono samples; `progress` gets the fraction done and returns false to stop.
    fn transcribe(&self, pcm_16k: &[f32], progress: &mut dyn FnMut(f32) -> bool) -> Result<Transcription, String>;
}

/// What a [`Transcriber`] made.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcription {
    /// The text.
    pub text: String,
    /// Subtitles, WebVTT, with cues timed by the model.
    pub vtt: String,
}

/// A shared transcriber.
pub type SharedTranscriber = Arc<dyn Transcriber>;
