//! The BERT forward pass Strato serves with: packed sequences (no padding: the linear layers see every real token
//! of the batch as one matrix, attention runs per sequence), embedding tables read in place from the memory-mapped
//! safetensors file (only the rows used are ever paged in), linear weights transposed once at load so the output
//! dimension is contiguous, matrix products by `gemm` (the kernels candle uses, AVX-512 where the CPU has it), and
//! `exp`/`erf` in plain arithmetic the compiler vectorises, so GELU and softmax cost little beside the products.
//!
//! `bert.rs` is the candle reference implementation of the same model; both are held to sentence-transformers'
//! own vectors by the embedding tests.

use std::path::Path;
use std::sync::Arc;

use crate::bert::BertConfig;
use crate::MlError;

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

/// `y = x Wᵀ + b`; `wt` holds `Wᵀ` (`[in, out]` row-major; PyTorch stores `W` as `[out, in]`): gemm is 2-3×
/// faster with the output dimension contiguous when few rows (one short query) go through.
struct Linear {
    wt: Buf,
    b: Buf,
    out: usize,
    inp: usize,
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

#[derive(Clone, Copy, Debug)]
enum Act {
    GeluErf,
    GeluTanh,
    Relu,
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
    act: Act,
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

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear, MlError> {
        let w = self.get(&format!("{prefix}.weight"), &[out, inp])?;
        Ok(Linear {
            wt: Buf::Owned(transpose(w.get(), out, inp)),
            b: self.get(&format!("{prefix}.bias"), &[out])?,
            out,
            inp,
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
    pub fn load(weights: &Path, cfg: &BertConfig) -> Result<Self, MlError> {
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
            "gelu" => Act::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Act::GeluTanh,
            "relu" => Act::Relu,
            other => return Err(MlError::Model(format!("unsupported hidden_act {other:?}"))),
        };
        let t = Tensors::open(weights)?;
        let token_type = t.get("embeddings.token_type_embeddings.weight", &[cfg.type_vocab_size, h])?;
        // Sentence embedding never uses segment B: row 0 is added to every token.
        let token_type0 = Buf::Owned(token_type.get()[..h].to_vec());
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let s = format!("{p}.attention.self");
            // Q, K and V as one [3h, h] product: one matrix multiply instead of three.
            let mut w = Vec::with_capacity(3 * h * h);
            let mut b = Vec::with_capacity(3 * h);
            for part in ["query", "key", "value"] {
                w.extend_from_slice(t.get(&format!("{s}.{part}.weight"), &[h, h])?.get());
                b.extend_from_slice(t.get(&format!("{s}.{part}.bias"), &[h])?.get());
            }
            layers.push(Layer {
                qkv: Linear { wt: Buf::Owned(transpose(&w, 3 * h, h)), b: Buf::Owned(b), out: 3 * h, inp: h },
                attn_out: t.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: t.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                inter: t.linear(&format!("{p}.intermediate.dense"), cfg.intermediate_size, h)?,
                out: t.linear(&format!("{p}.output.dense"), h, cfg.intermediate_size)?,
                out_norm: t.norm(&format!("{p}.output.LayerNorm"), h)?,
            });
        }
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
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings,
        })
    }

    /// Output width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Final token states of each sequence, packed: `[Σ len, hidden]`, sequences one after another.
    pub fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>, MlError> {
        let h = self.hidden;
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        let mut x = vec![0f32; total * h];
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
                let dst = &mut x[row * h..(row + 1) * h];
                let (w, ps) = (&word[id * h..(id + 1) * h], &pos[p * h..(p + 1) * h]);
                for i in 0..h {
                    dst[i] = w[i] + ps[i] + tt[i];
                }
                row += 1;
            }
        }
        layer_norm(&mut x, h, &self.emb_norm, self.eps);

        let mut qkv = vec![0f32; total * 3 * h];
        let mut ctx = vec![0f32; total * h];
        let mut tmp = vec![0f32; total * h];
        let mut inter = vec![0f32; total * self.intermediate];
        let mut scores = Vec::new();
        for l in &self.layers {
            linear(&x, total, &l.qkv, &mut qkv);
            self.attention(&qkv, seqs, &mut ctx, &mut scores);
            linear(&ctx, total, &l.attn_out, &mut tmp);
            add_assign(&mut tmp, &x);
            layer_norm(&mut tmp, h, &l.attn_norm, self.eps);
            std::mem::swap(&mut x, &mut tmp);
            linear(&x, total, &l.inter, &mut inter);
            match self.act {
                Act::GeluErf => inter.iter_mut().for_each(|v| *v = gelu_erf(*v)),
                Act::GeluTanh => inter.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
                Act::Relu => inter.iter_mut().for_each(|v| *v = v.max(0.0)),
            }
            linear(&inter, total, &l.out, &mut tmp);
            add_assign(&mut tmp, &x);
            layer_norm(&mut tmp, h, &l.out_norm, self.eps);
            std::mem::swap(&mut x, &mut tmp);
        }

        Ok(x)
    }

    /// Scaled dot-product attention of each sequence with itself, head by head.
    fn attention(&self, qkv: &[f32], seqs: &[&[u32]], ctx: &mut [f32], scores: &mut Vec<f32>) {
        let (h, hd) = (self.hidden, self.head_dim);
        let scale = 1.0 / (hd as f32).sqrt();
        let stride = 3 * h;
        let mut start = 0;
        for s in seqs {
            let n = s.len();
            scores.resize(n, 0.0);
            for head in 0..self.heads {
                let (qo, ko, vo) = (head * hd, h + head * hd, 2 * h + head * hd);
                for i in 0..n {
                    let q = &qkv[(start + i) * stride + qo..][..hd];
                    let mut max = f32::NEG_INFINITY;
                    for (j, sc) in scores.iter_mut().enumerate() {
                        let k = &qkv[(start + j) * stride + ko..][..hd];
                        *sc = dot(q, k) * scale;
                        max = max.max(*sc);
                    }
                    let mut sum = 0.0;
                    for sc in scores.iter_mut() {
                        *sc = exp(*sc - max);
                        sum += *sc;
                    }
                    let inv = 1.0 / sum;
                    let out = &mut ctx[(start + i) * h + qo..][..hd];
                    out.fill(0.0);
                    for (j, &p) in scores.iter().enumerate() {
                        let v = &qkv[(start + j) * stride + vo..][..hd];
                        let p = p * inv;
                        for d in 0..hd {
                            out[d] += p * v[d];
                        }
                    }
                }
            }
            start += n;
        }
    }
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    // Tiles keep both sides in cache.
    const T: usize = 32;
    for r0 in (0..rows).step_by(T) {
        for c0 in (0..cols).step_by(T) {
            for r in r0..(r0 + T).min(rows) {
                for c in c0..(c0 + T).min(cols) {
                    t[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    t
}

/// `dst[rows, out] = x[rows, in] Wᵀ + b`.
fn linear(x: &[f32], rows: usize, l: &Linear, dst: &mut [f32]) {
    let (wt, b) = (l.wt.get(), l.b.get());
    assert!(x.len() >= rows * l.inp && wt.len() == l.out * l.inp && b.len() == l.out && dst.len() >= rows * l.out);
    for r in dst[..rows * l.out].chunks_exact_mut(l.out) {
        r.copy_from_slice(b);
    }
    // Threads pay off only once the product is big enough to split; a single short query stays on one.
    let work = rows * l.out * l.inp;
    let parallelism = if work >= PARALLEL_MIN_WORK { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    gemm_f32(rows, l.out, l.inp, dst, x, wt, parallelism);
}

/// Multiply-adds below which a product runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 2 << 20;

#[expect(unsafe_code, reason = "gemm takes raw pointers with strides; the bounds are checked just above")]
fn gemm_f32(m: usize, n: usize, k: usize, dst: &mut [f32], lhs: &[f32], rhs: &[f32], par: gemm::Parallelism) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= n * k);
    // SAFETY: dst is m×n row-major (row stride n), lhs m×k row-major (row stride k), rhs k×n row-major (row
    // stride n). All three fit their slices (asserted).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler keep several vector accumulators in flight.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

fn layer_norm(x: &mut [f32], width: usize, n: &Norm, eps: f32) {
    let (g, b) = (n.gamma.get(), n.beta.get());
    for row in x.chunks_exact_mut(width) {
        let mean = row.iter().sum::<f32>() / width as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..width {
            row[i] = (row[i] - mean) * inv * g[i] + b[i];
        }
    }
}

/// `eˣ` to about 2 ulp for the range softmax and GELU use, in plain arithmetic the compiler vectorises: no libm
/// calls (`expf`, `roundf`, and `fmaf` without the FMA target feature are calls per element).
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // eˣ = 2ⁿ · eʳ with n = round(x / ln 2) (adding and removing 1.5·2²³ rounds to nearest), r = x − n·ln 2.
    const ROUND: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    // Degree-6 polynomial (Cephes' expf coefficients).
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5e-1;
    let er = p * r * r + r + 1.0;
    er * f32::from_bits((((n as i32) + 127) as u32) << 23)
}

/// erf(x) to ≈1.5e-7 (Abramowitz & Stegun 7.1.26, with the exp above).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = (((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_72) * t + 0.254_829_6;
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

/// GELU with the exact (erf) form, as transformers' `gelu`.
#[inline(always)]
fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation (`gelu_new`).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    // tanh(u) = 1 − 2 / (e²ᵘ + 1)
    let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_where_softmax_and_gelu_use_it() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.013;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp(-1000.0), exp(-87.0));
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        // erf from its series, in f64, as the reference.
        fn erf64(x: f64) -> f64 {
            let mut sum = 0.0;
            let mut term = x;
            for n in 0..200 {
                sum += term / (2 * n + 1) as f64;
                term *= -x * x / (n + 1) as f64;
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        }
        let mut x = -6.0f32;
        while x < 6.0 {
            let want = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
            let got = gelu_erf(x) as f64;
            assert!((got - want).abs() < 1e-6 * (1.0 + want.abs()), "gelu({x}) = {got}, want {want}");
            x += 0.01;
        }
    }

    #[test]
    fn linear_is_x_times_w_transposed_plus_b() {
        let (rows, inp, out) = (3, 5, 4);
        let x: Vec<f32> = (0..rows * inp).map(|i| i as f32 * 0.5 - 3.0).collect();
        let w: Vec<f32> = (0..out * inp).map(|i| (i % 7) as f32 - 2.5).collect();
        let b: Vec<f32> = (0..out).map(|i| i as f32).collect();
        let l = Linear { wt: Buf::Owned(transpose(&w, out, inp)), b: Buf::Owned(b.clone()), out, inp };
        let mut y = vec![0f32; rows * out];
        linear(&x, rows, &l, &mut y);
        for r in 0..rows {
            for o in 0..out {
                let want: f32 = b[o] + (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum::<f32>();
                assert!((y[r * out + o] - want).abs() < 1e-4, "({r},{o}): {} vs {want}", y[r * out + o]);
            }
        }
    }
}
