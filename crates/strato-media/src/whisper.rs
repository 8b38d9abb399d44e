//! Transcription by Strato's own Whisper (`strato-whisper`): the model directory `strato model pull --whisper`
//! installs, loaded once on first use, in the configured language (English by default).

use std::path::PathBuf;
use std::sync::Arc;

use crate::service::TranscriberLoader;
use crate::steps::{Transcriber, Transcription};

/// A loaded Whisper model as the transcribe step's [`Transcriber`].
pub struct WhisperTranscriber {
    model: strato_whisper::Whisper,
    options: strato_whisper::TranscribeOptions,
}

impl Transcriber for WhisperTranscriber {
    fn transcribe(&self, pcm_16k: &[f32], progress: &mut dyn FnMut(f32) -> bool) -> Result<Transcription, String> {
        let t = self.model.transcribe(pcm_16k, &self.options, progress).map_err(|e| e.to_string())?;
        Ok(Transcription { vtt: strato_whisper::webvtt(&t.segments), text: t.text.trim().to_string() })
    }
}

/// Loads the model in `dir` when first needed; a missing model is a clear error naming the command that installs it.
/// `language`: a code (`en`, `fr`, …; other than `en` needs a multilingual model such as `base`), or `None` to detect
/// it from the first 30 s.
pub fn loader(dir: PathBuf, language: Option<String>) -> TranscriberLoader {
    Arc::new(move || {
        if !strato_fetch::whisper_model_is_complete(&dir) {
            return Err(format!(
                "no Whisper model in {} (install one with `strato model pull --whisper tiny.en`, or set \
                 --whisper-model)",
                dir.display()
            ));
        }
        let model = strato_whisper::Whisper::load(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let options = strato_whisper::TranscribeOptions { language: language.clone(), ..Default::default() };
        let t: crate::steps::SharedTranscriber = Arc::new(WhisperTranscriber { model, options });
        Ok(t)
    })
}
