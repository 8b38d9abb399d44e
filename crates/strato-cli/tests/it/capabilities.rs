//! A capability arriving as its own piece, the way functions, workflows and media will: it registers a job kind,
//! a resource kind and a route, and the core's queue, gateway, grants (API keys and the policy file) and OpenAPI
//! document take them with no new code. Everything the capability is lives in this file; the authorization its
//! route does is the one generic question, `p.may(action, resource)`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::extract::Path;
use axum::Json;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_http::auth::{AuthOptions, JwtOptions, Policy, Principal};
use strato_http::{ApiError, CapabilityRoutes, HttpOptions};
use strato_jobs::{JobContext, JobError, Worker};
use strato_service::{QueueConcurrency, Strato, WorkerPoolOptions};
use strato_types::{Action, JobArgs, JobDefaults, JobKind, JobRecord, QueueName, ResourceKind, ResourceRef};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::common::{no_model, strato_options, Options};

// ---- The capability: a kind of resource, a job kind that works on one, and a route. ----

const WIDGET: ResourceKind = ResourceKind::new("widget");

/// Builds a widget.
#[derive(Serialize, Deserialize)]
struct BuildWidget {
    widget: String,
}

impl JobArgs for BuildWidget {
    const KIND: JobKind = JobKind::new("widget.build");
    const GENERIC_SUBMIT: bool = true;

    fn defaults() -> JobDefaults {
        JobDefaults { queue: QueueName::new("widgets"), ..JobDefaults::STANDARD }
    }

    fn resource(&self) -> Option<ResourceRef> {
        Some(ResourceRef::new(WIDGET, &self.widget))
    }
}

struct BuildWidgetWorker;

#[async_trait]
impl Worker for BuildWidgetWorker {
    type Args = BuildWidget;

    async fn work(&self, args: BuildWidget, _: &JobRecord, _: &JobContext) -> Result<Value, JobError> {
        Ok(json!({"built": args.widget}))
    }
}

#[utoipa::path(get, path = "/v1/widgets/{id}", tag = "widgets", params(("id" = String, Path, description = "Widget id")),
    responses((status = 200, description = "The widget")))]
/// A widget, for callers who may use it.
async fn show(p: Principal, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    p.may(Action::Use, &ResourceRef::new(WIDGET, &id))?;
    Ok(Json(json!({"id": id})))
}

fn widget_routes() -> CapabilityRoutes {
    OpenApiRouter::new().routes(routes!(show))
}

// ---- The test. ----

const ADMIN: &str = "an-admin-token-0123456789";
const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

fn token(groups: &[&str]) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = json!({"sub": "someone", "role": "USER", "cognito:groups": groups, "exp": exp});
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

#[tokio::test]
async fn a_new_resource_kind_job_kind_and_route_plug_in_and_are_granted_by_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let opts = strato_options(&Options::new(dir.path(), no_model()));
    // 1. The composition root: the capability's one registration.
    let strato = Strato::builder(opts)
        .register(|r| {
            r.workers.add(BuildWidgetWorker);
            r.resources.register(WIDGET);
        })
        .open()
        .await
        .unwrap();
    let policy = Policy::parse(
        r#"{"groups": {"makers": {"grants": [{"kind": "widget", "id": "w-*", "actions": ["use"]}]}}}"#,
        false,
    )
    .unwrap();
    policy.check(strato.resource_kinds()).expect("the policy names a registered kind");
    let typo =
        Policy::parse(r#"{"groups": {"g": {"grants": [{"kind": "widgte", "id": "*", "actions": ["use"]}]}}}"#, false);
    assert!(typo.unwrap().check(strato.resource_kinds()).unwrap_err().contains("unknown resource kind \"widgte\""));
    let http = HttpOptions {
        auth: AuthOptions {
            admin_token: Some(ADMIN.into()),
            jwt: Some(JwtOptions { hs256_secret: Some(SECRET.into()), ..Default::default() }),
            policy,
            ..Default::default()
        },
        ..Default::default()
    };
    let queues = QueueConcurrency::for_workers(1, strato.jobs().registry());
    assert_eq!(queues.to_string(), "default=1,widgets=1", "the kind's queue is served by default");
    let pool = strato.start_workers(WorkerPoolOptions {
        queues,
        poll_interval: Duration::from_millis(200),
        ..Default::default()
    });
    let app = strato_http::router_with(strato.clone(), http, vec![widget_routes()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{base}{p}");

    // 2. Grants through an API key: a pattern and an action over the new kind.
    let create = |body: Value| client.post(url("/v1/api-keys")).bearer_auth(ADMIN).json(&body).send();
    let r = create(json!({"name": "widgets app", "grants": [{"kind": "widget", "id": "w-*", "actions": ["use"]}]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let user: Value = r.json().await.unwrap();
    assert_eq!(user["grants"], json!([{"kind": "widget", "id": "w-*", "actions": ["use"]}]));
    let user = user["secret"].as_str().unwrap().to_string();
    let get = |path: &str, key: &str| client.get(url(path)).header("x-api-key", key).send();
    assert_eq!(get("/v1/widgets/w-1", &user).await.unwrap().status(), 200, "granted by pattern");
    assert_eq!(get("/v1/widgets/x-1", &user).await.unwrap().status(), 403, "outside the pattern");
    assert_eq!(client.get(url("/v1/widgets/w-1")).send().await.unwrap().status(), 401, "no credentials");
    // A grant naming a kind nobody registered is refused where it is written.
    let r =
        create(json!({"name": "typo", "grants": [{"kind": "gadget", "id": "*", "actions": ["use"]}]})).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown resource kind \\\"gadget\\\""));

    // 3. Grants through the policy file, for a token's groups.
    let bearer = |path: &str, t: String| client.get(url(path)).bearer_auth(t).send();
    assert_eq!(bearer("/v1/widgets/w-7", token(&["makers"])).await.unwrap().status(), 200);
    assert_eq!(bearer("/v1/widgets/x-7", token(&["makers"])).await.unwrap().status(), 403);
    assert_eq!(bearer("/v1/widgets/w-7", token(&["others"])).await.unwrap().status(), 403);

    // 4. The job kind: queued in its own queue through the generic route, run, and visible to whoever may edit
    //    its resource (and to no one else: the same answer as an unknown job).
    let r = client
        .post(url("/v1/jobs"))
        .bearer_auth(ADMIN)
        .json(&json!({"kind": "widget.build", "payload": {"widget": "w-9"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let job: Value = r.json().await.unwrap();
    assert_eq!((job["queue"].as_str(), job["resource"].as_str()), (Some("widgets"), Some("widget:w-9")));
    let id = job["id"].as_str().unwrap().to_string();
    let mut done = Value::Null;
    for _ in 0..100 {
        done =
            client.get(url(&format!("/v1/jobs/{id}"))).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        if done["status"] == "SUCCESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((done["status"].as_str(), &done["result"]), (Some("SUCCESS"), &json!({"built": "w-9"})));
    let r = create(json!({"name": "widget editor", "role": "editor",
        "grants": [{"kind": "widget", "id": "w-*", "actions": ["read", "use", "edit"]}]}))
    .await
    .unwrap();
    let editor = r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string();
    assert_eq!(get(&format!("/v1/jobs/{id}"), &editor).await.unwrap().status(), 200, "its resource's editor");
    assert_eq!(get(&format!("/v1/jobs/{id}"), &user).await.unwrap().status(), 404, "a user of it only");
    // A payload that is not the kind's is refused up front.
    let r = client
        .post(url("/v1/jobs"))
        .bearer_auth(ADMIN)
        .json(&json!({"kind": "widget.build", "payload": {"colour": "red"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("widget"), "the message names what is missing");

    // 5. The route is in the OpenAPI document with the core's.
    let doc: Value = client.get(url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/widgets/{id}"]["get"].is_object(), "the capability's route is documented");
    assert!(doc["paths"]["/v1/models"].is_object());

    server.abort();
    pool.shutdown().await;
    strato.close().await;
}
