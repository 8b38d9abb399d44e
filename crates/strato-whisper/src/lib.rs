//! Speech recognition with OpenAI's Whisper on the CPU, from the CTranslate2 (faster-whisper) weights that
//! `strato-fetch` installs: `model.bin`, `config.json` and `vocabulary.txt`/`vocabulary.json` in one directory.
//!
//! This crate owns turning 16 kHz mono samples into timed text and captions: the `model.bin` reader (`ct2`),
//! the log-mel front end (`audio`), the network (`model.rs`, on strato-ml's packed matrix kernels, with a
//! key/value cache), greedy decoding with OpenAI's timestamp rules over 30 s windows (`decode.rs`) and WebVTT
//! (`vtt`). No I/O besides reading the model directory; decoding the media is the caller's (ffmpeg
//! `-f f32le -ac 1 -ar 16000`).
//!
//! A [`Whisper`] is loaded once and shared (`Arc`): `transcribe` takes `&self`, keeps its state on its own stack
//! and runs on the calling thread, its matrix products and attention heads spread over rayon's threads. It
//! blocks for seconds to minutes: async callers use `spawn_blocking`.

mod align;
pub mod audio;
pub mod ct2;
mod decode;
mod error;
mod model;
mod vocab;
pub mod vtt;

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

pub use ct2::ModelConfig;
pub use error::{Ct2Error, WhisperError};
pub use strato_ml::Precision;
pub use vtt::{webvtt, webvtt_from_text};

use ct2::Ct2Model;
use decode::Decoder;
use model::Model;
use vocab::Vocabulary;

/// Timed text of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The whole text.
    pub text: String,
    /// Language code the text was decoded in (`"en"`, or the detected one).
    pub language: String,
    /// Segments in order, as the model timed them.
    pub segments: Vec<Segment>,
    /// Length of the audio in seconds.
    pub duration: f64,
}

/// A stretch of speech and when it was said.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Start, in seconds from the beginning of the audio.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
    /// What was said, trimmed.
    pub text: String,
}

/// How to transcribe; `Default` follows OpenAI's `transcribe()` defaults with English as the language.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    /// Language code (`"en"`, `"fr"`…); `None` detects it on the first 30 s (multilingual models only; an
    /// English-only model takes `None` or `"en"`).
    pub language: Option<String>,
    /// Feed each window the text decoded so far, for consistent spelling and style across windows.
    pub condition_on_previous_text: bool,
    /// A window whose no-speech probability is above this…
    pub no_speech_threshold: Option<f32>,
    /// …and whose average token log-probability is below this is skipped as silence.
    pub logprob_threshold: Option<f32>,
    /// Latest time, in seconds, the first timestamp of a window may have.
    pub max_initial_timestamp: Option<f32>,
    /// Move each segment's start to where sound begins in it (Whisper often starts a segment during the pause
    /// before it), and split a segment at a pause that matches a punctuation mark in its text (Whisper may time
    /// two sentences as one segment), so captions appear when the words are spoken.
    pub snap_to_speech: bool,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        Self {
            language: Some("en".to_owned()),
            condition_on_previous_text: true,
            no_speech_threshold: Some(0.6),
            logprob_threshold: Some(-1.0),
            max_initial_timestamp: Some(1.0),
            snap_to_speech: true,
        }
    }
}

/// The parts of CTranslate2's `config.json` decoding uses.
#[derive(Debug, Deserialize)]
struct Ct2Config {
    #[serde(default)]
    suppress_ids: Vec<u32>,
    #[serde(default)]
    suppress_ids_begin: Vec<u32>,
    #[serde(default)]
    lang_ids: Vec<u32>,
    /// `(layer, head)` pairs for word timing; kept for when word timestamps arrive.
    #[serde(default)]
    #[expect(dead_code, reason = "word-level timestamps (cross-attention DTW) are not implemented yet")]
    alignment_heads: Vec<(usize, usize)>,
}

/// The precision of the network's matrix products (layer norms, softmax and GELU stay f32), for the encoder and
/// for the decoder. [`Precision::Int8`] is what faster-whisper's `compute_type="int8"` does, with weights quantised
/// per output and block of 32 inputs.
///
/// The default is an f32 encoder and an int8 decoder. The decoder runs one token at a time, bound by the memory it
/// reads per token (every weight, the 50,000-token output head, the audio's keys and values): int8 reads a quarter
/// of it. The encoder's long products are bound by arithmetic, which int8 speeds up only where the CPU has
/// AVX512-VNNI (measured on an AVX2 EPYC: the same time in both). On the bench clips (`bench/peer_whisper.py`,
/// tiny.en and base) the default's text is the same as all-f32's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precisions {
    /// The convolutions and the encoder's linear layers.
    pub encoder: Precision,
    /// The decoder's linear layers, its output head and cross-attention's audio keys and values.
    pub decoder: Precision,
}

impl Default for Precisions {
    fn default() -> Self {
        Self { encoder: Precision::F32, decoder: Precision::Int8 }
    }
}

impl Precisions {
    /// The same precision everywhere.
    pub fn all(p: Precision) -> Self {
        Self { encoder: p, decoder: p }
    }
}

/// A loaded Whisper model, ready to transcribe; `Send + Sync`, meant to be loaded once and shared.
#[derive(Debug)]
pub struct Whisper {
    model: Model,
    vocab: Vocabulary,
    suppress: Vec<u32>,
    suppress_begin: Vec<u32>,
    lang_ids: Vec<u32>,
    device: Device,
}

impl Whisper {
    /// Loads the model in `dir` (`model.bin`, `config.json`, `vocabulary.txt` or `vocabulary.json`), weights
    /// widened to f32 and packed for the default [`Precisions`].
    pub fn load(dir: &Path) -> Result<Self, WhisperError> {
        Self::load_with(dir, Precisions::default())
    }

    /// [`Self::load`] with the matrix products in the given precisions.
    pub fn load_with(dir: &Path, precisions: Precisions) -> Result<Self, WhisperError> {
        let Precisions { encoder, decoder } = precisions;
        let device = Device::Cpu;
        let ct2 = Ct2Model::read(&dir.join("model.bin"))?;
        let config = ct2.config()?;
        let tensors = ct2.hf_tensors(&device)?;
        drop(ct2);
        let model =
            Model::load(VarBuilder::from_tensors(tensors, DType::F32, &device), config.clone(), encoder, decoder)
                .map_err(|e| WhisperError::Config(format!("model.bin does not fit the Whisper layout: {e}")))?;
        let vocab = Vocabulary::read(dir, config.vocab_size)?;

        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| WhisperError::Io { path: path.clone(), source })?;
        let ct2_config: Ct2Config = serde_json::from_str(&text).map_err(|e| WhisperError::Config(e.to_string()))?;

        // `is_multilingual` in openai-whisper: English-only vocabularies stop at 51864.
        let multilingual = config.vocab_size >= 51865;
        let lang_ids = if !multilingual {
            Vec::new()
        } else if ct2_config.lang_ids.is_empty() {
            // Older conversions lack lang_ids: the language tokens sit between <|startoftranscript|> and
            // <|translate|>.
            (vocab.sot + 1..vocab.translate).collect()
        } else {
            ct2_config.lang_ids
        };
        let mut suppress = ct2_config.suppress_ids;
        // What openai-whisper adds to the non-speech list for `suppress_tokens="-1"`.
        suppress.extend([vocab.transcribe, vocab.translate, vocab.sot, vocab.sot_prev, vocab.sot_lm, vocab.no_speech]);
        suppress.retain(|&t| (t as usize) < vocab.len());
        suppress.sort_unstable();
        suppress.dedup();
        let suppress_begin =
            if ct2_config.suppress_ids_begin.is_empty() { vec![220, vocab.eot] } else { ct2_config.suppress_ids_begin };
        tracing::info!(dir = %dir.display(), ?config, ?precisions, multilingual, "loaded Whisper model");
        Ok(Self { model, vocab, suppress, suppress_begin, lang_ids, device })
    }

    /// The model's dimensions.
    pub fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    /// Whether the model knows languages other than English.
    pub fn is_multilingual(&self) -> bool {
        !self.lang_ids.is_empty()
    }

    /// Transcribes 16 kHz mono samples in [-1, 1]. `progress` is called after each 30 s window with the
    /// fraction of the audio done; returning `false` stops with [`WhisperError::Cancelled`].
    pub fn transcribe(
        &self,
        pcm_16k: &[f32],
        opts: &TranscribeOptions,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Transcript, WhisperError> {
        let decoder = Decoder {
            model: &self.model,
            vocab: &self.vocab,
            suppress: &self.suppress,
            suppress_begin: &self.suppress_begin,
            lang_ids: &self.lang_ids,
            device: &self.device,
        };
        decoder.transcribe(pcm_16k, opts, progress)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn whisper_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Whisper>();
    }
}
