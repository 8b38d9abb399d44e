//! The OpenAPI 3.1 document: operations come from the routes themselves (`routes!`), this adds what every
//! operation shares (credentials, the gateway's error responses) and unique operation ids.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::OpenApi as _;

use crate::error::ErrorBody;
use crate::routes::albert::AlbertError;
use crate::routes::mentorpal::MentorPalError;

/// An error of the AWS-compatible routes: AWS's shape from the operation (`{"__type", "message"}` for the JSON
/// protocol, `{"Type", "message"}` with `x-amzn-ErrorType` for REST-JSON), or the gateway's own shape when the
/// gateway refuses the call before it (credentials, limits, overload).
#[derive(utoipa::ToSchema)]
#[allow(dead_code, non_snake_case)] // describes what the AWS-compatible routes write
struct AwsError {
    /// The error's type (JSON protocol).
    #[schema(rename = "__type")]
    kind: Option<String>,
    /// The error's type (REST-JSON).
    Type: Option<String>,
    /// What went wrong.
    message: Option<String>,
    /// The gateway's error.
    error: Option<serde_json::Value>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Strato",
        description = "Text classifiers and question-answering mentors: train, serve, and run their jobs. \
            Native routes are under `/v1`; `/models` and `/prediction` keep the Albert service's API and \
            `/classifier` MentorPal's, for their existing clients.\n\n\
            Credentials: `Authorization: Bearer <JWT or admin token>` or `x-api-key: <key>`. Errors of native \
            routes are `{\"error\": {\"code\", \"message\"}}` with a stable code.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody, AlbertError, MentorPalError, AwsError)),
    tags(
        (name = "models", description = "Text classifiers: train (a job), predict, versions"),
        (name = "datasets", description = "Labelled texts to train on"),
        (name = "mentors", description = "Question-answering mentors and their users' questions"),
        (name = "jobs", description = "The job queue"),
        (name = "dead-letter queue", description = "Jobs that ran out of attempts"),
        (name = "api keys", description = "Credentials for apps (admins)"),
        (name = "files", description = "Files of any size: streamed uploads and downloads, byte ranges, presigned URLs"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "albert", description = "The original Albert classification service's API"),
        (name = "mentorpal", description = "The original MentorPal classifier service's API"),
    )
)]
struct ApiDoc;

/// Statuses any operation may answer besides its own: bad input, missing or refused credentials, unknown ids,
/// bodies over the limit, rate limits, failures, and overload or timeouts.
const SHARED_ERRORS: &[(&str, &str)] = &[
    ("400", "Invalid request: the message names the field or line to fix"),
    ("401", "No credentials, or invalid ones"),
    ("403", "The credentials may not do this"),
    ("404", "Not found (also what callers who may not see a resource get)"),
    ("413", "The body is larger than this route's limit"),
    ("429", "Rate limit or quota reached: see Retry-After and the RateLimit-* headers"),
    ("500", "Internal error: reported, and logged with the request id"),
    ("503", "Overloaded, timed out, or a dependency is unavailable"),
];

/// Completes the document built from the routes.
pub(crate) fn finish(routes: OpenApi) -> OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(routes);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    // axum's catch-all segments (`{*key}`, a key with slashes) are plain parameters to OpenAPI.
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths.into_iter().map(|(path, item)| (path.replace("{*", "{"), item)).collect();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("A JWT (HS256 secret or a JWKS key), or the admin token"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("x-api-key", "An API key (`strato_…`)"))),
    );
    doc.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("api_key", Vec::<String>::new()),
    ]);
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
        ];
        for (method, op) in ops {
            if let Some(op) = op {
                complete(op, method, path);
            }
        }
    }
    doc
}

fn complete(op: &mut Operation, method: &str, path: &str) {
    let tag = op.tags.as_ref().and_then(|t| t.first()).cloned().unwrap_or_default();
    // Handler names repeat across resources (`list`, `show`): qualify them by tag.
    let name = op.operation_id.clone().unwrap_or_else(|| format!("{method}{path}"));
    op.operation_id = Some(format!("{}_{name}", tag.replace([' ', '-'], "_")));
    let (schema, content_types): (&str, &[&str]) = match tag.as_str() {
        "albert" => ("AlbertError", &["application/json"]),
        "mentorpal" => ("MentorPalError", &["application/json"]),
        "lambda" => ("AwsError", &["application/json"]),
        "step functions" => ("AwsError", &["application/x-amz-json-1.0", "application/json"]),
        _ => ("Error", &["application/json"]),
    };
    // Probes and the documents themselves answer without credentials; nothing there is refused or rate limited.
    let open = op.security.as_ref().is_some_and(|s| s.iter().all(|r| r == &SecurityRequirement::default()));
    for (code, description) in SHARED_ERRORS {
        if open && *code != "500" {
            continue;
        }
        op.responses.responses.entry(code.to_string()).or_insert_with(|| {
            let mut r = ResponseBuilder::new().description(*description);
            for ct in content_types {
                r = r.content(*ct, ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build());
            }
            r.build().into()
        });
    }
}
