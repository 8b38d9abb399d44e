//! The media routes on Strato's gateway: MentorPal's upload API (`/upload/…`, its paths, fields, `{"data": …}`
//! bodies and `{"data": {"error", "message"}}` errors), Strato's own `/v1/mentors/{mentor}/answers/{question}/media…`
//! and `/v1/media/uploads/{id}`, and `/media/{key}`, where players stream answer media with range requests.
//!
//! Every change needs `edit` on the mentor (MentorPal's per-mentor check: a token's `mentorIds` grant it).

use axum::body::Bytes;
use axum::extract::{Multipart, Path};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_http::auth::{Credential, Principal};
use strato_http::{ApiError, JsonBody};
use strato_types::{Action, ErrorCode, ResourceKind, ResourceRef, StratoError};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::service::{task_list, valid_id, AnswerUpload, MediaService};
use crate::upload::{Trim, Upload};
use crate::{vtt, MediaError};

/// The largest picture or subtitles file accepted in a form.
const MAX_FORM_BYTES: usize = 10 * 1024 * 1024;

/// The routes, serving `media`.
pub fn routes(media: MediaService) -> strato_http::CapabilityRoutes {
    api_routes().layer(Extension(media))
}

/// The routes without the service they serve: for the OpenAPI document.
pub fn api_routes() -> strato_http::CapabilityRoutes {
    let forms = axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES + 64 * 1024);
    OpenApiRouter::new()
        .routes(routes!(upload_url))
        .routes(routes!(upload_answer))
        .routes(routes!(upload_status))
        .routes(routes!(upload_thumbnail).layer(forms))
        .routes(routes!(upload_vbg).layer(forms))
        .routes(routes!(upload_vtt).layer(forms))
        .routes(routes!(regen_vtt))
        .routes(routes!(start, latest))
        .routes(routes!(cancel))
        .routes(routes!(upload_by_id))
        .routes(routes!(serve))
        .routes(routes!(transfer_mentor).layer(axum::extract::DefaultBodyLimit::max(64 << 20)))
        .routes(routes!(transfer_status))
}

fn mentor(id: &str) -> ResourceRef {
    ResourceRef::new(ResourceKind::MENTOR, id)
}

fn status_of(e: &MediaError) -> StatusCode {
    match e {
        MediaError::UploadInProgress(_) => StatusCode::CONFLICT,
        MediaError::Invalid(_)
        | MediaError::InvalidTrim(_)
        | MediaError::NotMedia(_)
        | MediaError::NoVideo
        | MediaError::TooShort(_) => StatusCode::BAD_REQUEST,
        MediaError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        MediaError::UploadNotFound(_)
        | MediaError::TransferNotFound(_)
        | MediaError::MentorNotFound(_)
        | MediaError::AnswerNotFound { .. }
        | MediaError::VideoNotFound(_) => StatusCode::NOT_FOUND,
        MediaError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A media error in Strato's own shape (`{"error": {"code", "message"}}`).
fn native(e: MediaError) -> ApiError {
    let code = match status_of(&e) {
        StatusCode::CONFLICT => ErrorCode::Conflict,
        StatusCode::BAD_REQUEST => ErrorCode::InvalidRequest,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::NOT_FOUND if matches!(e, MediaError::MentorNotFound(_)) => ErrorCode::MentorNotFound,
        StatusCode::NOT_FOUND if matches!(e, MediaError::VideoNotFound(_)) => ErrorCode::FileNotFound,
        StatusCode::NOT_FOUND => ErrorCode::ResourceNotFound,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::StorageUnavailable,
        _ => ErrorCode::Internal,
    };
    ApiError(StratoError::new(code, e.to_string()))
}

/// MentorPal's error body, `{"data": {"error", "message"}}`; the gateway's own refusals (credentials, a body that
/// is not JSON, limits) keep Strato's `{"error": {"code", "message"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum MentorPalError {
    /// MentorPal's.
    Data {
        /// What went wrong.
        data: ErrorData,
    },
    /// The gateway's.
    Native(strato_http::ErrorBody),
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorData {
    /// A stable code (`upload_in_progress`, `no_video_track`, `invalid_vtt`, …).
    error: String,
    /// What to fix.
    message: String,
}

/// A refusal in MentorPal's shape.
pub struct MpError(StatusCode, String, String);

impl From<MediaError> for MpError {
    fn from(e: MediaError) -> Self {
        MpError(status_of(&e), e.code().to_string(), e.to_string())
    }
}

impl From<ApiError> for MpError {
    fn from(e: ApiError) -> Self {
        MpError(strato_http::error_status(e.0.code), e.0.code.as_str().to_string(), e.0.message)
    }
}

impl IntoResponse for MpError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"data": {"error": self.1, "message": self.2}}))).into_response()
    }
}

fn bad(code: &str, message: impl Into<String>) -> MpError {
    MpError(StatusCode::BAD_REQUEST, code.to_string(), message.into())
}

/// `{"data": …}`.
fn data(v: Value) -> Json<Value> {
    Json(json!({ "data": v }))
}

/// `GET /upload/url`'s body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadUrlBody {
    data: UploadUrl,
}

/// `POST /upload/answer`'s body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadStartedBody {
    data: UploadStarted,
}

/// `GET /upload/transfer/status/{id}`'s body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TransferBody {
    data: crate::transfer::Transfer,
}

/// A `{"data": {…}}` body whose fields the route's description lists.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DataBody {
    #[schema(value_type = Object)]
    data: Value,
}

/// A presigned upload.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadUrl {
    /// Where to send the file: `PUT` its bytes there (no other credential is needed until it expires).
    url: String,
    /// What identifies the upload: `key` is the value of `video` in `POST /upload/answer`.
    #[schema(value_type = Object)]
    fields: Value,
}

#[utoipa::path(get, path = "/upload/url", tag = "media",
    responses((status = 200, description = "`{\"data\": {url, fields}}`: PUT the video (at most 100 MB) to `url` within an hour", body = UploadUrlBody),
              (status = 401, description = "No credentials", body = MentorPalError)))]
/// A presigned upload URL for an answer video (key `uploads/<user id>/<uuid>`, valid one hour).
async fn upload_url(p: Principal, Extension(m): Extension<MediaService>) -> Result<Json<Value>, MpError> {
    if p.credential == Credential::Anonymous {
        return Err(MpError(StatusCode::UNAUTHORIZED, "unauthorized".into(), "sign in to upload".into()));
    }
    let key = format!("uploads/{}/{}", sanitize(&p.subject), uuid::Uuid::new_v4());
    let u = m.presign_upload(&key).await?;
    Ok(data(json!({"url": u.url, "fields": {"key": key, "method": "PUT", "expires_at": u.expires_at}})))
}

/// A subject as a path segment.
fn sanitize(s: &str) -> String {
    let t: String = s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    if valid_id(&t) {
        t
    } else {
        "user".into()
    }
}

/// The caller may use the uploaded file: their own upload, or a file they may read.
fn may_use_video(p: &Principal, key: &str) -> Result<(), MpError> {
    let own = format!("uploads/{}/", sanitize(&p.subject));
    if key.starts_with(&own) || p.can(Action::Read, &ResourceRef::new(ResourceKind::FILE, key)) {
        return Ok(());
    }
    Err(MpError(StatusCode::FORBIDDEN, "forbidden".into(), format!("you may not read the file {key:?}")))
}

/// An upload started.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadStarted {
    /// Its tasks, `QUEUED`.
    task_list: Vec<TaskView>,
    /// Where to follow them.
    status_url: String,
}

/// A task as MentorPal shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskView {
    task_name: String,
    task_id: String,
    #[schema(value_type = crate::upload::TaskStatus)]
    status: String,
    /// 0-100.
    progress: u8,
    error: Option<String>,
}

#[utoipa::path(post, path = "/upload/answer", tag = "media", request_body = AnswerUpload,
    responses((status = 200, description = "`{\"data\": {taskList, statusUrl}}`", body = UploadStartedBody),
              (status = 400, description = "A bad field, a trim that is not a range, or not a video", body = MentorPalError),
              (status = 403, description = "The caller may not edit the mentor", body = MentorPalError),
              (status = 404, description = "No such mentor, answer or uploaded file", body = MentorPalError),
              (status = 409, description = "An upload of this answer is in progress", body = MentorPalError),
              (status = 413, description = "Over 100 MB", body = MentorPalError)))]
/// Processes an uploaded answer video: trim, web and mobile renditions, transcript and subtitles, thumbnail, then
/// the mentor's answer — an execution of the `strato-upload-processor` state machine.
async fn upload_answer(
    p: Principal,
    Extension(m): Extension<MediaService>,
    JsonBody(req): JsonBody<AnswerUpload>,
) -> Result<Json<Value>, MpError> {
    p.may(Action::Edit, &mentor(&req.mentor))?;
    may_use_video(&p, &req.video)?;
    let u = m.start_upload(req, &p.subject).await?;
    Ok(data(json!({"taskList": task_list(&u), "statusUrl": format!("/upload/status/{}", u.id)})))
}

/// An upload's state, as the status URL reports it.
fn status_view(u: &Upload) -> Value {
    json!({
        "id": u.id,
        "mentor": u.mentor,
        "question": u.question,
        "status": u.status,
        "taskList": task_list(u),
        "error": u.error,
        "execution": u.execution,
        "transcript": u.results.transcript,
        "updated": u.updated_at,
    })
}

#[utoipa::path(get, path = "/upload/status/{id}", tag = "media",
    params(("id" = String, Path, description = "The upload's id (from statusUrl)")),
    responses((status = 200, description = "`{\"data\": {id, mentor, question, status, taskList, error, execution}}`", body = DataBody),
              (status = 404, description = "No such upload", body = MentorPalError)))]
/// An answer upload's tasks and status.
async fn upload_status(
    p: Principal,
    Extension(m): Extension<MediaService>,
    Path(id): Path<String>,
) -> Result<Json<Value>, MpError> {
    let u = m.uploads().get(&id).await?;
    p.may(Action::Read, &mentor(&u.mentor))?;
    Ok(data(status_view(&u)))
}

/// A form's fields: text values, and the one file asked for (checked against `limit`).
struct Form {
    text: std::collections::BTreeMap<String, String>,
    file: Option<(String, Bytes)>,
}

/// A form, or the reason it is not one (as MentorPal's JSON error).
type FormResult = Result<Multipart, axum::extract::multipart::MultipartRejection>;

async fn read_form(form: FormResult, file_field: &str) -> Result<Form, MpError> {
    let mut form = form.map_err(|e| bad("invalid_form", format!("a multipart/form-data body: {e}")))?;
    let mut f = Form { text: Default::default(), file: None };
    let bad_form = |e: axum::extract::multipart::MultipartError| bad("invalid_form", format!("a multipart form: {e}"));
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == file_field {
            let file_name = field.file_name().unwrap_or_default().to_string();
            let bytes = field.bytes().await.map_err(bad_form)?;
            if bytes.len() > MAX_FORM_BYTES {
                return Err(MpError(StatusCode::PAYLOAD_TOO_LARGE, "too_large".into(), "at most 10 MB".into()));
            }
            f.file = Some((file_name, bytes));
        } else {
            f.text.insert(name, field.text().await.map_err(bad_form)?);
        }
    }
    Ok(f)
}

/// The picture's extension, by its content: PNG or JPEG only.
fn image_ext(bytes: &[u8]) -> Result<&'static str, MpError> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Ok("png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Ok("jpg")
    } else {
        Err(MpError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_image".into(),
            "the image must be a PNG or JPEG (checked by its content, not its name)".into(),
        ))
    }
}

/// Stores a mentor's picture (`thumbnail` or `virtual_background`) and records it on the mentor.
async fn mentor_picture(
    p: &Principal,
    m: &MediaService,
    form: FormResult,
    field: &str,
    folder: &str,
) -> Result<(String, String), MpError> {
    let f = read_form(form, field).await?;
    // MentorPal's thumbnail form carries `body` = `{"mentor": …}`; the background form a `mentor` field or the same.
    let id = match (f.text.get("body"), f.text.get("mentor")) {
        (Some(body), _) => serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("mentor").and_then(Value::as_str).map(String::from))
            .ok_or_else(|| bad("invalid_form", "the body field must be JSON with a \"mentor\" string"))?,
        (None, Some(m)) => m.clone(),
        (None, None) => return Err(bad("invalid_form", "the form needs body = {\"mentor\": …} (or a mentor field)")),
    };
    p.may(Action::Edit, &mentor(&id))?;
    if !valid_id(&id) {
        return Err(bad("invalid_request", format!("mentor {id:?} is not a valid id")));
    }
    let (_, bytes) = f.file.ok_or_else(|| bad("invalid_form", format!("the form has no {field} file")))?;
    let ext = image_ext(&bytes)?;
    let key = format!("mentor/{folder}/{id}/{}/{field}.{ext}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ"));
    let url = m.media_url(&key, &Utc::now().timestamp_millis().to_string());
    m.store_mentor_file(&id, &key, bytes, |mentor| {
        if field == "thumbnail" {
            mentor.thumbnail = Some(url.clone());
        } else {
            mentor.virtual_background_url = Some(url.clone());
        }
    })
    .await?;
    Ok((id, url))
}

#[utoipa::path(post, path = "/upload/thumbnail", tag = "media",
    request_body(content_type = "multipart/form-data", description = "`body` = `{\"mentor\": id}`, `thumbnail` = a PNG or JPEG"),
    responses((status = 200, description = "`{\"data\": {\"thumbnail\": url}}`", body = DataBody),
              (status = 400, description = "A malformed form", body = MentorPalError),
              (status = 415, description = "Not a PNG or JPEG", body = MentorPalError)))]
/// Sets a mentor's picture.
async fn upload_thumbnail(
    p: Principal,
    Extension(m): Extension<MediaService>,
    form: FormResult,
) -> Result<Json<Value>, MpError> {
    let (_, url) = mentor_picture(&p, &m, form, "thumbnail", "thumbnails").await?;
    Ok(data(json!({ "thumbnail": url })))
}

#[utoipa::path(post, path = "/upload/vbg", tag = "media",
    request_body(content_type = "multipart/form-data", description = "`body` = `{\"mentor\": id}`, `background_image` = a PNG or JPEG"),
    responses((status = 200, description = "`{\"data\": {\"virtualBackground\": url}}`", body = DataBody),
              (status = 400, description = "A malformed form", body = MentorPalError),
              (status = 415, description = "Not a PNG or JPEG", body = MentorPalError)))]
/// Sets a mentor's virtual background.
async fn upload_vbg(
    p: Principal,
    Extension(m): Extension<MediaService>,
    form: FormResult,
) -> Result<Json<Value>, MpError> {
    let (_, url) = mentor_picture(&p, &m, form, "background_image", "virtual_backgrounds").await?;
    Ok(data(json!({ "virtualBackground": url })))
}

#[utoipa::path(post, path = "/upload/vtt", tag = "media",
    request_body(content_type = "multipart/form-data", description = "`mentor`, `question`, `vtt_file` = WebVTT"),
    responses((status = 200, description = "`{\"data\": {vtt_path, vtt_text}}`", body = DataBody),
              (status = 400, description = "Not a valid WebVTT file, or a malformed form", body = MentorPalError),
              (status = 404, description = "No such mentor or answer", body = MentorPalError)))]
/// Replaces an answer's subtitles with an uploaded WebVTT file.
async fn upload_vtt(
    p: Principal,
    Extension(m): Extension<MediaService>,
    form: FormResult,
) -> Result<Json<Value>, MpError> {
    let f = read_form(form, "vtt_file").await?;
    let field = |n: &str| f.text.get(n).cloned().ok_or_else(|| bad("invalid_form", format!("the form needs {n}")));
    let (id, question) = (field("mentor")?, field("question")?);
    p.may(Action::Edit, &mentor(&id))?;
    let (_, bytes) = f.file.ok_or_else(|| bad("invalid_form", "the form has no vtt_file"))?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| bad("invalid_vtt", "the file is not UTF-8 text"))?;
    vtt::validate(&text).map_err(|e| bad("invalid_vtt", format!("invalid WebVTT: {e}")))?;
    let key = m.store_subtitles(&id, &question, &text).await?;
    Ok(data(json!({"vtt_path": key, "vtt_text": text})))
}

/// `POST /upload/regen_vtt`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegenVtt {
    /// The mentor.
    mentor: String,
    /// The answer's question.
    question: String,
}

#[utoipa::path(post, path = "/upload/regen_vtt", tag = "media", request_body = RegenVtt,
    responses((status = 200, description = "`{\"data\": {regen_vtt: true, new_vtt_text, new_vtt_url}}`", body = DataBody),
              (status = 400, description = "The answer has no video to time the subtitles by", body = MentorPalError),
              (status = 404, description = "No such mentor or answer", body = MentorPalError)))]
/// Rebuilds an answer's subtitles from its (edited) transcript and its video's duration.
async fn regen_vtt(
    p: Principal,
    Extension(m): Extension<MediaService>,
    JsonBody(req): JsonBody<RegenVtt>,
) -> Result<Json<Value>, MpError> {
    p.may(Action::Edit, &mentor(&req.mentor))?;
    let (text, url) = m.regen_subtitles(&req.mentor, &req.question).await?;
    Ok(data(json!({"regen_vtt": true, "new_vtt_text": text, "new_vtt_url": url})))
}

/// An upload through Strato's own routes.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct MediaUpload {
    /// Storage key of the uploaded video (`PUT /v1/files/{key}` or a presigned URL).
    video: String,
    /// Cut to these seconds first.
    #[serde(default)]
    trim: Option<Trim>,
    /// Do not transcribe (the transcript was edited by hand).
    #[serde(default)]
    has_edited_transcript: bool,
    /// Keep the input's aspect ratio in the web rendition.
    #[serde(default)]
    maintain_original_aspect_ratio: bool,
    /// Make a thumbnail.
    #[serde(default)]
    generate_thumbnail: bool,
    /// A virtual-background video (keep alpha).
    #[serde(default)]
    is_vbg_video: bool,
    /// Retrain the mentor's classifier when done (default: when the transcript changed).
    #[serde(default)]
    retrain: Option<bool>,
}

#[utoipa::path(post, path = "/v1/mentors/{mentor}/answers/{question}/media", tag = "media",
    params(("mentor" = String, Path), ("question" = String, Path, description = "The answer's question id")),
    request_body = MediaUpload,
    responses((status = 202, description = "Processing started", body = Upload),
              (status = 400, description = "A bad field, or not a video", body = strato_http::ErrorBody),
              (status = 404, description = "No such mentor, answer or file", body = strato_http::ErrorBody),
              (status = 409, description = "An upload of this answer is in progress", body = strato_http::ErrorBody)))]
/// Processes an uploaded video as the answer's media (the upload-processor workflow).
async fn start(
    p: Principal,
    Extension(m): Extension<MediaService>,
    Path((id, question)): Path<(String, String)>,
    JsonBody(req): JsonBody<MediaUpload>,
) -> Result<(StatusCode, Json<Upload>), ApiError> {
    p.may(Action::Edit, &mentor(&id))?;
    may_use_video(&p, &req.video).map_err(|e| ApiError::new(ErrorCode::Forbidden, e.2))?;
    let req = AnswerUpload {
        mentor: id,
        question,
        video: req.video,
        trim: req.trim,
        has_edited_transcript: req.has_edited_transcript,
        maintain_original_aspect_ratio: req.maintain_original_aspect_ratio,
        generate_thumbnail: req.generate_thumbnail,
        is_vbg_video: req.is_vbg_video,
        external_video_ids: None,
        retrain: req.retrain,
    };
    Ok((StatusCode::ACCEPTED, Json(m.start_upload(req, &p.subject).await.map_err(native)?)))
}

#[utoipa::path(get, path = "/v1/mentors/{mentor}/answers/{question}/media", tag = "media",
    params(("mentor" = String, Path), ("question" = String, Path, description = "The answer's question id")),
    responses((status = 200, description = "The answer's latest upload, its tasks and what they made", body = Upload),
              (status = 404, description = "No upload of this answer", body = strato_http::ErrorBody)))]
/// The answer's latest upload.
async fn latest(
    p: Principal,
    Extension(m): Extension<MediaService>,
    Path((id, question)): Path<(String, String)>,
) -> Result<Json<Upload>, ApiError> {
    p.may(Action::Read, &mentor(&id))?;
    let u = m.uploads().of_answer(&id, &question).await.map_err(native)?;
    u.map(Json).ok_or_else(|| {
        ApiError::new(ErrorCode::ResourceNotFound, format!("no upload of mentor {id:?}'s answer to {question:?}"))
    })
}

#[utoipa::path(post, path = "/v1/mentors/{mentor}/answers/{question}/media/cancel", tag = "media",
    params(("mentor" = String, Path), ("question" = String, Path, description = "The answer's question id")),
    responses((status = 200, description = "The upload, CANCELLED (unchanged when it had already ended)", body = Upload),
              (status = 404, description = "No upload of this answer", body = strato_http::ErrorBody)))]
/// Cancels the answer's upload in progress: its unfinished tasks stop and the mentor is unchanged.
async fn cancel(
    p: Principal,
    Extension(m): Extension<MediaService>,
    Path((id, question)): Path<(String, String)>,
) -> Result<Json<Upload>, ApiError> {
    p.may(Action::Edit, &mentor(&id))?;
    let u = m.uploads().of_answer(&id, &question).await.map_err(native)?.ok_or_else(|| {
        ApiError::new(ErrorCode::ResourceNotFound, format!("no upload of mentor {id:?}'s answer to {question:?}"))
    })?;
    Ok(Json(m.cancel(&u.id).await.map_err(native)?))
}

#[utoipa::path(get, path = "/v1/media/uploads/{id}", tag = "media",
    params(("id" = String, Path, description = "The upload's id")),
    responses((status = 200, description = "The upload", body = Upload),
              (status = 404, description = "No such upload", body = strato_http::ErrorBody)))]
/// An upload by id.
async fn upload_by_id(
    p: Principal,
    Extension(m): Extension<MediaService>,
    Path(id): Path<String>,
) -> Result<Json<Upload>, ApiError> {
    let u = m.uploads().get(&id).await.map_err(native)?;
    p.may(Action::Read, &mentor(&u.mentor))?;
    Ok(Json(u))
}

#[utoipa::path(post, path = "/upload/transfer/mentor", tag = "media",
    request_body = crate::transfer::TransferRequest,
    responses((status = 200, description = "`{\"data\": {id, mentor, status: QUEUED, statusUrl}}`", body = DataBody),
              (status = 400, description = "The export fails MentorPal's schema (the error names the field)", body = MentorPalError),
              (status = 403, description = "The caller may not edit the mentor", body = MentorPalError)))]
/// Imports a MentorPal mentor export into a mentor, copying the media that need transfer, as a tracked job.
async fn transfer_mentor(
    p: Principal,
    Extension(m): Extension<MediaService>,
    body: Bytes,
) -> Result<Json<Value>, MpError> {
    let req = crate::transfer::parse_request(&body)
        .map_err(|e| MpError(StatusCode::BAD_REQUEST, "invalid_export".into(), e.to_string()))?;
    p.may(Action::Edit, &mentor(&req.mentor))?;
    let t = m.start_transfer(req).await?;
    Ok(data(json!({"id": t.id, "mentor": t.mentor, "status": t.status, "statusUrl": t.status_url})))
}

#[utoipa::path(get, path = "/upload/transfer/status/{id}", tag = "media",
    params(("id" = String, Path, description = "The transfer's id")),
    responses((status = 200, description = "`{\"data\": transfer}`: status, progress, media copied, errors", body = TransferBody),
              (status = 404, description = "No such transfer", body = MentorPalError)))]
/// A mentor transfer's status.
async fn transfer_status(
    p: Principal,
    Extension(m): Extension<MediaService>,
    Path(id): Path<String>,
) -> Result<Json<Value>, MpError> {
    let t = m.transfer(&id).await?;
    p.may(Action::Read, &mentor(&t.mentor))?;
    Ok(data(serde_json::to_value(t).unwrap_or_default()))
}

/// Keys `/media/…` serves: answer media and mentors' pictures, nothing else in storage.
pub fn is_media_key(key: &str) -> bool {
    (key.starts_with("videos/")
        || key.starts_with("mentor/thumbnails/")
        || key.starts_with("mentor/virtual_backgrounds/"))
        && !key.split('/').any(|s| s.is_empty() || s == "." || s == "..")
}

#[utoipa::path(get, path = "/media/{*key}", tag = "media", security((), ("bearer" = [])),
    params(("key" = String, Path, description = "`videos/<mentor>/<question>/<file>` or a mentor's picture"),
           ("Range" = Option<String>, Header, description = "`bytes=START-END`, `bytes=START-` or `bytes=-LAST`")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 404, description = "No such media file", body = strato_http::ErrorBody),
              (status = 416, description = "The range starts past the end", body = strato_http::ErrorBody)))]
/// Streams an answer's media (or a mentor's picture) to a player, with range requests. Public unless the server's
/// public routes leave `GET /media/*` out.
async fn serve(
    p: Principal,
    Extension(m): Extension<MediaService>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !is_media_key(&key) || strato_service::validate_file_key(&key).is_err() {
        return Err(ApiError::new(ErrorCode::FileNotFound, format!("no media file {key:?}")));
    }
    p.may(Action::Read, &ResourceRef::new(ResourceKind::FILE, &key))?;
    let range = strato_http::requested_range(&headers)?;
    let d = m.blobs().get_stream(&key, range).await.map_err(|e| match e {
        strato_blob::BlobError::NotFound(_) => ApiError::new(ErrorCode::FileNotFound, format!("no media file {key:?}")),
        strato_blob::BlobError::RangeNotSatisfiable(_) => {
            ApiError::new(ErrorCode::RangeNotSatisfiable, "the range starts past the end of the file")
        }
        e => ApiError::new(ErrorCode::StorageUnavailable, e.to_string()),
    })?;
    let mut res = strato_http::stream_response(d, range.is_some());
    if let Some(ct) = content_type(&key) {
        res.headers_mut().insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(ct));
    }
    Ok(res)
}

/// What a player needs to be told a file is.
fn content_type(key: &str) -> Option<&'static str> {
    Some(match key.rsplit('.').next()? {
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "vtt" => "text/vtt; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => return None,
    })
}
