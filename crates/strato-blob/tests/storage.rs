//! The same behaviour on every backend: the local filesystem always, and a real S3 server (moto) when
//! `STRATO_TEST_MOTO_SERVER` or `moto_server` on `PATH` provides one (otherwise those tests print `SKIPPED` and pass).

use std::time::{Duration, Instant};

use bytes::Bytes;
use strato_blob::test_support::MotoServer;
use strato_blob::{BlobError, BlobLocation, BlobStore};

const BUCKET: &str = "strato-test";

/// moto with one bucket, and a store on it under `prefix`.
fn moto_store(prefix: Option<&str>) -> Option<(MotoServer, BlobStore)> {
    let moto = MotoServer::start()?;
    moto.create_bucket(BUCKET);
    let store = BlobStore::s3(&moto.s3_options(BUCKET, prefix)).unwrap();
    Some((moto, store))
}

/// put, get, replace, exists, delete (twice), and reads of missing keys.
async fn round_trip(store: &BlobStore) {
    let key = "models/m/v1.bin";
    assert!(!store.exists(key).await.unwrap());
    assert!(matches!(store.get(key).await, Err(BlobError::NotFound(k)) if k == key));
    store.put(key, Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"one"));
    store.put(key, Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"two"));
    assert!(store.exists(key).await.unwrap());
    // A key is not a directory: its parent does not exist as an object.
    assert!(!store.exists("models/m").await.unwrap());
    store.delete(key).await.unwrap();
    store.delete(key).await.unwrap();
    assert!(!store.exists(key).await.unwrap());
    assert!(matches!(store.get(key).await, Err(BlobError::NotFound(_))));
    // A copy replaces its target and leaves its source; a missing source is a NotFound, not an empty copy.
    store.put("staging/u1/web.mp4", Bytes::from_static(b"new")).await.unwrap();
    store.put("videos/m/q/web.mp4", Bytes::from_static(b"old")).await.unwrap();
    store.copy("staging/u1/web.mp4", "videos/m/q/web.mp4").await.unwrap();
    assert_eq!(store.get("videos/m/q/web.mp4").await.unwrap(), Bytes::from_static(b"new"));
    assert_eq!(store.get("staging/u1/web.mp4").await.unwrap(), Bytes::from_static(b"new"));
    store.copy("staging/u1/web.mp4", "videos/m/q2/web.mp4").await.unwrap();
    assert_eq!(store.get("videos/m/q2/web.mp4").await.unwrap(), Bytes::from_static(b"new"), "into a new folder");
    assert!(matches!(store.copy("staging/none", "videos/m/q/x").await, Err(BlobError::NotFound(_))));
    assert!(!store.exists("videos/m/q/x").await.unwrap());
    // An empty object is an object.
    store.put("empty", Bytes::new()).await.unwrap();
    assert!(store.exists("empty").await.unwrap());
    assert_eq!(store.get("empty").await.unwrap(), Bytes::new());
}

/// Keys with spaces, non-ASCII letters and characters that need escaping in URLs.
async fn unusual_keys(store: &BlobStore) {
    let keys = ["datasets/my data set.csv", "datasets/Ünïcödé – 数据.jsonl", "a+b=c&d;e,f@g$h!.bin"];
    for (i, key) in keys.iter().enumerate() {
        store.put(key, Bytes::from(format!("value {i}"))).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(store.get(key).await.unwrap(), Bytes::from(format!("value {i}")), "{key}");
        assert!(store.exists(key).await.unwrap(), "{key}");
        store.delete(key).await.unwrap();
        assert!(!store.exists(key).await.unwrap(), "{key}");
    }
}

/// A 5 MB object with varied bytes comes back identical.
async fn large_object(store: &BlobStore) {
    let body: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let body = Bytes::from(body);
    store.put("models/big/artifact.bin", body.clone()).await.unwrap();
    let back = store.get("models/big/artifact.bin").await.unwrap();
    assert_eq!(back.len(), body.len());
    assert!(back == body, "the 5 MB object came back different");
}

#[tokio::test]
async fn local_round_trip_unusual_keys_and_large_object() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("blobs");
    let store = BlobStore::open(root.to_str().unwrap(), &dir.path().join("unused")).unwrap();
    assert_eq!(store.to_string(), root.display().to_string());
    round_trip(&store).await;
    unusual_keys(&store).await;
    large_object(&store).await;

    // A file URL and the default (empty storage) reach the same kind of store.
    let url = format!("file://{}", root.display());
    let by_url = BlobStore::open(&url, dir.path()).unwrap();
    assert_eq!(by_url.get("models/big/artifact.bin").await.unwrap().len(), 5 * 1024 * 1024);
    let default = BlobStore::open("", &root).unwrap();
    assert!(default.exists("models/big/artifact.bin").await.unwrap());
}

#[tokio::test]
async fn s3_round_trip_under_a_prefix() {
    let Some((moto, store)) = moto_store(Some("tenant-a/blobs")) else { return };
    round_trip(&store).await;

    // Keys live under the prefix: the bucket root sees them there, and another prefix does not see them.
    store.put("datasets/d.csv", Bytes::from_static(b"text,label\n")).await.unwrap();
    let root = BlobStore::s3(&moto.s3_options(BUCKET, None)).unwrap();
    assert_eq!(root.get("tenant-a/blobs/datasets/d.csv").await.unwrap(), Bytes::from_static(b"text,label\n"));
    assert!(!root.exists("datasets/d.csv").await.unwrap());
    let other = BlobStore::s3(&moto.s3_options(BUCKET, Some("tenant-b"))).unwrap();
    assert!(matches!(other.get("datasets/d.csv").await, Err(BlobError::NotFound(_))));

    assert_eq!(store.to_string(), format!("s3://{BUCKET}/tenant-a/blobs @ {} (us-east-1)", moto.endpoint()));
}

#[tokio::test]
async fn s3_unusual_keys_and_large_object() {
    let Some((_moto, store)) = moto_store(Some("p")) else { return };
    unusual_keys(&store).await;
    large_object(&store).await;
}

#[tokio::test]
async fn s3_open_location_at_bucket_root() {
    let Some(moto) = MotoServer::start() else { return };
    moto.create_bucket(BUCKET);
    let store = BlobStore::open_location(&BlobLocation::S3(moto.s3_options(BUCKET, None))).unwrap();
    round_trip(&store).await;
}

#[tokio::test]
async fn s3_missing_bucket_is_an_error_not_a_missing_blob() {
    let Some(moto) = MotoServer::start() else { return };
    let store = BlobStore::s3(&moto.s3_options("no-such-bucket", None)).unwrap();
    let err = store.put("k", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(err, BlobError::Backend(_)), "{err:?}");
    let err = store.get("k").await.unwrap_err();
    assert!(!matches!(err, BlobError::NotFound(_)), "a missing bucket must not read as a missing blob: {err:?}");
}

#[tokio::test]
async fn s3_stopped_server_fails_in_bounded_time_then_recovers() {
    let Some((mut moto, store)) = moto_store(Some("jobs")) else { return };
    store.put("before.bin", Bytes::from_static(b"kept")).await.unwrap();
    // Put a pooled keep-alive connection in place, so the restart also exercises a dead pooled connection.
    assert!(store.exists("before.bin").await.unwrap());

    moto.stop();
    for (op, result) in [
        ("put", timed(store.put("during.bin", Bytes::from_static(b"x"))).await.map(|_| ())),
        ("get", timed(store.get("before.bin")).await.map(|_| ())),
        ("exists", timed(store.exists("before.bin")).await.map(|_| ())),
    ] {
        let (elapsed, err) = result.expect_err(op);
        assert!(elapsed < Duration::from_secs(30), "{op} took {elapsed:?} against a stopped server");
        assert!(matches!(err, BlobError::Backend(_)), "{op}: {err:?}");
        eprintln!("{op} against a stopped server failed after {elapsed:.1?}: {err}");
    }

    // After a restart the earlier object is back (moto replays its recording) and writes work again.
    moto.restart();
    assert_eq!(store.get("before.bin").await.unwrap(), Bytes::from_static(b"kept"));
    store.put("after.bin", Bytes::from_static(b"new")).await.unwrap();
    assert_eq!(store.get("after.bin").await.unwrap(), Bytes::from_static(b"new"));
    assert!(!store.exists("during.bin").await.unwrap());
}

/// Runs `fut`; on error returns how long it took with the error.
async fn timed<T>(fut: impl std::future::Future<Output = Result<T, BlobError>>) -> Result<T, (Duration, BlobError)> {
    let start = Instant::now();
    // The outer timeout only keeps a regression from hanging the suite; the assertion above is the real bound.
    match tokio::time::timeout(Duration::from_secs(120), fut).await {
        Ok(result) => result.map_err(|e| (start.elapsed(), e)),
        Err(_) => panic!("operation still running after 120 s"),
    }
}

#[test]
fn open_rejects_bad_locations_with_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["gs://bucket", "https://example.com/x", "s3://", "s3://Bad Bucket", "file://host/x"] {
        match BlobStore::open(bad, dir.path()) {
            Err(BlobError::InvalidLocation(m)) => eprintln!("{bad}: {m}"),
            other => panic!("{bad} opened: {other:?}"),
        }
    }
    let err = BlobStore::open("ftp://x", dir.path()).unwrap_err().to_string();
    assert!(err.contains("file:///absolute/path") && err.contains("s3://bucket[/prefix]"), "{err}");
}
