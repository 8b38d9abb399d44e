//! `strato media`: process a video file as a mentor's answer and follow its tasks with progress bars, or cancel it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::TryStreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use strato_media::upload::{TaskStatus, Trim, UploadStatus};
use strato_media::{AnswerUpload, MediaService};

use super::{open_parts, options};
use crate::config::{Global, MediaCommand};

/// `START-END` seconds.
fn parse_trim(s: &str) -> Result<Trim> {
    let (a, b) = s.split_once('-').context("--trim must be START-END seconds, e.g. 1.5-42")?;
    let (start, end) = (a.trim().parse::<f64>(), b.trim().parse::<f64>());
    match (start, end) {
        (Ok(start), Ok(end)) => Ok(Trim { start, end }),
        _ => bail!("--trim must be START-END seconds, e.g. 1.5-42"),
    }
}

#[allow(clippy::print_stdout, reason = "the command's output")]
pub(super) async fn media(g: &Global, cmd: MediaCommand) -> Result<()> {
    let parts = open_parts(g, options(g)).await?;
    let m = parts.media;
    match cmd {
        MediaCommand::Upload {
            file,
            mentor,
            question,
            trim,
            thumbnail,
            keep_transcript,
            keep_aspect_ratio,
            vbg,
            no_wait,
        } => {
            let trim = trim.as_deref().map(parse_trim).transpose()?;
            let f = tokio::fs::File::open(&file).await.with_context(|| format!("opening {}", file.display()))?;
            let key = format!("uploads/cli/{}", uuid::Uuid::new_v4());
            let body = tokio_util::io::ReaderStream::with_capacity(f, 1 << 20).map_err(|e| e.to_string());
            parts.strato.files().put(&key, body).await.map_err(|e| anyhow::anyhow!(e.message))?;
            let req = AnswerUpload {
                mentor,
                question,
                video: key,
                trim,
                has_edited_transcript: keep_transcript,
                maintain_original_aspect_ratio: keep_aspect_ratio,
                generate_thumbnail: thumbnail,
                is_vbg_video: vbg,
                external_video_ids: None,
                retrain: None,
            };
            let u = m.start_upload(req, "cli").await.map_err(|e| anyhow::anyhow!("{}: {e}", e.code()))?;
            println!("upload {} ({} tasks)", u.id, u.tasks.len());
            if !no_wait {
                watch(&m, &u.id).await?;
            }
        }
        MediaCommand::Watch { mentor, question } => {
            let u = m.uploads().of_answer(&mentor, &question).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let u = u.with_context(|| format!("no upload of mentor {mentor:?}'s answer to {question:?}"))?;
            watch(&m, &u.id).await?;
        }
        MediaCommand::Cancel { mentor, question } => {
            let u = m.uploads().of_answer(&mentor, &question).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let u = u.with_context(|| format!("no upload of mentor {mentor:?}'s answer to {question:?}"))?;
            let u = m.cancel(&u.id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("upload {}: {:?}", u.id, u.status);
        }
    }
    Ok(())
}

/// Follows an upload with one progress bar per task until it ends; fails unless it is `DONE`.
#[allow(clippy::print_stdout, reason = "the command's output")]
async fn watch(m: &MediaService, id: &str) -> Result<()> {
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>20} [{bar:30}] {pos:>3}% {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut by_task: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let started = Instant::now();
    let mut hinted = false;
    loop {
        let u = m.uploads().get(id).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        for t in &u.tasks {
            let bar = by_task.entry(t.task_name.clone()).or_insert_with(|| {
                let b = bars.add(ProgressBar::new(100));
                b.set_style(style.clone());
                b.set_prefix(t.task_name.clone());
                b
            });
            bar.set_position(t.progress.into());
            bar.set_message(format!(
                "{:?}{}",
                t.status,
                t.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        let idle = u.tasks.iter().all(|t| t.status == TaskStatus::Queued) && u.results.sha1.is_none();
        if idle && !hinted && started.elapsed() > Duration::from_secs(10) {
            hinted = true;
            let _ = bars.println(
                "no worker has taken the upload yet: is `strato serve` or `strato worker` running on this data dir?",
            );
        }
        if u.status != UploadStatus::InProgress {
            for b in by_task.values() {
                b.finish();
            }
            println!("upload {}: {:?}{}", u.id, u.status, u.error.map(|e| format!(" ({e})")).unwrap_or_default());
            if u.status != UploadStatus::Done {
                bail!("the upload did not finish");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
