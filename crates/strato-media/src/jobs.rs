//! Media steps as durable jobs on the `media` queue: `media.render` makes one rendition of a stored video. The input
//! is streamed from blob storage into a temporary directory and the output streamed back (never whole in memory);
//! the output's key is replaced only once it is complete, so a retried step overwrites its own output and nothing
//! else. Progress (0-100) goes to the job's heartbeat; a cancel request, the time limit or a worker that stops kills
//! ffmpeg's process group, and the temporary directory goes with the step.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_blob::BlobStore;
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, QueueName};
use tokio::io::AsyncWriteExt;

use crate::renditions::{render, Rendition, RenditionOptions};
use crate::{MediaError, Probe, Tools};

/// The queue media steps run on (one at a time per process by default: an encode uses every core it gets).
pub const MEDIA: QueueName = QueueName::new("media");

/// A rendition, as a job names it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RenditionSpec {
    /// The web MP4.
    Web,
    /// The mobile MP4.
    Mobile,
    /// VP9 WebM keeping alpha.
    WebAlpha,
    /// The original cut to `[start, end]` seconds.
    Trim { start: f64, end: f64 },
    /// A JPEG of the frame at `at` seconds.
    Thumbnail { at: f64 },
}

impl From<RenditionSpec> for Rendition {
    fn from(s: RenditionSpec) -> Self {
        match s {
            RenditionSpec::Web => Rendition::Web,
            RenditionSpec::Mobile => Rendition::Mobile,
            RenditionSpec::WebAlpha => Rendition::WebAlpha,
            RenditionSpec::Trim { start, end } => Rendition::Trim { start, end },
            RenditionSpec::Thumbnail { at } => Rendition::Thumbnail { at },
        }
    }
}

/// The `media.render` job: one rendition of the video at `input` (a blob key) written to `output`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderArgs {
    /// The stored video.
    pub input: String,
    /// Where the rendition goes.
    pub output: String,
    /// Which rendition.
    pub rendition: RenditionSpec,
    /// Keep the input's aspect ratio (web).
    #[serde(default)]
    pub maintain_original_aspect_ratio: bool,
}

impl JobArgs for RenderArgs {
    const KIND: JobKind = JobKind::new("media.render");

    fn defaults() -> JobDefaults {
        JobDefaults { queue: MEDIA, timeout: Duration::from_secs(1800), max_attempts: 3, priority: 0 }
    }
}

/// Runs `media.render` jobs.
pub struct RenderWorker {
    blobs: BlobStore,
    tools: Tools,
}

impl RenderWorker {
    /// A worker reading and writing `blobs`, running `tools`.
    pub fn new(blobs: BlobStore, tools: Tools) -> Self {
        Self { blobs, tools }
    }
}

/// A step's failure as the job sees it: what the input is wrong about is permanent (retrying changes nothing);
/// storage and ffmpeg failures may pass.
pub(crate) fn job_error(e: MediaError) -> JobError {
    match e {
        MediaError::NotMedia(_) | MediaError::NoVideo | MediaError::TooShort(_) | MediaError::InvalidTrim(_) => {
            JobError::Permanent(format!("{}: {e}", e.code()))
        }
        other => JobError::Retryable(format!("{}: {other}", other.code())),
    }
}

pub(crate) fn blob_error(e: strato_blob::BlobError) -> JobError {
    match e {
        strato_blob::BlobError::NotFound(k) => JobError::Permanent(format!("not_found: no stored file {k:?}")),
        other => JobError::Retryable(format!("storage: {other}")),
    }
}

/// Streams the blob at `key` into the file `to`.
pub(crate) async fn download(blobs: &BlobStore, key: &str, to: &Path) -> Result<u64, JobError> {
    let mut d = blobs.get_stream(key, None).await.map_err(blob_error)?;
    let mut file = tokio::fs::File::create(to).await.map_err(|e| JobError::Retryable(e.to_string()))?;
    let mut n = 0;
    while let Some(chunk) = d.stream.next().await {
        let chunk = chunk.map_err(blob_error)?;
        n += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(|e| JobError::Retryable(e.to_string()))?;
    }
    file.flush().await.map_err(|e| JobError::Retryable(e.to_string()))?;
    Ok(n)
}

/// Streams the file `from` to the blob at `key` (replacing it once whole).
pub(crate) async fn upload(blobs: &BlobStore, from: &Path, key: &str) -> Result<u64, JobError> {
    let file = tokio::fs::File::open(from).await.map_err(|e| JobError::Retryable(e.to_string()))?;
    let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map_err(|e| e.to_string());
    blobs.put_stream(key, body, None).await.map_err(blob_error)
}

#[async_trait]
impl Worker for RenderWorker {
    type Args = RenderArgs;

    async fn work(&self, a: RenderArgs, _: &JobRecord, ctx: &JobContext) -> Result<Value, JobError> {
        let dir = tempfile::tempdir().map_err(|e| JobError::Retryable(e.to_string()))?;
        let input = dir.path().join("input");
        download(&self.blobs, &a.input, &input).await?;
        let probe = Probe::of(&self.tools, &input).await.map_err(job_error)?;
        let ext = match a.rendition {
            RenditionSpec::WebAlpha => "webm",
            RenditionSpec::Thumbnail { .. } => "jpg",
            RenditionSpec::Trim { .. } if probe.video.as_ref().is_some_and(|v| v.codec == "vp9" && v.alpha) => "webm",
            _ => "mp4",
        };
        let output = dir.path().join(format!("output.{ext}"));
        let opts = RenditionOptions { maintain_original_aspect_ratio: a.maintain_original_aspect_ratio };
        let mut report = |p: crate::Progress| {
            if let Some(f) = p.fraction {
                ctx.set_progress((f * 99.0) as i32);
            }
        };
        let run = render(&self.tools, a.rendition.into(), &input, &probe, opts, &output, &mut report);
        // A cancel request or the worker stopping ends the step here: dropping the run kills ffmpeg's group.
        let stopped = async {
            while !ctx.should_stop() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let made = tokio::select! {
            r = run => r.map_err(job_error)?,
            _ = stopped => return Err(JobError::Retryable("the step was stopped; ffmpeg was killed".into())),
        };
        let size = upload(&self.blobs, &output, &a.output).await?;
        ctx.set_progress(100);
        Ok(json!({"output": a.output, "size": size, "probe": made, "input": probe}))
    }
}
