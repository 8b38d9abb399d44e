//! An answer upload and its tasks, as MentorPal's upload processor reports them: one document per upload
//! (`media-upload`, by id) holding what was asked, each task's status (`QUEUED → IN_PROGRESS → DONE | FAILED`, or
//! `CANCELLED`), progress and error, and what the steps made; and one per answer (`media-answer`,
//! `<mentor>/<question>`) naming its latest upload, so a second upload of an answer is refused while one runs.
//!
//! Steps change an upload with compare-and-swap on the document's revision, so two steps of one upload (the
//! Parallel's branches) never overwrite each other's tasks.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strato_store::Store;

use crate::MediaError;

/// Documents: uploads, by id.
pub const UPLOAD_DOC: &str = "media-upload";
/// Documents: the latest upload of an answer, by `<mentor>/<question>`.
pub const ANSWER_DOC: &str = "media-answer";

/// MentorPal's task names.
pub const TASK_WEB: &str = "transcoding-web";
/// The mobile rendition's task.
pub const TASK_MOBILE: &str = "transcoding-mobile";
/// Transcription's task.
pub const TASK_TRANSCRIBE: &str = "transcribing";
/// Trimming's task.
pub const TASK_TRIM: &str = "trim-upload";

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Not started.
    Queued,
    /// Running.
    InProgress,
    /// Finished.
    Done,
    /// Failed (see `error`).
    Failed,
    /// Cancelled before it finished: its step skips its work.
    Cancelled,
}

impl TaskStatus {
    /// Whether the task can change no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// One task of an upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// `transcoding-web`, `transcoding-mobile`, `transcribing` or `trim-upload`.
    pub task_name: String,
    /// Its id.
    pub task_id: String,
    /// Where it is.
    pub status: TaskStatus,
    /// 0-100.
    #[serde(default)]
    pub progress: u8,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job running it (or that ran it last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UploadStatus {
    /// Its workflow runs.
    InProgress,
    /// Everything is done and the mentor updated.
    Done,
    /// A step failed; the mentor is unchanged.
    Failed,
    /// Cancelled; the mentor is unchanged.
    Cancelled,
}

/// Seconds to keep of the original.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Trim {
    /// Start, seconds.
    pub start: f64,
    /// End, seconds.
    pub end: f64,
}

/// A rendition or file a step made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Made {
    /// Its storage key.
    pub key: String,
    /// Bytes.
    pub size: u64,
    /// Seconds (videos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// ffprobe's view of it (videos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub probe: Option<Value>,
}

/// What the steps made so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Results {
    /// SHA-1 (hex) of the uploaded original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    /// ffprobe's view of the upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub probe: Option<Value>,
    /// The files made, by name (`original`, `web`, `mobile`, `web_alpha`, `thumbnail`, `vtt`).
    #[serde(default)]
    pub files: BTreeMap<String, Made>,
    /// The transcript, from transcription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    /// The subtitles, WebVTT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtt_text: Option<String>,
}

/// An answer upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upload {
    /// Its id.
    pub id: String,
    /// The mentor.
    pub mentor: String,
    /// The question the video answers.
    pub question: String,
    /// Who uploaded it.
    pub user: String,
    /// File key of the uploaded video (`uploads/<user>/<uuid>`).
    pub video: String,
    /// Cut the original to this first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<Trim>,
    /// The transcript was edited by hand: do not transcribe.
    #[serde(default)]
    pub has_edited_transcript: bool,
    /// Keep the input's aspect ratio in the web rendition.
    #[serde(default)]
    pub maintain_original_aspect_ratio: bool,
    /// Make a thumbnail (the frame at 1 s).
    #[serde(default)]
    pub generate_thumbnail: bool,
    /// A virtual-background video: keep alpha (VP9 WebM) beside the MP4.
    #[serde(default)]
    pub is_vbg_video: bool,
    /// Ids of the video on external platforms, kept with the answer.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub external_video_ids: Value,
    /// Retrain the mentor's classifier when done (default: when the transcript changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrain: Option<bool>,
    /// Where it is.
    pub status: UploadStatus,
    /// Its tasks.
    pub tasks: Vec<Task>,
    /// The workflow execution's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the steps made.
    #[serde(default)]
    pub results: Results,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
}

impl Upload {
    /// The task named `name`, if the upload has it.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.task_name == name)
    }

    /// The uploaded video's blob (`video` is a file key, as the files API and presigned uploads name it).
    pub fn video_blob(&self) -> String {
        format!("{}{}", strato_service::FILES_PREFIX, self.video)
    }

    /// Where the steps write (`media-staging/<upload>/`): the answer's served media change only when the whole
    /// upload has succeeded, so a failed upload serves nothing half-made.
    pub fn staging(&self) -> String {
        format!("media-staging/{}/", self.id)
    }

    /// Where the answer's media are served from: `videos/<mentor>/<question>/`.
    pub fn answer_prefix(&self) -> String {
        format!("videos/{}/{}/", self.mentor, self.question)
    }

    /// The tasks an upload with these options runs, all `QUEUED`.
    pub fn tasks_for(trim: bool, transcribe: bool) -> Vec<Task> {
        let mut names = Vec::new();
        if trim {
            names.push(TASK_TRIM);
        }
        names.extend([TASK_WEB, TASK_MOBILE]);
        if transcribe {
            names.push(TASK_TRANSCRIBE);
        }
        names
            .into_iter()
            .map(|n| Task {
                task_name: n.to_string(),
                task_id: uuid::Uuid::new_v4().to_string(),
                status: TaskStatus::Queued,
                progress: 0,
                error: None,
                job: None,
            })
            .collect()
    }
}

/// Reads, changes and writes upload documents.
#[derive(Clone)]
pub struct Uploads {
    store: Store,
}

fn storage(e: strato_store::StoreError) -> MediaError {
    MediaError::Storage(e.to_string())
}

impl Uploads {
    /// Uploads in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// An upload.
    pub async fn get(&self, id: &str) -> Result<Upload, MediaError> {
        let doc = self.store.documents().get(UPLOAD_DOC, id).await.map_err(storage)?;
        let doc = doc.ok_or_else(|| MediaError::UploadNotFound(id.to_string()))?;
        serde_json::from_value(doc.body).map_err(|e| MediaError::Storage(format!("upload {id} is unreadable: {e}")))
    }

    /// The latest upload of an answer, if any.
    pub async fn of_answer(&self, mentor: &str, question: &str) -> Result<Option<Upload>, MediaError> {
        let key = format!("{mentor}/{question}");
        let Some(doc) = self.store.documents().get(ANSWER_DOC, &key).await.map_err(storage)? else { return Ok(None) };
        let Some(id) = doc.body.get("upload").and_then(Value::as_str) else { return Ok(None) };
        match self.get(id).await {
            Ok(u) => Ok(Some(u)),
            Err(MediaError::UploadNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records a new upload as the answer's latest, unless one of that answer is in progress.
    pub async fn create(&self, upload: &Upload) -> Result<(), MediaError> {
        let key = format!("{}/{}", upload.mentor, upload.question);
        let body = serde_json::to_value(upload).map_err(|e| MediaError::Storage(e.to_string()))?;
        let mut tx = self.store.begin().await.map_err(storage)?;
        let latest = tx.documents().get_for_update(ANSWER_DOC, &key).await.map_err(storage)?;
        if let Some(latest) = &latest {
            if let Some(id) = latest.body.get("upload").and_then(Value::as_str) {
                let running = tx.documents().get_for_update(UPLOAD_DOC, id).await.map_err(storage)?;
                let running = running
                    .and_then(|d| serde_json::from_value::<Upload>(d.body).ok())
                    .filter(|u| u.status == UploadStatus::InProgress);
                if let Some(u) = running {
                    return Err(MediaError::UploadInProgress(u.id));
                }
            }
        }
        let pointer = serde_json::json!({"upload": upload.id});
        match latest {
            Some(d) => tx.documents().update(ANSWER_DOC, &key, d.revision, &pointer).await.map_err(storage)?,
            None => tx.documents().create(ANSWER_DOC, &key, &pointer).await.map_err(storage)?,
        };
        if tx.documents().create(UPLOAD_DOC, &upload.id, &body).await.map_err(storage)?.is_none() {
            return Err(MediaError::Storage(format!("upload {} exists already", upload.id)));
        }
        tx.commit().await.map_err(storage)
    }

    /// Applies `change` to the upload and stores it (retrying when another step changed it meanwhile); returns the
    /// upload as stored. `change` returns false to leave it as it is.
    pub async fn update(&self, id: &str, mut change: impl FnMut(&mut Upload) -> bool) -> Result<Upload, MediaError> {
        for _ in 0..20 {
            let doc = self.store.documents().get(UPLOAD_DOC, id).await.map_err(storage)?;
            let doc = doc.ok_or_else(|| MediaError::UploadNotFound(id.to_string()))?;
            let mut u: Upload = serde_json::from_value(doc.body)
                .map_err(|e| MediaError::Storage(format!("upload {id} is unreadable: {e}")))?;
            if !change(&mut u) {
                return Ok(u);
            }
            u.updated_at = Utc::now();
            let body = serde_json::to_value(&u).map_err(|e| MediaError::Storage(e.to_string()))?;
            let stored = self.store.documents().update(UPLOAD_DOC, id, doc.revision, &body).await.map_err(storage)?;
            if stored.is_some() {
                return Ok(u);
            }
        }
        Err(MediaError::Storage(format!("upload {id} kept changing; try again")))
    }

    /// Sets a task's status (and progress or error); a task already final keeps its end.
    pub async fn set_task(
        &self,
        id: &str,
        task: &str,
        status: TaskStatus,
        progress: Option<u8>,
        error: Option<String>,
    ) -> Result<Upload, MediaError> {
        self.update(id, |u| {
            let Some(t) = u.tasks.iter_mut().find(|t| t.task_name == task) else { return false };
            if t.status.is_final() || (t.status == status && progress.is_none_or(|p| p == t.progress)) {
                return false;
            }
            t.status = status;
            if let Some(p) = progress {
                t.progress = p;
            }
            if status == TaskStatus::Done {
                t.progress = 100;
            }
            if error.is_some() {
                t.error = error.clone();
            }
            true
        })
        .await
    }
}
