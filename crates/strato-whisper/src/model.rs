//! The Whisper network (OpenAI's `whisper/model.py`; first ported here from candle-transformers 0.9.2
//! `models/whisper/model.rs`, © the candle authors, MIT OR Apache-2.0) on plain row-major f32 buffers, its
//! matrix products run by strato-ml's packed kernels (`strato_ml::linear`: weights packed once at load, AVX2+FMA
//! or AVX-512 chosen at run time, big products split across rayon's threads).
//!
//! The weights are immutable (one model serves every transcription at once, shared by `Arc`) and the
//! per-transcription state lives in [`DecoderState`]; the decoder keeps a self-attention key/value cache, so
//! each step feeds one token instead of the whole sequence; GELU is the exact (erf) form OpenAI uses; the encoder
//! takes its positional table from the weights. Query, key and value are one fused product, the query's
//! `1/√head_dim` folded into its weights; GELU and the residual are applied as each product's output is written;
//! the convolutions are products over three-frame windows.

use candle_core::Result;
use candle_nn::VarBuilder;
use rayon::prelude::*;
use strato_ml::linear::{self, Act, PackedLinear};
use strato_ml::Precision;

use crate::ct2::ModelConfig;

const LN_EPS: f32 = 1e-5;
/// Encoder queries whose attention scores are computed together (`[QUERY_BLOCK, 1500]` f32 is 360 KiB).
const QUERY_BLOCK: usize = 60;

fn values(vb: &VarBuilder, shape: &[usize], name: &str) -> Result<Vec<f32>> {
    vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()
}

fn linear(vb: &VarBuilder, out: usize, inp: usize, bias: bool, precision: Precision) -> Result<PackedLinear> {
    let w = values(vb, &[out, inp], "weight")?;
    let b = if bias { Some(values(vb, &[out], "bias")?) } else { None };
    Ok(PackedLinear::new(&w, b.as_deref(), out, inp, precision))
}

#[derive(Debug)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Norm {
    fn load(size: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self { gamma: values(&vb, &[size], "weight")?, beta: values(&vb, &[size], "bias")? })
    }

    fn apply(&self, x: &mut [f32]) {
        linear::layer_norm_rows(x, self.gamma.len(), &self.gamma, &self.beta, LN_EPS);
    }
}

/// A 3-tap convolution with padding 1 as a product over each output frame's input window `[3 · cin]` (taps in
/// order, channels within each), GELU applied on the way out.
#[derive(Debug)]
struct Conv {
    lin: PackedLinear,
    cin: usize,
    stride: usize,
}

impl Conv {
    fn load(cin: usize, cout: usize, stride: usize, vb: VarBuilder, precision: Precision) -> Result<Self> {
        let w = values(&vb, &[cout, cin, 3], "weight")?;
        let b = values(&vb, &[cout], "bias")?;
        let mut taps = vec![0f32; cout * 3 * cin];
        for o in 0..cout {
            for c in 0..cin {
                for t in 0..3 {
                    taps[o * 3 * cin + t * cin + c] = w[(o * cin + c) * 3 + t];
                }
            }
        }
        Ok(Self { lin: PackedLinear::new(&taps, Some(&b), cout, 3 * cin, precision), cin, stride })
    }

    /// `x`: `[frames, cin]`, time-major; returns `[frames / stride, cout]`.
    fn forward(&self, x: &[f32], frames: usize) -> Vec<f32> {
        let (cin, out_frames) = (self.cin, frames.div_ceil(self.stride));
        let mut windows = vec![0f32; out_frames * 3 * cin];
        for (t, w) in windows.chunks_exact_mut(3 * cin).enumerate() {
            let center = t * self.stride;
            for tap in 0..3 {
                // Input frame center + tap − 1; outside the input it is the zero padding.
                if let Some(f) = (center + tap).checked_sub(1).filter(|&f| f < frames) {
                    w[tap * cin..(tap + 1) * cin].copy_from_slice(&x[f * cin..(f + 1) * cin]);
                }
            }
        }
        let mut y = vec![0f32; out_frames * self.lin.out_features()];
        self.lin.forward_with(&windows, out_frames, None, Act::GeluErf, true, &mut y);
        y
    }
}

#[derive(Debug)]
struct Block {
    /// Self-attention's query (pre-scaled), key and value: `[3d]` outputs.
    qkv: PackedLinear,
    attn_out: PackedLinear,
    attn_ln: Norm,
    /// Cross-attention (decoder blocks): query (pre-scaled), fused key and value (`[2d]`, run once per window on
    /// the audio features), output projection, and its layer norm.
    cross: Option<Cross>,
    fc1: PackedLinear,
    fc2: PackedLinear,
    mlp_ln: Norm,
}

#[derive(Debug)]
struct Cross {
    query: PackedLinear,
    kv: PackedLinear,
    out: PackedLinear,
    ln: Norm,
}

/// `[d, d]` weight and bias of a projection, scaled by `scale` (the query's `1/√head_dim`).
fn projection(vb: &VarBuilder, d: usize, bias: bool, scale: f32) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut w = values(vb, &[d, d], "weight")?;
    let mut b = if bias { values(vb, &[d], "bias")? } else { vec![0.0; d] };
    w.iter_mut().chain(b.iter_mut()).for_each(|v| *v *= scale);
    Ok((w, b))
}

/// Fused projections: the weights one after another, as one `[parts · d, d]` layer.
fn fused(parts: &[(Vec<f32>, Vec<f32>)], d: usize, precision: Precision) -> PackedLinear {
    let w: Vec<f32> = parts.iter().flat_map(|(w, _)| w.iter().copied()).collect();
    let b: Vec<f32> = parts.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    PackedLinear::new(&w, Some(&b), parts.len() * d, d, precision)
}

impl Block {
    fn load(d: usize, n_head: usize, cross: bool, vb: VarBuilder, precision: Precision) -> Result<Self> {
        // 1/√64 and the other head sizes' scales are powers of two or close: scaling the weights is exact for
        // powers of two and otherwise within an ulp of scaling the product.
        let scale = ((d / n_head) as f32).powf(-0.5);
        let sa = vb.pp("self_attn");
        let qkv = fused(
            &[
                projection(&sa.pp("q_proj"), d, true, scale)?,
                projection(&sa.pp("k_proj"), d, false, 1.0)?,
                projection(&sa.pp("v_proj"), d, true, 1.0)?,
            ],
            d,
            precision,
        );
        let cross = if cross {
            let ca = vb.pp("encoder_attn");
            let (qw, qb) = projection(&ca.pp("q_proj"), d, true, scale)?;
            Some(Cross {
                query: PackedLinear::new(&qw, Some(&qb), d, d, precision),
                kv: fused(
                    &[projection(&ca.pp("k_proj"), d, false, 1.0)?, projection(&ca.pp("v_proj"), d, true, 1.0)?],
                    d,
                    precision,
                ),
                out: linear(&ca.pp("out_proj"), d, d, true, precision)?,
                ln: Norm::load(d, vb.pp("encoder_attn_layer_norm"))?,
            })
        } else {
            None
        };
        Ok(Self {
            qkv,
            attn_out: linear(&sa.pp("out_proj"), d, d, true, precision)?,
            attn_ln: Norm::load(d, vb.pp("self_attn_layer_norm"))?,
            cross,
            fc1: linear(&vb.pp("fc1"), 4 * d, d, true, precision)?,
            fc2: linear(&vb.pp("fc2"), d, 4 * d, true, precision)?,
            mlp_ln: Norm::load(d, vb.pp("final_layer_norm"))?,
        })
    }

    /// `x += fc2(gelu(fc1(ln(x))))` over `rows` rows.
    fn mlp(&self, x: &mut Vec<f32>, rows: usize) {
        let d = self.mlp_ln.gamma.len();
        let mut h = x.clone();
        self.mlp_ln.apply(&mut h);
        let mut inter = vec![0f32; rows * 4 * d];
        self.fc1.forward_with(&h, rows, None, Act::GeluErf, true, &mut inter);
        self.fc2.forward_with(&inter, rows, Some(x), Act::Identity, true, &mut h);
        *x = h;
    }
}

/// Keys and values a decoder block has seen: its own (growing, `[len, d]` each) and the audio's, packed per
/// head once per window.
#[derive(Debug)]
struct LayerCache {
    self_k: Vec<f32>,
    self_v: Vec<f32>,
    /// Per head: keys as an `[audio, head_dim]` layer (scores = q Kᵀ) and values as a `[head_dim, audio]` one.
    cross: Vec<(PackedLinear, PackedLinear)>,
}

/// One window's decoding state: the audio features' projections and the tokens fed so far.
#[derive(Debug)]
pub(crate) struct DecoderState {
    layers: Vec<LayerCache>,
    /// Tokens already fed (the next token's position).
    pub len: usize,
}

/// Encoder and decoder weights; immutable, so one instance serves concurrent transcriptions.
#[derive(Debug)]
pub(crate) struct Model {
    conv1: Conv,
    conv2: Conv,
    enc_pos: Vec<f32>,
    enc_blocks: Vec<Block>,
    enc_ln: Norm,
    /// The token embedding `[vocab, d]`, also the output head.
    embed: Vec<f32>,
    head: PackedLinear,
    dec_pos: Vec<f32>,
    dec_blocks: Vec<Block>,
    dec_ln: Norm,
    /// The precision of the decoder's products, the audio keys and values of cross-attention included.
    decoder_precision: Precision,
    /// The dimensions it was loaded with.
    pub config: ModelConfig,
}

/// Attention of `n` queries (rows of `q`, every `q_stride`, pre-scaled) over the keys and values of one head:
/// each query `i` sees keys `0..visible(i)`; writes `n` rows of `head_dim` into `out` (every `out_stride`).
#[expect(clippy::too_many_arguments, reason = "strides of three operands")]
fn attend_rows(
    q: &[f32],
    q_stride: usize,
    n: usize,
    k: &[f32],
    v: &[f32],
    kv_stride: usize,
    visible: impl Fn(usize) -> usize,
    out: &mut [f32],
    out_stride: usize,
    hd: usize,
) {
    let mut scores = Vec::new();
    for i in 0..n {
        let len = visible(i);
        let qi = &q[i * q_stride..][..hd];
        scores.clear();
        scores.extend((0..len).map(|j| linear::dot(qi, &k[j * kv_stride..][..hd])));
        linear::softmax_rows(&mut scores, len);
        let o = &mut out[i * out_stride..][..hd];
        o.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            linear::axpy(o, p, &v[j * kv_stride..][..hd]);
        }
    }
}

impl Model {
    /// Loads the weights under their Hugging Face names (see `Ct2Model::hf_tensors`), the encoder's products
    /// (convolutions and linear layers) in `encoder`, the decoder's (and the output head) in `decoder`.
    pub fn load(vb: VarBuilder, config: ModelConfig, encoder: Precision, decoder: Precision) -> Result<Self> {
        let d = config.d_model;
        let enc = vb.pp("model.encoder");
        let dec = vb.pp("model.decoder");
        let enc_blocks = (0..config.encoder_layers)
            .into_par_iter()
            .map(|i| Block::load(d, config.encoder_heads, false, enc.pp(format!("layers.{i}")), encoder))
            .collect::<Result<_>>()?;
        let dec_blocks = (0..config.decoder_layers)
            .into_par_iter()
            .map(|i| Block::load(d, config.decoder_heads, true, dec.pp(format!("layers.{i}")), decoder))
            .collect::<Result<_>>()?;
        let embed = values(&dec, &[config.vocab_size, d], "embed_tokens.weight")?;
        Ok(Self {
            conv1: Conv::load(config.n_mels, d, 1, enc.pp("conv1"), encoder)?,
            conv2: Conv::load(d, d, 2, enc.pp("conv2"), encoder)?,
            enc_pos: values(&enc, &[config.n_audio_ctx, d], "embed_positions.weight")?,
            enc_blocks,
            enc_ln: Norm::load(d, enc.pp("layer_norm"))?,
            head: PackedLinear::new(&embed, None, config.vocab_size, d, decoder),
            embed,
            dec_pos: values(&dec, &[config.n_text_ctx, d], "embed_positions.weight")?,
            dec_blocks,
            dec_ln: Norm::load(d, dec.pp("layer_norm"))?,
            decoder_precision: decoder,
            config,
        })
    }

    /// Audio features `[n_audio_ctx, d]` of a time-major mel window `[2 · n_audio_ctx, n_mels]`.
    pub fn encode(&self, mel: &[f32]) -> Vec<f32> {
        let (d, heads) = (self.config.d_model, self.config.encoder_heads);
        let hd = d / heads;
        let frames = mel.len() / self.config.n_mels;
        let x = self.conv1.forward(mel, frames);
        let mut x = self.conv2.forward(&x, frames);
        let t = x.len() / d;
        for (row, pos) in x.chunks_exact_mut(d).zip(self.enc_pos.chunks_exact(d)) {
            row.iter_mut().zip(pos).for_each(|(v, p)| *v += p);
        }
        let mut h = vec![0f32; t * d];
        let mut qkv = vec![0f32; t * 3 * d];
        let mut ctx = vec![0f32; t * d];
        for block in &self.enc_blocks {
            h.copy_from_slice(&x);
            block.attn_ln.apply(&mut h);
            block.qkv.forward(&h, t, &mut qkv);
            // Each head on one thread, its products unsplit, `QUERY_BLOCK` queries at a time (their scores stay in
            // L2 instead of a [t, t] matrix going through memory): scores = Q Kᵀ, softmax, the weighted values.
            let heads_out: Vec<Vec<f32>> = (0..heads)
                .into_par_iter()
                .map(|head| {
                    let k = PackedLinear::from_rows_f32(&qkv[d + head * hd..], 3 * d, t, hd);
                    let v = PackedLinear::from_cols_f32(&qkv[2 * d + head * hd..], 3 * d, t, hd);
                    let mut out = vec![0f32; t * hd];
                    let mut q = Vec::with_capacity(QUERY_BLOCK * hd);
                    let mut scores = vec![0f32; QUERY_BLOCK * t];
                    for r0 in (0..t).step_by(QUERY_BLOCK) {
                        let rows = QUERY_BLOCK.min(t - r0);
                        q.clear();
                        for r in qkv[r0 * 3 * d..].chunks_exact(3 * d).take(rows) {
                            q.extend_from_slice(&r[head * hd..(head + 1) * hd]);
                        }
                        let scores = &mut scores[..rows * t];
                        k.forward_with(&q, rows, None, Act::Identity, false, scores);
                        linear::softmax_rows(scores, t);
                        v.forward_with(scores, rows, None, Act::Identity, false, &mut out[r0 * hd..(r0 + rows) * hd]);
                    }
                    out
                })
                .collect();
            for (head, out) in heads_out.iter().enumerate() {
                for (row, o) in ctx.chunks_exact_mut(d).zip(out.chunks_exact(hd)) {
                    row[head * hd..(head + 1) * hd].copy_from_slice(o);
                }
            }
            block.attn_out.forward_with(&ctx, t, Some(&x), Act::Identity, true, &mut h);
            std::mem::swap(&mut x, &mut h);
            block.mlp(&mut x, t);
        }
        self.enc_ln.apply(&mut x);
        x
    }

    /// A fresh decoding state for one window's audio features `[n_audio_ctx, d]`.
    pub fn start(&self, audio: &[f32]) -> DecoderState {
        let (d, heads) = (self.config.d_model, self.config.decoder_heads);
        let hd = d / heads;
        let t = audio.len() / d;
        let layers = self
            .dec_blocks
            .iter()
            .map(|b| {
                let cross = b.cross.as_ref().expect("decoder blocks have cross-attention");
                let mut kv = vec![0f32; t * 2 * d];
                cross.kv.forward(audio, t, &mut kv);
                let cross = (0..heads)
                    .into_par_iter()
                    .map(|h| {
                        if self.decoder_precision == Precision::F32 {
                            return (
                                PackedLinear::from_rows_f32(&kv[h * hd..], 2 * d, t, hd),
                                PackedLinear::from_cols_f32(&kv[d + h * hd..], 2 * d, t, hd),
                            );
                        }
                        // In the decoder's precision: each step reads every layer's audio keys and values, the
                        // most memory a step reads after the weights (f32: 2 · 1500 · d · 4 bytes a layer).
                        let rows = kv.chunks_exact(2 * d);
                        let k: Vec<f32> = rows.clone().flat_map(|r| r[h * hd..(h + 1) * hd].iter().copied()).collect();
                        let vt: Vec<f32> = (0..hd).flat_map(|c| rows.clone().map(move |r| r[d + h * hd + c])).collect();
                        (
                            PackedLinear::new(&k, None, t, hd, self.decoder_precision),
                            PackedLinear::new(&vt, None, hd, t, self.decoder_precision),
                        )
                    })
                    .collect();
                LayerCache { self_k: Vec::new(), self_v: Vec::new(), cross }
            })
            .collect();
        DecoderState { layers, len: 0 }
    }

    /// Feeds `tokens` after those already in `state`; returns the final hidden states `[tokens.len(), d]`.
    pub fn decode(&self, tokens: &[u32], state: &mut DecoderState) -> Result<Vec<f32>> {
        let (d, heads) = (self.config.d_model, self.config.decoder_heads);
        let hd = d / heads;
        let (pos, n) = (state.len, tokens.len());
        if pos + n > self.config.n_text_ctx {
            candle_core::bail!("{} tokens exceed the model's context of {}", pos + n, self.config.n_text_ctx);
        }
        let mut x = Vec::with_capacity(n * d);
        for (i, &id) in tokens.iter().enumerate() {
            let id = id as usize;
            if id >= self.config.vocab_size {
                candle_core::bail!("token id {id} is outside the vocabulary");
            }
            let (e, p) = (&self.embed[id * d..(id + 1) * d], &self.dec_pos[(pos + i) * d..(pos + i + 1) * d]);
            x.extend(e.iter().zip(p).map(|(e, p)| e + p));
        }
        let mut h = vec![0f32; n * d];
        let mut qkv = vec![0f32; n * 3 * d];
        let mut ctx = vec![0f32; n * d];
        for (block, cache) in self.dec_blocks.iter().zip(state.layers.iter_mut()) {
            h.copy_from_slice(&x);
            block.attn_ln.apply(&mut h);
            block.qkv.forward(&h, n, &mut qkv);
            for row in qkv.chunks_exact(3 * d) {
                cache.self_k.extend_from_slice(&row[d..2 * d]);
                cache.self_v.extend_from_slice(&row[2 * d..]);
            }
            // Causal within the new tokens; every cached position is visible.
            for head in 0..heads {
                let o = head * hd;
                attend_rows(
                    &qkv[o..],
                    3 * d,
                    n,
                    &cache.self_k[o..],
                    &cache.self_v[o..],
                    d,
                    |i| pos + i + 1,
                    &mut ctx[o..],
                    d,
                    hd,
                );
            }
            block.attn_out.forward_with(&ctx, n, Some(&x), Act::Identity, true, &mut h);
            std::mem::swap(&mut x, &mut h);

            let cross = block.cross.as_ref().expect("decoder blocks have cross-attention");
            h.copy_from_slice(&x);
            cross.ln.apply(&mut h);
            let mut q = vec![0f32; n * d];
            cross.query.forward(&h, n, &mut q);
            let parts: Vec<Vec<f32>> = cache
                .cross
                .par_iter()
                .enumerate()
                .map(|(head, (k, v))| {
                    let t = k.out_features();
                    let qh: Vec<f32> =
                        q.chunks_exact(d).flat_map(|r| r[head * hd..(head + 1) * hd].iter().copied()).collect();
                    let mut scores = vec![0f32; n * t];
                    k.forward_with(&qh, n, None, Act::Identity, false, &mut scores);
                    linear::softmax_rows(&mut scores, t);
                    let mut out = vec![0f32; n * hd];
                    v.forward_with(&scores, n, None, Act::Identity, false, &mut out);
                    out
                })
                .collect();
            for (head, out) in parts.iter().enumerate() {
                for (row, o) in ctx.chunks_exact_mut(d).zip(out.chunks_exact(hd)) {
                    row[head * hd..(head + 1) * hd].copy_from_slice(o);
                }
            }
            cross.out.forward_with(&ctx, n, Some(&x), Act::Identity, true, &mut h);
            std::mem::swap(&mut x, &mut h);
            block.mlp(&mut x, n);
        }
        state.len += n;
        self.dec_ln.apply(&mut x);
        Ok(x)
    }

    /// Logits `[rows, vocab]` of hidden states `[rows, d]` (the output head is the token embedding).
    pub fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        let rows = hidden.len() / self.config.d_model;
        let mut out = vec![0f32; rows * self.config.vocab_size];
        self.head.forward(hidden, rows, &mut out);
        out
    }
}
