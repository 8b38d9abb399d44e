//! Lambda's control-plane REST API (`/2015-03-31/functions…`), so the AWS CLI and boto3 manage functions
//! unchanged: CreateFunction, GetFunction, GetFunctionConfiguration, ListFunctions, UpdateFunctionCode,
//! UpdateFunctionConfiguration, PublishVersion, ListVersionsByFunction, DeleteFunction, PutFunctionConcurrency and
//! the alias operations (CreateAlias, GetAlias, ListAliases, UpdateAlias, DeleteAlias).
//! Bodies and errors are Lambda's (PascalCase JSON; the error's type in `x-amzn-ErrorType`). Callers sign with
//! SigV4 access keys (checked by the gateway) or use any other credential; grants decide as on every route:
//! reading needs `read` on the function, everything else `edit`.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use strato_http::auth::Principal;
use strato_http::{aws_error, AppState, QueryParams};
use strato_types::{Action, ResourceKind, ResourceRef};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::parse_function_name;
use crate::service::{ConfigPatch, FunctionView, Functions, NewCode, NewFunction};
use crate::{FunctionError, FUNCTION};

/// The routes (their bodies are limited by the caller's router).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // botocore sends ListFunctions to `/2015-03-31/functions` when the endpoint has no path, and to
        // `…/functions/` otherwise: both are served, and documented.
        .routes(routes!(create_function, list_functions_bare))
        .routes(routes!(list_functions))
        .routes(routes!(get_function, delete_function))
        .routes(routes!(get_function_configuration, update_function_configuration))
        .routes(routes!(update_function_code))
        .routes(routes!(publish_version, list_versions_by_function))
        .routes(routes!(put_function_concurrency))
        .routes(routes!(create_alias, list_aliases))
        .routes(routes!(get_alias, update_alias, delete_alias))
}

/// An error as Lambda's control plane answers it.
#[derive(Debug)]
struct AwsError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl AwsError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into() }
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        aws_error(self.status, self.kind, &self.message)
    }
}

impl From<FunctionError> for AwsError {
    fn from(e: FunctionError) -> Self {
        match e {
            FunctionError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", m),
            FunctionError::Throttled(m) => Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException", m),
            FunctionError::TooLarge(m) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException", m),
            FunctionError::Invalid(m) => Self::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", m),
            FunctionError::Conflict(m) => Self::new(StatusCode::CONFLICT, "ResourceConflictException", m),
            FunctionError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", m),
            FunctionError::Internal(m) => {
                tracing::error!(error = %m, "a Lambda control-plane call failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "ServiceException", "the service failed; see its log")
            }
        }
    }
}

/// Lambda's refusal of a caller without the permission: the same whether or not the function exists.
fn denied(p: &Principal, operation: &str, arn: &str) -> AwsError {
    AwsError::new(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        format!("User: {} is not authorized to perform: lambda:{operation} on resource: {arn}", p.subject),
    )
}

/// Resolves `FunctionName` (a name, `name:qualifier` or an ARN) and checks the caller may `action` it.
fn authorize(
    functions: &Functions,
    p: &Principal,
    raw: &str,
    action: Action,
    operation: &str,
) -> Result<(String, Option<String>), AwsError> {
    let (name, qualifier) = parse_function_name(raw);
    if p.can(action, &ResourceRef::new(FUNCTION, &name)) {
        Ok((name, qualifier))
    } else {
        Err(denied(p, operation, &functions.arn(&name, qualifier.as_deref())))
    }
}

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new(StatusCode::BAD_REQUEST, "InvalidParameterValueException", message)
}

/// Lambda's `LastModified`: `2019-08-14T22:26:11.234+0000`.
fn last_modified(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// A `FunctionConfiguration` as Lambda returns it.
fn configuration(v: &FunctionView) -> Value {
    json!({
        "FunctionName": v.name,
        "FunctionArn": v.arn,
        "Runtime": v.runtime,
        "Role": v.role,
        "Handler": v.handler,
        "CodeSize": v.code_size,
        "Description": v.description,
        "Timeout": v.timeout,
        "MemorySize": v.memory_size,
        "LastModified": last_modified(&v.last_modified),
        "CodeSha256": v.code_sha256,
        "Version": v.version,
        "Environment": {"Variables": v.environment},
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": v.revision.to_string(),
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": 512},
    })
}

/// Lambda's `Code` object, and `Environment`.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
struct CodeInput {
    /// The zip archive, base64.
    zip_file: Option<String>,
    /// Ignored: code from "S3" is Strato's own storage.
    #[allow(dead_code)]
    s3_bucket: Option<String>,
    /// A key of Strato's files (`/v1/files`) holding the zip archive.
    s3_key: Option<String>,
    /// Container images are not supported.
    image_uri: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentInput {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

fn code_of(p: &Principal, c: CodeInput) -> Result<NewCode, AwsError> {
    if c.image_uri.is_some() {
        return Err(invalid("container images (ImageUri) are not supported: upload a zip archive"));
    }
    match (c.zip_file, c.s3_key) {
        (Some(z), None) => {
            use base64::Engine;
            let zip = base64::engine::general_purpose::STANDARD
                .decode(z.trim())
                .map_err(|_| invalid("Code.ZipFile is not base64"))?;
            Ok(NewCode::Zip(zip.into()))
        }
        (None, Some(key)) => {
            if !p.can(Action::Read, &ResourceRef::new(ResourceKind::FILE, &key)) {
                return Err(AwsError::new(
                    StatusCode::FORBIDDEN,
                    "AccessDeniedException",
                    format!("{} may not read file {key:?}", p.subject),
                ));
            }
            Ok(NewCode::File(key))
        }
        _ => Err(invalid("give the code as exactly one of Code.ZipFile or Code.S3Key")),
    }
}

/// `CreateFunction`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct CreateFunctionBody {
    function_name: String,
    runtime: Option<String>,
    #[serde(default)]
    role: String,
    handler: Option<String>,
    code: CodeInput,
    #[serde(default)]
    description: String,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    #[serde(default)]
    publish: bool,
    environment: Option<EnvironmentInput>,
    package_type: Option<String>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Parses a JSON body in Lambda's manner: a bad body is an `InvalidRequestContentException`.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AwsError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        AwsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("Could not parse request body into json: {} at {}", e.inner(), e.path()),
        )
    })
}

#[utoipa::path(post, path = "/2015-03-31/functions", tag = "lambda", request_body = CreateFunctionBody,
    responses((status = 201, description = "FunctionConfiguration", body = serde_json::Value)))]
/// Lambda's CreateFunction.
async fn create_function(
    Extension(functions): Extension<Functions>,
    p: Principal,
    raw: axum::body::Bytes,
) -> Result<Response, AwsError> {
    let b: CreateFunctionBody = body(&raw)?;
    if !p.can(Action::Edit, &ResourceRef::new(FUNCTION, &b.function_name)) {
        return Err(denied(&p, "CreateFunction", &functions.arn(&b.function_name, None)));
    }
    if b.package_type.as_deref().is_some_and(|t| t != "Zip") {
        return Err(invalid("only PackageType Zip is supported"));
    }
    if !b.layers.is_empty() {
        return Err(invalid("layers are not supported: include the dependencies in the archive"));
    }
    let code = code_of(&p, b.code)?;
    let f = NewFunction {
        name: b.function_name,
        runtime: b.runtime.ok_or_else(|| invalid("Runtime is required for a Zip function"))?,
        handler: b.handler.ok_or_else(|| invalid("Handler is required for a Zip function"))?,
        environment: b.environment.unwrap_or_default().variables,
        timeout: b.timeout,
        memory_size: b.memory_size,
        reserved_concurrency: None,
        description: b.description,
        role: b.role,
        code,
        publish: b.publish,
    };
    let v = functions.create(f).await?;
    Ok((StatusCode::CREATED, Json(configuration(&v))).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The last name of the previous page.
    #[serde(rename = "Marker")]
    marker: Option<String>,
    /// Page size (1-10,000; default 50).
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
    /// `ALL` lists published versions too.
    #[serde(rename = "FunctionVersion")]
    function_version: Option<String>,
    /// Ignored (one region).
    #[serde(rename = "MasterRegion")]
    #[allow(dead_code)]
    master_region: Option<String>,
}

#[utoipa::path(get, path = "/2015-03-31/functions", tag = "lambda", params(ListQuery),
    responses((status = 200, description = "Functions and NextMarker", body = serde_json::Value)))]
/// Lambda's ListFunctions, at the path botocore uses when the endpoint URL has no path.
async fn list_functions_bare(
    functions: Extension<Functions>,
    p: Principal,
    q: QueryParams<ListQuery>,
) -> Result<Response, AwsError> {
    list_functions(functions, p, q).await
}

#[utoipa::path(get, path = "/2015-03-31/functions/", tag = "lambda", params(ListQuery),
    responses((status = 200, description = "Functions and NextMarker", body = serde_json::Value)))]
/// Lambda's ListFunctions: the functions the caller may read, by name, a page at a time.
async fn list_functions(
    Extension(functions): Extension<Functions>,
    p: Principal,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, AwsError> {
    let limit = q.max_items.unwrap_or(50);
    if !(1..=10_000).contains(&limit) {
        return Err(invalid("MaxItems must be 1 to 10000"));
    }
    let all_versions = match q.function_version.as_deref() {
        None => false,
        Some("ALL") => true,
        Some(other) => return Err(invalid(format!("FunctionVersion must be ALL, not {other:?}"))),
    };
    let mut names: Vec<FunctionView> = functions
        .list()
        .await?
        .into_iter()
        .filter(|f| p.can(Action::Read, &ResourceRef::new(FUNCTION, &f.name)))
        .filter(|f| q.marker.as_deref().is_none_or(|m| f.name.as_str() > m))
        .collect();
    let more = names.len() > limit;
    names.truncate(limit);
    let mut out = Vec::new();
    for f in &names {
        if all_versions {
            out.extend(functions.versions(&f.name).await?.iter().map(configuration));
        } else {
            out.push(configuration(f));
        }
    }
    let mut resp = json!({"Functions": out});
    if more {
        resp["NextMarker"] = json!(names.last().map(|f| f.name.clone()));
    }
    Ok(Json(resp).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct QualifierQuery {
    /// A version number or `$LATEST`.
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

#[utoipa::path(get, path = "/2015-03-31/functions/{name}", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN"), QualifierQuery),
    responses((status = 200, description = "Configuration, Code and Concurrency", body = serde_json::Value)))]
/// Lambda's GetFunction.
async fn get_function(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    QueryParams(q): QueryParams<QualifierQuery>,
) -> Result<Response, AwsError> {
    let (name, qn) = authorize(&functions, &p, &raw, Action::Read, "GetFunction")?;
    let v = functions.get(&name, q.qualifier.or(qn).as_deref()).await?;
    let mut out = json!({
        "Configuration": configuration(&v),
        "Code": {"RepositoryType": "S3", "Location": ""},
    });
    if let Some(r) = v.reserved_concurrency {
        out["Concurrency"] = json!({"ReservedConcurrentExecutions": r});
    }
    Ok(Json(out).into_response())
}

#[utoipa::path(delete, path = "/2015-03-31/functions/{name}", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN"), QualifierQuery),
    responses((status = 204, description = "Deleted")))]
/// Lambda's DeleteFunction (the whole function; deleting one version is not supported).
async fn delete_function(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    QueryParams(q): QueryParams<QualifierQuery>,
) -> Result<Response, AwsError> {
    let (name, qn) = authorize(&functions, &p, &raw, Action::Edit, "DeleteFunction")?;
    if q.qualifier.or(qn).is_some_and(|q| q != "$LATEST") {
        return Err(invalid("deleting one version is not supported: delete the function"));
    }
    functions.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/2015-03-31/functions/{name}/configuration", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN"), QualifierQuery),
    responses((status = 200, description = "FunctionConfiguration", body = serde_json::Value)))]
/// Lambda's GetFunctionConfiguration.
async fn get_function_configuration(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    QueryParams(q): QueryParams<QualifierQuery>,
) -> Result<Response, AwsError> {
    let (name, qn) = authorize(&functions, &p, &raw, Action::Read, "GetFunctionConfiguration")?;
    let v = functions.get(&name, q.qualifier.or(qn).as_deref()).await?;
    Ok(Json(configuration(&v)).into_response())
}

/// `UpdateFunctionConfiguration`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct UpdateConfigurationBody {
    role: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<u32>,
    memory_size: Option<u32>,
    environment: Option<EnvironmentInput>,
    runtime: Option<String>,
    /// With it, only if the function is still at this revision.
    revision_id: Option<String>,
    #[serde(default)]
    layers: Vec<String>,
}

fn revision(id: Option<&str>) -> Result<Option<i64>, AwsError> {
    id.map(|r| r.parse().map_err(|_| invalid(format!("RevisionId {r:?} is not one this function had")))).transpose()
}

#[utoipa::path(put, path = "/2015-03-31/functions/{name}/configuration", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN")), request_body = UpdateConfigurationBody,
    responses((status = 200, description = "FunctionConfiguration", body = serde_json::Value)))]
/// Lambda's UpdateFunctionConfiguration; warm instances are replaced.
async fn update_function_configuration(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    raw_body: axum::body::Bytes,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Edit, "UpdateFunctionConfiguration")?;
    let b: UpdateConfigurationBody = body(&raw_body)?;
    if !b.layers.is_empty() {
        return Err(invalid("layers are not supported: include the dependencies in the archive"));
    }
    check_revision(&functions, &name, revision(b.revision_id.as_deref())?).await?;
    let patch = ConfigPatch {
        runtime: b.runtime,
        handler: b.handler,
        environment: b.environment.map(|e| e.variables),
        timeout: b.timeout,
        memory_size: b.memory_size,
        description: b.description,
        role: b.role,
        ..Default::default()
    };
    let v = functions.update_config(&name, patch).await?;
    Ok(Json(configuration(&v)).into_response())
}

/// Lambda's `RevisionId` precondition.
async fn check_revision(functions: &Functions, name: &str, revision: Option<i64>) -> Result<(), AwsError> {
    let Some(expected) = revision else { return Ok(()) };
    let current = functions.get(name, None).await?;
    if current.revision == expected {
        Ok(())
    } else {
        Err(AwsError::new(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailedException",
            format!("The Revision Id provided does not match the latest Revision Id ({})", current.revision),
        ))
    }
}

/// `UpdateFunctionCode`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct UpdateCodeBody {
    zip_file: Option<String>,
    #[allow(dead_code)]
    s3_bucket: Option<String>,
    s3_key: Option<String>,
    image_uri: Option<String>,
    #[serde(default)]
    publish: bool,
    #[serde(default)]
    dry_run: bool,
    revision_id: Option<String>,
}

#[utoipa::path(put, path = "/2015-03-31/functions/{name}/code", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN")), request_body = UpdateCodeBody,
    responses((status = 200, description = "FunctionConfiguration", body = serde_json::Value)))]
/// Lambda's UpdateFunctionCode; warm instances are replaced.
async fn update_function_code(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    raw_body: axum::body::Bytes,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Edit, "UpdateFunctionCode")?;
    let b: UpdateCodeBody = body(&raw_body)?;
    let code =
        code_of(&p, CodeInput { zip_file: b.zip_file, s3_bucket: None, s3_key: b.s3_key, image_uri: b.image_uri })?;
    check_revision(&functions, &name, revision(b.revision_id.as_deref())?).await?;
    if b.dry_run {
        let v = functions.get(&name, None).await?;
        return Ok(Json(configuration(&v)).into_response());
    }
    let mut v = functions.update_code(&name, code).await?;
    if b.publish {
        v = functions.publish(&name, Some(v.revision)).await?;
    }
    Ok(Json(configuration(&v)).into_response())
}

/// `PublishVersion`'s body.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
struct PublishBody {
    /// Only if `$LATEST`'s code has this SHA-256 (base64).
    code_sha256: Option<String>,
    /// Ignored: a version's description is its function's.
    #[allow(dead_code)]
    description: Option<String>,
    /// Only if `$LATEST` is at this revision.
    revision_id: Option<String>,
}

#[utoipa::path(post, path = "/2015-03-31/functions/{name}/versions", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN")), request_body = PublishBody,
    responses((status = 201, description = "The version's FunctionConfiguration", body = serde_json::Value)))]
/// Lambda's PublishVersion.
async fn publish_version(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    raw_body: axum::body::Bytes,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Edit, "PublishVersion")?;
    let b: PublishBody = if raw_body.is_empty() { PublishBody::default() } else { body(&raw_body)? };
    if let Some(sha) = &b.code_sha256 {
        let current = functions.get(&name, None).await?;
        if &current.code_sha256 != sha {
            return Err(invalid(format!(
                "CodeSha256 ({sha}) is different from the actual CodeSha256 of $LATEST ({})",
                current.code_sha256
            )));
        }
    }
    let v = functions.publish(&name, revision(b.revision_id.as_deref())?).await.map_err(|e| match e {
        FunctionError::Conflict(m) if b.revision_id.is_some() => {
            AwsError::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailedException", m)
        }
        e => e.into(),
    })?;
    Ok((StatusCode::CREATED, Json(configuration(&v))).into_response())
}

#[utoipa::path(get, path = "/2015-03-31/functions/{name}/versions", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN")),
    responses((status = 200, description = "Versions ($LATEST first)", body = serde_json::Value)))]
/// Lambda's ListVersionsByFunction (one page).
async fn list_versions_by_function(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Read, "ListVersionsByFunction")?;
    let versions = functions.versions(&name).await?;
    Ok(Json(json!({"Versions": versions.iter().map(configuration).collect::<Vec<_>>()})).into_response())
}

/// `PutFunctionConcurrency`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct ConcurrencyBody {
    reserved_concurrent_executions: u32,
}

#[utoipa::path(put, path = "/2017-10-31/functions/{name}/concurrency", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN")), request_body = ConcurrencyBody,
    responses((status = 200, description = "The reservation", body = serde_json::Value)))]
/// Lambda's PutFunctionConcurrency: the most instances the function runs at once (0 throttles it).
async fn put_function_concurrency(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    raw_body: axum::body::Bytes,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Edit, "PutFunctionConcurrency")?;
    let b: ConcurrencyBody = body(&raw_body)?;
    if b.reserved_concurrent_executions == 0 {
        return Err(invalid("a reservation of 0 (throttle everything) is not supported: delete the function"));
    }
    let patch = ConfigPatch { reserved_concurrency: Some(b.reserved_concurrent_executions), ..Default::default() };
    functions.update_config(&name, patch).await?;
    Ok(Json(json!({"ReservedConcurrentExecutions": b.reserved_concurrent_executions})).into_response())
}

// ---- Aliases ----

/// An `AliasConfiguration` as Lambda returns it.
fn alias_configuration(functions: &Functions, a: &crate::Alias) -> Value {
    json!({
        "AliasArn": functions.arn(&a.function, Some(&a.name)),
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RevisionId": a.revision.to_string(),
    })
}

/// Weighted routing between two versions is not supported.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "PascalCase")]
struct RoutingInput {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

fn no_routing(r: Option<RoutingInput>) -> Result<(), AwsError> {
    if r.is_some_and(|r| !r.additional_version_weights.is_empty()) {
        return Err(invalid("weighted aliases (RoutingConfig.AdditionalVersionWeights) are not supported"));
    }
    Ok(())
}

/// `CreateAlias`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct CreateAliasBody {
    name: String,
    function_version: String,
    #[serde(default)]
    description: String,
    routing_config: Option<RoutingInput>,
}

#[utoipa::path(post, path = "/2015-03-31/functions/{name}/aliases", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN")), request_body = CreateAliasBody,
    responses((status = 201, description = "AliasConfiguration", body = serde_json::Value)))]
/// Lambda's CreateAlias.
async fn create_alias(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
    raw_body: axum::body::Bytes,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Edit, "CreateAlias")?;
    let b: CreateAliasBody = body(&raw_body)?;
    no_routing(b.routing_config)?;
    let a = functions.create_alias(&name, &b.name, &b.function_version, &b.description).await?;
    Ok((StatusCode::CREATED, Json(alias_configuration(&functions, &a))).into_response())
}

#[utoipa::path(get, path = "/2015-03-31/functions/{name}/aliases", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN")),
    responses((status = 200, description = "Aliases", body = serde_json::Value)))]
/// Lambda's ListAliases (one page).
async fn list_aliases(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path(raw): Path<String>,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Read, "ListAliases")?;
    let aliases = functions.aliases(&name).await?;
    let list: Vec<Value> = aliases.iter().map(|a| alias_configuration(&functions, a)).collect();
    Ok(Json(json!({"Aliases": list})).into_response())
}

#[utoipa::path(get, path = "/2015-03-31/functions/{name}/aliases/{alias}", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN"), ("alias" = String, Path, description = "Alias")),
    responses((status = 200, description = "AliasConfiguration", body = serde_json::Value)))]
/// Lambda's GetAlias.
async fn get_alias(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path((raw, alias)): Path<(String, String)>,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Read, "GetAlias")?;
    let a = functions.alias(&name, &alias).await?;
    Ok(Json(alias_configuration(&functions, &a)).into_response())
}

/// `UpdateAlias`'s body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "PascalCase")]
struct UpdateAliasBody {
    function_version: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
    routing_config: Option<RoutingInput>,
}

#[utoipa::path(put, path = "/2015-03-31/functions/{name}/aliases/{alias}", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN"), ("alias" = String, Path, description = "Alias")),
    request_body = UpdateAliasBody,
    responses((status = 200, description = "AliasConfiguration", body = serde_json::Value)))]
/// Lambda's UpdateAlias: points it at another version.
async fn update_alias(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path((raw, alias)): Path<(String, String)>,
    raw_body: axum::body::Bytes,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Edit, "UpdateAlias")?;
    let b: UpdateAliasBody = body(&raw_body)?;
    no_routing(b.routing_config)?;
    let revision = revision(b.revision_id.as_deref())?;
    let a = functions
        .update_alias(&name, &alias, b.function_version.as_deref(), b.description.as_deref(), revision)
        .await
        .map_err(|e| match e {
            FunctionError::Conflict(m) if revision.is_some() => {
                AwsError::new(StatusCode::PRECONDITION_FAILED, "PreconditionFailedException", m)
            }
            e => e.into(),
        })?;
    Ok(Json(alias_configuration(&functions, &a)).into_response())
}

#[utoipa::path(delete, path = "/2015-03-31/functions/{name}/aliases/{alias}", tag = "lambda",
    params(("name" = String, Path, description = "Function name or ARN"), ("alias" = String, Path, description = "Alias")),
    responses((status = 204, description = "Deleted")))]
/// Lambda's DeleteAlias.
async fn delete_alias(
    Extension(functions): Extension<Functions>,
    p: Principal,
    Path((raw, alias)): Path<(String, String)>,
) -> Result<Response, AwsError> {
    let (name, _) = authorize(&functions, &p, &raw, Action::Edit, "DeleteAlias")?;
    functions.delete_alias(&name, &alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
