//! `/v1/files`: objects of any size, streamed to and from storage without being held in memory; byte ranges;
//! listings by prefix; presigned URLs. `/v1/presigned/{key}`: the URLs Strato signs for local storage, served
//! without credentials once their signature checks out.
//!
//! Access is by the `file` resource kind with the key as id, so grants go by prefix (`uploads/*`): reading and
//! presigned downloads need `read`, uploads, deletions and presigned uploads `edit`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use strato_service::{ByteRange, Download, PresignMethod};
use strato_types::{Action, ErrorCode, ResourceKind, ResourceRef};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::extract::{JsonBody, QueryParams};
use crate::{ApiError, AppState};

/// The file routes behind the gateway.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    // Bodies stream to storage, bounded by the files' own limit, not the JSON one.
    OpenApiRouter::new()
        .routes(routes!(put, get, delete).layer(axum::extract::DefaultBodyLimit::disable()))
        .routes(routes!(list))
        .routes(routes!(presign))
}

/// The presigned routes: open (the signature is the credential).
pub(crate) fn presigned_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(presigned_get, presigned_put).layer(axum::extract::DefaultBodyLimit::disable()))
}

fn file(key: &str) -> ResourceRef {
    ResourceRef::new(ResourceKind::FILE, key)
}

/// A stored file.
#[derive(Serialize, ToSchema)]
pub(crate) struct FileView {
    /// Its key.
    key: String,
    /// Its size in bytes.
    size: u64,
    last_modified: chrono::DateTime<chrono::Utc>,
    /// Its entity tag, where the storage has one.
    e_tag: Option<String>,
}

impl From<strato_service::FileInfo> for FileView {
    fn from(f: strato_service::FileInfo) -> Self {
        Self { key: f.key, size: f.size, last_modified: f.last_modified, e_tag: f.e_tag }
    }
}

/// `GET /v1/files`.
#[derive(Serialize, ToSchema)]
pub(crate) struct FileList {
    files: Vec<FileView>,
}

#[utoipa::path(put, path = "/v1/files/{*key}", tag = "files",
    params(("key" = String, Path, description = "The file's key: /-separated names", example = "uploads/clip.mp4")),
    request_body(description = "The file's bytes, streamed to storage (none: an empty file)", content_type = "application/octet-stream", content = Option<Vec<u8>>),
    responses((status = 201, description = "Stored", body = FileView),
              (status = 413, description = "Larger than the limit (STRATO_MAX_FILE_BYTES); nothing stored", body = crate::error::ErrorBody)))]
/// Uploads a file (replacing one at the key), streaming it to storage.
async fn put(
    p: Principal,
    State(s): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<FileView>), ApiError> {
    p.may(Action::Edit, &file(&key))?;
    strato_service::validate_file_key(&key)?;
    refuse_declared_oversize(&headers, s.strato.files().max_bytes())?;
    let info = s.strato.files().put(&key, body.into_data_stream()).await?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

/// A body whose declared length is over the limit is refused before a byte is read.
fn refuse_declared_oversize(headers: &HeaderMap, max: u64) -> Result<(), ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the file is {n} bytes; the limit is {max} bytes (STRATO_MAX_FILE_BYTES)"),
        )),
        _ => Ok(()),
    }
}

#[utoipa::path(get, path = "/v1/files/{*key}", tag = "files",
    params(("key" = String, Path, description = "The file's key", example = "uploads/clip.mp4"),
           ("Range" = Option<String>, Header, description = "`bytes=START-END`, `bytes=START-` or `bytes=-LAST`")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "The range asked for, with Content-Range", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 416, description = "The range starts past the end", body = crate::error::ErrorBody)))]
/// Downloads a file (or a byte range of it), streamed from storage.
async fn get(
    p: Principal,
    State(s): State<AppState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    p.may(Action::Read, &file(&key))?;
    let range = requested_range(&headers)?;
    let d = s.strato.files().get(&key, range).await?;
    Ok(stream_response(d, range.is_some()))
}

#[utoipa::path(delete, path = "/v1/files/{*key}", tag = "files",
    params(("key" = String, Path, description = "The file's key", example = "uploads/clip.mp4")),
    responses((status = 204, description = "Deleted")))]
/// Deletes a file.
async fn delete(p: Principal, State(s): State<AppState>, Path(key): Path<String>) -> Result<StatusCode, ApiError> {
    p.may(Action::Edit, &file(&key))?;
    s.strato.files().delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only keys starting with this (a string prefix: `uploads/2026-`).
    prefix: Option<String>,
    /// At most this many (1-10000, default 1000), sorted by key.
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/files", tag = "files", params(ListQuery), responses((status = 200, body = FileList)))]
/// Lists the files under a prefix that the caller may read.
async fn list(
    p: Principal,
    State(s): State<AppState>,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<FileList>, ApiError> {
    let prefix = q.prefix.unwrap_or_default();
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let found = s.strato.files().list(&prefix, limit).await?;
    let files = found.into_iter().filter(|f| p.can(Action::Read, &file(&f.key))).map(Into::into).collect();
    Ok(Json(FileList { files }))
}

/// What to presign.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresignBody {
    /// The file's key.
    #[schema(example = "uploads/clip.mp4")]
    key: String,
    /// `GET` (download) or `PUT` (upload).
    #[schema(pattern = "^(GET|PUT|get|put)$", example = "PUT")]
    method: String,
    /// How long the URL works, in seconds (1 to 604800, a week; default 3600).
    #[schema(minimum = 1, maximum = 604_800)]
    expires_in_secs: Option<u64>,
}

/// A presigned URL.
#[derive(Serialize, ToSchema)]
pub(crate) struct PresignedView {
    /// Send the request here, with no other credential.
    url: String,
    /// `GET` or `PUT`.
    method: &'static str,
    /// When it stops working (Unix seconds).
    expires_at: u64,
}

#[utoipa::path(post, path = "/v1/presigned-urls", tag = "files", request_body = PresignBody,
    responses((status = 200, body = PresignedView),
              (status = 501, description = "Local storage without a public URL (STRATO_PUBLIC_URL)", body = crate::error::ErrorBody)))]
/// A URL that lets its holder upload or download one file for a while, with no other credential: S3's own on
/// S3, one Strato serves at `/v1/presigned/…` on local storage.
async fn presign(
    p: Principal,
    State(s): State<AppState>,
    JsonBody(req): JsonBody<PresignBody>,
) -> Result<Json<PresignedView>, ApiError> {
    let method = PresignMethod::parse(&req.method)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "\"method\" must be GET or PUT"))?;
    let action = match method {
        PresignMethod::Get => Action::Read,
        PresignMethod::Put => Action::Edit,
    };
    p.may(action, &file(&req.key))?;
    let secs = req.expires_in_secs.unwrap_or(3600);
    if !(1..=604_800).contains(&secs) {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "\"expires_in_secs\" must be 1-604800 (a week)"));
    }
    let u = s.strato.files().presign(method, &req.key, std::time::Duration::from_secs(secs)).await?;
    Ok(Json(PresignedView { url: u.url, method: u.method.as_str(), expires_at: u.expires_at }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SignedQuery {
    /// The method the URL allows.
    method: String,
    /// Unix seconds after which the URL no longer works.
    expires: u64,
    /// HMAC-SHA256 over method, key and expiry.
    signature: String,
}

fn verify(s: &AppState, want: PresignMethod, key: &str, q: &SignedQuery) -> Result<(), ApiError> {
    if PresignMethod::parse(&q.method) != Some(want) {
        return Err(ApiError::new(ErrorCode::Forbidden, format!("this URL is not for {}", want.as_str())));
    }
    Ok(s.strato.files().verify_presigned(want, key, q.expires, &q.signature)?)
}

#[utoipa::path(get, path = "/v1/presigned/{*key}", tag = "files", security(()),
    params(("key" = String, Path, description = "The object's key, as signed"), SignedQuery,
           ("Range" = Option<String>, Header, description = "`bytes=START-END`, `bytes=START-` or `bytes=-LAST`")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "The range asked for, with Content-Range", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 400, description = "A malformed query or Range header", body = crate::error::ErrorBody),
              (status = 403, description = "Expired, or the signature does not match", body = crate::error::ErrorBody),
              (status = 404, description = "No such file", body = crate::error::ErrorBody),
              (status = 416, description = "The range starts past the end", body = crate::error::ErrorBody)))]
/// Downloads through a presigned URL of local storage.
async fn presigned_get(
    State(s): State<AppState>,
    Path(key): Path<String>,
    QueryParams(q): QueryParams<SignedQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    verify(&s, PresignMethod::Get, &key, &q)?;
    let range = requested_range(&headers)?;
    let d = s.strato.files().get_presigned(&key, range).await?;
    Ok(stream_response(d, range.is_some()))
}

#[utoipa::path(put, path = "/v1/presigned/{*key}", tag = "files", security(()),
    params(("key" = String, Path, description = "The object's key, as signed"), SignedQuery),
    request_body(description = "The file's bytes", content_type = "application/octet-stream", content = Vec<u8>),
    responses((status = 200, description = "Stored"),
              (status = 400, description = "A malformed query, or the upload was cut off", body = crate::error::ErrorBody),
              (status = 403, description = "Expired, or the signature does not match", body = crate::error::ErrorBody),
              (status = 413, description = "Larger than the limit; nothing stored", body = crate::error::ErrorBody)))]
/// Uploads through a presigned URL of local storage.
async fn presigned_put(
    State(s): State<AppState>,
    Path(key): Path<String>,
    QueryParams(q): QueryParams<SignedQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    verify(&s, PresignMethod::Put, &key, &q)?;
    refuse_declared_oversize(&headers, s.strato.files().max_bytes())?;
    s.strato.files().put_presigned(&key, body.into_data_stream()).await?;
    Ok(StatusCode::OK)
}

/// The `Range` header's one range (`bytes=a-b`, `bytes=a-`, `bytes=-n`); several ranges are answered whole, as
/// RFC 9110 allows.
pub fn requested_range(headers: &HeaderMap) -> Result<Option<ByteRange>, ApiError> {
    let Some(v) = headers.get(header::RANGE) else { return Ok(None) };
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidRequest,
            "the Range header must be bytes=START-END, bytes=START- or bytes=-LAST",
        )
    };
    let spec = v.to_str().map_err(|_| bad())?.trim();
    let Some(spec) = spec.strip_prefix("bytes=") else { return Err(bad()) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
    Ok(Some(match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => ByteRange::Last(num(b)?),
        (false, true) => ByteRange::From(num(a)?),
        (false, false) => {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad());
            }
            ByteRange::Inclusive(a, b)
        }
        (true, true) => return Err(bad()),
    }))
}

/// The download as a streamed response: 200 with the whole file, or 206 with `Content-Range`.
pub fn stream_response(d: Download, partial: bool) -> Response {
    let len = d.range.end - d.range.start;
    let mut res = Body::from_stream(d.stream).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(tag) = d.info.e_tag.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert(header::ETAG, tag);
    }
    if partial {
        let range = format!("bytes {}-{}/{}", d.range.start, d.range.end - 1, d.info.size);
        if let Ok(v) = HeaderValue::from_str(&range) {
            h.insert(header::CONTENT_RANGE, v);
        }
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    res
}

/// Transfers are bounded by their own progress, not the request time limit: a 2 GB upload over a slow link takes
/// minutes. (Whether a request is one.)
pub(crate) fn is_transfer(method: &Method, path: &str) -> bool {
    (path.starts_with("/v1/files/") && matches!(*method, Method::PUT | Method::GET))
        || path.starts_with("/v1/presigned/")
        // The media capability's streams: answer videos played from `/media/…`.
        || (path.starts_with("/media/") && matches!(*method, Method::GET | Method::HEAD))
}
