//! Files over real HTTP: streamed uploads and downloads, byte ranges, listings, limits and grants by key pattern,
//! on both deployments; presigned URLs (Strato-served for local storage, S3's own on an S3 server that checks
//! them); and a gibibyte through a `strato serve` process whose memory is watched.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use strato_http::auth::AuthOptions;
use strato_http::HttpOptions;

use crate::backend::{on_both_backends, Backend};
use crate::common::{model_dir, no_model, start, Options, TestServer};

const ADMIN: &str = "an-admin-token-0123456789";

/// `n` deterministic pseudo-random bytes in 64 KiB pieces, generated as they are sent.
fn body(n: u64) -> reqwest::Body {
    let chunks = (0..n).step_by(1 << 16).map(move |start| {
        let end = (start + (1 << 16)).min(n);
        Ok::<_, std::io::Error>((start..end).map(byte).collect::<Vec<u8>>())
    });
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

fn byte(i: u64) -> u8 {
    (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1]
}

fn digest(n: u64) -> Vec<u8> {
    let mut h = Sha256::new();
    let mut buf = Vec::with_capacity(1 << 16);
    for start in (0..n).step_by(1 << 16) {
        buf.clear();
        buf.extend((start..(start + (1 << 16)).min(n)).map(byte));
        h.update(&buf);
    }
    h.finalize().to_vec()
}

/// Streams a response body into a hash; returns (bytes, sha256).
async fn hash_body(r: reqwest::Response) -> (u64, Vec<u8>) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    let mut s = r.bytes_stream();
    while let Some(chunk) = s.next().await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    (n, h.finalize().to_vec())
}

async fn server(dir: &Path, backend: Backend, max_file_bytes: u64) -> TestServer {
    let mut o = Options::new(dir, no_model());
    o.workers = 0;
    o.backend = backend;
    o.max_file_bytes = max_file_bytes;
    o.http = HttpOptions {
        auth: AuthOptions { admin_token: Some(ADMIN.into()), ..Default::default() },
        ..Default::default()
    };
    start(o).await
}

async fn key(s: &TestServer, body: Value) -> String {
    let r = s.client.post(s.url("/v1/api-keys")).bearer_auth(ADMIN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["secret"].as_str().unwrap().to_string()
}

on_both_backends!(files_stream_by_range_and_prefix_within_their_limit_and_grants);

async fn files_stream_by_range_and_prefix_within_their_limit_and_grants(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), backend, 40 << 20).await;
    let put = |k: &str, n: u64| s.client.put(s.url(&format!("/v1/files/{k}"))).bearer_auth(ADMIN).body(body(n)).send();
    let get = |k: &str| s.client.get(s.url(&format!("/v1/files/{k}"))).bearer_auth(ADMIN);

    // 1. A 20 MiB upload (a multipart upload in storage) and a small one; downloads come back identical.
    let n = 20 << 20;
    let r = put("uploads/u1/clip.mp4", n).await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["key"].as_str(), v["size"].as_u64()), (Some("uploads/u1/clip.mp4"), Some(n)));
    assert_eq!(put("uploads/u2/notes.txt", 100).await.unwrap().status(), 201);
    let r = get("uploads/u1/clip.mp4").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], n.to_string().as_str());
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(hash_body(r).await, (n, digest(n)));

    // 2. Ranges.
    for (range, from, to) in
        [("bytes=0-9", 0, 9), ("bytes=1048570-1048580", 1_048_570, 1_048_580), ("bytes=-5", n - 5, n - 1)]
    {
        let r = get("uploads/u1/clip.mp4").header("range", range).send().await.unwrap();
        assert_eq!(r.status(), 206, "{range}");
        assert_eq!(r.headers()["content-range"], format!("bytes {from}-{to}/{n}").as_str(), "{range}");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(bytes.to_vec(), (from..=to).map(byte).collect::<Vec<_>>(), "{range}");
    }
    let r = get("uploads/u1/clip.mp4").header("range", format!("bytes={n}-")).send().await.unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "range_not_satisfiable");
    assert_eq!(get("uploads/u1/clip.mp4").header("range", "lines=1-2").send().await.unwrap().status(), 400);

    // 3. Listing by prefix; deleting.
    let list = |p: &str| s.client.get(s.url(&format!("/v1/files?prefix={p}"))).bearer_auth(ADMIN).send();
    let keys = |v: Value| {
        v["files"].as_array().unwrap().iter().map(|f| f["key"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(
        keys(list("uploads/u").await.unwrap().json().await.unwrap()),
        ["uploads/u1/clip.mp4", "uploads/u2/notes.txt"]
    );
    assert_eq!(keys(list("uploads/u2").await.unwrap().json().await.unwrap()), ["uploads/u2/notes.txt"]);
    let del = s.client.delete(s.url("/v1/files/uploads/u2/notes.txt")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let r = get("uploads/u2/notes.txt").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "file_not_found");

    // 4. Over the limit: refused before reading when declared, cut off when not; nothing is stored either way.
    let r = put("uploads/big.bin", 41 << 20).await.unwrap();
    assert_eq!(r.status(), 413);
    let undeclared = futures::stream::iter((0..50).map(|_| Ok::<_, std::io::Error>(vec![7u8; 1 << 20])));
    let r = s
        .client
        .put(s.url("/v1/files/uploads/big.bin"))
        .bearer_auth(ADMIN)
        .body(reqwest::Body::wrap_stream(undeclared))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(get("uploads/big.bin").send().await.unwrap().status(), 404, "nothing of it was stored");
    // Keys that could step outside their place are refused.
    for bad in ["/v1/files/a//b", "/v1/files/a/%5C/b"] {
        let r = s.client.put(s.url(bad)).bearer_auth(ADMIN).body("x").send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "invalid_name");
    }

    // 5. Grants by key pattern and action: a reader of uploads/u1/*, an editor of uploads/u3/*.
    let reader =
        key(&s, json!({"name": "r", "grants": [{"kind": "file", "id": "uploads/u1/*", "actions": ["read"]}]})).await;
    let editor = key(
        &s,
        json!({"name": "e", "role": "editor", "grants": [{"kind": "file", "id": "uploads/u3/*", "actions": ["read", "edit"]}]}),
    )
    .await;
    let with =
        |k: &str, m: reqwest::Method, path: &str| s.client.request(m, s.url(path)).header("x-api-key", k.to_string());
    let r =
        with(&reader, reqwest::Method::GET, "/v1/files/uploads/u1/clip.mp4").header("range", "bytes=0-0").send().await;
    assert_eq!(r.unwrap().status(), 206);
    let r = with(&reader, reqwest::Method::PUT, "/v1/files/uploads/u1/x").body("x").send().await.unwrap();
    assert_eq!(r.status(), 403, "read only");
    let r = with(&editor, reqwest::Method::PUT, "/v1/files/uploads/u3/x").body("x").send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = with(&editor, reqwest::Method::PUT, "/v1/files/uploads/u1/x").body("x").send().await.unwrap();
    assert_eq!(r.status(), 403, "outside its pattern");
    let listed: Value =
        with(&reader, reqwest::Method::GET, "/v1/files?prefix=uploads/").send().await.unwrap().json().await.unwrap();
    assert_eq!(keys(listed), ["uploads/u1/clip.mp4"], "a listing shows only what the caller may read");

    // 6. Presigned PUT then GET, with no credential.
    let presign = |k: &str, method: &str| {
        s.client.post(s.url("/v1/presigned-urls")).bearer_auth(ADMIN).json(&json!({"key": k, "method": method})).send()
    };
    let up: Value = presign("uploads/u4/p.bin", "PUT").await.unwrap().json().await.unwrap();
    let r = reqwest::Client::new().put(up["url"].as_str().unwrap()).body(body(3 << 20)).send().await.unwrap();
    assert!(r.status().is_success(), "presigned PUT: {}", r.status());
    let down: Value = presign("uploads/u4/p.bin", "GET").await.unwrap().json().await.unwrap();
    let r = reqwest::Client::new().get(down["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hash_body(r).await, (3 << 20, digest(3 << 20)));
    let r = with(&reader, reqwest::Method::POST, "/v1/presigned-urls")
        .json(&json!({"key": "uploads/u1/clip.mp4", "method": "PUT"}));
    assert_eq!(r.send().await.unwrap().status(), 403, "presigning an upload needs edit");
    s.stop().await;
}

#[tokio::test]
async fn strato_served_presigned_urls_refuse_expired_tampered_and_wrong_method() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path(), Backend::Embedded, 1 << 30).await;
    let presign = |method: &str, secs: u64| {
        s.client
            .post(s.url("/v1/presigned-urls"))
            .bearer_auth(ADMIN)
            .json(&json!({"key": "shared/a b.txt", "method": method, "expires_in_secs": secs}))
            .send()
    };
    let put: Value = presign("PUT", 600).await.unwrap().json().await.unwrap();
    let url = put["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&s.url("/v1/presigned/files/shared/a%20b.txt?method=PUT&expires=")), "{url}");
    let anon = reqwest::Client::new();
    assert_eq!(anon.put(&url).body("hello").send().await.unwrap().status(), 200);
    let get: Value = presign("GET", 600).await.unwrap().json().await.unwrap();
    let get = get["url"].as_str().unwrap().to_string();
    assert_eq!(anon.get(&get).send().await.unwrap().text().await.unwrap(), "hello");

    let refused = |r: reqwest::Response| async move {
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        (status.as_u16(), v["error"]["message"].as_str().unwrap_or_default().to_string())
    };
    // Tampered: the key, the expiry, the signature.
    let other_key = get.replace("a%20b.txt", "other.txt");
    let (st, m) = refused(anon.get(&other_key).send().await.unwrap()).await;
    assert_eq!(st, 403);
    assert!(m.contains("signature"), "{m}");
    let later = {
        let mut u = url::Url::parse(&get).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                if k == "expires" {
                    (k.into(), (v.parse::<u64>().unwrap() + 3600).to_string())
                } else {
                    (k.into(), v.into())
                }
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        u.to_string()
    };
    assert_eq!(refused(anon.get(&later).send().await.unwrap()).await.0, 403, "a longer expiry written in by hand");
    let flipped = format!("{}{}", &get[..get.len() - 1], if get.ends_with('0') { '1' } else { '0' });
    assert_eq!(refused(anon.get(&flipped).send().await.unwrap()).await.0, 403);
    // A GET URL does not upload, a PUT URL does not download.
    assert_eq!(refused(anon.put(&get).body("x").send().await.unwrap()).await.0, 403);
    assert_eq!(refused(anon.get(&url).send().await.unwrap()).await.0, 403);
    assert_eq!(anon.get(&get).send().await.unwrap().text().await.unwrap(), "hello", "nothing was overwritten");
    // Expired.
    let soon: Value = presign("GET", 1).await.unwrap().json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, m) = refused(anon.get(soon["url"].as_str().unwrap()).send().await.unwrap()).await;
    assert_eq!(st, 403);
    assert!(m.contains("expired"), "{m}");
    // An expiry out of range says what to fix.
    let bad = presign("GET", 0).await.unwrap();
    assert_eq!(bad.status(), 400);
    s.stop().await;
}

#[tokio::test]
async fn s3_presigned_urls_go_straight_to_a_server_that_checks_them() {
    let Some(s3) = strato_blob::test_support::S3sFs::start("strato-files") else { return };
    let dir = tempfile::tempdir().unwrap();
    let blobs = strato_blob::BlobStore::s3(&s3.s3_options(Some("deploy-1"))).unwrap();
    let store = strato_store::Store::open_sqlite(&dir.path().join("meta.db")).await.unwrap();
    let so = crate::common::strato_options(&Options::new(dir.path(), no_model()));
    let strato = strato_service::Strato::with_parts(store, blobs, so).unwrap();
    let app = strato_http::router(strato.clone(), HttpOptions::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await.unwrap();
    });
    let c = reqwest::Client::new();
    let presign = |method: &str, secs: u64| {
        c.post(format!("{base}/v1/presigned-urls"))
            .json(&json!({"key": "in/clip.mp4", "method": method, "expires_in_secs": secs}))
            .send()
    };
    let put: Value = presign("PUT", 600).await.unwrap().json().await.unwrap();
    let url = put["url"].as_str().unwrap();
    assert!(url.starts_with(&s3.endpoint()), "straight to the bucket: {url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(c.put(url).body(body(1 << 20)).send().await.unwrap().status().is_success());
    // Through Strato too: it is one object.
    let r = c.get(format!("{base}/v1/files/in/clip.mp4")).send().await.unwrap();
    assert_eq!(hash_body(r).await, (1 << 20, digest(1 << 20)));
    let get: Value = presign("GET", 600).await.unwrap().json().await.unwrap();
    let get = get["url"].as_str().unwrap().to_string();
    assert_eq!(hash_body(c.get(&get).send().await.unwrap()).await, (1 << 20, digest(1 << 20)));
    assert_eq!(c.get(get.replace("clip.mp4", "other.mp4")).send().await.unwrap().status(), 403, "tampered");
    let soon: Value = presign("GET", 1).await.unwrap().json().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(c.get(soon["url"].as_str().unwrap()).send().await.unwrap().status(), 403, "expired");
    server.abort();
}

/// A `strato serve` child process, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Streams 1 GiB up and back down through a `strato serve` process on `storage` and returns how much its peak RSS
/// grew over its RSS before the transfer, in MiB.
async fn gibibyte_through(model: &Path, storage: &str, env: Vec<(&'static str, String)>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_strato"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--embedding-model")
        .arg(model)
        .args(["--storage", storage, "serve", "--addr", &format!("127.0.0.1:{port}"), "--workers", "0"])
        .args(["--admin-token", ADMIN])
        .envs(env)
        .env("STRATO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    let pid = serve.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let c = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "strato serve did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A first small transfer warms up what a transfer allocates once (client pools, buffers).
    let r = c.put(format!("{base}/v1/files/warm.bin")).bearer_auth(ADMIN).body(body(9 << 20)).send().await.unwrap();
    assert_eq!(r.status(), 201);
    hash_body(c.get(format!("{base}/v1/files/warm.bin")).bearer_auth(ADMIN).send().await.unwrap()).await;
    let before = status_kib(pid, "VmRSS");

    let n = 1u64 << 30;
    let t = Instant::now();
    let r = c.put(format!("{base}/v1/files/big/1gib.bin")).bearer_auth(ADMIN).body(body(n)).send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let up = t.elapsed();
    let t = Instant::now();
    let r = c.get(format!("{base}/v1/files/big/1gib.bin")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hash_body(r).await, (n, digest(n)), "{storage}: the gibibyte came back different");
    let down = t.elapsed();
    // A range from the middle.
    let r =
        c.get(format!("{base}/v1/files/big/1gib.bin")).bearer_auth(ADMIN).header("range", "bytes=536870912-536870927");
    let bytes = r.send().await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.to_vec(), (536_870_912..536_870_928).map(byte).collect::<Vec<_>>());
    let peak = status_kib(pid, "VmHWM");
    let grew = peak.saturating_sub(before) as f64 / 1024.0;
    eprintln!(
        "{storage}: 1 GiB up in {up:.1?}, down in {down:.1?}; server RSS {:.0} MiB before, peak {:.0} MiB (+{grew:.1} MiB)",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    grew
}

#[tokio::test]
async fn a_gibibyte_streams_through_the_server_in_bounded_memory() {
    let Some(model) = model_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("blobs");
    let grew = gibibyte_through(&model, local.to_str().unwrap(), Vec::new()).await;
    assert!(grew < 64.0, "local storage: the server's peak RSS grew by {grew:.1} MiB during a 1 GiB transfer");
    let Some(s3) = strato_blob::test_support::S3sFs::start("strato-big") else { return };
    let grew = gibibyte_through(&model, &s3.storage("deploy"), s3.client_env()).await;
    assert!(grew < 64.0, "S3: the server's peak RSS grew by {grew:.1} MiB during a 1 GiB transfer");
}
