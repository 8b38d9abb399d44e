//! Strato's matrix kernels (`kernels.rs`, the packed encoder's) for other crates' networks: a linear layer whose
//! weight is packed once at construction, run in the precision and with the instruction set chosen at run time,
//! split across rayon's threads when the product is big enough; and the row-wise helpers a transformer needs
//! around it (softmax, layer norm), compiled for the same instruction set.

use crate::kernels::{self, matmul, Activation, Isa, PackedF32, Product, Weights, NR};
use crate::Precision;

/// What is applied to each output value after the product, bias and residual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Nothing.
    Identity,
    /// GELU, exact (erf) form.
    GeluErf,
}

impl Act {
    fn kernel(self) -> Activation {
        match self {
            Self::Identity => Activation::Identity,
            Self::GeluErf => Activation::GeluErf,
        }
    }
}

/// `y = act(x Wᵀ + b (+ residual))` with `W` packed for the kernels; `Send + Sync`, forward passes may run
/// concurrently.
pub struct PackedLinear {
    w: Weights,
    b: Vec<f32>,
    isa: Isa,
}

impl std::fmt::Debug for PackedLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedLinear").field("in", &self.in_features()).field("out", &self.out_features()).finish()
    }
}

impl PackedLinear {
    /// Packs PyTorch's `[out, in]` weight (and `[out]` bias, zero when `None`) in `precision`.
    pub fn new(weight_out_in: &[f32], bias: Option<&[f32]>, out: usize, inp: usize, precision: Precision) -> Self {
        assert_eq!(weight_out_in.len(), out * inp, "weight is not [out, in]");
        let b = bias.map_or_else(|| vec![0.0; out], <[f32]>::to_vec);
        assert_eq!(b.len(), out, "bias is not [out]");
        Self { w: precision.pack(weight_out_in, out, inp), b, isa: Isa::detect() }
    }

    /// An f32 `[out, in]` matrix whose row `o` is `w[o · stride..][..inp]` (attention's keys, read in place from
    /// the rows of a fused projection), no bias.
    pub fn from_rows_f32(w: &[f32], stride: usize, out: usize, inp: usize) -> Self {
        assert!(out == 0 || w.len() >= (out - 1) * stride + inp, "w is too short");
        let mut packed = PackedF32::zeroed(inp, out);
        for (j, panel) in packed.panels_mut().enumerate() {
            for c in 0..NR.min(out - j * NR) {
                let row = &w[(j * NR + c) * stride..][..inp];
                for (i, &v) in row.iter().enumerate() {
                    panel[i * NR + c] = v;
                }
            }
        }
        Self { w: Weights::F32(packed), b: vec![0.0; out], isa: Isa::detect() }
    }

    /// An f32 `[in, out]` matrix (the transpose of [`Self::new`]'s) whose row `i` is `w[i · stride..][..out]`
    /// (attention's values, read in place), no bias: `y = x · W`.
    pub fn from_cols_f32(w: &[f32], stride: usize, inp: usize, out: usize) -> Self {
        assert!(inp == 0 || w.len() >= (inp - 1) * stride + out, "w is too short");
        let mut packed = PackedF32::zeroed(inp, out);
        for (j, panel) in packed.panels_mut().enumerate() {
            let cols = NR.min(out - j * NR);
            for i in 0..inp {
                panel[i * NR..i * NR + cols].copy_from_slice(&w[i * stride + j * NR..][..cols]);
            }
        }
        Self { w: Weights::F32(packed), b: vec![0.0; out], isa: Isa::detect() }
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        match &self.w {
            Weights::F32(w) => w.k(),
            Weights::I8(w) => w.k(),
            Weights::Bf16(w) => w.k(),
        }
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.b.len()
    }

    /// `y[rows, out] = x[rows, in] Wᵀ + b`, split across rayon's threads when big enough.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        self.forward_with(x, rows, None, Act::Identity, true, y);
    }

    /// `y = act(x Wᵀ + b + residual)`; `split`: whether the product may run on several of rayon's threads.
    pub fn forward_with(&self, x: &[f32], rows: usize, residual: Option<&[f32]>, act: Act, split: bool, y: &mut [f32]) {
        let p = Product { a: x, m: rows, b: &self.w, bias: &self.b, residual, act: act.kernel(), split };
        matmul(self.isa, &p, y);
    }
}

#[inline(always)]
fn softmax_rows_in(x: &mut [f32], width: usize) {
    for row in x.chunks_exact_mut(width) {
        // Eight partial maxima and sums, so that each pass runs on vectors (a plain fold is one serial chain).
        let mut m8 = [f32::NEG_INFINITY; 8];
        let chunks = row.chunks_exact(8);
        let rest = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        for c in chunks {
            for i in 0..8 {
                m8[i] = if c[i] > m8[i] { c[i] } else { m8[i] };
            }
        }
        let max = m8.iter().fold(rest, |m, &v| if v > m { v } else { m });
        let mut s8 = [0f32; 8];
        let mut chunks = row.chunks_exact_mut(8);
        for c in &mut chunks {
            for i in 0..8 {
                c[i] = kernels::exp(c[i] - max);
                s8[i] += c[i];
            }
        }
        let mut total = 0f32;
        for v in chunks.into_remainder() {
            *v = kernels::exp(*v - max);
            total += *v;
        }
        let inv = 1.0 / (s8.iter().sum::<f32>() + total);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

kernels::isa_versions! {
    fn softmax_rows_isa(x: &mut [f32], width: usize) => softmax_rows_in
}

/// Softmax of each `width`-long row of `x`, in place.
pub fn softmax_rows(x: &mut [f32], width: usize) {
    softmax_rows_isa(Isa::detect(), x, width);
}

/// Layer norm of each `width`-long row, in place; shared with the BERT encoder (inlined into each caller's
/// ISA-specific code).
#[inline(always)]
pub(crate) fn layer_norm_in(x: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(width) {
        let mean = kernels::sum(row) / width as f32;
        row.iter_mut().for_each(|v| *v -= mean);
        let mut sq = [0f32; 8];
        let chunks = row.chunks_exact(8);
        let rest: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for c in chunks {
            for i in 0..8 {
                sq[i] += c[i] * c[i];
            }
        }
        let var = (sq.iter().sum::<f32>() + rest) / width as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = *v * inv * g + b;
        }
    }
}

kernels::isa_versions! {
    fn layer_norm_isa(x: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_in
}

/// Layer norm of each `width`-long row of `x`, in place.
pub fn layer_norm_rows(x: &mut [f32], width: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    assert!(gamma.len() == width && beta.len() == width, "gamma and beta are not width long");
    layer_norm_isa(Isa::detect(), x, width, gamma, beta, eps);
}

#[inline(always)]
fn dot_in(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

kernels::isa_versions! {
    fn dot_isa(a: &[f32], b: &[f32]) -> f32 => dot_in
}

/// Σ aᵢ·bᵢ over the shorter of the two.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_isa(Isa::detect(), a, b)
}

#[inline(always)]
fn axpy_in(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

kernels::isa_versions! {
    fn axpy_isa(y: &mut [f32], a: f32, x: &[f32]) => axpy_in
}

/// `y += a · x` over the shorter of the two.
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    axpy_isa(Isa::detect(), y, a, x);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], rows: usize, w: &[f32], out: usize, inp: usize, b: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; rows * out];
        for r in 0..rows {
            for o in 0..out {
                y[r * out + o] = b[o] + (0..inp).map(|i| x[r * inp + i] * w[o * inp + i]).sum::<f32>();
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn packed_linear_matches_a_plain_product() {
        let (rows, out, inp) = (37, 45, 70);
        let (x, w, b) = (values(rows * inp, 1), values(out * inp, 2), values(out, 3));
        let want = reference(&x, rows, &w, out, inp, &b);
        for precision in [Precision::F32, Precision::Int8] {
            let lin = PackedLinear::new(&w, Some(&b), out, inp, precision);
            assert_eq!((lin.in_features(), lin.out_features()), (inp, out));
            let mut y = vec![0f32; rows * out];
            lin.forward(&x, rows, &mut y);
            let tol = if precision == Precision::F32 { 1e-4 } else { 0.2 };
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e).abs() < tol, "{precision:?}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn strided_packings_match_new() {
        let (rows, out, inp, stride) = (9, 21, 19, 30);
        let x = values(rows * inp, 4);
        let src = values(out * stride, 5);
        let w: Vec<f32> = (0..out).flat_map(|o| src[o * stride..o * stride + inp].to_vec()).collect();
        let want = reference(&x, rows, &w, out, inp, &vec![0.0; out]);
        let mut y = vec![0f32; rows * out];
        PackedLinear::from_rows_f32(&src, stride, out, inp).forward(&x, rows, &mut y);
        assert!(y.iter().zip(&want).all(|(a, e)| (a - e).abs() < 1e-4));
        // [in, out] rows: W[o][i] = src[i * stride + o].
        let src = values(inp * stride, 6);
        let w: Vec<f32> =
            (0..out).flat_map(|o| (0..inp).map(move |i| (o, i))).map(|(o, i)| src[i * stride + o]).collect();
        let want = reference(&x, rows, &w, out, inp, &vec![0.0; out]);
        PackedLinear::from_cols_f32(&src, stride, inp, out).forward(&x, rows, &mut y);
        assert!(y.iter().zip(&want).all(|(a, e)| (a - e).abs() < 1e-4));
    }

    #[test]
    fn row_helpers() {
        let mut x = vec![1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
        softmax_rows(&mut x, 3);
        let e: f32 = 1.0 + 1f32.exp() + 2f32.exp();
        assert!((x[2] - 2f32.exp() / e).abs() < 1e-6 && (x[3] - 1.0 / 3.0).abs() < 1e-6);
        let mut x = vec![1.0, 3.0];
        layer_norm_rows(&mut x, 2, &[1.0, 2.0], &[0.5, 0.0], 0.0);
        assert!((x[0] + 0.5).abs() < 1e-6 && (x[1] - 2.0).abs() < 1e-6);
        let a = values(19, 7);
        assert!((dot(&a, &a) - a.iter().map(|v| v * v).sum::<f32>()).abs() < 1e-4);
        let mut y = vec![1.0; 19];
        axpy(&mut y, 2.0, &a);
        assert!(y.iter().zip(&a).all(|(y, a)| (y - (1.0 + 2.0 * a)).abs() < 1e-6));
    }
}
