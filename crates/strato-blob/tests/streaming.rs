//! Streamed objects on every storage: the local filesystem always; moto and s3s-fs (real S3 servers; s3s-fs checks
//! SigV4 signatures, presigned URLs' included) when `STRATO_TEST_MOTO_SERVER` / `STRATO_TEST_S3S_FS` or the executables
//! on `PATH` provide them (otherwise those parts print `SKIPPED` and pass).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use strato_blob::test_support::{MotoServer, S3sFs};
use strato_blob::{BlobError, BlobStore, ByteRange, LocalSigner, PresignError, PresignMethod};

/// Deterministic pseudo-random bytes: `n` of them in `chunk`-sized pieces, as a client would send them.
fn body(n: usize, chunk: usize) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::iter((0..n).step_by(chunk).map(move |start| {
        let end = (start + chunk).min(n);
        Ok(Bytes::from(
            (start..end).map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1]).collect::<Vec<_>>(),
        ))
    }))
}

fn digest_of(n: usize) -> Vec<u8> {
    let mut h = Sha256::new();
    for i in 0..n {
        h.update([(i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[1]]);
    }
    h.finalize().to_vec()
}

/// Uploads of one part and of many, whole and ranged downloads, listings, and uploads that fail leave nothing.
async fn streams(store: &BlobStore, name: &str) {
    // 1. Small (one write) and large (a multipart upload of three parts and a bit).
    let small = store.put_stream("up/small.bin", body(1000, 100), None).await.unwrap();
    assert_eq!(small, 1000, "{name}");
    let n = 3 * strato_blob::PART_SIZE + 12_345;
    let size = store.put_stream("up/large.bin", body(n, 64 * 1024), None).await.unwrap();
    assert_eq!(size, n as u64, "{name}");
    let d = store.get_stream("up/large.bin", None).await.unwrap();
    assert_eq!((d.info.size, d.range.clone()), (n as u64, 0..n as u64), "{name}");
    let mut h = Sha256::new();
    let mut stream = d.stream;
    while let Some(chunk) = stream.next().await {
        h.update(chunk.unwrap());
    }
    assert_eq!(h.finalize().to_vec(), digest_of(n), "{name}: the large object came back different");

    // 2. Ranges, as HTTP asks for them.
    let all: Vec<u8> = body(n, n).next().await.unwrap().unwrap().to_vec();
    for (range, want) in [
        (ByteRange::Inclusive(0, 9), 0..10),
        (ByteRange::Inclusive(n as u64 - 5, n as u64 + 100), n - 5..n),
        (ByteRange::From(strato_blob::PART_SIZE as u64 - 3), strato_blob::PART_SIZE - 3..n),
        (ByteRange::Last(7), n - 7..n),
    ] {
        let d = store.get_stream("up/large.bin", Some(range)).await.unwrap();
        assert_eq!(d.range, want.start as u64..want.end as u64, "{name}: {range:?}");
        let got: Vec<u8> = d.stream.map(|c| c.unwrap().to_vec()).concat().await;
        assert!(got == all[want.clone()], "{name}: {range:?} came back different");
    }
    let past = store.get_stream("up/large.bin", Some(ByteRange::From(n as u64))).await;
    assert!(matches!(past, Err(BlobError::RangeNotSatisfiable(s)) if s == n as u64), "{name}");
    assert!(matches!(store.get_stream("up/nothing", None).await, Err(BlobError::NotFound(_))), "{name}");

    // 3. Listing by a string prefix.
    store.put_stream("up/2026-12/a.mp4", body(10, 10), None).await.unwrap();
    store.put_stream("up/2026-11/b.mp4", body(10, 10), None).await.unwrap();
    store.put_stream("upper.txt", body(10, 10), None).await.unwrap();
    let keys = |v: Vec<strato_blob::ObjectInfo>| v.into_iter().map(|o| o.key).collect::<Vec<_>>();
    assert_eq!(keys(store.list("up/2026-1", 100).await.unwrap()), vec!["up/2026-11/b.mp4", "up/2026-12/a.mp4"]);
    assert_eq!(keys(store.list("up/2026-12/", 100).await.unwrap()), vec!["up/2026-12/a.mp4"]);
    assert_eq!(keys(store.list("up", 100).await.unwrap()).len(), 5, "{name}: up/… and upper.txt");
    assert_eq!(keys(store.list("", 2).await.unwrap()).len(), 2, "{name}: the limit holds");
    let info = store.head("up/small.bin").await.unwrap();
    assert_eq!(info.size, 1000);

    // 4. A body cut off mid-way, or over the limit, stores nothing (the multipart upload is aborted).
    let cut = body(2 * strato_blob::PART_SIZE, 1 << 20)
        .take(12)
        .chain(futures::stream::once(async { Err(std::io::Error::other("client went away")) }));
    let err = store.put_stream("up/cut.bin", cut, None).await.unwrap_err();
    assert!(matches!(err, BlobError::Body(ref m) if m.contains("went away")), "{name}: {err:?}");
    assert!(!store.exists("up/cut.bin").await.unwrap(), "{name}: nothing of the cut upload is stored");
    let err = store.put_stream("up/big.bin", body(3 * strato_blob::PART_SIZE, 1 << 20), Some(10 << 20)).await;
    assert!(matches!(err, Err(BlobError::TooLarge(l)) if l == 10 << 20), "{name}: {err:?}");
    assert!(!store.exists("up/big.bin").await.unwrap(), "{name}");
    let err = store.put_stream("up/small-big.bin", body(2000, 100), Some(1000)).await;
    assert!(matches!(err, Err(BlobError::TooLarge(1000))), "{name}: {err:?}");
    // Replacing keeps the object whole: readers see the old or the new one.
    store.put_stream("up/small.bin", body(500, 100), None).await.unwrap();
    assert_eq!(store.head("up/small.bin").await.unwrap().size, 500);
}

#[tokio::test]
async fn local_streams_ranges_listings_and_failed_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::local(&dir.path().join("blobs")).unwrap();
    streams(&store, "local").await;
    // Nothing but the objects is left on disk (no staging files of the failed uploads).
    let mut files = Vec::new();
    let mut stack = vec![dir.path().join("blobs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    assert_eq!(files.len(), 5, "{files:?}");
}

#[tokio::test]
async fn moto_streams_ranges_listings_and_failed_uploads() {
    let Some(moto) = MotoServer::start() else { return };
    moto.create_bucket("strato-stream");
    let store = BlobStore::s3(&moto.s3_options("strato-stream", Some("p"))).unwrap();
    streams(&store, "moto").await;
}

#[tokio::test]
async fn s3s_streams_ranges_listings_and_failed_uploads() {
    let Some(s3) = S3sFs::start("strato-stream") else { return };
    let store = BlobStore::s3(&s3.s3_options(Some("p"))).unwrap();
    streams(&store, "s3s-fs").await;
}

/// Presigned PUT then GET with a plain HTTP client, and refusals of expired and tampered URLs.
async fn presigned(store: &BlobStore, name: &str) {
    let client = reqwest::Client::new();
    let put = store.presign(PresignMethod::Put, "shared/clip.mp4", Duration::from_secs(300)).await.unwrap();
    let r = client.put(&put.url).body("the video").send().await.unwrap();
    assert!(r.status().is_success(), "{name}: presigned PUT answered {}", r.status());
    let get = store.presign(PresignMethod::Get, "shared/clip.mp4", Duration::from_secs(300)).await.unwrap();
    let r = client.get(&get.url).send().await.unwrap();
    assert_eq!(r.status(), 200, "{name}");
    assert_eq!(r.text().await.unwrap(), "the video");
    // Tampered: another key with the same signature, or the signature changed.
    let other_key = get.url.replace("clip.mp4", "other.mp4");
    assert_eq!(client.get(&other_key).send().await.unwrap().status(), 403, "{name}: another key");
    let flipped = flip_signature(&get.url);
    assert_eq!(client.get(&flipped).send().await.unwrap().status(), 403, "{name}: a changed signature");
    // A PUT URL does not read, a GET URL does not write.
    assert_eq!(client.get(&put.url).send().await.unwrap().status(), 403, "{name}: a PUT URL read");
    assert_eq!(client.put(&get.url).body("x").send().await.unwrap().status(), 403, "{name}: a GET URL wrote");
    // Expired.
    let soon = store.presign(PresignMethod::Get, "shared/clip.mp4", Duration::from_secs(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(client.get(&soon.url).send().await.unwrap().status(), 403, "{name}: an expired URL");
}

/// The URL with the last hex digit of its signature changed.
fn flip_signature(url: &str) -> String {
    let (head, tail) = url.split_at(url.len() - 1);
    format!("{head}{}", if tail == "0" { "1" } else { "0" })
}

#[tokio::test]
async fn s3_presigned_urls_are_s3s_own_and_checked_by_it() {
    let Some(s3) = S3sFs::start("strato-presign") else { return };
    let store = BlobStore::s3(&s3.s3_options(Some("tenant"))).unwrap();
    presigned(&store, "s3s-fs").await;
    // The object landed under the store's prefix.
    let root = BlobStore::s3(&s3.s3_options(None)).unwrap();
    assert_eq!(root.get("tenant/shared/clip.mp4").await.unwrap(), Bytes::from_static(b"the video"));
}

#[tokio::test]
async fn local_presigned_urls_are_signed_by_strato_and_checked_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let plain = BlobStore::local(&dir.path().join("blobs")).unwrap();
    let err = plain.presign(PresignMethod::Get, "k", Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(err, BlobError::NoPresigning(_)), "no signing key, no presigned URLs: {err:?}");
    let store = plain.clone().with_local_signer(LocalSigner::new(&[9u8; 32], "http://127.0.0.1:9").unwrap());
    let url = store.presign(PresignMethod::Put, "a/b c", Duration::from_secs(60)).await.unwrap();
    assert!(url.url.starts_with("http://127.0.0.1:9/v1/presigned/a/b%20c?method=PUT&expires="), "{}", url.url);
    let query: std::collections::HashMap<String, String> =
        url::Url::parse(&url.url).unwrap().query_pairs().into_owned().collect();
    let (expires, sig): (u64, &str) = (query["expires"].parse().unwrap(), &query["signature"]);
    assert_eq!(store.verify_presigned(PresignMethod::Put, "a/b c", expires, sig), Some(Ok(())));
    assert_eq!(
        store.verify_presigned(PresignMethod::Get, "a/b c", expires, sig),
        Some(Err(PresignError::BadSignature))
    );
    assert_eq!(plain.verify_presigned(PresignMethod::Put, "a/b c", expires, sig), None, "the plain store serves none");
    // The HTTP side (served by Strato, with expiry and tampering) is tested through the server.
}
