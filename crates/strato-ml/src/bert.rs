//! A BERT encoder in candle, shaped for sentence embeddings.
//!
//! Written here rather than taken from candle-transformers so the hot path is ours to tune: Q, K and V are fused
//! into one matmul at load time, and the attention mask is built once per batch.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

/// The subset of a Hugging Face `config.json` a BERT encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Activation; `gelu` means the exact (erf) GELU, as in transformers.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Position embeddings, i.e. the longest sequence the model accepts.
    pub max_position_embeddings: usize,
    /// Token type vocabulary.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// `model_type`, used only to refuse architectures this encoder does not implement.
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn parse(s: &str) -> candle_core::Result<Self> {
        match s {
            "gelu" => Ok(Self::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Self::GeluTanh),
            "relu" => Ok(Self::Relu),
            other => candle_core::bail!("unsupported hidden_act {other:?}"),
        }
    }

    fn forward(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::GeluErf => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::Relu => x.relu(),
        }
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// A loaded BERT encoder.
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    act: Activation,
    /// Longest sequence the position embeddings allow.
    pub max_positions: usize,
    /// Output width.
    pub hidden: usize,
}

fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    // Old checkpoints name LayerNorm parameters gamma/beta.
    let (w, b) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(LayerNorm::new(w, b, eps))
}

impl Bert {
    /// Builds the encoder from weights named as in `BertModel` (optionally under a `bert.` prefix).
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        if let Some(t) = &cfg.model_type {
            if !matches!(t.as_str(), "bert") {
                candle_core::bail!("model_type {t:?} is not a BERT model; only BERT-family encoders are supported");
            }
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let word = Embedding::new(emb.get((cfg.vocab_size, h), "word_embeddings.weight")?, h);
        let position = Embedding::new(emb.get((cfg.max_position_embeddings, h), "position_embeddings.weight")?, h);
        let token_type_all = emb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?;
        // Sentence embedding never uses segment B, so row 0 is added to every token.
        let token_type = token_type_all.get(0)?;
        let emb_norm = layer_norm(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let s = a.pp("self");
            let w = Tensor::cat(
                &[s.get((h, h), "query.weight")?, s.get((h, h), "key.weight")?, s.get((h, h), "value.weight")?],
                0,
            )?;
            let b = Tensor::cat(&[s.get(h, "query.bias")?, s.get(h, "key.bias")?, s.get(h, "value.bias")?], 0)?;
            layers.push(Layer {
                qkv: Linear::new(w, Some(b)),
                attn_out: candle_nn::linear(h, h, a.pp("output.dense"))?,
                attn_norm: layer_norm(h, cfg.layer_norm_eps, a.pp("output.LayerNorm"))?,
                inter: candle_nn::linear(h, cfg.intermediate_size, l.pp("intermediate.dense"))?,
                out: candle_nn::linear(cfg.intermediate_size, h, l.pp("output.dense"))?,
                out_norm: layer_norm(h, cfg.layer_norm_eps, l.pp("output.LayerNorm"))?,
            });
        }
        if !h.is_multiple_of(cfg.num_attention_heads) {
            candle_core::bail!("hidden_size {h} is not a multiple of num_attention_heads {}", cfg.num_attention_heads);
        }
        Ok(Self {
            word,
            position,
            token_type,
            emb_norm,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            act: Activation::parse(&cfg.hidden_act)?,
            max_positions: cfg.max_position_embeddings,
            hidden: h,
        })
    }

    /// Token states `[batch, seq, hidden]` for `ids` `[batch, seq]` (u32) with `mask` `[batch, seq]` (1 = token).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, l as u32, device)?;
        let x = self
            .word
            .forward(ids)?
            .broadcast_add(&self.position.forward(&positions)?)?
            .broadcast_add(&self.token_type)?;
        let mut x = self.emb_norm.forward(&x)?;
        // Additive mask: 0 for tokens, a large negative for padding, broadcast over heads and query positions.
        let bias = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, l))?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?; // [b, l, 3h]
            let qkv = qkv.reshape((b, l, 3, self.heads, self.head_dim))?.permute((2, 0, 3, 1, 4))?; // [3,b,nh,l,hd]
            let q = (qkv.get(0)?.contiguous()? * scale)?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let scores = q.matmul(&k.t()?)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, self.heads * self.head_dim))?;
            let attn = layer.attn_out.forward(&ctx)?;
            x = layer.attn_norm.forward(&(attn + &x)?)?;
            let inter = self.act.forward(&layer.inter.forward(&x)?)?;
            let out = layer.out.forward(&inter)?;
            x = layer.out_norm.forward(&(out + &x)?)?;
        }
        Ok(x)
    }
}

/// Device used for inference; CPU only for now.
pub fn cpu() -> Device {
    Device::Cpu
}

/// Masked mean over the sequence: `[b, l, h]`, `[b, l]` → `[b, h]`.
pub fn mean_pool(states: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?; // [b, l, 1]
    let summed = states.broadcast_mul(&m)?.sum(1)?;
    let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    summed.broadcast_div(&counts)
}

/// Masked max over the sequence.
pub fn max_pool(states: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let neg = ((m.ones_like()? - &m)? * -1e9)?;
    states.broadcast_add(&neg)?.max(1)
}

/// Row-wise L2 normalisation.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}
