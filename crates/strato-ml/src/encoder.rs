//! The BERT forward pass Strato serves with: packed sequences (no padding: the linear layers see every real token
//! of the batch as one matrix, attention runs per sequence), embedding tables read in place from the memory-mapped
//! safetensors file (only the rows used are ever paged in), linear weights packed once at load for Strato's own
//! matrix kernels (`kernels.rs`: bias, residual and GELU applied as each output tile is written), and the rest
//! (layer norm, attention, softmax) compiled for AVX2+FMA as well when the CPU has it, chosen at run time.
//!
//! `bert.rs` is the candle reference implementation of the same model; both are held to sentence-transformers'
//! own vectors by the embedding tests.

use std::path::Path;
use std::sync::Arc;

use crate::bert::BertConfig;
use crate::kernels::{self, matmul, Activation, Isa, PackedBf16, PackedF32, PackedI8, Product, Weights};
use crate::MlError;

use rayon::prelude::*;

/// Tokens per thread below which a batch is not split between threads by sequences.
const SPLIT_MIN_TOKENS: usize = 48;
/// Attention's vector width: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;
/// Queries whose attention is computed together.
const QUERIES: usize = 4;
const _: () = assert!(QUERIES == 4, "the attention loops name four accumulators");

/// A pass's working memory above this many f32 values is freed after it rather than kept for the next (16 MiB:
/// batches of up to ~2,700 tokens keep theirs).
const KEEP_BUFFERS_FLOATS: usize = 4 << 20;

/// One thread's working memory for a forward pass, kept between passes so the steady state allocates only
/// its output.
#[derive(Default)]
struct Buffers {
    x: Vec<f32>,
    tmp: Vec<f32>,
    ctx: Vec<f32>,
    qkv: Vec<f32>,
    inter: Vec<f32>,
    scratch: Vec<f32>,
}

thread_local! {
    static BUFFERS: std::cell::Cell<Buffers> = std::cell::Cell::new(Buffers::default());
}

/// f32 weights: in place in the mapped file when aligned, else a copy.
enum Buf {
    Mapped { map: Arc<memmap2::Mmap>, start: usize, len: usize },
    Owned(Vec<f32>),
}

impl Buf {
    fn get(&self) -> &[f32] {
        match self {
            // Alignment was checked when the buffer was made, so the cast cannot fail.
            Self::Mapped { map, start, len } => bytemuck::cast_slice(&map[*start..*start + len * 4]),
            Self::Owned(v) => v,
        }
    }
}

/// `y = x Wᵀ + b`, the weight packed for the kernels.
struct Linear {
    w: Weights,
    b: Vec<f32>,
}

/// The precision of the encoder's linear layers (embeddings, layer norms, attention and GELU stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// As the checkpoint stores them (the default).
    #[default]
    F32,
    /// Weights in int8 (per column, one scale per 32 inputs), activations in 16-bit integers: a quarter of the
    /// weights' memory traffic and twice the multiply-adds per instruction; embeddings stay within cosine
    /// 0.999 of f32 (tested).
    Int8,
    /// Weights and activations in bfloat16, multiplied into f32 sums (AVX512-BF16 where the CPU has it, else
    /// portable kernels): half the weights' memory traffic, the int8 mode's multiply-adds per instruction
    /// without its per-block scaling; embeddings stay within cosine 0.9995 of f32 (tested; 0.99993 measured).
    Bf16,
}

impl Precision {
    /// Whether this CPU runs this precision's products with instructions made for it (f32 and int8 always; bf16
    /// with AMX or AVX512-BF16, else on portable kernels several times slower than f32).
    pub fn is_native(self) -> bool {
        match self {
            Self::F32 | Self::Int8 => true,
            Self::Bf16 => crate::kernels::bf16_is_native(),
        }
    }

    pub(crate) fn pack(self, w: &[f32], out: usize, inp: usize) -> Weights {
        match self {
            Self::F32 => Weights::F32(PackedF32::from_out_in(w, out, inp)),
            Self::Int8 => Weights::I8(PackedI8::from_out_in(w, out, inp)),
            Self::Bf16 => Weights::Bf16(PackedBf16::from_out_in(w, out, inp)),
        }
    }
}

struct Norm {
    gamma: Buf,
    beta: Buf,
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

/// Which kernels an encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    /// The fastest this CPU supports.
    Best,
    /// The portable ones, whatever the CPU.
    Portable,
}

/// A loaded encoder; `Send + Sync`, forward passes may run concurrently (each allocates its own scratch).
pub struct Encoder {
    word: Buf,
    position: Buf,
    token_type0: Buf,
    emb_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    head_dim: usize,
    intermediate: usize,
    eps: f32,
    act: Activation,
    isa: Isa,
    vocab: usize,
    max_positions: usize,
}

struct Tensors {
    map: Arc<memmap2::Mmap>,
    data_start: usize,
    /// Name → (dtype, shape, data begin, data end).
    entries: std::collections::HashMap<String, (String, Vec<usize>, usize, usize)>,
}

impl Tensors {
    fn open(path: &Path) -> Result<Self, MlError> {
        let file =
            std::fs::File::open(path).map_err(|e| MlError::Model(format!("cannot open {}: {e}", path.display())))?;
        let map = map_file(&file).map_err(|e| MlError::Model(format!("cannot map {}: {e}", path.display())))?;
        let bad = |m: String| MlError::Model(format!("{}: {m}", path.display()));
        if map.len() < 8 {
            return Err(bad("not a safetensors file".into()));
        }
        let header_len = u64::from_le_bytes(map[..8].try_into().unwrap_or_default()) as usize;
        let header = map.get(8..8 + header_len).ok_or_else(|| bad("truncated header".into()))?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(header).map_err(|e| bad(format!("invalid header: {e}")))?;
        let mut entries = std::collections::HashMap::new();
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let dtype = info["dtype"].as_str().unwrap_or_default();
            let shape: Vec<usize> = info["shape"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect())
                .unwrap_or_default();
            let offsets: Vec<usize> = info["data_offsets"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect())
                .unwrap_or_default();
            let [begin, end] = offsets[..] else { return Err(bad(format!("tensor {name} has no data offsets"))) };
            if end < begin {
                return Err(bad(format!("tensor {name}: its data offsets are reversed")));
            }
            entries.insert(name, (dtype.to_string(), shape, begin, end));
        }
        let data_start = 8 + header_len;
        if let Some((name, _)) = entries.iter().find(|(_, (_, _, _, end))| data_start + end > map.len()) {
            return Err(bad(format!("tensor {name} runs past the end of the file")));
        }
        Ok(Self { map: Arc::new(map), data_start, entries })
    }

    fn prefix(&self) -> &'static str {
        if self.entries.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        }
    }

    /// A tensor of the expected shape, in place when 4-byte aligned.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Buf, MlError> {
        let full = format!("{}{name}", self.prefix());
        let (dtype, got, begin, end) = self
            .entries
            .get(&full)
            .ok_or_else(|| MlError::Model(format!("cannot load weights: tensor {full} is missing")))?;
        if dtype != "F32" {
            return Err(MlError::Model(format!(
                "cannot load weights: tensor {full} is {dtype}; only F32 is supported"
            )));
        }
        if got != shape || end - begin != shape.iter().product::<usize>() * 4 {
            return Err(MlError::Model(format!("cannot load weights: tensor {full} is {got:?}, expected {shape:?}")));
        }
        let (start, stop) = (self.data_start + begin, self.data_start + end);
        let bytes = &self.map[start..stop];
        Ok(match bytemuck::try_cast_slice::<u8, f32>(bytes) {
            Ok(_) => Buf::Mapped { map: self.map.clone(), start, len: (stop - start) / 4 },
            Err(_) => Buf::Owned(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        })
    }

    /// Old checkpoints name LayerNorm parameters gamma/beta.
    fn norm(&self, prefix: &str, size: usize) -> Result<Norm, MlError> {
        let has = |n: &str| self.entries.contains_key(&format!("{}{prefix}.{n}", self.prefix()));
        let (g, b) = if has("weight") { ("weight", "bias") } else { ("gamma", "beta") };
        Ok(Norm {
            gamma: self.get(&format!("{prefix}.{g}"), &[size])?,
            beta: self.get(&format!("{prefix}.{b}"), &[size])?,
        })
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize, precision: Precision) -> Result<Linear, MlError> {
        let w = self.get(&format!("{prefix}.weight"), &[out, inp])?;
        Ok(Linear {
            w: precision.pack(w.get(), out, inp),
            b: self.get(&format!("{prefix}.bias"), &[out])?.get().to_vec(),
        })
    }
}

#[expect(unsafe_code, reason = "memory-mapping the weights keeps start-up fast and memory shared")]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the weights file is opened read-only and Strato never writes model files it has loaded; a file
    // replaced on disk is renamed over (a new inode), which leaves this mapping intact.
    unsafe { memmap2::Mmap::map(file) }
}

impl Encoder {
    /// Loads the encoder from `model.safetensors` with the model's `config.json`.
    pub fn load(weights: &Path, cfg: &BertConfig, kernels: Kernels, precision: Precision) -> Result<Self, MlError> {
        if let Some(t) = &cfg.model_type {
            if t != "bert" {
                return Err(MlError::Model(format!(
                    "model_type {t:?} is not a BERT model; only BERT-family encoders are supported"
                )));
            }
        }
        let h = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || !h.is_multiple_of(cfg.num_attention_heads) {
            return Err(MlError::Model(format!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                cfg.num_attention_heads
            )));
        }
        let act = match cfg.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => return Err(MlError::Model(format!("unsupported hidden_act {other:?}"))),
        };
        let t = Tensors::open(weights)?;
        let token_type = t.get("embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, h])?;
        // Sentence embedding never uses segment B: row 0 is added to every token.
        let token_type0 = Buf::Owned(token_type.get()[..h].to_vec());
        // Packing is most of the start-up: the layers are packed on all threads at once.
        let layers = (0..cfg.num_hidden_layers)
            .into_par_iter()
            .map(|i| {
                let p = format!("encoder.layer.{i}");
                let s = format!("{p}.attention.self");
                // Q, K and V as one [3h, h] product: one matrix multiply instead of three.
                let mut w = Vec::with_capacity(3 * h * h);
                let mut b = Vec::with_capacity(3 * h);
                for part in ["query", "key", "value"] {
                    w.extend_from_slice(t.get(&format!("{s}.{part}.weight"), &[h, h])?.get());
                    b.extend_from_slice(t.get(&format!("{s}.{part}.bias"), &[h])?.get());
                }
                Ok(Layer {
                    qkv: Linear { w: precision.pack(&w, 3 * h, h), b },
                    attn_out: t.linear(&format!("{p}.attention.output.dense"), h, h, precision)?,
                    attn_norm: t.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                    inter: t.linear(&format!("{p}.intermediate.dense"), cfg.intermediate_size, h, precision)?,
                    out: t.linear(&format!("{p}.output.dense"), h, cfg.intermediate_size, precision)?,
                    out_norm: t.norm(&format!("{p}.output.LayerNorm"), h)?,
                })
            })
            .collect::<Result<Vec<Layer>, MlError>>()?;
        Ok(Self {
            word: t.get("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?,
            position: t.get("embeddings.position_embeddings.weight", &[cfg.max_position_embeddings, h])?,
            token_type0,
            emb_norm: t.norm("embeddings.LayerNorm", h)?,
            layers,
            hidden: h,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            intermediate: cfg.intermediate_size,
            eps: cfg.layer_norm_eps as f32,
            act,
            isa: match kernels {
                Kernels::Best => Isa::detect(),
                Kernels::Portable => Isa::Portable,
            },
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// Output width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Final token states of each sequence, packed: `[Σ len, hidden]`, sequences one after another.
    ///
    /// With several threads (rayon's pool), a batch is split between them by sequences, each part a whole pass
    /// on one thread (no thread waits on another mid-layer; attention and layer norms run in parallel too); a
    /// single sequence, or a batch too small to split, splits each product by columns instead.
    pub fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, MlError> {
        let threads = rayon::current_num_threads();
        if threads <= 1 {
            return self.forward_here(seqs, false);
        }
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let parts = threads.min(seqs.len()).min(total / SPLIT_MIN_TOKENS);
        if parts <= 1 {
            // With a helper spinning for the products' halves (crate::pair) the pass stays on this thread. Without
            // one, from outside the pool each split of a product would be a hand-off and a wake-up; inside it, a
            // push the other threads steal. So the whole pass then moves into the pool once.
            if rayon::current_thread_index().is_none() {
                if let Some(_helper) = crate::pair::start() {
                    return self.forward_here(seqs, true);
                }
                return rayon::scope(|_| crate::pair::with_helper(|| self.forward_here(seqs, true)));
            }
            return crate::pair::with_helper(|| self.forward_here(seqs, true));
        }
        // Contiguous runs of sequences with about the same number of tokens each.
        let mut bounds = vec![0];
        let mut acc = 0;
        for (i, s) in seqs.iter().enumerate() {
            acc += s.len();
            if bounds.len() < parts && acc * parts >= total * bounds.len() && i + 1 < seqs.len() {
                bounds.push(i + 1);
            }
        }
        bounds.push(seqs.len());
        let ranges: Vec<std::ops::Range<usize>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
        let parts: Vec<Result<Vec<f32>, MlError>> =
            ranges.into_par_iter().map(|r| self.forward_here(&seqs[r], false)).collect();
        let mut out = Vec::with_capacity(total * self.hidden);
        for p in parts {
            out.extend_from_slice(&p?);
        }
        Ok(out)
    }

    /// [`Self::forward`] entirely on the calling thread, for callers that keep every thread busy themselves.
    pub fn forward_local(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, MlError> {
        self.forward_here(seqs, false)
    }

    #[cfg_attr(target_arch = "x86_64", expect(unsafe_code, reason = "calls the AVX2 build after checking the CPU"))]
    fn forward_here(&self, seqs: &[&[u32]], split: bool) -> Result<Vec<f32>, MlError> {
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Amx and Avx512 are only chosen when the CPU has AVX-512 (Isa::detect).
            Isa::Amx | Isa::Avx512 => unsafe { self.forward_avx512(seqs, split) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: Avx2Fma is only chosen when the CPU has both (Isa::detect).
            Isa::Avx2Fma => unsafe { self.forward_avx2(seqs, split) },
            _ => self.forward_in(seqs, split),
        }
    }

    /// The forward pass compiled for AVX2+FMA: everything inlined into it (layer norm, attention, softmax) is
    /// vectorised with 8 lanes and fused multiply-adds instead of the baseline's SSE2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[expect(unsafe_code, reason = "a target-feature function: callers check the CPU first")]
    unsafe fn forward_avx2(&self, seqs: &[&[u32]], split: bool) -> Result<Vec<f32>, MlError> {
        self.forward_in(seqs, split)
    }

    /// The same with 16 lanes (AVX-512) for everything the compiler vectorises.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    #[expect(unsafe_code, reason = "a target-feature function: callers check the CPU first")]
    unsafe fn forward_avx512(&self, seqs: &[&[u32]], split: bool) -> Result<Vec<f32>, MlError> {
        self.forward_in(seqs, split)
    }

    #[inline(always)]
    fn forward_in(&self, seqs: &[&[u32]], split: bool) -> Result<Vec<f32>, MlError> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        // The thread's buffers from its last pass, taken rather than borrowed: a product waiting on other threads
        // may run another pass on this one (see `kernels::matmul`), which then starts from empty buffers.
        let mut b = BUFFERS.take();
        let result = self.forward_with(seqs, split, total, &mut b);
        if total * self.intermediate <= KEEP_BUFFERS_FLOATS {
            BUFFERS.set(b);
        }
        result
    }

    #[inline(always)]
    fn forward_with(&self, seqs: &[&[u32]], split: bool, total: usize, b: &mut Buffers) -> Result<Vec<f32>, MlError> {
        let h = self.hidden;
        // Every buffer is fully written before it is read, so resizing (zeroing only growth) is enough.
        b.x.resize(total * h, 0.0);
        b.tmp.resize(total * h, 0.0);
        b.ctx.resize(total * h, 0.0);
        b.qkv.resize(total * 3 * h, 0.0);
        b.inter.resize(total * self.intermediate, 0.0);
        let (word, pos, tt) = (self.word.get(), self.position.get(), self.token_type0.get());
        let mut row = 0;
        for s in seqs {
            if s.len() > self.max_positions {
                return Err(MlError::Embed(format!("{} tokens exceed the model's {}", s.len(), self.max_positions)));
            }
            for (p, &id) in s.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab {
                    return Err(MlError::Embed(format!("token id {id} is outside the vocabulary")));
                }
                let dst = &mut b.x[row * h..(row + 1) * h];
                let (w, ps) = (&word[id * h..(id + 1) * h], &pos[p * h..(p + 1) * h]);
                for i in 0..h {
                    dst[i] = w[i] + ps[i] + tt[i];
                }
                row += 1;
            }
        }
        layer_norm(&mut b.x, h, &self.emb_norm, self.eps);

        let isa = self.isa;
        for l in &self.layers {
            let product = |a: &[f32], lin: &Linear, residual: Option<&[f32]>, act: Activation, out: &mut [f32]| {
                let p = Product { a, m: total, b: &lin.w, bias: &lin.b, residual, act, split };
                matmul(isa, &p, out);
            };
            product(&b.x, &l.qkv, None, Activation::Identity, &mut b.qkv);
            self.attention(&b.qkv, seqs, &mut b.ctx, &mut b.scratch);
            product(&b.ctx, &l.attn_out, Some(&b.x), Activation::Identity, &mut b.tmp);
            layer_norm(&mut b.tmp, h, &l.attn_norm, self.eps);
            std::mem::swap(&mut b.x, &mut b.tmp);
            product(&b.x, &l.inter, None, self.act, &mut b.inter);
            product(&b.inter, &l.out, Some(&b.x), Activation::Identity, &mut b.tmp);
            layer_norm(&mut b.tmp, h, &l.out_norm, self.eps);
            std::mem::swap(&mut b.x, &mut b.tmp);
        }

        Ok(b.x.clone())
    }

    /// Scaled dot-product attention of each sequence with itself, head by head. Keys are copied transposed
    /// (`[hidden, len]`, all heads at once) so that a query's scores, its softmax and its weighted sum of values
    /// all run along contiguous vectors; `QUERIES` queries at a time, so that each key and value vector loaded
    /// feeds that many independent sums (one query's were a chain of dependent multiply-adds, latency-bound).
    #[inline(always)]
    fn attention(&self, qkv: &[f32], seqs: &[&[u32]], ctx: &mut [f32], scratch: &mut Vec<f32>) {
        let (h, hd) = (self.hidden, self.head_dim);
        let scale = 1.0 / (hd as f32).sqrt();
        let stride = 3 * h;
        let whole = hd - hd % LANES;
        let mut start = 0;
        for s in seqs {
            let n = s.len();
            let np = n.next_multiple_of(LANES);
            // Every value is written before it is read (the transpose pads with zeros), so no clearing.
            let need = h * np + QUERIES * np;
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let (kt_all, scores) = scratch[..need].split_at_mut(h * np);
            let rows = &qkv[start * stride..(start + n) * stride];
            kernels::transpose(self.isa, &rows[h..], stride, n, h, kt_all, np);
            let ctx = &mut ctx[start * h..(start + n) * h];
            for head in 0..self.heads {
                let (qo, vo) = (head * hd, 2 * h + head * hd);
                let kt = &kt_all[head * hd * np..(head + 1) * hd * np];
                for r0 in (0..n).step_by(QUERIES) {
                    let live = QUERIES.min(n - r0);
                    // Past the last query the block repeats it: in bounds, and its results are not kept.
                    let query = |r: usize| &rows[(r0 + r.min(live - 1)) * stride + qo..][..hd];
                    // Sequences are short: each run of LANES scores (and of LANES outputs below) is summed in
                    // register-sized locals, not through memory once per step.
                    // Four named accumulators, not an array of them: LLVM kept those in memory.
                    let (q0, q1, q2, q3) = (query(0), query(1), query(2), query(3));
                    for jc in 0..np / LANES {
                        let (mut a0, mut a1, mut a2, mut a3) =
                            ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
                        for d in 0..hd {
                            let k: &[f32; LANES] =
                                kt[d * np + jc * LANES..][..LANES].try_into().unwrap_or(&[0.0; LANES]);
                            let (x0, x1, x2, x3) = (q0[d], q1[d], q2[d], q3[d]);
                            for l in 0..LANES {
                                a0[l] += x0 * k[l];
                                a1[l] += x1 * k[l];
                                a2[l] += x2 * k[l];
                                a3[l] += x3 * k[l];
                            }
                        }
                        for (r, acc) in [a0, a1, a2, a3].iter().enumerate().take(live) {
                            for (s, a) in scores[r * np + jc * LANES..][..LANES].iter_mut().zip(acc) {
                                *s = a * scale;
                            }
                        }
                    }
                    let mut inv = [0f32; QUERIES];
                    for (r, inv) in inv.iter_mut().enumerate().take(live) {
                        let p = &mut scores[r * np..r * np + n];
                        let max = p.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
                        p.iter_mut().for_each(|v| *v = kernels::exp(*v - max));
                        *inv = 1.0 / kernels::sum(p);
                    }
                    let prob = |r: usize, j: usize| scores[r.min(live - 1) * np + j];
                    let probs = |r: usize| &scores[r.min(live - 1) * np..][..n];
                    let (p0, p1, p2, p3) = (probs(0), probs(1), probs(2), probs(3));
                    for oc in (0..whole).step_by(LANES) {
                        let (mut a0, mut a1, mut a2, mut a3) =
                            ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
                        let ps = p0.iter().zip(p1).zip(p2).zip(p3);
                        for (vrow, (((&x0, &x1), &x2), &x3)) in rows.chunks_exact(stride).zip(ps) {
                            let v: &[f32; LANES] = vrow[vo + oc..][..LANES].try_into().unwrap_or(&[0.0; LANES]);
                            for l in 0..LANES {
                                a0[l] += x0 * v[l];
                                a1[l] += x1 * v[l];
                                a2[l] += x2 * v[l];
                                a3[l] += x3 * v[l];
                            }
                        }
                        for (r, acc) in [a0, a1, a2, a3].iter().enumerate().take(live) {
                            let out = &mut ctx[(r0 + r) * h + qo + oc..][..LANES];
                            for (o, a) in out.iter_mut().zip(acc) {
                                *o = a * inv[r];
                            }
                        }
                    }
                    for (r, &inv) in inv.iter().enumerate().take(live).filter(|_| whole < hd) {
                        let tail = &mut ctx[(r0 + r) * h + qo + whole..(r0 + r) * h + qo + hd];
                        tail.fill(0.0);
                        for (j, vrow) in rows.chunks_exact(stride).enumerate() {
                            let p = prob(r, j);
                            for (o, &v) in tail.iter_mut().zip(&vrow[vo + whole..vo + hd]) {
                                *o += p * v;
                            }
                        }
                        tail.iter_mut().for_each(|o| *o *= inv);
                    }
                }
            }
            start += n;
        }
    }
}

#[inline(always)]
fn layer_norm(x: &mut [f32], width: usize, n: &Norm, eps: f32) {
    crate::linear::layer_norm_in(x, width, n.gamma.get(), n.beta.get(), eps);
}
