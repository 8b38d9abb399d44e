//! The media capability's service: answer uploads started as executions of the shipped upload-processor state
//! machine, cancelled, finished into the mentor, or marked failed; and the transcriber, loaded on first use.

use std::sync::Arc;

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use strato_blob::BlobStore;
use strato_store::Store;
use strato_types::{Media, Mentor, NewJob};
use strato_workflows::Workflows;

use crate::steps::SharedTranscriber;
use crate::upload::{Task, TaskStatus, Trim, Upload, UploadStatus, Uploads, UPLOAD_DOC};
use crate::{MediaError, Tools};

/// The shipped state machine's name.
pub const MACHINE: &str = "strato-upload-processor";

/// Its definition (Amazon States Language), run by the workflows engine.
pub const DEFINITION: &str = include_str!("../upload_processor.asl.json");

/// The largest upload accepted (MentorPal's limit).
pub const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// Loads the transcriber (the Whisper model), once, on a blocking thread.
pub type TranscriberLoader = Arc<dyn Fn() -> Result<SharedTranscriber, String> + Send + Sync>;

/// How the capability runs.
#[derive(Clone, Default)]
pub struct MediaOptions {
    /// ffmpeg and ffprobe.
    pub tools: Tools,
    /// Where players reach this server (`https://strato.example.org`): media URLs are absolute when set, else paths
    /// (`/media/videos/…`).
    pub public_url: Option<String>,
    /// The transcriber, loaded on first use; `None`: transcription fails with a clear error.
    pub transcriber: Option<TranscriberLoader>,
    /// Hosts (`host` or `host:port`; `*`: any) mentor transfers may copy media from beside public addresses.
    pub transfer_hosts: Vec<String>,
}

/// An answer upload as asked for (`POST /upload/answer`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnswerUpload {
    /// The mentor.
    pub mentor: String,
    /// The question the video answers.
    pub question: String,
    /// Storage key of the uploaded video (from `GET /upload/url`, or any stored file the caller may read).
    pub video: String,
    /// Cut to these seconds first.
    #[serde(default)]
    pub trim: Option<Trim>,
    /// The transcript was edited by hand: do not transcribe.
    #[serde(default)]
    pub has_edited_transcript: bool,
    /// Keep the input's aspect ratio in the web rendition.
    #[serde(default, alias = "maintain_original_aspect_ratio")]
    pub maintain_original_aspect_ratio: bool,
    /// Make a thumbnail.
    #[serde(default)]
    pub generate_thumbnail: bool,
    /// A virtual-background video (keep alpha).
    #[serde(default)]
    pub is_vbg_video: bool,
    /// Ids of the video on external platforms.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub external_video_ids: Option<Value>,
    /// Retrain the mentor's classifier when done (default: when the transcript changed).
    #[serde(default)]
    pub retrain: Option<bool>,
}

struct Inner {
    uploads: Uploads,
    blobs: BlobStore,
    workflows: Workflows,
    opts: MediaOptions,
    transcriber: tokio::sync::OnceCell<SharedTranscriber>,
}

/// The media capability.
#[derive(Clone)]
pub struct MediaService(Arc<Inner>);

/// Ids that become storage path segments: letters, digits, `-`, `_`, `.`; not `.` or `..`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn storage(e: impl std::fmt::Display) -> MediaError {
    MediaError::Storage(e.to_string())
}

/// Whether the first bytes of a file look like a container ffmpeg reads for video: MP4/MOV (`ftyp`), Matroska/WebM
/// (EBML), AVI (`RIFF…AVI `), MPEG-TS/PS, FLV, Ogg. A quick refusal of what is plainly not a video; the probe step
/// decides.
pub fn looks_like_video(head: &[u8]) -> bool {
    let at = |i: usize, m: &[u8]| head.len() >= i + m.len() && &head[i..i + m.len()] == m;
    at(4, b"ftyp")
        || at(4, b"moov")
        || at(4, b"mdat")
        || at(4, b"wide")
        || at(4, b"free")
        || at(0, &[0x1a, 0x45, 0xdf, 0xa3])
        || (at(0, b"RIFF") && at(8, b"AVI "))
        || at(0, &[0x00, 0x00, 0x01, 0xba])
        || (head.first() == Some(&0x47) && head.get(188) == Some(&0x47))
        || at(0, b"FLV")
        || at(0, b"OggS")
}

impl MediaService {
    /// The capability over the service's store and storage, starting executions with `workflows`.
    pub fn new(store: Store, blobs: BlobStore, workflows: Workflows, opts: MediaOptions) -> Self {
        Self(Arc::new(Inner { uploads: Uploads::new(store), blobs, workflows, opts, transcriber: Default::default() }))
    }

    /// Upload documents.
    pub fn uploads(&self) -> &Uploads {
        &self.0.uploads
    }

    /// Blob storage.
    pub fn blobs(&self) -> &BlobStore {
        &self.0.blobs
    }

    /// ffmpeg and ffprobe.
    pub fn tools(&self) -> &Tools {
        &self.0.opts.tools
    }

    /// The workflows engine.
    pub fn workflows(&self) -> &Workflows {
        &self.0.workflows
    }

    /// The transcriber, loaded on first use.
    pub async fn transcriber(&self) -> Result<SharedTranscriber, MediaError> {
        let loader = self.0.opts.transcriber.clone().ok_or(MediaError::NoTranscriber)?;
        self.0
            .transcriber
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || loader())
                    .await
                    .map_err(|e| MediaError::Transcriber(e.to_string()))?
                    .map_err(MediaError::Transcriber)
            })
            .await
            .cloned()
    }

    /// Hosts transfers may copy from beside public addresses.
    pub fn transfer_hosts(&self) -> &[String] {
        &self.0.opts.transfer_hosts
    }

    /// The storage key of one of this server's own media URLs (`<public url>/media/<key>?v=…`).
    pub fn own_media_key(&self, url: &str) -> Option<String> {
        let base = self.0.opts.public_url.as_deref()?.trim_end_matches('/');
        let key = url.strip_prefix(base)?.strip_prefix("/media/")?;
        let key = key.split(['?', '#']).next().unwrap_or_default();
        crate::http::is_media_key(key).then(|| key.to_string())
    }

    /// The URL players fetch a stored media file from (served with range requests by `GET /media/{key}`);
    /// `version` changes it when the file is replaced, so caches do not serve the old one.
    pub fn media_url(&self, key: &str, version: &str) -> String {
        let base = self.0.opts.public_url.as_deref().unwrap_or("").trim_end_matches('/');
        let v: String = version.chars().take(12).collect();
        format!("{base}/media/{key}?v={v}")
    }

    /// Creates the upload processor's state machine, or brings its definition up to date.
    pub async fn install_machine(&self) -> Result<(), MediaError> {
        let w = &self.0.workflows;
        match w.get(MACHINE).await {
            Ok(m) if m.definition == DEFINITION => Ok(()),
            Ok(_) => w.update(MACHINE, Some(DEFINITION), None).await.map(|_| ()).map_err(storage),
            Err(_) => {
                let role = format!("arn:aws:iam::{}:role/strato-media", "000000000000");
                let made = w.create(MACHINE, DEFINITION, &role, "STANDARD", "Mentor answer uploads").await;
                match made {
                    Ok(_) => Ok(()),
                    // Another process created it meanwhile.
                    Err(strato_workflows::WorkflowError::Conflict(..)) => Ok(()),
                    Err(e) => Err(storage(e)),
                }
            }
        }
    }

    /// Starts processing an answer upload: checks what was asked, records the upload (refused while another of
    /// the same answer runs) and starts its workflow execution (named by the upload's id).
    pub async fn start_upload(&self, req: AnswerUpload, user: &str) -> Result<Upload, MediaError> {
        if !valid_id(&req.mentor) {
            return Err(MediaError::Invalid(format!(
                "mentor {:?} is not a valid id (letters, digits, - _ .)",
                req.mentor
            )));
        }
        if !valid_id(&req.question) {
            return Err(MediaError::Invalid(format!(
                "question {:?} is not a valid id (letters, digits, - _ .)",
                req.question
            )));
        }
        if let Some(t) = req.trim {
            if !(t.start.is_finite() && t.end.is_finite()) || t.start < 0.0 || t.end <= t.start {
                return Err(MediaError::InvalidTrim(format!(
                    "trim must have 0 <= start < end (seconds), not {}-{}",
                    t.start, t.end
                )));
            }
        }
        let mentor = self.mentor(&req.mentor).await?;
        if !mentor.answers.iter().any(|a| a.question.id == req.question) {
            return Err(MediaError::AnswerNotFound { mentor: req.mentor.clone(), question: req.question.clone() });
        }
        strato_service::validate_file_key(&req.video).map_err(|e| MediaError::Invalid(e.message))?;
        let blob = format!("{}{}", strato_service::FILES_PREFIX, req.video);
        let info = self.0.blobs.head(&blob).await.map_err(|e| match e {
            strato_blob::BlobError::NotFound(_) => MediaError::VideoNotFound(req.video.clone()),
            e => storage(e),
        })?;
        if info.size > MAX_UPLOAD_BYTES {
            return Err(MediaError::TooLarge(info.size));
        }
        if info.size == 0 {
            return Err(MediaError::NotMedia(format!("{} is empty", req.video)));
        }
        let head = self.head(&blob, 256).await?;
        if !looks_like_video(&head) {
            return Err(MediaError::NotMedia(format!("{} does not start like a video file", req.video)));
        }
        let transcribe = !req.has_edited_transcript;
        let now = Utc::now();
        let upload = Upload {
            id: uuid::Uuid::new_v4().to_string(),
            mentor: req.mentor,
            question: req.question,
            user: user.to_string(),
            video: req.video,
            trim: req.trim,
            has_edited_transcript: req.has_edited_transcript,
            maintain_original_aspect_ratio: req.maintain_original_aspect_ratio,
            generate_thumbnail: req.generate_thumbnail,
            is_vbg_video: req.is_vbg_video,
            external_video_ids: req.external_video_ids.unwrap_or(Value::Null),
            retrain: req.retrain,
            status: UploadStatus::InProgress,
            tasks: Upload::tasks_for(req.trim.is_some(), transcribe),
            execution: None,
            error: None,
            results: Default::default(),
            created_at: now,
            updated_at: now,
        };
        self.0.uploads.create(&upload).await?;
        let input = json!({
            "upload": upload.id,
            "trim": upload.trim.is_some(),
            "transcribe": transcribe,
            "thumbnail": upload.generate_thumbnail,
        });
        let started = self.0.workflows.start_execution(MACHINE, Some(&upload.id), &input.to_string(), None).await;
        match started {
            Ok(x) => {
                let arn = self.0.workflows.execution_arn(&x.machine, &x.name);
                self.0
                    .uploads
                    .update(&upload.id, |u| {
                        // The execution may have ended (a bad upload fails fast): keep what it wrote.
                        u.execution = Some(arn.clone());
                        true
                    })
                    .await
            }
            Err(e) => {
                let why = format!("the upload's workflow could not start: {e}");
                let _ = self.mark_failed(&upload.id, &json!({"Error": "Media.StartFailed", "Cause": why})).await;
                Err(MediaError::Storage(why))
            }
        }
    }

    /// The first `n` bytes of a stored file.
    async fn head(&self, key: &str, n: u64) -> Result<Vec<u8>, MediaError> {
        use futures::StreamExt;
        let range = strato_blob::ByteRange::Inclusive(0, n - 1);
        let mut d = self.0.blobs.get_stream(key, Some(range)).await.map_err(storage)?;
        let mut out = Vec::new();
        while let Some(chunk) = d.stream.next().await {
            out.extend_from_slice(&chunk.map_err(storage)?);
        }
        Ok(out)
    }

    async fn mentor(&self, id: &str) -> Result<Mentor, MediaError> {
        let row = self.0.uploads.store().mentors().get(id).await.map_err(storage)?;
        let row = row.ok_or_else(|| MediaError::MentorNotFound(id.to_string()))?;
        serde_json::from_value(row.body).map_err(|e| storage(format!("mentor {id} is unreadable: {e}")))
    }

    /// A presigned URL to PUT a file (`key`, a file key) within an hour.
    pub async fn presign_upload(&self, key: &str) -> Result<strato_blob::PresignedUrl, MediaError> {
        let blob = format!("{}{key}", strato_service::FILES_PREFIX);
        let hour = std::time::Duration::from_secs(3600);
        self.0.blobs.presign(strato_blob::PresignMethod::Put, &blob, hour).await.map_err(storage)
    }

    /// Changes a mentor in one transaction (locked against other writers); `change` may refuse.
    pub async fn update_mentor<T>(
        &self,
        id: &str,
        change: impl FnOnce(&mut Mentor) -> Result<T, MediaError>,
    ) -> Result<T, MediaError> {
        let mut tx = self.0.uploads.store().begin().await.map_err(storage)?;
        let row = tx.mentors().get_for_update(id).await.map_err(storage)?;
        let row = row.ok_or_else(|| MediaError::MentorNotFound(id.to_string()))?;
        let mut mentor: Mentor = serde_json::from_value(row.body).map_err(storage)?;
        let out = change(&mut mentor)?;
        let body = serde_json::to_value(&mentor).map_err(storage)?;
        tx.mentors().put(id, &body).await.map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(out)
    }

    /// Stores a mentor's file at `key` and records it on the mentor with `record` (the file first: a mentor never
    /// points at a missing file).
    pub async fn store_mentor_file(
        &self,
        id: &str,
        key: &str,
        bytes: bytes::Bytes,
        record: impl FnOnce(&mut Mentor),
    ) -> Result<(), MediaError> {
        self.mentor(id).await?;
        self.0.blobs.put(key, bytes).await.map_err(storage)?;
        self.update_mentor(id, |m| {
            record(m);
            Ok(())
        })
        .await
    }

    /// Stores subtitles as an answer's (`videos/<mentor>/<question>/en.vtt`) and records them on the answer;
    /// returns the key.
    pub async fn store_subtitles(&self, id: &str, question: &str, text: &str) -> Result<String, MediaError> {
        if !valid_id(id) || !valid_id(question) {
            return Err(MediaError::Invalid(format!("{id:?}/{question:?} is not a valid mentor/question id pair")));
        }
        let mentor = self.mentor(id).await?;
        if !mentor.answers.iter().any(|a| a.question.id == question) {
            return Err(MediaError::AnswerNotFound { mentor: id.into(), question: question.into() });
        }
        let key = format!("videos/{id}/{question}/en.vtt");
        self.0.blobs.put(&key, bytes::Bytes::from(text.to_string())).await.map_err(storage)?;
        let url = self.media_url(&key, &Utc::now().timestamp_millis().to_string());
        let text = text.to_string();
        self.update_mentor(id, |m| {
            let a = m
                .answers
                .iter_mut()
                .find(|a| a.question.id == question)
                .ok_or_else(|| MediaError::AnswerNotFound { mentor: id.into(), question: question.into() })?;
            a.media.retain(|x| !(x.media_type == "subtitles" && x.tag == "en"));
            a.media.push(Media {
                media_type: "subtitles".into(),
                tag: "en".into(),
                url,
                vtt_text: Some(text),
                ..Default::default()
            });
            Ok(())
        })
        .await?;
        Ok(key)
    }

    /// Rebuilds an answer's subtitles from its transcript, timed over its web video's duration; returns the text
    /// and URL.
    pub async fn regen_subtitles(&self, id: &str, question: &str) -> Result<(String, String), MediaError> {
        let mentor = self.mentor(id).await?;
        let answer = mentor
            .answers
            .iter()
            .find(|a| a.question.id == question)
            .ok_or_else(|| MediaError::AnswerNotFound { mentor: id.into(), question: question.into() })?;
        let duration =
            answer.media.iter().filter(|m| m.media_type == "video").find_map(|m| m.duration).ok_or_else(|| {
                MediaError::Invalid("the answer has no processed video to time its subtitles by".into())
            })?;
        if answer.transcript.trim().is_empty() {
            return Err(MediaError::Invalid("the answer's transcript is empty: nothing to subtitle".into()));
        }
        let text = crate::vtt::from_text(&answer.transcript, duration);
        let key = self.store_subtitles(id, question, &text).await?;
        let url = self.media_url(&key, &Utc::now().timestamp_millis().to_string());
        Ok((text, url))
    }

    /// Cancels an upload: its unfinished tasks become `CANCELLED` (their steps skip their work), the running step's
    /// job is asked to stop (ffmpeg is killed), and its execution is stopped. The mentor is unchanged.
    pub async fn cancel(&self, id: &str) -> Result<Upload, MediaError> {
        let mut running_jobs = Vec::new();
        let u = self
            .0
            .uploads
            .update(id, |u| {
                if u.status != UploadStatus::InProgress {
                    return false;
                }
                u.status = UploadStatus::Cancelled;
                u.error = Some("cancelled".into());
                running_jobs.clear();
                for t in u.tasks.iter_mut().filter(|t| !t.status.is_final()) {
                    if let Some(j) = &t.job {
                        running_jobs.push(j.clone());
                    }
                    t.status = TaskStatus::Cancelled;
                }
                true
            })
            .await?;
        for j in running_jobs {
            let _ = self.0.uploads.store().queue().cancel(&j).await;
        }
        if u.execution.is_some() {
            let key = format!("{MACHINE}:{}", u.id);
            let _ =
                self.0.workflows.stop_execution(&key, Some("Media.Cancelled"), Some("the upload was cancelled")).await;
        }
        Ok(u)
    }

    /// Marks an upload failed with the workflow's caught error: its unfinished tasks become `FAILED` with the
    /// reason. The mentor is unchanged, and the made files are removed.
    pub async fn mark_failed(&self, id: &str, error: &Value) -> Result<Upload, MediaError> {
        let reason = failure_reason(error);
        let u = self
            .0
            .uploads
            .update(id, |u| {
                if u.status != UploadStatus::InProgress {
                    return false;
                }
                u.status = UploadStatus::Failed;
                u.error = Some(reason.clone());
                for t in u.tasks.iter_mut().filter(|t| !t.status.is_final()) {
                    t.status = TaskStatus::Failed;
                    t.error = Some(reason.clone());
                }
                true
            })
            .await?;
        self.remove_staging(&u).await;
        Ok(u)
    }

    async fn remove_staging(&self, u: &Upload) {
        if let Ok(files) = self.0.blobs.list(&u.staging(), 1000).await {
            for f in files {
                let _ = self.0.blobs.delete(&f.key).await;
            }
        }
    }

    /// Publishes a finished upload: its files copied to the answer's media keys, then in one transaction the
    /// mentor's answer (media, transcript, status), the upload `DONE`, and the mentor's retraining when asked for
    /// (by default when the transcript changed).
    pub async fn finish(&self, u: &Upload) -> Result<Value, MediaError> {
        // Looked at again here: a cancel that arrived while the last steps ran must not replace the served files.
        let now = self.0.uploads.get(&u.id).await?;
        if now.status != UploadStatus::InProgress {
            return Ok(json!({"skipped": format!("the upload is {:?}", now.status)}));
        }
        let version = u.results.sha1.clone().unwrap_or_else(|| u.id.clone());
        let mut published = std::collections::BTreeMap::new();
        for (name, made) in &u.results.files {
            let file = made.key.rsplit('/').next().unwrap_or_default();
            let target = match name.as_str() {
                "thumbnail" => format!("{}thumbnail.jpg", u.answer_prefix()),
                _ => format!("{}{file}", u.answer_prefix()),
            };
            self.0.blobs.copy(&made.key, &target).await.map_err(storage)?;
            published.insert(name.clone(), (target, made.clone()));
        }
        let url = |name: &str| published.get(name).map(|(k, _)| self.media_url(k, &version));
        let probe_of = |name: &str| published.get(name).and_then(|(_, m)| m.probe.clone());
        let duration_of = |name: &str| published.get(name).and_then(|(_, m)| m.duration);
        let alpha_url = url("web_alpha");
        let mut media = Vec::new();
        for tag in ["web", "mobile"] {
            if let Some(url) = url(tag) {
                media.push(Media {
                    media_type: "video".into(),
                    tag: tag.into(),
                    url,
                    transparent_video_url: if tag == "web" { alpha_url.clone() } else { None },
                    duration: duration_of(tag),
                    hash: u.results.sha1.clone(),
                    metadata: probe_of(tag),
                    vtt_text: None,
                });
            }
        }
        if let Some(url) = url("vtt") {
            media.push(Media {
                media_type: "subtitles".into(),
                tag: "en".into(),
                url,
                vtt_text: u.results.vtt_text.clone(),
                ..Default::default()
            });
        }
        if let Some(url) = url("thumbnail") {
            media.push(Media { media_type: "image".into(), tag: "thumbnail".into(), url, ..Default::default() });
        }

        let store = self.0.uploads.store();
        let mut tx = store.begin().await.map_err(storage)?;
        let row = tx.mentors().get_for_update(&u.mentor).await.map_err(storage)?;
        let row = row.ok_or_else(|| MediaError::MentorNotFound(u.mentor.clone()))?;
        let mut mentor: Mentor = serde_json::from_value(row.body).map_err(storage)?;
        let answer = mentor
            .answers
            .iter_mut()
            .find(|a| a.question.id == u.question)
            .ok_or_else(|| MediaError::AnswerNotFound { mentor: u.mentor.clone(), question: u.question.clone() })?;
        // The new files replace those of the same type and tag; others (an external image, say) stay.
        answer.media.retain(|old| !media.iter().any(|m| m.media_type == old.media_type && m.tag == old.tag));
        answer.media.extend(media.iter().cloned());
        let mut changed = false;
        if !u.has_edited_transcript {
            if let Some(t) = &u.results.transcript {
                changed = answer.transcript.trim() != t.trim();
                answer.transcript = t.clone();
            }
        }
        if !u.external_video_ids.is_null() {
            answer.external_video_ids = u.external_video_ids.clone();
        }
        answer.status = strato_types::AnswerStatus::Complete;
        let trainable = mentor.answers.iter().filter(|a| a.is_training_question()).count() >= 2;
        let retrain = u.retrain.unwrap_or(changed) && trainable;
        let body = serde_json::to_value(&mentor).map_err(storage)?;
        tx.mentors().put(&u.mentor, &body).await.map_err(storage)?;
        let doc = tx.documents().get_for_update(UPLOAD_DOC, &u.id).await.map_err(storage)?;
        let doc = doc.ok_or_else(|| MediaError::UploadNotFound(u.id.clone()))?;
        let mut stored: Upload = serde_json::from_value(doc.body).map_err(storage)?;
        if stored.status != UploadStatus::InProgress {
            // Cancelled meanwhile: the mentor stays as it was.
            return Ok(json!({"skipped": format!("the upload is {:?}", stored.status)}));
        }
        stored.status = UploadStatus::Done;
        stored.updated_at = Utc::now();
        for t in stored.tasks.iter_mut().filter(|t| !t.status.is_final()) {
            t.status = TaskStatus::Done;
            t.progress = 100;
        }
        let body = serde_json::to_value(&stored).map_err(storage)?;
        tx.documents().update(UPLOAD_DOC, &u.id, doc.revision, &body).await.map_err(storage)?;
        let mut training = None;
        if retrain {
            let job = NewJob {
                key: Some(format!("mentor:{}", u.mentor)),
                coalesce: true,
                ..NewJob::of(&strato_service::TrainMentorArgs { mentor_id: u.mentor.clone() }).map_err(storage)?
            };
            training = Some(tx.queue().enqueue(&job).await.map_err(storage)?.job.id);
        }
        tx.commit().await.map_err(storage)?;
        self.remove_staging(u).await;
        Ok(json!({"media": media, "retraining": training}))
    }
}

/// A readable reason from a workflow's caught error (`{Error, Cause}`): a failed step's own message rather than
/// the job's wrapping of it.
pub fn failure_reason(error: &Value) -> String {
    let cause = error.get("Cause").and_then(Value::as_str).unwrap_or_default();
    let name = error.get("Error").and_then(Value::as_str).unwrap_or("Media.Failed");
    // `job <id> (media.step) ended FAILURE: <code>: <message>`: the message.
    let cause = match cause.find(") ended ") {
        Some(i) => cause[i + 8..].split_once(": ").map(|(_, m)| m).unwrap_or(cause),
        None => cause,
    };
    let cause = match cause.split_once(": ") {
        Some((code, m)) if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') => m,
        _ => cause,
    };
    if cause.is_empty() {
        name.to_string()
    } else {
        cause.to_string()
    }
}

/// An upload's tasks as MentorPal reports them.
pub fn task_list(u: &Upload) -> Vec<Value> {
    u.tasks.iter().map(task_view).collect()
}

fn task_view(t: &Task) -> Value {
    let mut v = json!({"task_name": t.task_name, "task_id": t.task_id, "status": t.status, "progress": t.progress});
    if let Some(e) = &t.error {
        v["error"] = json!(e);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_reads_as_its_own_message() {
        let caught = json!({"Error": "Strato.JobFailed",
            "Cause": "job 0193 (media.step) ended FAILURE: no_video_track: the upload has no video track"});
        assert_eq!(failure_reason(&caught), "the upload has no video track");
        assert_eq!(failure_reason(&json!({"Error": "States.Timeout", "Cause": ""})), "States.Timeout");
        assert_eq!(failure_reason(&json!({"Error": "States.Runtime", "Cause": "bad input: x"})), "bad input: x");
        assert_eq!(failure_reason(&Value::Null), "Media.Failed");
    }

    #[test]
    fn video_containers_are_told_from_other_files_by_their_first_bytes() {
        assert!(looks_like_video(b"\0\0\0\x20ftypisom\0\0\x02\0"));
        assert!(looks_like_video(&[0x1a, 0x45, 0xdf, 0xa3, 0x9f]));
        assert!(looks_like_video(b"RIFF\x10\0\0\0AVI LIST"));
        assert!(looks_like_video(b"OggS\0\x02"));
        assert!(!looks_like_video(b"these are my notes"));
        assert!(!looks_like_video(b"\x89PNG\r\n\x1a\n"));
        assert!(!looks_like_video(b""));
        assert!(!looks_like_video(b"RIFF\x10\0\0\0WAVEfmt "), "a WAV file is not a video");
    }

    #[test]
    fn ids_that_become_storage_paths_are_plain() {
        for ok in ["m1", "6196af5e068d43dc686194f8", "q_1.b-2"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
