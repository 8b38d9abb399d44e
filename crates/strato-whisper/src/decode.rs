//! Greedy decoding of one 30 s window with OpenAI's timestamp rules, and the seek loop over a whole recording.
//!
//! Ported from openai-whisper `decoding.py` (`SuppressBlank`, `SuppressTokens`, `ApplyTimestampRules`,
//! `GreedyDecoder`) and `transcribe.py` (segments from timestamp pairs, seeking to the last complete timestamp,
//! skipping silent windows, conditioning on the previous text). Temperature fallback is not implemented: every
//! window is decoded once at temperature 0.

use candle_core::Device;

use crate::align;
use crate::audio::{self, HOP_LENGTH, SAMPLE_RATE};
use crate::error::WhisperError;
use crate::model::Model;
use crate::vocab::Vocabulary;
use crate::{Segment, TranscribeOptions, Transcript};

/// Seconds per timestamp token.
const TIME_PRECISION: f64 = 0.02;
/// Mel frames per window (30 s).
const N_FRAMES: usize = 3000;

/// Everything decoding needs besides the options: the network, its vocabulary and the suppression lists.
pub(crate) struct Decoder<'a> {
    pub model: &'a Model,
    pub vocab: &'a Vocabulary,
    /// Never sampled (CTranslate2 config `suppress_ids` plus the task tokens).
    pub suppress: &'a [u32],
    /// Not sampled first (`suppress_ids_begin`: the blank and end-of-text).
    pub suppress_begin: &'a [u32],
    /// Language token ids of a multilingual model (empty for English-only ones).
    pub lang_ids: &'a [u32],
    pub device: &'a Device,
}

/// A window's audio features, `[n_audio_ctx, d]` row-major.
type Features = Vec<f32>;

/// The outcome of decoding one window.
struct WindowResult {
    /// Sampled tokens, end-of-text excluded.
    tokens: Vec<u32>,
    avg_logprob: f64,
    no_speech_prob: f64,
}

/// log Σ exp(logits): `logits[i]` minus it is `log_softmax(logits)[i]`.
fn log_sum_exp(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    max + sum.ln() as f32
}

fn argmax(v: &[f32]) -> usize {
    // First maximum, as torch.argmax.
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

impl Decoder<'_> {
    /// The logit filters of `decoding.py` for the next token after `sampled`: suppression lists, then the
    /// timestamp rules. `max_initial` is the last timestamp index allowed first. Returns the filtered logits'
    /// [`log_sum_exp`].
    fn filter(&self, logits: &mut [f32], sampled: &[u32], max_initial: Option<usize>) -> f32 {
        let v = self.vocab;
        let (eot, ts) = (v.eot as usize, v.timestamp_begin as usize);
        let neg = f32::NEG_INFINITY;
        if sampled.is_empty() {
            for &t in self.suppress_begin {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = neg;
                }
            }
        }
        for &t in self.suppress {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = neg;
            }
        }
        logits[v.no_timestamps as usize] = neg;

        // Timestamps come in pairs (a segment's end, then the next one's start) and never go back.
        let is_ts = |t: u32| t as usize >= ts;
        let last_ts = sampled.last().is_some_and(|&t| is_ts(t));
        let penultimate_ts = sampled.len() < 2 || is_ts(sampled[sampled.len() - 2]);
        if last_ts {
            if penultimate_ts {
                logits[ts..].fill(neg);
            } else {
                logits[..eot].fill(neg);
            }
        }
        if let Some(&last) = sampled.iter().rev().find(|&&t| is_ts(t)) {
            // A segment must have nonzero length, or decoding could loop on the same timestamp.
            let bound = if last_ts && !penultimate_ts { last as usize } else { last as usize + 1 };
            let bound = bound.min(logits.len());
            logits[ts..bound].fill(neg);
        }
        if sampled.is_empty() {
            logits[..ts].fill(neg);
            if let Some(max) = max_initial {
                let from = (ts + max + 1).min(logits.len());
                logits[from..].fill(neg);
            }
        }
        // If the timestamps together are likelier than any single text token, take a timestamp.
        let lse = log_sum_exp(logits);
        let lp: Vec<f32> = logits.iter().map(|&l| l - lse).collect();
        let ts_lp = {
            let m = lp[ts..].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if m == f32::NEG_INFINITY {
                m
            } else {
                m + lp[ts..].iter().map(|&x| (x - m).exp()).sum::<f32>().ln()
            }
        };
        let text_max = lp[..ts].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if ts_lp > text_max {
            logits[..ts].fill(neg);
            return log_sum_exp(logits);
        }
        lse
    }

    /// Greedy decoding of one window's audio features after `sot_sequence`, conditioned on `prompt`.
    fn decode_window(
        &self,
        audio: &[f32],
        sot_sequence: &[u32],
        prompt: &[u32],
        opts: &TranscribeOptions,
    ) -> Result<WindowResult, WhisperError> {
        let v = self.vocab;
        let n_ctx = self.model.config.n_text_ctx;
        let mut initial = Vec::new();
        if !prompt.is_empty() {
            initial.push(v.sot_prev);
            initial.extend_from_slice(&prompt[prompt.len().saturating_sub(n_ctx / 2 - 1)..]);
        }
        let sot_index = initial.len();
        initial.extend_from_slice(sot_sequence);
        let sample_len = n_ctx / 2;
        let max_initial = opts.max_initial_timestamp.map(|s| (f64::from(s) / TIME_PRECISION).round() as usize);

        let d = self.model.config.d_model;
        let mut state = self.model.start(audio);
        let hidden = self.model.decode(&initial, &mut state)?;
        let mut rows = hidden[sot_index * d..(sot_index + 1) * d].to_vec();
        rows.extend_from_slice(&hidden[(initial.len() - 1) * d..]);
        let both = self.model.logits(&rows);
        let vocab = both.len() / 2;
        let at_sot = &both[..vocab];
        let no_speech_prob = f64::from((at_sot[v.no_speech as usize] - log_sum_exp(at_sot)).exp());
        let mut logits = both[vocab..].to_vec();

        let mut tokens = Vec::new();
        let mut sum_logprob = 0f64;
        loop {
            let lse = self.filter(&mut logits, &tokens, max_initial);
            let next = argmax(&logits);
            sum_logprob += f64::from(logits[next] - lse);
            if next as u32 == v.eot {
                break;
            }
            tokens.push(next as u32);
            if tokens.len() >= sample_len || initial.len() + tokens.len() >= n_ctx {
                break;
            }
            let hidden = self.model.decode(&[next as u32], &mut state)?;
            logits = self.model.logits(&hidden);
        }
        let avg_logprob = sum_logprob / (tokens.len() + 1) as f64;
        Ok(WindowResult { tokens, avg_logprob, no_speech_prob })
    }

    /// The language token likeliest after `<|startoftranscript|>` (`decoding.py` `detect_language`).
    fn detect_language(&self, audio: &[f32]) -> Result<u32, WhisperError> {
        let mut state = self.model.start(audio);
        let hidden = self.model.decode(&[self.vocab.sot], &mut state)?;
        let logits = self.model.logits(&hidden);
        let best = self
            .lang_ids
            .iter()
            .copied()
            .filter(|&id| (id as usize) < logits.len())
            .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]));
        best.ok_or_else(|| WhisperError::Config("lang_ids is empty: cannot detect the language".into()))
    }

    /// The prompt start for `language` (`None`: detect it from the first window), the language code, and the
    /// first window's features when detecting the language needed them.
    fn sot_sequence(
        &self,
        language: Option<&str>,
        first: &dyn Fn() -> Result<Features, WhisperError>,
    ) -> Result<(Vec<u32>, String, Option<Features>), WhisperError> {
        let v = self.vocab;
        if self.lang_ids.is_empty() {
            // English-only models take no language or task token.
            return match language {
                None | Some("en") => Ok((vec![v.sot], "en".to_owned(), None)),
                Some(other) => Err(WhisperError::Language {
                    language: other.to_owned(),
                    reason: "this model is English-only".into(),
                }),
            };
        }
        let mut encoded = None;
        let lang = match language {
            Some(code) => v.id(&format!("<|{code}|>")).filter(|id| self.lang_ids.contains(id)).ok_or_else(|| {
                WhisperError::Language { language: code.to_owned(), reason: "unknown language code".into() }
            })?,
            None => {
                let audio = first()?;
                let lang = self.detect_language(&audio)?;
                // The first window is decoded next: keep its features rather than encode it twice.
                encoded = Some(audio);
                lang
            }
        };
        let code = v.token(lang).unwrap_or_default().trim_start_matches("<|").trim_end_matches("|>").to_owned();
        Ok((vec![v.sot, lang, v.transcribe], code, encoded))
    }

    /// Transcribes a whole recording, 30 s window by window. `progress` gets the fraction done after each window
    /// and stops the work by returning `false`.
    pub fn transcribe(
        &self,
        pcm: &[f32],
        opts: &TranscribeOptions,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Transcript, WhisperError> {
        let cfg = &self.model.config;
        let n_mels = cfg.n_mels;
        let mel = audio::log_mel(pcm, N_FRAMES * HOP_LENGTH, n_mels, self.device)?;
        let total_frames = mel.len() / n_mels;
        let content_frames = total_frames.saturating_sub(N_FRAMES);
        let input_stride = N_FRAMES / cfg.n_audio_ctx;
        let duration = pcm.len() as f64 / SAMPLE_RATE as f64;

        // The window at `seek`, cut to `size` frames and padded with zeros (as `pad_or_trim`) to 30 s.
        let encode = |seek: usize, size: usize| -> Result<Features, WhisperError> {
            let mut window = vec![0f32; N_FRAMES * n_mels];
            window[..size * n_mels].copy_from_slice(&mel[seek * n_mels..(seek + size) * n_mels]);
            Ok(self.model.encode(&window))
        };

        let first_size = N_FRAMES.min(content_frames);
        let (sot_sequence, language, mut first_window) =
            self.sot_sequence(opts.language.as_deref(), &|| encode(0, first_size))?;

        let mut segments = Vec::new();
        let mut text = String::new();
        let mut all_tokens: Vec<u32> = Vec::new();
        let mut prompt_since = 0;
        let mut seek = 0;
        let ts_begin = self.vocab.timestamp_begin;
        while seek < content_frames {
            let time_offset = (seek * HOP_LENGTH) as f64 / SAMPLE_RATE as f64;
            let segment_size = N_FRAMES.min(content_frames - seek);
            let started = std::time::Instant::now();
            let audio = match first_window.take() {
                Some(audio) if seek == 0 => audio,
                _ => encode(seek, segment_size)?,
            };
            let encoded = started.elapsed();
            let prompt = if opts.condition_on_previous_text { &all_tokens[prompt_since..] } else { &[][..] };
            let result = self.decode_window(&audio, &sot_sequence, prompt, opts)?;
            tracing::debug!(
                time_offset,
                encode_ms = encoded.as_millis() as u64,
                decode_ms = (started.elapsed() - encoded).as_millis() as u64,
                tokens = result.tokens.len(),
                "window decoded"
            );
            let tokens = &result.tokens;

            let silent = opts.no_speech_threshold.is_some_and(|t| result.no_speech_prob > f64::from(t))
                && !opts.logprob_threshold.is_some_and(|t| result.avg_logprob > f64::from(t));
            if silent {
                tracing::debug!(time_offset, no_speech = result.no_speech_prob, "skipping a window without speech");
                seek += segment_size;
            } else {
                let mut current: Vec<(f64, f64, &[u32])> = Vec::new();
                let is_ts: Vec<bool> = tokens.iter().map(|&t| t >= ts_begin).collect();
                let single_ending = is_ts.len() >= 2 && !is_ts[is_ts.len() - 2] && is_ts[is_ts.len() - 1];
                let mut slices: Vec<usize> = (1..is_ts.len()).filter(|&i| is_ts[i - 1] && is_ts[i]).collect();
                let time = |t: u32| time_offset + f64::from(t - ts_begin) * TIME_PRECISION;
                if !slices.is_empty() {
                    if single_ending {
                        slices.push(tokens.len());
                    }
                    let mut last = 0;
                    for &end in &slices {
                        let part = &tokens[last..end];
                        current.push((time(part[0]), time(part[part.len() - 1]), part));
                        last = end;
                    }
                    if single_ending {
                        seek += segment_size;
                    } else {
                        seek += (tokens[last - 1] - ts_begin) as usize * input_stride;
                    }
                } else {
                    let mut end = segment_size as f64 * HOP_LENGTH as f64 / SAMPLE_RATE as f64;
                    if let Some(&t) = tokens.iter().rev().find(|&&t| t >= ts_begin) {
                        if t != ts_begin {
                            end = f64::from(t - ts_begin) * TIME_PRECISION;
                        }
                    }
                    current.push((time_offset, time_offset + end, tokens));
                    seek += segment_size;
                }
                for (start, end, part) in current {
                    let raw = self.vocab.decode(part);
                    // An instantaneous or empty segment is dropped, as `transcribe.py` clears it; so is one timed
                    // in the silence that pads the last window, after the audio ends.
                    if start == end || raw.trim().is_empty() || start >= duration {
                        continue;
                    }
                    text.push_str(&raw);
                    all_tokens.extend_from_slice(part);
                    segments.push(Segment { start, end: end.min(duration), text: raw.trim().to_owned() });
                }
            }
            if !opts.condition_on_previous_text {
                prompt_since = all_tokens.len();
            }
            if !progress((seek.min(content_frames) as f32 / content_frames.max(1) as f32).min(1.0)) {
                return Err(WhisperError::Cancelled);
            }
        }
        if opts.snap_to_speech {
            segments = align::align_to_speech(segments, &mel[..content_frames * n_mels], n_mels);
        }
        Ok(Transcript { text: text.trim().to_owned(), language, segments, duration })
    }
}
