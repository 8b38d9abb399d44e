//! Media steps for mentor answer videos (issue 26), run by Strato instead of MentorPal's upload Lambdas:
//! `ffprobe` and `ffmpeg` from the distribution's packages, run as supervised child processes (`process.rs`:
//! progress from `-progress`, a time limit, the process group killed and temporary files removed on cancel, crash
//! or drop; no environment passed on), what an upload must be (`probe.rs`: a video track, at least a second), and
//! the renditions (`renditions.rs`: web, mobile, trim, thumbnail, and VP9 with alpha for virtual backgrounds).
//!
//! Media steps run as durable jobs on the `media` queue (`jobs.rs`: `media.render`, one rendition of a stored
//! video; `steps.rs`: `media.step`, the upload processor's steps). An answer upload (`upload.rs`: its document and
//! tasks) runs as an execution of the shipped state machine `strato-upload-processor` (`upload_processor.asl.json`),
//! whose Task states are the steps (`arn:aws:states:::strato:media.<step>.sync`); `service.rs` starts, cancels,
//! finishes (the mentor's update) and fails uploads. Registered with the service by [`MediaSlot::registrar`].

pub mod http;
pub mod jobs;
pub mod probe;
pub mod process;
pub mod renditions;
pub mod service;
pub mod steps;
pub mod transfer;
pub mod upload;
pub mod vtt;
pub mod whisper;

pub use probe::{Probe, Stream};
pub use process::{Progress, Tools};
pub use renditions::{Rendition, RenditionOptions};
pub use service::{AnswerUpload, MediaOptions, MediaService};
pub use steps::{SharedTranscriber, Transcriber, Transcription};

/// Where the composition root's registration leaves the media service, and what it registers.
#[derive(Clone, Default)]
pub struct MediaSlot(std::sync::Arc<std::sync::OnceLock<MediaService>>);

impl MediaSlot {
    /// The registration: the `media.render` and `media.step` job kinds (on the `media` and `media-control`
    /// queues) over the service's store and storage, and (once the workflows capability registered) the steps as
    /// Task resources, waking their tasks when their jobs end.
    pub fn registrar(
        &self,
        opts: MediaOptions,
        workflows: strato_workflows::WorkflowsSlot,
    ) -> impl FnOnce(&mut strato_service::Registration<'_>) + Send + 'static {
        let slot = self.0.clone();
        move |r| {
            r.workers.add(jobs::RenderWorker::new(r.blobs.clone(), opts.tools.clone()));
            let Some(w) = workflows.get() else { return };
            let media = MediaService::new(r.store.clone(), r.blobs.clone(), w.clone(), opts);
            r.workers.add(steps::StepWorker::new(media.clone()));
            r.workers.add(transfer::TransferWorker::new(media.clone()));
            r.workers.default_concurrency(steps::MEDIA_CONTROL, 2);
            r.workers.on_end([<steps::StepArgs as strato_types::JobArgs>::KIND], w.end_hook());
            for (step, action) in steps::Step::ALL {
                let build = move |params: &serde_json::Value| {
                    steps::step_job(step, params)
                        .map_err(|m| strato_workflows::StatesError::new("Media.InvalidTask", m))
                };
                w.register_job_resource(action, std::sync::Arc::new(build));
            }
            let _ = slot.set(media);
        }
    }

    /// The media service, once the service is open.
    pub fn get(&self) -> Option<MediaService> {
        self.0.get().cloned()
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
    /// The metadata store or storage failed.
    #[error("storage: {0}")]
    Storage(String),
    /// No such upload.
    #[error("no upload {0:?}")]
    UploadNotFound(String),
    /// No such transfer.
    #[error("no transfer {0:?}")]
    TransferNotFound(String),
    /// An upload of the same answer is being processed.
    #[error("upload in progress: upload {0} of this answer is still being processed (cancel it or wait)")]
    UploadInProgress(String),
    /// A request field is wrong.
    #[error("{0}")]
    Invalid(String),
    /// No such mentor.
    #[error("no mentor {0:?}")]
    MentorNotFound(String),
    /// The mentor has no answer to the question.
    #[error("mentor {mentor:?} has no answer to question {question:?}")]
    AnswerNotFound {
        /// The mentor.
        mentor: String,
        /// The question.
        question: String,
    },
    /// The uploaded video is not in storage.
    #[error("no uploaded file {0:?} (upload it first: GET /upload/url)")]
    VideoNotFound(String),
    /// The upload is over the limit.
    #[error("the upload is {0} bytes; at most 100 MB (104857600 bytes) is accepted")]
    TooLarge(u64),
    /// No transcriber is configured.
    #[error("transcription is not available: no Whisper model is installed (run `strato model pull --whisper`)")]
    NoTranscriber,
    /// The transcriber could not be loaded or failed.
    #[error("transcription: {0}")]
    Transcriber(String),
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
            Self::Storage(_) => "storage_unavailable",
            Self::UploadNotFound(_) => "upload_not_found",
            Self::TransferNotFound(_) => "transfer_not_found",
            Self::UploadInProgress(_) => "upload_in_progress",
            Self::Invalid(_) => "invalid_request",
            Self::MentorNotFound(_) => "mentor_not_found",
            Self::AnswerNotFound { .. } => "answer_not_found",
            Self::VideoNotFound(_) => "video_not_found",
            Self::TooLarge(_) => "upload_too_large",
            Self::NoTranscriber => "transcriber_missing",
            Self::Transcriber(_) => "transcription_failed",
        }
    }
}
