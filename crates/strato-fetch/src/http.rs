use std::io::{Read, Write};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use crate::error::{error_chain, FetchError, SourceError};

/// Longest wait for the next chunk of a response. reqwest's blocking `timeout` applies to
/// each read (and to waiting for the headers), not to the whole body, so a slow but live
/// link can still finish the 83 MB wheel.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Emit a progress event at most once per this many bytes: the CLI redraws on each one.
const PROGRESS_STEP: u64 = 1 << 20;

pub(crate) fn client(connect_timeout: Duration) -> Result<Client, FetchError> {
    Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(READ_TIMEOUT)
        .user_agent(concat!("strato/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Client(error_chain(&e)))
}

/// The host of `url`, for logs: the path can be long and tells an operator little.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// GETs `url` and fails on anything but a 2xx, keeping "not found" distinguishable.
pub(crate) fn get(client: &Client, url: &str) -> Result<Response, SourceError> {
    let resp = client.get(url).send().map_err(|e| {
        let reason = error_chain(&e);
        if e.is_connect() || e.is_timeout() {
            SourceError::Connect { url: url.to_owned(), reason }
        } else {
            SourceError::Transfer { url: url.to_owned(), reason }
        }
    })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(SourceError::Status { url: url.to_owned(), status: status.as_u16() });
    }
    Ok(resp)
}

pub(crate) fn is_not_found(e: &SourceError) -> bool {
    matches!(e, SourceError::Status { status, .. } if *status == StatusCode::NOT_FOUND.as_u16())
}

/// What a streamed download produced.
pub(crate) struct Downloaded {
    pub sha256: String,
    pub bytes: u64,
}

/// Streams `resp` into `out` while hashing it; `progress` gets the running byte count.
/// At most `limit` bytes are accepted so a hostile server cannot fill the disk.
pub(crate) fn stream_to(
    mut resp: Response,
    url: &str,
    out: &mut impl Write,
    limit: u64,
    mut progress: impl FnMut(u64),
) -> Result<Downloaded, SourceError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut done: u64 = 0;
    let mut reported: u64 = 0;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SourceError::Transfer { url: url.to_owned(), reason: error_chain(&e) }),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        out.write_all(chunk).map_err(SourceError::io(format!("writing the download from {url}")))?;
        done += n as u64;
        if done > limit {
            return Err(SourceError::Transfer {
                url: url.to_owned(),
                reason: format!("response exceeds the expected {limit} bytes"),
            });
        }
        if done - reported >= PROGRESS_STEP {
            reported = done;
            progress(done);
        }
    }
    if reported != done || done == 0 {
        progress(done);
    }
    Ok(Downloaded { sha256: hex::encode(hasher.finalize()), bytes: done })
}
