//! The routes: Lambda's Invoke API (`/2015-03-31/functions/{name}/invocations`, which is also the Runtime Interface
//! Emulator's path for the function named `function`) with Lambda's headers and error shapes, and the native
//! `/v1/functions` routes. All sit behind the gateway: invoking needs `use` on the function, reading needs
//! `read`, changing needs `edit`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use strato_http::auth::Principal;
use strato_http::{ApiError, CapabilityRoutes, JsonBody, QueryParams};
use strato_types::{Action, ErrorCode, ResourceRef, StratoError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::logs::tail_header;
use crate::service::{ConfigPatch, FunctionView, Functions, InvokeRequest, InvokeResponse, NewCode, NewFunction};
use crate::{FunctionError, FUNCTION, MAX_PAYLOAD_BYTES};

/// Largest code upload (a 50 MB archive, base64 in JSON).
const MAX_CODE_BODY: usize = 72 << 20;

/// The routes of functions, over `functions`.
pub fn routes(functions: Functions) -> CapabilityRoutes {
    api_routes().layer(Extension(functions))
}

/// The routes without the functions they serve: for the OpenAPI document.
pub fn api_routes() -> CapabilityRoutes {
    let invoke = OpenApiRouter::new()
        .routes(routes!(lambda_invoke))
        .routes(routes!(invoke))
        // Read by the handlers with the payload limit, so an oversized event gets the API's own error.
        .layer(DefaultBodyLimit::disable());
    let manage = OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, update, delete))
        .routes(routes!(put_code))
        .routes(routes!(publish, versions))
        .routes(routes!(logs))
        .merge(crate::aws::routes())
        .layer(DefaultBodyLimit::max(MAX_CODE_BODY));
    invoke.merge(manage)
}

fn resource(name: &str) -> ResourceRef {
    ResourceRef::new(FUNCTION, name)
}

fn native(e: FunctionError) -> ApiError {
    ApiError(StratoError::from(e))
}

// ---- Lambda's Invoke API ----

/// Lambda's error body; the error's type is in the `x-amzn-ErrorType` header.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)] // describes what `lambda_error` writes
struct LambdaErrorBody {
    /// `User` (the caller's to fix) or `Service`.
    Type: String,
    /// What went wrong.
    message: String,
}

use strato_http::aws_error as lambda_error;

/// A function error as Lambda answers it.
pub(crate) fn lambda_error_of(e: FunctionError) -> Response {
    match &e {
        FunctionError::NotFound(m) => lambda_error(StatusCode::NOT_FOUND, "ResourceNotFoundException", m),
        FunctionError::Throttled(m) => {
            let mut r = lambda_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", m);
            r.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
            r
        }
        FunctionError::TooLarge(m) => lambda_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException", m),
        FunctionError::Invalid(m) => lambda_error(StatusCode::BAD_REQUEST, "InvalidRequestContentException", m),
        FunctionError::Conflict(m) => lambda_error(StatusCode::CONFLICT, "ResourceConflictException", m),
        FunctionError::Forbidden(m) => lambda_error(StatusCode::FORBIDDEN, "AccessDeniedException", m),
        FunctionError::Internal(m) => {
            tracing::error!(error = %m, "function invocation failed");
            lambda_error(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "the service failed; see its log")
        }
    }
}

/// `FunctionName` as Lambda takes it: a name, `name:qualifier`, a full or partial ARN.
pub(crate) fn parse_function_name(raw: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name] => (name.to_string(), None),
        ["arn", _, "lambda", _, _, "function", name, q] => (name.to_string(), Some(q.to_string())),
        [_, "function", name] => (name.to_string(), None),
        [_, "function", name, q] => (name.to_string(), Some(q.to_string())),
        [name, q] => (name.to_string(), Some(q.to_string())),
        _ => (raw.to_string(), None),
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LambdaInvokeQuery {
    /// A version number or `$LATEST`.
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The caller, as the function sees it: `context.identity` (Lambda's Cognito identity fields).
fn identity(p: &Principal) -> serde_json::Value {
    json!({"cognitoIdentityId": p.subject, "cognitoIdentityPoolId": format!("strato:{:?}", p.credential).to_lowercase()})
}

/// What Lambda's and the native invoke share: the invocation type, the log tail, the client context.
async fn run_invoke(
    functions: &Functions,
    p: &Principal,
    raw_name: &str,
    qualifier: Option<String>,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response, FunctionError> {
    let body = axum::body::to_bytes(body, MAX_PAYLOAD_BYTES).await.map_err(|_| {
        FunctionError::TooLarge(format!(
            "the request payload is larger than {MAX_PAYLOAD_BYTES} bytes, the limit of synchronous invocations"
        ))
    })?;
    let (name, q_from_name) = parse_function_name(raw_name);
    // The RIE's path names the one function of its container: `function`, which may stand for a configured one.
    let name = match (&functions.options().rie_function, name.as_str()) {
        (Some(target), "function") => target.clone(),
        _ => name,
    };
    let qualifier = qualifier.or(q_from_name);
    if !p.can(Action::Use, &resource(&name)) {
        // Lambda's refusal, the same whether or not the function exists.
        return Err(FunctionError::Forbidden(format!(
            "User: {} is not authorized to perform: lambda:InvokeFunction on resource: {}",
            p.subject,
            functions.arn(&name, qualifier.as_deref())
        )));
    }
    let client_context = match header(headers, "x-amz-client-context") {
        Some(b64) => {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| FunctionError::Invalid("X-Amz-Client-Context is not base64".into()))?;
            Some(String::from_utf8(raw).map_err(|_| FunctionError::Invalid("the client context is not UTF-8".into()))?)
        }
        None => None,
    };
    let grants =
        (!p.can(Action::Admin, &ResourceRef::new(strato_types::ResourceKind::FILE, "*"))).then(|| p.grants.clone());
    let req = InvokeRequest {
        payload: body,
        qualifier,
        client_context,
        identity: Some(identity(p)),
        request_id: None,
        grants,
    };
    let kind = header(headers, "x-amz-invocation-type").unwrap_or_else(|| "RequestResponse".into());
    match kind.as_str() {
        "RequestResponse" => {
            let tail = header(headers, "x-amz-log-type").is_some_and(|t| t.eq_ignore_ascii_case("Tail"));
            Ok(sync_response(functions.invoke(&name, req).await?, tail))
        }
        "Event" => {
            let id = functions.invoke_async(&name, req).await?;
            let mut r = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&id) {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            Ok(r)
        }
        "DryRun" => {
            functions.exists(&name, req.qualifier.as_deref()).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        other => Err(FunctionError::Invalid(format!(
            "X-Amz-Invocation-Type {other:?} is not one of RequestResponse, Event, DryRun"
        ))),
    }
}

fn sync_response(r: InvokeResponse, tail: bool) -> Response {
    let mut resp = (StatusCode::OK, r.payload).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&r.executed_version) {
        h.insert("x-amz-executed-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&r.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(e) = r.function_error.as_deref().and_then(|e| HeaderValue::from_str(e).ok()) {
        h.insert("x-amz-function-error", e);
    }
    if tail {
        if let Ok(v) = HeaderValue::from_str(&tail_header(&r.log)) {
            h.insert("x-amz-log-result", v);
        }
    }
    resp
}

#[utoipa::path(post, path = "/2015-03-31/functions/{name}/invocations", tag = "functions",
    params(("name" = String, Path, description = "Function name, name:qualifier or ARN"), LambdaInvokeQuery,
        ("X-Amz-Invocation-Type" = Option<String>, Header, description = "RequestResponse (default), Event or DryRun"),
        ("X-Amz-Log-Type" = Option<String>, Header, description = "Tail: the last 4 KB of the log in X-Amz-Log-Result"),
        ("X-Amz-Client-Context" = Option<String>, Header, description = "Base64 JSON handed to the function")),
    request_body(content = Vec<u8>, content_type = "application/json", description = "The event (up to 6 MB)"),
    responses((status = 200, description = "The function's response, or its error with X-Amz-Function-Error", body = serde_json::Value),
        (status = 202, description = "Queued (Event)"), (status = 204, description = "It exists (DryRun)"),
        (status = 400, description = "InvalidRequestContentException", body = LambdaErrorBody),
        (status = 404, description = "ResourceNotFoundException", body = LambdaErrorBody),
        (status = 413, description = "RequestTooLargeException", body = LambdaErrorBody),
        (status = 429, description = "TooManyRequestsException", body = LambdaErrorBody),
        (status = 500, description = "ServiceException", body = LambdaErrorBody)))]
/// Lambda's Invoke route and headers (also the Runtime Interface Emulator's path); SigV4-signed SDK calls are not
/// accepted yet: callers authenticate as on every other route.
async fn lambda_invoke(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<LambdaInvokeQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    run_invoke(&functions, &p, &name, q.qualifier, &headers, body).await.unwrap_or_else(lambda_error_of)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InvokeQuery {
    /// A version number or `$LATEST`.
    qualifier: Option<String>,
}

#[utoipa::path(post, path = "/v1/functions/{name}/invoke", tag = "functions",
    params(("name" = String, Path, description = "Function name"), InvokeQuery,
        ("X-Amz-Invocation-Type" = Option<String>, Header, description = "RequestResponse (default), Event or DryRun"),
        ("X-Amz-Log-Type" = Option<String>, Header, description = "Tail: the last 4 KB of the log in X-Amz-Log-Result")),
    request_body(content = Vec<u8>, content_type = "application/json", description = "The event (up to 6 MB)"),
    responses((status = 200, description = "The function's response, or its error with X-Amz-Function-Error", body = serde_json::Value),
        (status = 202, description = "Queued"), (status = 204, description = "It exists (DryRun)")))]
/// Invokes a function (the same semantics as Lambda's Invoke; errors in Strato's shape).
async fn invoke(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<InvokeQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    run_invoke(&functions, &p, &name, q.qualifier, &headers, body).await.map_err(native)
}

// ---- Native management ----

/// A new function.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    /// 1-64 letters, digits, '-' or '_'.
    name: String,
    /// `python3.x`, `provided`, `provided.al2`, `provided.al2023`.
    runtime: String,
    /// `module.function` for Python.
    handler: String,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// Seconds (1-900; default 3).
    timeout: Option<u32>,
    /// MB (128-10,240; default 128).
    memory_size: Option<u32>,
    reserved_concurrency: Option<u32>,
    #[serde(default)]
    description: String,
    /// The code: a zip archive, base64.
    zip_base64: Option<String>,
    /// Or a directory on the server, used in place (administrators only).
    directory: Option<String>,
    /// Publish version 1 at once.
    #[serde(default)]
    publish: bool,
}

fn new_code(p: &Principal, zip_base64: Option<String>, directory: Option<String>) -> Result<NewCode, ApiError> {
    match (zip_base64, directory) {
        (Some(z), None) => {
            use base64::Engine;
            let zip = base64::engine::general_purpose::STANDARD
                .decode(z.trim())
                .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "zip_base64 is not valid base64"))?;
            Ok(NewCode::Zip(zip.into()))
        }
        (None, Some(d)) => {
            // Code from anywhere on the server's disk is the server's operator's to choose.
            p.require_admin("use a server directory as function code")?;
            Ok(NewCode::Directory(d.into()))
        }
        _ => Err(ApiError::new(ErrorCode::InvalidRequest, "give the code as exactly one of zip_base64 or directory")),
    }
}

#[utoipa::path(post, path = "/v1/functions", tag = "functions", request_body = CreateBody,
    responses((status = 201, description = "Created", body = FunctionView)))]
/// Creates a function.
async fn create(
    Extension(functions): Extension<Functions>,
    p: Principal,
    JsonBody(b): JsonBody<CreateBody>,
) -> Result<(StatusCode, Json<FunctionView>), ApiError> {
    p.may(Action::Edit, &resource(&b.name))?;
    let code = new_code(&p, b.zip_base64, b.directory)?;
    let f = NewFunction {
        name: b.name,
        runtime: b.runtime,
        handler: b.handler,
        environment: b.environment,
        timeout: b.timeout,
        memory_size: b.memory_size,
        reserved_concurrency: b.reserved_concurrency,
        description: b.description,
        role: String::new(),
        code,
        publish: b.publish,
    };
    Ok((StatusCode::CREATED, Json(functions.create(f).await.map_err(native)?)))
}

#[utoipa::path(get, path = "/v1/functions", tag = "functions",
    responses((status = 200, description = "The functions the caller may read", body = Vec<FunctionView>)))]
/// Lists the functions the caller may read.
async fn list(Extension(functions): Extension<Functions>, p: Principal) -> Result<Json<Vec<FunctionView>>, ApiError> {
    let all = functions.list().await.map_err(native)?;
    Ok(Json(all.into_iter().filter(|f| p.can(Action::Read, &resource(&f.name))).collect()))
}

#[utoipa::path(get, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name"), InvokeQuery),
    responses((status = 200, description = "The function", body = FunctionView)))]
/// One function (or one published version, with `qualifier`).
async fn show(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<InvokeQuery>,
) -> Result<Json<FunctionView>, ApiError> {
    p.may(Action::Read, &resource(&name))?;
    Ok(Json(functions.get(&name, q.qualifier.as_deref()).await.map_err(native)?))
}

#[utoipa::path(patch, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name")), request_body = ConfigPatch,
    responses((status = 200, description = "Updated", body = FunctionView)))]
/// Changes a function's configuration (unset fields are kept).
async fn update(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
    JsonBody(patch): JsonBody<ConfigPatch>,
) -> Result<Json<FunctionView>, ApiError> {
    p.may(Action::Edit, &resource(&name))?;
    Ok(Json(functions.update_config(&name, patch).await.map_err(native)?))
}

#[utoipa::path(delete, path = "/v1/functions/{name}", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    responses((status = 204, description = "Deleted with its versions")))]
/// Deletes a function and its versions.
async fn delete(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.may(Action::Edit, &resource(&name))?;
    functions.delete(&name).await.map_err(native)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/v1/functions/{name}/code", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The code archive, a zip (up to 50 MB)"),
    responses((status = 200, description = "Updated", body = FunctionView)))]
/// Replaces a function's code with a zip archive.
async fn put_code(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<FunctionView>, ApiError> {
    p.may(Action::Edit, &resource(&name))?;
    Ok(Json(functions.update_code(&name, NewCode::Zip(body)).await.map_err(native)?))
}

#[utoipa::path(post, path = "/v1/functions/{name}/versions", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    responses((status = 201, description = "The new version", body = FunctionView)))]
/// Publishes `$LATEST` as the next immutable version.
async fn publish(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<FunctionView>), ApiError> {
    p.may(Action::Edit, &resource(&name))?;
    Ok((StatusCode::CREATED, Json(functions.publish(&name, None).await.map_err(native)?)))
}

#[utoipa::path(get, path = "/v1/functions/{name}/versions", tag = "functions",
    params(("name" = String, Path, description = "Function name")),
    responses((status = 200, description = "$LATEST, then the published versions", body = Vec<FunctionView>)))]
/// A function's versions.
async fn versions(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Json<Vec<FunctionView>>, ApiError> {
    p.may(Action::Read, &resource(&name))?;
    Ok(Json(functions.versions(&name).await.map_err(native)?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// At most this many bytes, newest last (default 64 KiB, at most 4 MiB).
    max_bytes: Option<usize>,
}

#[utoipa::path(get, path = "/v1/functions/{name}/logs", tag = "functions",
    params(("name" = String, Path, description = "Function name"), LogsQuery),
    responses((status = 200, description = "START/END/REPORT lines and the output between them", content_type = "text/plain", body = String)))]
/// A function's newest log lines (this process's instances).
async fn logs(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<LogsQuery>,
) -> Result<Response, ApiError> {
    p.may(Action::Read, &resource(&name))?;
    functions.exists(&name, None).await.map_err(native)?;
    let text = functions.logs(&name, q.max_bytes.unwrap_or(64 << 10).min(4 << 20)).await;
    Ok(([("content-type", "text/plain; charset=utf-8")], text).into_response())
}
