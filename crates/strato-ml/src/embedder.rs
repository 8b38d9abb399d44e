//! Sentence embeddings from a sentence-transformers model directory, matching sentence-transformers' output.
//!
//! The pipeline is the one sentence-transformers runs for BERT models: strip the text, tokenize (truncate at
//! `max_seq_length`, pad to the longest in the batch), encode, pool (mean by default), L2-normalise.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::bert::{self, Bert, BertConfig};
pub use crate::encoder::Precision;
use crate::encoder::{Encoder, Kernels};
use crate::MlError;

/// Which implementation of the forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// Strato's own: packed sequences, in-place embedding tables, its own kernels (AVX2+FMA when the CPU has
    /// them) (the default).
    #[default]
    Packed,
    /// The packed encoder with the portable kernels only, as on a CPU without AVX2+FMA.
    PackedPortable,
    /// candle's tensors (the reference it is checked against).
    Candle,
}

/// How a model is loaded.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// The forward pass's implementation.
    pub engine: Engine,
    /// The linear layers' precision (the packed engines only).
    pub precision: Precision,
}

enum Forward {
    Packed(Encoder),
    Candle(Bert, Device),
}

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Masked mean (all-MiniLM-L6-v2 and most sentence-transformers models).
    Mean,
    /// The `[CLS]` token.
    Cls,
    /// Masked max.
    Max,
}

#[derive(serde::Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(serde::Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// Texts per forward pass when embedding many: sorted by length so padding stays small.
pub const BATCH_SIZE: usize = 32;

/// A loaded embedding model. Cheap to share behind an `Arc`; forward passes may run concurrently.
pub struct Embedder {
    forward: Forward,
    hidden: usize,
    tokenizer: Tokenizer,
    pooling: Pooling,
    max_seq_length: usize,
    name: String,
    dir: PathBuf,
    sha256: OnceLock<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, MlError> {
    let bytes = std::fs::read(path).map_err(|e| MlError::Model(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| MlError::Model(format!("invalid JSON in {}: {e}", path.display())))
}

impl Embedder {
    /// Loads a sentence-transformers BERT-family model from `dir`
    /// (`config.json`, `model.safetensors`, `tokenizer.json`, optional `1_Pooling/config.json`).
    pub fn load(dir: &Path) -> Result<Self, MlError> {
        Self::load_with(dir, Engine::default())
    }

    /// [`Embedder::load`] with a chosen forward-pass implementation.
    pub fn load_with(dir: &Path, engine: Engine) -> Result<Self, MlError> {
        Self::load_opts(dir, LoadOptions { engine, ..Default::default() })
    }

    /// [`Embedder::load`] with every choice spelled out.
    pub fn load_opts(dir: &Path, opts: LoadOptions) -> Result<Self, MlError> {
        let LoadOptions { engine, precision } = opts;
        let cfg: BertConfig = read_json(&dir.join("config.json"))?;
        let pooling = match dir.join("1_Pooling/config.json") {
            p if p.exists() => {
                let pc: PoolingConfig = read_json(&p)?;
                match (pc.pooling_mode_mean_tokens, pc.pooling_mode_cls_token, pc.pooling_mode_max_tokens) {
                    (true, false, false) => Pooling::Mean,
                    (false, true, false) => Pooling::Cls,
                    (false, false, true) => Pooling::Max,
                    _ => {
                        return Err(MlError::Model(
                            "unsupported pooling configuration: exactly one of mean, cls, max must be set".into(),
                        ))
                    }
                }
            }
            _ => Pooling::Mean,
        };
        let st_max = match dir.join("sentence_bert_config.json") {
            p if p.exists() => read_json::<SentenceBertConfig>(&p)?.max_seq_length,
            _ => None,
        };
        let max_seq_length = st_max.unwrap_or(cfg.max_position_embeddings).min(cfg.max_position_embeddings);

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| MlError::Model(format!("cannot load {}: {e}", dir.join("tokenizer.json").display())))?;
        // tokenizer.json ships with fixed 128-token padding; sentence-transformers pads to the batch's longest and
        // truncates at max_seq_length.
        let pad_id = tokenizer.get_padding().map(|p| p.pad_id).unwrap_or(0);
        let pad_token = tokenizer.get_padding().map(|p| p.pad_token.clone()).unwrap_or_else(|| "[PAD]".into());
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_seq_length, ..Default::default() }))
            .map_err(|e| MlError::Model(format!("cannot configure truncation: {e}")))?;

        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(MlError::Model(format!("{} is missing", weights.display())));
        }
        let forward = match engine {
            Engine::Packed => Forward::Packed(Encoder::load(&weights, &cfg, Kernels::Best, precision)?),
            Engine::PackedPortable => Forward::Packed(Encoder::load(&weights, &cfg, Kernels::Portable, precision)?),
            Engine::Candle if precision != Precision::F32 => {
                return Err(MlError::Model(format!("{precision:?} needs the packed engine; candle runs f32 only")))
            }
            Engine::Candle => {
                let device = bert::cpu();
                let vb = mmap_weights(&weights, &device)?;
                let bert = Bert::load(vb, &cfg).map_err(|e| MlError::Model(format!("cannot load weights: {e}")))?;
                Forward::Candle(bert, device)
            }
        };
        let name = manifest_name(dir).unwrap_or_else(|| {
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
        });
        let sha256 = OnceLock::new();
        if let Some(h) = manifest_sha256(dir) {
            let _ = sha256.set(h);
        }
        let hidden = cfg.hidden_size;
        Ok(Self { forward, hidden, tokenizer, pooling, max_seq_length, name, dir: dir.to_path_buf(), sha256 })
    }

    /// Output dimension.
    pub fn dim(&self) -> usize {
        self.hidden
    }

    /// Tokens kept per text.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The model's name (from the pull manifest, else the directory name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of `model.safetensors`: from the pull manifest, else hashed once on first use.
    pub fn content_hash(&self) -> Result<String, MlError> {
        if let Some(h) = self.sha256.get() {
            return Ok(h.clone());
        }
        let path = self.dir.join("model.safetensors");
        let mut file =
            std::fs::File::open(&path).map_err(|e| MlError::Model(format!("cannot read {}: {e}", path.display())))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)
            .map_err(|e| MlError::Model(format!("cannot hash {}: {e}", path.display())))?;
        let h = hex::encode(hasher.finalize());
        Ok(self.sha256.get_or_init(|| h).clone())
    }

    /// Tokens the model sees for `text` (special tokens included, after truncation): the cost of embedding it.
    pub fn token_count(&self, text: &str) -> Result<usize, MlError> {
        let enc = self
            .tokenizer
            .encode(text.trim(), true)
            .map_err(|e| MlError::Embed(format!("tokenization failed: {e}")))?;
        Ok(enc.get_attention_mask().iter().filter(|&&m| m == 1).count())
    }

    /// Embeds texts in one forward pass (callers batch). Returns one L2-normalised vector per text.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MlError> {
        self.embed_batch_in(texts, false)
    }

    /// [`Self::embed_batch`]; `local` keeps the forward pass on the calling thread.
    fn embed_batch_in(&self, texts: &[&str], local: bool) -> Result<Vec<Vec<f32>>, MlError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // sentence-transformers strips surrounding whitespace before tokenizing.
        let stripped: Vec<&str> = texts.iter().map(|t| t.trim()).collect();
        // On the calling thread when local: `encode_batch` spreads over rayon's pool, which `embed_all`'s threads
        // leave to the rest of the process.
        let enc = if local {
            stripped.into_iter().map(|t| self.tokenizer.encode(t, true)).collect::<Result<Vec<_>, _>>()
        } else {
            self.tokenizer.encode_batch(stripped, true)
        }
        .map_err(|e| MlError::Embed(format!("tokenization failed: {e}")))?;
        match &self.forward {
            Forward::Packed(encoder) => {
                // Padding is dropped: each text is only its own tokens (the attention mask's ones come first).
                let seqs: Vec<&[u32]> = enc
                    .iter()
                    .map(|e| &e.get_ids()[..e.get_attention_mask().iter().filter(|&&m| m == 1).count()])
                    .collect();
                let states = if local { encoder.forward_local(&seqs)? } else { encoder.forward(&seqs)? };
                Ok(pool_packed(&states, &seqs, self.hidden, self.pooling))
            }
            Forward::Candle(bert, device) => self.candle_forward(bert, device, &enc),
        }
    }

    fn candle_forward(
        &self,
        bert: &Bert,
        device: &Device,
        enc: &[tokenizers::Encoding],
    ) -> Result<Vec<Vec<f32>>, MlError> {
        let b = enc.len();
        let l = enc[0].get_ids().len();
        let mut ids = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        for e in enc {
            ids.extend_from_slice(e.get_ids());
            mask.extend(e.get_attention_mask().iter().map(|&m| m as f32));
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (b, l), device)?;
            let mask = Tensor::from_vec(mask, (b, l), device)?;
            let states = bert.forward(&ids, &mask)?;
            let pooled = match self.pooling {
                Pooling::Mean => bert::mean_pool(&states, &mask)?,
                Pooling::Max => bert::max_pool(&states, &mask)?,
                Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
            };
            bert::l2_normalize(&pooled)?.to_dtype(DType::F32)?.to_vec2::<f32>()
        };
        run().map_err(|e| MlError::Embed(e.to_string()))
    }

    /// Embeds any number of texts in length-sorted batches, calling `progress(done, total)` after each batch;
    /// when it returns false the work stops with [`MlError::Cancelled`].
    pub fn embed_all(
        &self,
        texts: &[&str],
        progress: impl FnMut(usize, usize) -> bool,
    ) -> Result<Vec<Vec<f32>>, MlError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // Character length is a good enough proxy for token length to keep padding waste low.
        order.sort_by_key(|&i| texts[i].len());
        let batch = |chunk: &[usize]| chunk.iter().map(|&i| texts[i]).collect::<Vec<&str>>();
        let threads = rayon::current_num_threads();
        if threads <= 1 || texts.len() <= BATCH_SIZE || !matches!(self.forward, Forward::Packed(_)) {
            let batches = order.chunks(BATCH_SIZE).map(|chunk| (chunk, self.embed_batch(&batch(chunk))));
            return gather(batches, texts.len(), progress);
        }
        // One thread per pool thread takes whole batches, longest first, tokenising, encoding and pooling each on
        // its own, so no thread waits for another between batches (one batch split across rayon's threads left
        // them idle a tenth of the time, measured); this thread only collects the results and reports progress.
        // Threads of their own rather than rayon's: a pool busy for a whole training run would make every
        // prediction served meanwhile wait for its end.
        let batches: Vec<&[usize]> = order.chunks(BATCH_SIZE).rev().collect();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            for t in 0..threads {
                let (tx, batches, next, stop) = (tx.clone(), &batches, &next, &stop);
                let work = move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(chunk) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        if tx.send((*chunk, self.embed_batch_in(&batch(chunk), true))).is_err() {
                            break;
                        }
                    }
                };
                if let Err(e) = std::thread::Builder::new().name(format!("strato-embed-{t}")).spawn_scoped(s, work) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(MlError::Embed(format!("cannot start an embedding thread: {e}")));
                }
            }
            drop(tx);
            // Stops the threads after their current batch when gathering ends early (an error, a cancel).
            let result = gather(rx, texts.len(), progress);
            stop.store(true, Ordering::Relaxed);
            result
        })
    }
}

/// Puts each batch's vectors back in input order, calling `progress(done, total)` after each batch; the first
/// error, or a `false` from progress ([`MlError::Cancelled`]), ends it.
fn gather<'a>(
    batches: impl IntoIterator<Item = (&'a [usize], Result<Vec<Vec<f32>>, MlError>)>,
    total: usize,
    mut progress: impl FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<f32>>, MlError> {
    let mut out = vec![Vec::new(); total];
    let mut done = 0;
    for (chunk, vs) in batches {
        for (&i, v) in chunk.iter().zip(vs?) {
            out[i] = v;
        }
        done += chunk.len();
        if !progress(done, total) {
            return Err(MlError::Cancelled);
        }
    }
    Ok(out)
}

/// Pools each sequence's rows of the packed states and L2-normalises the result.
fn pool_packed(states: &[f32], seqs: &[&[u32]], h: usize, pooling: Pooling) -> Vec<Vec<f32>> {
    let mut start = 0;
    let mut out = Vec::with_capacity(seqs.len());
    for s in seqs {
        let rows = &states[start * h..(start + s.len()) * h];
        start += s.len();
        let mut v = match pooling {
            Pooling::Cls => rows[..h].to_vec(),
            Pooling::Mean => {
                let mut acc = vec![0f32; h];
                for r in rows.chunks_exact(h) {
                    acc.iter_mut().zip(r).for_each(|(a, x)| *a += x);
                }
                let n = s.len().max(1) as f32;
                acc.iter_mut().for_each(|a| *a /= n);
                acc
            }
            Pooling::Max => {
                let mut acc = vec![f32::NEG_INFINITY; h];
                for r in rows.chunks_exact(h) {
                    acc.iter_mut().zip(r).for_each(|(a, x)| *a = a.max(*x));
                }
                acc
            }
        };
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
        out.push(v);
    }
    out
}

#[expect(unsafe_code, reason = "memory-mapping the weights keeps start-up fast and memory shared")]
fn mmap_weights(path: &Path, device: &Device) -> Result<VarBuilder<'static>, MlError> {
    // SAFETY: the weights file is opened read-only and Strato never writes model files it has loaded; a file
    // replaced on disk is renamed over (a new inode), which leaves the existing mapping intact.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
        .map_err(|e| MlError::Model(format!("cannot map {}: {e}", path.display())))
}

#[derive(serde::Deserialize)]
struct Manifest {
    name: Option<String>,
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
}

fn manifest(dir: &Path) -> Option<Manifest> {
    let bytes = std::fs::read(dir.join("strato-model.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn manifest_name(dir: &Path) -> Option<String> {
    manifest(dir)?.name
}

fn manifest_sha256(dir: &Path) -> Option<String> {
    manifest(dir)?.files.get("model.safetensors").cloned()
}
