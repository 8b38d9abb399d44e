//! Mentor transfer (`POST /upload/transfer/mentor`): a MentorPal mentor export imported into a Strato mentor, its
//! media copied where they need transfer, as a tracked `media.transfer` job whose status really moves
//! (`QUEUED → IN_PROGRESS → DONE | FAILED`, with progress and each media file that could not be copied).
//!
//! The export is checked against MentorPal's schema before anything is queued (an error names the field, e.g.
//! `mentorExportJson.answers[3].question._id: missing field`). Media are copied from their URLs over HTTP(S) —
//! from public addresses only, unless the host is allowed (`MediaOptions::transfer_hosts`): an export must not make
//! the server fetch from its own network — or straight from storage when the URL is one of this server's own
//! `/media/…` URLs. The mentor is written once, in one transaction, after every copy.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{
    AnswerStatus, JobArgs, JobDefaults, JobKind, JobRecord, Media, Mentor, MentorType, Question, QuestionType,
};

use crate::service::{valid_id, MediaService};
use crate::steps::MEDIA_CONTROL;
use crate::MediaError;

/// Documents: transfers, by id.
pub const TRANSFER_DOC: &str = "media-transfer";

/// The largest media file a transfer copies.
const MAX_MEDIA_BYTES: u64 = 2 << 30;

/// A MentorPal mentor export (`mentorExportJson`), as far as Strato uses it; other fields are ignored.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MentorExport {
    /// The exported mentor's id.
    pub id: String,
    /// Name and other details.
    pub mentor_info: MentorInfo,
    /// Subjects (kept as they are).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub subjects: Vec<Value>,
    /// The mentor's questions.
    #[serde(default)]
    pub questions: Vec<ExportQuestion>,
    /// Its answers.
    pub answers: Vec<ExportAnswer>,
    /// Questions users asked (not imported).
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub user_questions: Vec<Value>,
}

/// `mentorInfo`.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MentorInfo {
    /// Display name.
    pub name: String,
    /// `VIDEO` or `CHAT`.
    #[serde(default)]
    pub mentor_type: Option<String>,
    /// Picture URL.
    #[serde(default)]
    pub thumbnail: Option<String>,
}

/// A question of the export.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportQuestion {
    /// Its id.
    #[serde(rename = "_id")]
    pub id: String,
    /// The question.
    pub question: String,
    /// `QUESTION` or `UTTERANCE`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Utterance name (`_OFF_TOPIC_`, …).
    #[serde(default)]
    pub name: Option<String>,
    /// Other ways to ask it.
    #[serde(default)]
    pub paraphrases: Vec<String>,
}

/// An answer of the export.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportAnswer {
    /// Its id.
    #[serde(rename = "_id", default)]
    pub id: Option<String>,
    /// The question it answers.
    pub question: ExportQuestion,
    /// What the mentor says.
    #[serde(default)]
    pub transcript: String,
    /// `COMPLETE`, `INCOMPLETE`, …
    #[serde(default)]
    pub status: Option<String>,
    /// Its media.
    #[serde(default)]
    pub media: Vec<ExportMedia>,
    /// Ids on external platforms.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub external_video_ids: Option<Value>,
}

/// A media file of an exported answer.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportMedia {
    /// `video`, `subtitles`, `image`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `web`, `mobile`, `en`, …
    pub tag: String,
    /// Where it is now.
    pub url: String,
    /// Copy it into this server's storage (MentorPal marks media of another deployment so).
    #[serde(default)]
    pub needs_transfer: bool,
}

/// `POST /upload/transfer/mentor`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest {
    /// The mentor to import into (created when missing).
    pub mentor: String,
    /// The export.
    pub mentor_export_json: MentorExport,
    /// The edits the importer chose (kept with the transfer).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub replaced_mentor_data_changes: Option<Value>,
}

/// Parses a transfer request, naming the field that fails MentorPal's schema.
pub fn parse_request(body: &[u8]) -> Result<TransferRequest, MediaError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let req: TransferRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        MediaError::Invalid(format!("{at}{}", e.inner()))
    })?;
    if !valid_id(&req.mentor) {
        return Err(MediaError::Invalid(format!(
            "mentor: {:?} is not a valid id (letters, digits, - _ .)",
            req.mentor
        )));
    }
    for (i, a) in req.mentor_export_json.answers.iter().enumerate() {
        if !valid_id(&a.question.id) {
            return Err(MediaError::Invalid(format!(
                "mentorExportJson.answers[{i}].question._id: {:?} is not a valid id",
                a.question.id
            )));
        }
        for (j, m) in a.media.iter().enumerate() {
            if !(m.url.starts_with("http://") || m.url.starts_with("https://")) && m.needs_transfer {
                return Err(MediaError::Invalid(format!(
                    "mentorExportJson.answers[{i}].media[{j}].url: {:?} is not an http(s) URL",
                    m.url
                )));
            }
        }
    }
    Ok(req)
}

/// Where a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TransferStatus {
    /// Waiting for a worker.
    Queued,
    /// Copying media.
    InProgress,
    /// The mentor is imported.
    Done,
    /// Nothing was imported (see `errors`).
    Failed,
}

/// A transfer, as its status URL shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transfer {
    /// Its id.
    pub id: String,
    /// The mentor imported into.
    pub mentor: String,
    /// Where it is.
    pub status: TransferStatus,
    /// 0-100.
    pub progress: u8,
    /// Media copied so far, and in all.
    pub media_done: usize,
    /// Media to copy.
    pub media_total: usize,
    /// What went wrong.
    pub errors: Vec<String>,
    /// The status URL.
    #[serde(rename = "statusUrl")]
    pub status_url: String,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// Its last change.
    pub updated_at: DateTime<Utc>,
}

/// The `media.transfer` job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferArgs {
    /// The transfer's id (its document holds the request).
    pub transfer: String,
}

impl JobArgs for TransferArgs {
    const KIND: JobKind = JobKind::new("media.transfer");

    fn defaults() -> JobDefaults {
        JobDefaults { queue: MEDIA_CONTROL, timeout: Duration::from_secs(3600), max_attempts: 3, priority: 0 }
    }
}

fn storage(e: impl std::fmt::Display) -> MediaError {
    MediaError::Storage(e.to_string())
}

impl MediaService {
    /// Records a transfer and queues its job, in one transaction.
    pub async fn start_transfer(&self, req: TransferRequest) -> Result<Transfer, MediaError> {
        let id = uuid::Uuid::new_v4().to_string();
        let total = req.mentor_export_json.answers.iter().flat_map(|a| &a.media).filter(|m| m.needs_transfer).count();
        let now = Utc::now();
        let t = Transfer {
            id: id.clone(),
            mentor: req.mentor.clone(),
            status: TransferStatus::Queued,
            progress: 0,
            media_done: 0,
            media_total: total,
            errors: Vec::new(),
            status_url: format!("/transfer/status/{id}"),
            created_at: now,
            updated_at: now,
        };
        let body = json!({"transfer": t, "request": {
            "mentor": req.mentor, "mentorExportJson": req.mentor_export_json,
            "replacedMentorDataChanges": req.replaced_mentor_data_changes}});
        let job = strato_types::NewJob::of(&TransferArgs { transfer: id.clone() }).map_err(storage)?;
        let store = self.uploads().store();
        let mut tx = store.begin().await.map_err(storage)?;
        tx.documents().create(TRANSFER_DOC, &id, &body).await.map_err(storage)?;
        tx.queue().enqueue(&job).await.map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        Ok(t)
    }

    /// A transfer.
    pub async fn transfer(&self, id: &str) -> Result<Transfer, MediaError> {
        let doc = self.uploads().store().documents().get(TRANSFER_DOC, id).await.map_err(storage)?;
        let doc = doc.ok_or_else(|| MediaError::TransferNotFound(id.to_string()))?;
        serde_json::from_value(doc.body["transfer"].clone()).map_err(storage)
    }

    async fn set_transfer(&self, id: &str, change: impl Fn(&mut Transfer)) -> Result<(), MediaError> {
        let store = self.uploads().store();
        for _ in 0..20 {
            let doc = store.documents().get(TRANSFER_DOC, id).await.map_err(storage)?;
            let mut doc = doc.ok_or_else(|| MediaError::TransferNotFound(id.to_string()))?;
            let mut t: Transfer = serde_json::from_value(doc.body["transfer"].clone()).map_err(storage)?;
            change(&mut t);
            t.updated_at = Utc::now();
            doc.body["transfer"] = serde_json::to_value(&t).map_err(storage)?;
            if store.documents().update(TRANSFER_DOC, id, doc.revision, &doc.body).await.map_err(storage)?.is_some() {
                return Ok(());
            }
        }
        Err(MediaError::Storage(format!("transfer {id} kept changing")))
    }

    /// Copies one media file into `key`: from storage when the URL is this server's own `/media/…`, else over
    /// HTTP(S) from an allowed address. Streamed, never whole in memory.
    async fn copy_media(&self, url: &str, key: &str) -> Result<u64, String> {
        if let Some(own) = self.own_media_key(url) {
            self.blobs().copy(&own, key).await.map_err(|e| e.to_string())?;
            return self.blobs().head(key).await.map(|i| i.size).map_err(|e| e.to_string());
        }
        let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?.to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let allowed = self.transfer_hosts().iter().any(|h| h == "*" || *h == host || *h == format!("{host}:{port}"));
        if !allowed {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| format!("{host}: {e}"))?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(format!(
                    "{host} is not a public address: allow it with --media-transfer-hosts to copy from it"
                ));
            }
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let res = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !res.status().is_success() {
            return Err(format!("{url}: HTTP {}", res.status()));
        }
        let body = res.bytes_stream().map_err(|e| e.to_string());
        self.blobs().put_stream(key, body, Some(MAX_MEDIA_BYTES)).await.map_err(|e| format!("{url}: {e}"))
    }

    /// Runs a transfer: copies the media that need it, then writes the mentor.
    async fn run_transfer(&self, id: &str, ctx: &JobContext) -> Result<Value, JobError> {
        let doc = self.uploads().store().documents().get(TRANSFER_DOC, id).await.map_err(|e| retry(storage(e)))?;
        let doc = doc.ok_or_else(|| JobError::Permanent(format!("transfer_not_found: {id}")))?;
        let req: TransferRequest = serde_json::from_value(doc.body["request"].clone())
            .map_err(|e| JobError::Permanent(format!("invalid_request: {e}")))?;
        self.set_transfer(id, |t| {
            t.status = TransferStatus::InProgress;
            t.errors.clear();
        })
        .await
        .map_err(retry)?;
        let export = &req.mentor_export_json;
        let mut copied: BTreeMap<(usize, usize), String> = BTreeMap::new();
        let mut errors = Vec::new();
        let total = export.answers.iter().flat_map(|a| &a.media).filter(|m| m.needs_transfer).count();
        let mut done = 0;
        for (i, a) in export.answers.iter().enumerate() {
            for (j, m) in a.media.iter().enumerate().filter(|(_, m)| m.needs_transfer) {
                if ctx.should_stop() {
                    return Err(JobError::Retryable("the transfer was stopped".into()));
                }
                let ext = extension(&m.url, &m.kind);
                let key = format!("videos/{}/{}/{}.{ext}", req.mentor, a.question.id, file_stem(m));
                match self.copy_media(&m.url, &key).await {
                    Ok(_) => {
                        copied.insert((i, j), key);
                    }
                    Err(e) => errors.push(format!("answers[{i}].media[{j}] ({}): {e}", m.url)),
                }
                done += 1;
                let progress = (done * 99 / total.max(1)) as u8;
                ctx.set_progress(progress as i32);
                let (d, errs) = (done, errors.clone());
                self.set_transfer(id, |t| {
                    t.media_done = d;
                    t.progress = progress;
                    t.errors = errs.clone();
                })
                .await
                .map_err(retry)?;
            }
        }
        if !errors.is_empty() {
            // Nothing imported: a mentor with missing videos would answer with broken players.
            let errs = errors.clone();
            self.set_transfer(id, |t| {
                t.status = TransferStatus::Failed;
                t.errors = errs.clone();
            })
            .await
            .map_err(retry)?;
            return Ok(json!({"failed": errors}));
        }
        let version = Utc::now().timestamp_millis().to_string();
        let mentor = self.imported_mentor(&req, &copied, &version);
        let n = mentor.answers.len();
        self.import_mentor(&req.mentor, mentor).await.map_err(retry)?;
        self.set_transfer(id, |t| {
            t.status = TransferStatus::Done;
            t.progress = 100;
        })
        .await
        .map_err(retry)?;
        Ok(json!({"mentor": req.mentor, "answers": n, "media": copied.len()}))
    }

    /// The mentor the export describes, its media pointing at the copies.
    fn imported_mentor(&self, req: &TransferRequest, copied: &BTreeMap<(usize, usize), String>, v: &str) -> Mentor {
        let e = &req.mentor_export_json;
        let question = |q: &ExportQuestion| Question {
            id: q.id.clone(),
            text: q.question.clone(),
            paraphrases: q.paraphrases.clone(),
            topics: Vec::new(),
            question_type: if q.kind.as_deref() == Some("UTTERANCE") {
                QuestionType::Utterance
            } else {
                QuestionType::Question
            },
            name: q.name.clone().unwrap_or_default(),
            category: None,
        };
        // The export's own question list is fuller (paraphrases) than the copy inside each answer.
        let full: BTreeMap<&str, &ExportQuestion> = e.questions.iter().map(|q| (q.id.as_str(), q)).collect();
        let answers = e
            .answers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let q = full.get(a.question.id.as_str()).copied().unwrap_or(&a.question);
                let media = a
                    .media
                    .iter()
                    .enumerate()
                    .map(|(j, m)| Media {
                        media_type: m.kind.clone(),
                        tag: m.tag.clone(),
                        url: copied.get(&(i, j)).map(|k| self.media_url(k, v)).unwrap_or_else(|| m.url.clone()),
                        ..Default::default()
                    })
                    .collect();
                let status = match a.status.as_deref() {
                    Some("INCOMPLETE") => AnswerStatus::Incomplete,
                    Some("SKIP") => AnswerStatus::Skip,
                    Some("NONE") => AnswerStatus::None,
                    _ => AnswerStatus::Complete,
                };
                strato_types::Answer {
                    id: a.id.clone().unwrap_or_else(|| format!("a-{}", a.question.id)),
                    question: question(q),
                    transcript: a.transcript.clone(),
                    markdown: String::new(),
                    status,
                    media,
                    external_video_ids: a.external_video_ids.clone().unwrap_or_else(|| json!({})),
                    category: None,
                }
            })
            .collect();
        Mentor {
            id: req.mentor.clone(),
            name: e.mentor_info.name.clone(),
            mentor_type: if e.mentor_info.mentor_type.as_deref() == Some("CHAT") {
                MentorType::Chat
            } else {
                MentorType::Video
            },
            answers,
            off_topic_threshold: None,
            thumbnail: e.mentor_info.thumbnail.clone().filter(|t| !t.is_empty()),
            virtual_background_url: None,
        }
    }

    /// Writes an imported mentor: its answers replace those of the same question, others stay.
    async fn import_mentor(&self, id: &str, imported: Mentor) -> Result<(), MediaError> {
        let store = self.uploads().store();
        let mut tx = store.begin().await.map_err(storage)?;
        let current = tx.mentors().get_for_update(id).await.map_err(storage)?;
        let mut mentor = match current {
            Some(row) => serde_json::from_value::<Mentor>(row.body).map_err(storage)?,
            None => Mentor { answers: Vec::new(), ..imported.clone() },
        };
        mentor.name = imported.name.clone();
        mentor.mentor_type = imported.mentor_type;
        if imported.thumbnail.is_some() {
            mentor.thumbnail = imported.thumbnail.clone();
        }
        for a in imported.answers {
            match mentor.answers.iter_mut().find(|x| x.question.id == a.question.id) {
                Some(x) => *x = a,
                None => mentor.answers.push(a),
            }
        }
        let body = serde_json::to_value(&mentor).map_err(storage)?;
        tx.mentors().put(id, &body).await.map_err(storage)?;
        tx.models().ensure(&strato_service::mentor_model_id(id), &json!({"mentor": id})).await.map_err(storage)?;
        tx.commit().await.map_err(storage)
    }
}

fn retry(e: MediaError) -> JobError {
    JobError::Retryable(format!("{}: {e}", e.code()))
}

/// The stored file's name: the tag for videos (`web`, `mobile`), the language for subtitles (`en`).
fn file_stem(m: &ExportMedia) -> String {
    let t: String = m.tag.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    if t.is_empty() {
        m.kind.clone()
    } else {
        t
    }
}

/// The extension a copied file keeps: its URL's when it has a plain one, else by its type.
fn extension(url: &str, kind: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    match last.rsplit_once('.') {
        Some((_, ext)) if (1..=5).contains(&ext.len()) && ext.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            ext.to_ascii_lowercase()
        }
        _ => match kind {
            "subtitles" => "vtt".into(),
            "image" => "jpg".into(),
            _ => "mp4".into(),
        },
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, unique-local, …).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => {
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                || a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64
                || a.octets()[0] == 0)
        }
        std::net::IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(v4.into());
            }
            let s = a.segments();
            !(a.is_loopback() || a.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// Runs `media.transfer` jobs.
pub struct TransferWorker {
    media: MediaService,
}

impl TransferWorker {
    /// A worker of `media`.
    pub fn new(media: MediaService) -> Self {
        Self { media }
    }
}

#[async_trait]
impl Worker for TransferWorker {
    type Args = TransferArgs;

    async fn work(&self, a: TransferArgs, job: &JobRecord, ctx: &JobContext) -> Result<Value, JobError> {
        let r = self.media.run_transfer(&a.transfer, ctx).await;
        if let Err(e) = &r {
            // The last attempt's failure is the transfer's.
            if job.attempts >= job.max_attempts || matches!(e, JobError::Permanent(_)) {
                let why = e.to_string();
                let _ = self
                    .media
                    .set_transfer(&a.transfer, |t| {
                        t.status = TransferStatus::Failed;
                        t.errors.push(why.clone());
                    })
                    .await;
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_failing_the_schema_names_its_field() {
        let ok = br#"{"mentor": "m1", "mentorExportJson": {"id": "x", "mentorInfo": {"name": "Clint"},
            "answers": [{"question": {"_id": "q1", "question": "Who?"}, "transcript": "Me.",
              "media": [{"type": "video", "tag": "web", "url": "https://cdn.example/v/q1/web.mp4", "needsTransfer": true}]}]}}"#;
        let req = parse_request(ok).unwrap();
        assert_eq!(req.mentor_export_json.answers[0].media.len(), 1);
        let cases: [(&[u8], &str); 5] = [
            (br#"{"mentor": "m1"}"#, "missing field `mentorExportJson`"),
            (br#"{"mentor": "m1", "mentorExportJson": {"id": "x", "answers": []}}"#, "mentorExportJson: missing field `mentorInfo`"),
            (
                br#"{"mentor": "m1", "mentorExportJson": {"id": "x", "mentorInfo": {"name": "C"}, "answers": [{"question": {"question": "Who?"}}]}}"#,
                "mentorExportJson.answers[0].question: missing field `_id`",
            ),
            (
                br#"{"mentor": "m1", "mentorExportJson": {"id": "x", "mentorInfo": {"name": 7}, "answers": []}}"#,
                "mentorExportJson.mentorInfo.name: invalid type",
            ),
            (
                br#"{"mentor": "m1", "mentorExportJson": {"id": "x", "mentorInfo": {"name": "C"}, "answers": [{"question": {"_id": "q1", "question": "?"}, "media": [{"type": "video", "tag": "web", "url": "file:///etc/passwd", "needsTransfer": true}]}]}}"#,
                "mentorExportJson.answers[0].media[0].url",
            ),
        ];
        for (body, want) in cases {
            let e = parse_request(body).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should name {want:?}");
        }
        assert!(parse_request(b"not json").is_err());
        let bad_id =
            br#"{"mentor": "../x", "mentorExportJson": {"id": "x", "mentorInfo": {"name": "C"}, "answers": []}}"#;
        assert!(parse_request(bad_id).unwrap_err().to_string().starts_with("mentor:"));
    }

    #[test]
    fn only_public_addresses_are_fetched_by_default() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn copies_keep_a_plain_extension_or_get_one_by_type() {
        assert_eq!(extension("https://x/v/web.mp4?sig=1", "video"), "mp4");
        assert_eq!(extension("https://x/v/en.VTT", "subtitles"), "vtt");
        assert_eq!(extension("https://x/v/subs", "subtitles"), "vtt");
        assert_eq!(extension("https://x/v/a.b/c", "video"), "mp4");
    }
}
