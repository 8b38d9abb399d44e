//! `strato model pull`: the default embedding model (or a Whisper model), fetched and verified into the data
//! directory.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Global;

pub(super) async fn pull(g: &Global, whisper: Option<String>) -> Result<()> {
    let (dir, model) = match whisper.as_deref() {
        Some(name) => {
            let id = match name {
                "base" => strato_fetch::WhisperModelId::Base,
                _ => strato_fetch::WhisperModelId::TinyEn,
            };
            // The default directory is the one transcription reads by default for that model.
            let default = g.data_dir.join("models").join(format!("whisper-{name}"));
            (g.whisper_model.clone().unwrap_or(default), Some(id))
        }
        None => (g.embedding_model.clone().unwrap_or_else(|| strato_service::default_model_dir(&g.data_dir)), None),
    };
    let report = tokio::task::spawn_blocking(move || {
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let mut opts = strato_fetch::PullOptions::new(dir);
        opts.progress = Some(Box::new(move |ev| {
            use strato_fetch::PullEvent as E;
            match ev {
                E::Trying { source } => b.println(format!("trying {source}")),
                E::SourceFailed { source, reason } => b.println(format!("{source} unavailable: {reason}")),
                E::Downloading { source, bytes_done, bytes_total } => {
                    b.set_message(format!("downloading from {source}"));
                    if let Some(t) = bytes_total {
                        b.set_length(t);
                    }
                    b.set_position(bytes_done);
                }
                E::Verifying => b.println("verifying checksums"),
                E::Done { source } => b.println(format!("installed from {source}")),
            }
        }));
        let r = match model {
            Some(id) => strato_fetch::pull_whisper_model(&opts, id),
            None => strato_fetch::pull_default_model(&opts),
        };
        bar.finish_and_clear();
        r
    })
    .await??;
    let what = if model.is_some() { "Whisper model" } else { "embedding model" };
    println!("{what} ready in {} (from {})", report.dir.display(), report.source);
    Ok(())
}
