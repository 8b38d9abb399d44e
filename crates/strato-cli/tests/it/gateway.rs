//! The gateway over real HTTP: JWT attacks, JWKS rotation, per-tenant access, public routes, secure headers,
//! request ids and CORS. No embedding model is needed: every request here is decided before any embedding.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use strato_http::auth::{AuthOptions, JwksSource, JwtOptions, Policy};
use strato_http::HttpOptions;

use crate::common::{data, no_model, start, Options, TestServer};

const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(data("gateway").join(name)).unwrap()
}

fn hs(claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn rs(kid: &str, pem: &str, claims: Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_rsa_pem(&key_file(pem)).unwrap()).unwrap()
}

fn es(kid: &str, claims: Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_pem(&key_file("ec1.pem")).unwrap()).unwrap()
}

fn b64(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token signed with HMAC over `key` (used to forge tokens with a public key as the secret).
fn hs_with(key: &[u8], header: Value, claims: Value) -> String {
    use hmac::Mac;
    let signing = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(signing.as_bytes());
    format!("{signing}.{}", b64(&mac.finalize().into_bytes()))
}

fn admin_claims() -> Value {
    json!({"sub": "root", "role": "ADMIN", "exp": now() + 600})
}

async fn server(dir: &std::path::Path, auth: AuthOptions) -> TestServer {
    let mut o = Options::new(dir, no_model());
    o.workers = 0;
    o.http = HttpOptions {
        auth,
        cors_origins: vec!["https://app.example".into()],
        hsts_max_age: Some(31_536_000),
        ..Default::default()
    };
    start(o).await
}

fn jwt_auth(jwks: JwksSource) -> AuthOptions {
    AuthOptions {
        jwt: Some(JwtOptions {
            hs256_secret: Some(SECRET.into()),
            jwks: Some(jwks),
            jwks_min_refresh: Duration::from_millis(100),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn status_with(s: &TestServer, path: &str, token: &str) -> (u16, Value) {
    let r = s.client.get(s.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn jwt_attacks_are_refused_and_valid_tokens_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), jwt_auth(JwksSource::File(data("gateway").join("jwks-1.json")))).await;
    let claims = admin_claims();

    // Valid tokens of every accepted kind.
    for (what, t) in [
        ("HS256", hs(claims.clone())),
        ("RS256", rs("rsa1", "rsa1.pem", claims.clone())),
        ("ES256", es("ec1", claims.clone())),
    ] {
        let (st, body) = status_with(&s, "/v1/jobs", &t).await;
        assert_eq!(st, 200, "{what}: {body}");
    }

    let payload = b64(claims.to_string().as_bytes());
    let attacks: Vec<(&str, String, &str)> = vec![
        // `alg: none`, no signature.
        ("alg none", format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#)), "malformed"),
        // HS256 "signed" with the published RSA public key as the HMAC secret.
        (
            "HS/RS confusion",
            hs_with(&key_file("rsa1.pub.pem"), json!({"alg": "HS256", "typ": "JWT", "kid": "rsa1"}), claims.clone()),
            "signature",
        ),
        // A key id the JWKS does not have.
        ("unknown kid", rs("nope", "rsa1.pem", claims.clone()), "unknown signing key"),
        // A listed kid, but signed by another key.
        ("forged with a rogue key", rs("rsa1", "rsa-rogue.pem", claims.clone()), "signature"),
        // An ES256 key id used for an RS256 token.
        ("key of another algorithm", rs("ec1", "rsa1.pem", claims.clone()), "not RS256"),
        ("expired", hs(json!({"sub": "x", "role": "ADMIN", "exp": now() - 120})), "expired"),
        ("not yet valid", hs(json!({"sub": "x", "role": "ADMIN", "exp": now() + 600, "nbf": now() + 120})), "nbf"),
        ("no exp", hs(json!({"sub": "x", "role": "ADMIN"})), "exp"),
        ("garbage", "not.a.token".to_string(), "malformed"),
    ];
    for (what, token, says) in attacks {
        let (st, body) = status_with(&s, "/v1/jobs", &token).await;
        assert_eq!(st, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{what}: {msg}");
    }

    // A tampered payload (role raised) breaks the signature.
    let t = hs(json!({"sub": "u", "role": "USER", "exp": now() + 600}));
    let parts: Vec<&str> = t.split('.').collect();
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(status_with(&s, "/v1/jobs", &tampered).await.0, 401);

    // Leeway: a token expired 10 s ago still passes (30 s of allowed skew).
    assert_eq!(status_with(&s, "/v1/jobs", &hs(json!({"sub": "x", "role": "ADMIN", "exp": now() - 10}))).await.0, 200);
    // No credentials at all.
    let r = s.client.get(s.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    s.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut auth = jwt_auth(JwksSource::File(data("gateway").join("jwks-1.json")));
    let jwt = auth.jwt.as_mut().unwrap();
    jwt.issuer = Some("https://issuer.example".into());
    jwt.audience = Some("strato".into());
    let s = server(dir.path(), auth).await;
    let ok = json!({"sub": "a", "role": "ADMIN", "exp": now() + 600, "iss": "https://issuer.example", "aud": "strato"});
    assert_eq!(status_with(&s, "/v1/jobs", &hs(ok.clone())).await.0, 200);
    let mut wrong_iss = ok.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    let (st, body) = status_with(&s, "/v1/jobs", &hs(wrong_iss)).await;
    assert_eq!(st, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("issuer"), "{body}");
    let mut wrong_aud = ok;
    wrong_aud["aud"] = json!("someone-else");
    let (st, body) = status_with(&s, "/v1/jobs", &hs(wrong_aud)).await;
    assert_eq!(st, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("audience"), "{body}");
    s.stop().await;
}

/// A JWKS endpoint whose document the test can swap.
async fn jwks_server(doc: Arc<parking_lot::Mutex<Vec<u8>>>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let doc = doc.lock().clone();
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { ([("content-type", "application/json")], doc) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

#[tokio::test]
async fn jwks_rotation_is_picked_up_on_an_unknown_kid() {
    let dir = tempfile::tempdir().unwrap();
    let doc = Arc::new(parking_lot::Mutex::new(key_file("jwks-1.json")));
    let (url, hits) = jwks_server(doc.clone()).await;
    let s = server(dir.path(), jwt_auth(JwksSource::Url(url))).await;
    let old = rs("rsa1", "rsa1.pem", admin_claims());
    let new = rs("rsa2", "rsa2.pem", admin_claims());

    assert_eq!(status_with(&s, "/v1/jobs", &old).await.0, 200);
    assert_eq!(status_with(&s, "/v1/jobs", &new).await.0, 401, "rsa2 is not published yet");
    // Cached: many requests with a known kid do not refetch.
    for _ in 0..5 {
        assert_eq!(status_with(&s, "/v1/jobs", &old).await.0, 200);
    }
    let fetched = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(fetched <= 2, "the JWKS was fetched {fetched} times");

    // The issuer rotates: rsa2 in, rsa1 out.
    *doc.lock() = key_file("jwks-2.json");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(status_with(&s, "/v1/jobs", &new).await.0, 200, "the new key is fetched on its unknown kid");
    assert_eq!(status_with(&s, "/v1/jobs", &old).await.0, 401, "the retired key no longer verifies");
    s.stop().await;
}

#[tokio::test]
async fn tenants_only_reach_what_they_are_granted() {
    let dir = tempfile::tempdir().unwrap();
    let mut auth = jwt_auth(JwksSource::File(data("gateway").join("jwks-1.json")));
    auth.policy = Policy::parse(r#"{"planners": ["paris"]}"#, false).unwrap();
    let s = server(dir.path(), auth).await;
    let admin = hs(admin_claims());
    let owner_a = hs(json!({"id": "user-a", "role": "USER", "mentorIds": ["mentor-a"], "exp": now() + 600}));
    let planner = hs(json!({"sub": "p", "cognito:groups": ["planners"], "exp": now() + 600}));
    let mentor = |id: &str| json!({"id": id, "name": "A mentor", "answers": []});

    // The admin creates mentor B; user A owns A only.
    let r =
        s.client.put(s.url("/v1/mentors/mentor-b")).bearer_auth(&admin).json(&mentor("mentor-b")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = s
        .client
        .put(s.url("/v1/mentors/mentor-a"))
        .bearer_auth(&owner_a)
        .json(&mentor("mentor-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the owner edits its own mentor: {}", r.text().await.unwrap());

    for (method, path) in [
        ("GET", "/v1/mentors/mentor-b"),
        ("PUT", "/v1/mentors/mentor-b"),
        ("POST", "/v1/mentors/mentor-b/train"),
        ("GET", "/v1/mentors/mentor-b/answer?query=hi"),
        ("GET", "/v1/mentors/mentor-b/trainingdata"),
        ("DELETE", "/v1/mentors/mentor-b"),
        // A mentor that does not exist gets the same answer: nothing leaks.
        ("GET", "/v1/mentors/mentor-c"),
        ("POST", "/classifier/train"),
        ("GET", "/classifier/trainingdata/mentor-b"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/dlq"),
        ("GET", "/v1/datasets"),
    ] {
        let mut req = s.client.request(method.parse().unwrap(), s.url(path)).bearer_auth(&owner_a);
        if method != "GET" && method != "DELETE" {
            req = req.json(&if path.starts_with("/classifier") {
                json!({"mentor": "mentor-b"})
            } else {
                mentor("mentor-b")
            });
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{method} {path}: {body}");
    }
    // Mentor B is untouched.
    let (st, b) = status_with(&s, "/v1/mentors/mentor-b", &admin).await;
    assert_eq!((st, b["name"].as_str()), (200, Some("A mentor")));

    // Groups → models: planners may use `paris` (not trained: 404 past the gate), not `lyon` (403), and may not
    // create models at all.
    let predict = |model: &str| {
        s.client.post(s.url(&format!("/v1/models/{model}/predict"))).bearer_auth(&planner).json(&json!({"text": "x"}))
    };
    assert_eq!(predict("paris").send().await.unwrap().status(), 404);
    assert_eq!(predict("lyon").send().await.unwrap().status(), 403);
    let r = s.client.get(s.url("/prediction?model_id=lyon&text=x")).bearer_auth(&planner).send().await.unwrap();
    assert_eq!(r.status(), 403, "the Albert route is gated too");
    let r = s
        .client
        .post(s.url("/v1/models"))
        .bearer_auth(&planner)
        .json(&json!({"id": "paris", "data": [{"text": "a", "label": "b"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a user role may not train");
    s.stop().await;
}

#[tokio::test]
async fn public_routes_take_anonymous_callers_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut auth = jwt_auth(JwksSource::File(data("gateway").join("jwks-1.json")));
    auth.public_routes = vec!["GET /classifier/questions".into()];
    let s = server(dir.path(), auth).await;
    // Past the gate: the mentor has no classifier, which is the route's own 404.
    let r = s.client.get(s.url("/classifier/questions?mentor=m&query=hello")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = s.client.get(s.url("/classifier/trainingdata/m")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.client.get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A bad token is refused even on a public route.
    let r = s.client.get(s.url("/classifier/questions?mentor=m&query=hello")).bearer_auth("junk").send().await.unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

#[tokio::test]
async fn every_response_has_secure_headers_and_a_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        server(dir.path(), AuthOptions { admin_token: Some("an-admin-token-0123456789".into()), ..Default::default() })
            .await;
    let cases = [
        ("/healthz", None, 200),
        ("/v1/models", Some("an-admin-token-0123456789"), 200),
        ("/v1/models/nope", Some("an-admin-token-0123456789"), 404),
        ("/no/such/route", None, 404),
        ("/v1/models", None, 401),
    ];
    for (path, token, status) in cases {
        let mut req = s.client.get(s.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(h["content-security-policy"].to_str().unwrap().contains("default-src 'none'"), "{path}");
        assert_eq!(h["strict-transport-security"], "max-age=31536000; includeSubDomains", "{path}");
        let id = h["x-request-id"].to_str().unwrap();
        assert_eq!(id.len(), 36, "a generated UUID on {path}: {id}");
    }
    // A client's id is echoed; a bad one is replaced.
    let r = s.client.get(s.url("/healthz")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    let r = s.client.get(s.url("/healthz")).header("x-request-id", "a b").send().await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "a b");
    s.stop().await;
}

#[tokio::test]
async fn cors_preflight_allows_configured_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        server(dir.path(), AuthOptions { admin_token: Some("an-admin-token-0123456789".into()), ..Default::default() })
            .await;
    let preflight = |origin: &str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/v1/models"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
    };
    let r = preflight("https://app.example").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    let methods = r.headers()["access-control-allow-methods"].to_str().unwrap().to_string();
    assert!(methods.contains("POST"), "{methods}");
    let headers = r.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(headers.contains("authorization"), "{headers}");

    let r = preflight("https://evil.example").send().await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "an unlisted origin gets no CORS grant");

    // An actual cross-origin call carries the grant and still needs credentials.
    let r = s.client.get(s.url("/v1/models")).header("origin", "https://app.example").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    s.stop().await;
}

const ADMIN: &str = "an-admin-token-0123456789";

async fn keyed_server(dir: &std::path::Path, limits: strato_http::limits::LimitOptions) -> TestServer {
    let mut o = Options::new(dir, no_model());
    o.workers = 0;
    o.http = HttpOptions {
        auth: AuthOptions { admin_token: Some(ADMIN.into()), ..Default::default() },
        limits,
        ..Default::default()
    };
    start(o).await
}

async fn create_key(s: &TestServer, body: Value) -> (String, String) {
    let r = s.client.post(s.url("/v1/api-keys")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (v["id"].as_str().unwrap().to_string(), v["secret"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn api_keys_are_created_used_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let s = keyed_server(dir.path(), Default::default()).await;
    let (id, secret) = create_key(&s, json!({"name": "reporting app", "models": ["paris"]})).await;
    assert!(secret.starts_with("strato_") && secret.len() > 60, "{secret}");

    // Only a hash is stored, and the listing shows neither.
    let stored = s.strato.keys().list().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].secret_hash, secret);
    assert_eq!(stored[0].secret_hash, hex_sha256(&secret));
    let listed = s.client.get(s.url("/v1/api-keys")).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    assert!(!listed.contains(&secret) && !listed.contains(&stored[0].secret_hash), "{listed}");
    assert!(listed.contains(&id));

    // The key reaches what it is granted, and no more.
    let predict = |model: &str| {
        s.client
            .post(s.url(&format!("/v1/models/{model}/predict")))
            .header("x-api-key", &secret)
            .json(&json!({"text": "x"}))
    };
    assert_eq!(predict("paris").send().await.unwrap().status(), 404, "granted: past the gate");
    assert_eq!(predict("lyon").send().await.unwrap().status(), 403);
    let r = s.client.get(s.url("/v1/api-keys")).header("x-api-key", &secret).send().await.unwrap();
    assert_eq!(r.status(), 403, "a user key is not an admin");
    let r = s.client.get(s.url("/v1/models")).header("x-api-key", "strato_made-up").send().await.unwrap();
    assert_eq!(r.status(), 401);

    // Revoked: refused at once.
    let r = s.client.delete(s.url(&format!("/v1/api-keys/{id}"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["revoked_at"].is_string(), "{v}");
    assert_eq!(predict("paris").send().await.unwrap().status(), 401);
    let r = s.client.delete(s.url("/v1/api-keys/ak_nope")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Bad requests say what to fix.
    let r = s
        .client
        .post(s.url("/v1/api-keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "x", "role": "root"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("admin, editor or user"));
    s.stop().await;
}

fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn rate_limit_is_exact_under_32_concurrent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let s = keyed_server(dir.path(), Default::default()).await;
    // Ten at once, then one every 1000 s: the refill cannot blur the count.
    let (_, secret) =
        create_key(&s, json!({"name": "burst", "models": ["*"], "plan": {"rate_per_sec": 0.001, "burst": 10}})).await;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url, secret) = (reqwest::Client::new(), s.url("/v1/models"), secret.clone());
        tasks.push(tokio::spawn(async move { client.get(url).header("x-api-key", secret).send().await.unwrap() }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                let h = r.headers();
                let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(retry >= 1, "{retry}");
                assert_eq!(h["ratelimit-limit"], "10");
                assert_eq!(h["ratelimit-remaining"], "0");
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, limited), (10, 22));
    // The admin token is never limited.
    let r = s.client.get(s.url("/v1/models")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn quotas_are_shared_by_api_processes_and_reset_with_their_window() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::from_secs(3);
    let limits = strato_http::limits::LimitOptions { quota_window: window, ..Default::default() };
    // Two API servers on one store, as two processes sharing a database would be.
    let a = keyed_server(dir.path(), limits.clone()).await;
    let b = keyed_server(dir.path(), limits).await;
    let (_, secret) = create_key(&a, json!({"name": "quota", "models": ["*"], "plan": {"daily_quota": 4}})).await;
    // Start just after a window boundary so the whole check fits in one window.
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let len = window.as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(len - ms % len + 20)).await;
    let get = |s: &TestServer| s.client.get(s.url("/v1/models")).header("x-api-key", secret.clone()).send();
    let mut remaining = Vec::new();
    for s in [&a, &b, &a, &b] {
        let r = get(s).await.unwrap();
        assert_eq!(r.status(), 200);
        remaining.push(r.headers()["ratelimit-remaining"].to_str().unwrap().to_string());
    }
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    for s in [&a, &b] {
        let r = get(s).await.unwrap();
        assert_eq!(r.status(), 429, "the quota holds across both servers");
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=3).contains(&retry), "{retry}");
    }
    // The next window starts afresh.
    tokio::time::sleep(window).await;
    assert_eq!(get(&b).await.unwrap().status(), 200);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn metrics_reflect_traffic_and_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let s = keyed_server(dir.path(), Default::default()).await;
    for _ in 0..3 {
        assert_eq!(s.client.get(s.url("/v1/models")).bearer_auth(ADMIN).send().await.unwrap().status(), 200);
    }
    assert_eq!(s.client.get(s.url("/v1/models/nope")).bearer_auth(ADMIN).send().await.unwrap().status(), 404);
    let r = s.client.post(s.url("/v1/jobs")).bearer_auth(ADMIN).json(&json!({"kind": "noop"})).send().await.unwrap();
    assert_eq!(r.status(), 202);

    let (_, user) = create_key(&s, json!({"name": "u"})).await;
    let r = s.client.get(s.url("/metrics")).header("x-api-key", &user).send().await.unwrap();
    assert_eq!(r.status(), 403, "metrics are for admins unless made public");

    let r = s.client.get(s.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for line in [
        r#"strato_http_requests_total{method="GET",route="/v1/models",status="200"} 3"#,
        r#"strato_http_requests_total{method="GET",route="/v1/models/{id}",status="404"} 1"#,
        r#"strato_http_requests_total{method="POST",route="/v1/jobs",status="202"} 1"#,
        r#"strato_http_request_duration_seconds_count{method="GET",route="/v1/models"} 3"#,
        r#"strato_jobs{kind="noop",status="QUEUED"} 1"#,
        "strato_model_loads_total 0",
        "strato_embedding_batch_size_count 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    s.stop().await;
}

#[tokio::test]
async fn readyz_names_the_failing_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let s = keyed_server(dir.path(), Default::default()).await;
    // No credentials needed; the embedding model is missing on purpose.
    let r = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["checks"], json!({"store": "ok", "blob_storage": "ok", "embedding_model": "failing"}), "{v}");
    assert_eq!(s.client.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn slow_responses_are_counted_and_alerted_once_per_interval() {
    let received = Arc::new(parking_lot::Mutex::new(Vec::<Value>::new()));
    let r2 = received.clone();
    let hook = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            r2.lock().push(v);
            async { "ok" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path(), no_model());
    o.workers = 0;
    o.http = HttpOptions {
        // Every response is "slow" past 0 ms on /v1/models; others use a threshold nothing reaches.
        slow: strato_http::observe::SlowOptions {
            default_ms: Some(60_000),
            per_route: [("/v1/models".to_string(), 0)].into(),
            alert_every: Duration::from_secs(60),
        },
        alerter: Some(strato_service::Alerter::start(strato_service::AlerterOptions::new(hook_url))),
        ..Default::default()
    };
    let s = start(o).await;
    for _ in 0..3 {
        s.client.get(s.url("/v1/models")).send().await.unwrap();
        s.client.get(s.url("/v1/datasets")).send().await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while received.lock().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let alerts = received.lock().clone();
    assert_eq!(alerts.len(), 1, "one alert per route per interval: {alerts:?}");
    assert_eq!(alerts[0]["event"], "http.slow_response");
    assert_eq!(alerts[0]["route"], "/v1/models");
    assert!(alerts[0]["text"].as_str().unwrap().contains("/v1/models"));
    let text = s.client.get(s.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        text.lines().any(|l| l == r#"strato_http_slow_responses_total{method="GET",route="/v1/models"} 3"#),
        "{text}"
    );
    assert!(!text.contains(r#"strato_http_slow_responses_total{method="GET",route="/v1/datasets"}"#));
    s.stop().await;
}

#[tokio::test]
async fn validation_errors_name_the_field_and_body_limits_depend_on_the_route() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path(), no_model());
    o.workers = 0;
    o.max_dataset_bytes = 200_000;
    o.http = HttpOptions { max_json_bytes: 4096, ..Default::default() };
    let s = start(o).await;
    let post = |path: &str, body: Value| s.client.post(s.url(path)).json(&body).send();

    // Wrong type deep in the body: the path names it.
    let r = post("/v1/models", json!({"id": "m", "data": [{"text": "a", "label": 3}]})).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(v["error"]["message"].as_str().unwrap().contains("`data[0].label`"), "{v}");
    // Unknown enum value in a query parameter.
    let r = s.client.get(s.url("/v1/jobs?status=SLEEPING")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("SLEEPING"), "{v}");
    // Wrong type in a query parameter.
    let r = s.client.get(s.url("/v1/jobs?limit=many")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("`limit`"), "{v}");

    // 10 kB of JSON: too big for a job submit, fine as inline training data.
    let filler = "x".repeat(10_000);
    let r = post("/v1/jobs", json!({"kind": "noop", "payload": {"filler": filler}})).await.unwrap();
    assert_eq!(r.status(), 413);
    let rows: Vec<Value> = (0..100).map(|i| json!({"text": format!("{filler:.90} {i}"), "label": i % 2})).collect();
    let r = post("/v1/models", json!({"id": "m", "data": rows})).await.unwrap();
    assert_eq!(r.status(), 400, "past the size limit, refused for the label type instead");
    s.stop().await;
}

/// Opens a request whose body never finishes, holding a request slot until the connection drops.
async fn stalled_request(base: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let addr = base.trim_start_matches("http://");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /v1/datasets/slow HTTP/1.1\r\nhost: {addr}\r\ncontent-type: text/csv\r\ncontent-length: 1000\r\n\r\ntext,label\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c
}

#[tokio::test]
async fn overload_and_slow_requests_get_a_clear_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(dir.path(), no_model());
    o.workers = 0;
    o.http =
        HttpOptions { max_concurrent_requests: 1, request_timeout: Duration::from_millis(500), ..Default::default() };
    let s = start(o).await;
    let stalled = stalled_request(&s.base).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = s.client.get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    assert_eq!(s.client.get(s.url("/healthz")).send().await.unwrap().status(), 200, "probes are always admitted");

    // The stalled request is cut off at the time limit, which frees its slot.
    use tokio::io::AsyncReadExt;
    let mut stalled = stalled;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(s.client.get(s.url("/v1/models")).send().await.unwrap().status(), 200);
    drop(stalled);
    s.stop().await;
}

/// Deletes every stored blob: what was written is gone, so reading it is an internal error.
fn lose_all_blobs(dir: &std::path::Path) {
    fn walk(p: &std::path::Path) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path);
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    walk(&dir.join("blobs"));
}

#[tokio::test]
async fn a_500_has_secure_headers_and_is_reported_to_sentry() {
    // A stand-in Sentry that records envelopes.
    let envelopes = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let e2 = envelopes.clone();
    let sentry_app = axum::Router::new().route(
        "/api/42/envelope/",
        axum::routing::post(move |body: axum::body::Bytes| {
            e2.lock().push(String::from_utf8_lossy(&body).to_string());
            async { "{}" }
        }),
    );
    // On a runtime of its own: the Sentry client's shutdown (its guard's drop) blocks this test's runtime while it
    // delivers what is left, so a server on this runtime could never answer.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let dsn = format!("http://public@{}/42", std_listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            axum::serve(listener, sentry_app).await.unwrap()
        })
    });
    // This test runs in a process of its own (nextest), so the global client touches no other test.
    let mut opts = sentry::ClientOptions::new();
    opts.dsn = Some(dsn.parse().unwrap());
    let _guard = sentry::init(opts);

    let dir = tempfile::tempdir().unwrap();
    let s = keyed_server(dir.path(), Default::default()).await;
    let r = s
        .client
        .put(s.url("/v1/datasets/d"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body("text,label\na,b\nc,d\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    lose_all_blobs(dir.path());
    let r =
        s.client.get(s.url("/v1/datasets/d")).bearer_auth(ADMIN).header("x-request-id", "boom-1").send().await.unwrap();
    assert_eq!(r.status(), 500);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(h["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert_eq!(h["x-request-id"], "boom-1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "internal");

    sentry::Hub::current().client().unwrap().flush(Some(Duration::from_secs(5)));
    let got = envelopes.lock().clone();
    let event = got.iter().find(|e| e.contains("answered 500")).unwrap_or_else(|| panic!("no report: {got:?}"));
    assert!(event.contains("GET /v1/datasets/{name} answered 500"), "{event}");
    assert!(event.contains("boom-1"), "the request id is a tag: {event}");
    assert!(!event.contains(ADMIN), "no credentials in reports");
    s.stop().await;
}
