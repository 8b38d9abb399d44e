//! The Whisper network, adapted from candle-transformers 0.9.2 `models/whisper/model.rs`
//! (<https://github.com/huggingface/candle>, © the candle authors, MIT OR Apache-2.0), itself a port of OpenAI's
//! `whisper/model.py`.
//!
//! Changed from candle's: the weights are immutable (one model serves every transcription at once, shared by
//! `Arc`) and the per-transcription state lives in [`DecoderState`]; the decoder keeps a self-attention key/value
//! cache, so each step feeds one token instead of the whole sequence; GELU is the exact (erf) form OpenAI uses;
//! the encoder takes its positional table from the weights.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, Embedding, LayerNorm, Linear, VarBuilder};

use crate::ct2::ModelConfig;

fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
    Ok(Linear::new(weight, bias))
}

fn layer_norm(size: usize, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::new(vb.get(size, "weight")?, vb.get(size, "bias")?, 1e-5))
}

fn conv1d(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Conv1d> {
    let cfg = Conv1dConfig { padding: 1, stride, groups: 1, dilation: 1, cudnn_fwd_algo: None };
    Ok(Conv1d::new(vb.get((cout, cin, 3), "weight")?, Some(vb.get(cout, "bias")?), cfg))
}

#[derive(Debug)]
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    n_head: usize,
}

impl Attention {
    fn load(d: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: linear(d, d, true, vb.pp("q_proj"))?,
            key: linear(d, d, false, vb.pp("k_proj"))?,
            value: linear(d, d, true, vb.pp("v_proj"))?,
            out: linear(d, d, true, vb.pp("out_proj"))?,
            n_head,
        })
    }

    /// `[b, t, d]` to `[b, heads, t, d/heads]`.
    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.n_head, d / self.n_head))?.transpose(1, 2)?.contiguous()
    }

    /// Attention of `q` (`[b, t, d]`, projected) over keys/values already split into heads.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (_, _, d) = q.dims3()?;
        let scale = ((d / self.n_head) as f64).powf(-0.5);
        let q = (self.heads(q)? * scale)?;
        let mut qk = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            qk = qk.broadcast_add(mask)?;
        }
        let w = candle_nn::ops::softmax_last_dim(&qk)?;
        let wv = w.matmul(v)?.transpose(1, 2)?.flatten_from(2)?;
        self.out.forward(&wv)
    }

    fn self_attention(&self, x: &Tensor) -> Result<Tensor> {
        let k = self.heads(&self.key.forward(x)?)?;
        let v = self.heads(&self.value.forward(x)?)?;
        self.attend(&self.query.forward(x)?, &k, &v, None)
    }
}

#[derive(Debug)]
struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Option<(Attention, LayerNorm)>,
    fc1: Linear,
    fc2: Linear,
    mlp_ln: LayerNorm,
}

impl Block {
    fn load(d: usize, n_head: usize, cross: bool, vb: VarBuilder) -> Result<Self> {
        let cross = if cross {
            Some((Attention::load(d, n_head, vb.pp("encoder_attn"))?, layer_norm(d, vb.pp("encoder_attn_layer_norm"))?))
        } else {
            None
        };
        Ok(Self {
            attn: Attention::load(d, n_head, vb.pp("self_attn"))?,
            attn_ln: layer_norm(d, vb.pp("self_attn_layer_norm"))?,
            cross,
            fc1: linear(d, 4 * d, true, vb.pp("fc1"))?,
            fc2: linear(4 * d, d, true, vb.pp("fc2"))?,
            mlp_ln: layer_norm(d, vb.pp("final_layer_norm"))?,
        })
    }

    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        x + self.fc2.forward(&self.fc1.forward(&self.mlp_ln.forward(x)?)?.gelu_erf()?)?
    }
}

/// Keys and values a decoder block has seen: its own (growing) and the audio's (fixed per window).
#[derive(Debug)]
struct LayerCache {
    self_kv: Option<(Tensor, Tensor)>,
    cross_kv: (Tensor, Tensor),
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
    conv1: Conv1d,
    conv2: Conv1d,
    enc_pos: Tensor,
    enc_blocks: Vec<Block>,
    enc_ln: LayerNorm,
    embed: Embedding,
    dec_pos: Tensor,
    dec_blocks: Vec<Block>,
    dec_ln: LayerNorm,
    /// The dimensions it was loaded with.
    pub config: ModelConfig,
}

impl Model {
    /// Loads the weights under their Hugging Face names (see `Ct2Model::hf_tensors`).
    pub fn load(vb: VarBuilder, config: ModelConfig) -> Result<Self> {
        let d = config.d_model;
        let enc = vb.pp("model.encoder");
        let dec = vb.pp("model.decoder");
        let enc_blocks = (0..config.encoder_layers)
            .map(|i| Block::load(d, config.encoder_heads, false, enc.pp(format!("layers.{i}"))))
            .collect::<Result<_>>()?;
        let dec_blocks = (0..config.decoder_layers)
            .map(|i| Block::load(d, config.decoder_heads, true, dec.pp(format!("layers.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            conv1: conv1d(config.n_mels, d, 1, enc.pp("conv1"))?,
            conv2: conv1d(d, d, 2, enc.pp("conv2"))?,
            enc_pos: enc.get((config.n_audio_ctx, d), "embed_positions.weight")?,
            enc_blocks,
            enc_ln: layer_norm(d, enc.pp("layer_norm"))?,
            embed: Embedding::new(dec.get((config.vocab_size, d), "embed_tokens.weight")?, d),
            dec_pos: dec.get((config.n_text_ctx, d), "embed_positions.weight")?,
            dec_blocks,
            dec_ln: layer_norm(d, dec.pp("layer_norm"))?,
            config,
        })
    }

    /// Audio features `[1, n_audio_ctx, d]` of a mel window `[1, n_mels, 2 * n_audio_ctx]`.
    pub fn encode(&self, mel: &Tensor) -> Result<Tensor> {
        let x = self.conv1.forward(mel)?.gelu_erf()?;
        let x = self.conv2.forward(&x)?.gelu_erf()?.transpose(1, 2)?;
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.enc_pos.narrow(0, 0, t)?)?;
        for block in &self.enc_blocks {
            let h = block.attn.self_attention(&block.attn_ln.forward(&x)?)?;
            x = block.mlp(&(x + h)?)?;
        }
        self.enc_ln.forward(&x)
    }

    /// A fresh decoding state for one window's audio features.
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        let layers = self
            .dec_blocks
            .iter()
            .map(|b| {
                let (cross, _) = b.cross.as_ref().expect("decoder blocks have cross-attention");
                Ok(LayerCache {
                    self_kv: None,
                    cross_kv: (cross.heads(&cross.key.forward(audio)?)?, cross.heads(&cross.value.forward(audio)?)?),
                })
            })
            .collect::<Result<_>>()?;
        Ok(DecoderState { layers, len: 0 })
    }

    /// Feeds `tokens` after those already in `state`; returns the final hidden states `[1, tokens.len(), d]`.
    pub fn decode(&self, tokens: &[u32], state: &mut DecoderState) -> Result<Tensor> {
        let device = self.dec_pos.device();
        let (pos, n) = (state.len, tokens.len());
        let ids = Tensor::new(tokens, device)?.unsqueeze(0)?;
        let mut x = self.embed.forward(&ids)?.broadcast_add(&self.dec_pos.narrow(0, pos, n)?)?;
        // Causal within the new tokens; every cached position is visible.
        let mask = (n > 1).then(|| causal_mask(pos, n, device)).transpose()?;
        for (block, cache) in self.dec_blocks.iter().zip(state.layers.iter_mut()) {
            let h = block.attn_ln.forward(&x)?;
            let k = block.attn.heads(&block.attn.key.forward(&h)?)?;
            let v = block.attn.heads(&block.attn.value.forward(&h)?)?;
            let (k, v) = match cache.self_kv.take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let a = block.attn.attend(&block.attn.query.forward(&h)?, &k, &v, mask.as_ref())?;
            cache.self_kv = Some((k, v));
            x = (x + a)?;
            let (cross, ln) = block.cross.as_ref().expect("decoder blocks have cross-attention");
            let (ck, cv) = &cache.cross_kv;
            x = (&x + cross.attend(&cross.query.forward(&ln.forward(&x)?)?, ck, cv, None)?)?;
            x = block.mlp(&x)?;
        }
        state.len += n;
        self.dec_ln.forward(&x)
    }

    /// Logits `[rows, vocab]` of hidden states `[rows, d]` (the output head is the token embedding).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden.matmul(&self.embed.embeddings().t()?)
    }
}

fn causal_mask(pos: usize, n: usize, device: &Device) -> Result<Tensor> {
    let total = pos + n;
    let mask: Vec<f32> =
        (0..n).flat_map(|i| (0..total).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (n, total), device)
}
