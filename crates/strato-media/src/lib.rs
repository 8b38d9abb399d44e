//! Media steps for mentor answer videos (issue 26), run by Strato instead of MentorPal's upload Lambdas:
//! `ffprobe` and `ffmpeg` from the distribution's packages, run as supervised child processes (`process.rs`:
//! progress from `-progress`, a time limit, the process group killed and temporary files removed on cancel, crash
//! or drop; no environment passed on), what an upload must be (`probe.rs`: a video track, at least a second), and
//! the renditions (`renditions.rs`: web, mobile, trim, thumbnail, and VP9 with alpha for virtual backgrounds).
//!
//! Media steps run as durable jobs on the `media` queue (`jobs.rs`: `media.render`), registered with the service by
//! [`MediaSlot::registrar`]. Still to come: the workflow task resources, the upload API, transcription.

pub mod jobs;
pub mod probe;
pub mod process;
pub mod renditions;

pub use probe::{Probe, Stream};
pub use process::{Progress, Tools};
pub use renditions::{Rendition, RenditionOptions};

/// Where the composition root's registration leaves the media tools, and what it registers.
#[derive(Clone, Default)]
pub struct MediaSlot;

impl MediaSlot {
    /// The registration: the `media.render` job kind (on the `media` queue) over the service's blob storage.
    pub fn registrar(tools: Tools) -> impl FnOnce(&mut strato_service::Registration<'_>) + Send + 'static {
        move |r| {
            r.workers.add(jobs::RenderWorker::new(r.blobs.clone(), tools));
        }
    }
}

/// Why a media step failed: each a stable code and a message that says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The file is not audio or video ffprobe can read (or it is cut off).
    #[error("the file is not a video ffmpeg can read: {0}")]
    NotMedia(String),
    /// The upload has no video track.
    #[error("the upload has no video track (an answer must be a video)")]
    NoVideo,
    /// The upload is shorter than a second.
    #[error("the video lasts {0:.2} s; an answer must last at least 1 s")]
    TooShort(f64),
    /// A trim outside the video or ending before it starts.
    #[error("invalid trim: {0}")]
    InvalidTrim(String),
    /// ffmpeg or ffprobe failed (its exit status and the end of what it wrote).
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// The exit status.
        status: String,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The step ran past its time limit; its processes were killed.
    #[error("{tool} ran past its time limit of {seconds} s and was stopped")]
    TimedOut {
        /// `ffmpeg` or `ffprobe`.
        tool: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// ffmpeg or ffprobe is not installed where configured.
    #[error("{0} could not be started (is ffmpeg installed and on PATH?): {1}")]
    Missing(&'static str, std::io::Error),
    /// Reading or writing the step's files.
    #[error("media files: {0}")]
    Io(#[from] std::io::Error),
}

impl MediaError {
    /// The stable code of the error, for APIs and task errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotMedia(_) => "not_media",
            Self::NoVideo => "no_video_track",
            Self::TooShort(_) => "too_short",
            Self::InvalidTrim(_) => "invalid_trim",
            Self::Failed { .. } => "ffmpeg_failed",
            Self::TimedOut { .. } => "timed_out",
            Self::Missing(..) => "ffmpeg_missing",
            Self::Io(_) => "io",
        }
    }
}
