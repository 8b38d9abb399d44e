//! Multinomial logistic regression (softmax, L2) fitted with L-BFGS, on dense embeddings.
//!
//! The objective is scikit-learn's, scaled by the total sample weight S so tolerances do not depend on n:
//! `f(W, b) = (1/S) Σ sᵢ·CE(softmax(W·xᵢ + b), yᵢ) + ‖W‖² / (2·C·S)`; the intercept is not penalised.
//! The two n×d×k products per evaluation run on the encoder's matrix kernels (the features packed once, the
//! weights and the residuals per evaluation), the softmax on rayon's threads; the optimiser itself is plain Rust.

use std::collections::VecDeque;

use rayon::prelude::*;

use crate::kernels::{self, matmul, Activation, Isa, PackedF32, Product, Weights};
use crate::MlError;

/// Optimiser settings.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Inverse regularisation strength, as scikit-learn's `C`.
    pub c: f64,
    /// Weight samples by `n / (k · count(label))`.
    pub balanced: bool,
    /// Iteration cap.
    pub max_iter: usize,
    /// Stop when the largest gradient component falls below this.
    pub tol: f64,
}

/// What the optimiser did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FitInfo {
    /// Iterations run.
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
    /// Final objective value.
    pub loss: f64,
}

/// Weights of a fitted model: `weights` is k×d row-major, `bias` has k entries.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearWeights {
    /// k×d, row-major.
    pub weights: Vec<f32>,
    /// k.
    pub bias: Vec<f32>,
}

struct Problem<'a> {
    /// n×d.
    x: &'a [f32],
    /// Xᵀ (d×n), the left operand of the gradient's product.
    xt: Vec<f32>,
    isa: Isa,
    y: &'a [u32],
    sample_w: Vec<f64>,
    total_w: f64,
    n: usize,
    d: usize,
    k: usize,
    c: f64,
    /// Buffers reused by every evaluation (a fit makes a hundred or more): the logits, then the residuals
    /// packed as the gradient product's right operand.
    scratch: std::sync::Mutex<Scratch>,
}

struct Scratch {
    z: Vec<f32>,
    g: Weights,
}

impl<'a> Problem<'a> {
    fn new(x: &'a [f32], d: usize, y: &'a [u32], k: usize, sample_w: Vec<f64>, c: f64) -> Self {
        let n = y.len();
        let mut xt = vec![0f32; n * d];
        for (i, row) in x.chunks_exact(d).enumerate() {
            for (col, &v) in row.iter().enumerate() {
                xt[col * n + i] = v;
            }
        }
        let total_w = sample_w.iter().sum();
        let scratch = Scratch { z: vec![0f32; n * k], g: Weights::F32(PackedF32::zeroed(n, k)) };
        Self { x, xt, isa: Isa::detect(), y, sample_w, total_w, n, d, k, c, scratch: std::sync::Mutex::new(scratch) }
    }

    /// Objective and gradient at `theta` = [W (k×d) row-major, b (k)].
    fn eval(&self, theta: &[f64]) -> Result<(f64, Vec<f64>), MlError> {
        let (n, d, k) = (self.n, self.d, self.k);
        let w: Vec<f32> = theta[..k * d].iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = theta[k * d..].iter().map(|&v| v as f32).collect();
        let mut scratch = self.scratch.lock().map_err(|_| MlError::Train("a previous evaluation panicked".into()))?;
        let Scratch { z, g } = &mut *scratch;
        // 1. Logits: X·Wᵀ + b (n×k).
        let wt = Weights::F32(PackedF32::from_out_in(&w, k, d));
        let p = Product { a: self.x, m: n, b: &wt, bias: &b, residual: None, act: Activation::Identity, split: true };
        matmul(self.isa, &p, z);
        // 2. Loss, and each row's residual sᵢ(pᵢ − yᵢ)/S written straight into G's panels (the gradient product's
        //    packed operand) while still in cache; rows in parallel chunks, each owning its rows of every panel.
        const ROWS: usize = 256;
        let Weights::F32(gp) = g else { return Err(MlError::Train("residual buffer is not f32".into())) };
        let mut parts: Vec<Vec<&mut [f32]>> = (0..n.div_ceil(ROWS)).map(|_| Vec::new()).collect();
        for panel in gp.panels_mut() {
            for (c, rows) in panel.chunks_mut(ROWS * kernels::NR).enumerate() {
                parts[c].push(rows);
            }
        }
        let isa = self.isa;
        let (loss, grad_b) = z
            .par_chunks_mut(ROWS * k)
            .zip(parts.into_par_iter())
            .enumerate()
            .map(|(c, (chunk, mut panels))| {
                let mut grad_b = vec![0f64; k];
                let rows = c * ROWS..c * ROWS + chunk.len() / k;
                let w = Labels { y: &self.y[rows.clone()], sample_w: &self.sample_w[rows], total_w: self.total_w };
                let loss = residuals(isa, chunk, k, &w, &mut grad_b);
                for (i, row) in chunk.chunks_exact(k).enumerate() {
                    for (panel, cols) in panels.iter_mut().zip(row.chunks(kernels::NR)) {
                        let dst = &mut panel[i * kernels::NR..][..cols.len()];
                        // A whole panel's width as a fixed-size copy (vector moves, not a memmove call per row).
                        match (<&mut [f32; kernels::NR]>::try_from(&mut *dst), <&[f32; kernels::NR]>::try_from(cols)) {
                            (Ok(d), Ok(c)) => *d = *c,
                            _ => dst.copy_from_slice(cols),
                        }
                    }
                }
                (loss, grad_b)
            })
            .reduce(
                || (0.0, vec![0f64; k]),
                |(la, mut ga), (lb, gb)| {
                    ga.iter_mut().zip(&gb).for_each(|(a, b)| *a += b);
                    (la + lb, ga)
                },
            );
        // 3. Weight gradient: (Xᵀ·G)ᵀ, Xᵀ (d×n) times the residuals G (n×k).
        let mut gwt = vec![0f32; d * k];
        let zeros = vec![0f32; k];
        let p =
            Product { a: &self.xt, m: d, b: g, bias: &zeros, residual: None, act: Activation::Identity, split: true };
        matmul(self.isa, &p, &mut gwt);
        drop(scratch);
        let reg = 1.0 / (self.c * self.total_w);
        let mut grad = vec![0f64; k * d + k];
        let mut wnorm = 0f64;
        for j in 0..k {
            for c in 0..d {
                let t = theta[j * d + c];
                grad[j * d + c] = gwt[c * k + j] as f64 + reg * t;
                wnorm += t * t;
            }
        }
        grad[k * d..].copy_from_slice(&grad_b);
        Ok((loss + 0.5 * reg * wnorm, grad))
    }
}

/// A chunk of rows' labels and weights.
struct Labels<'a> {
    y: &'a [u32],
    sample_w: &'a [f64],
    total_w: f64,
}

kernels::isa_versions! {
    /// The weighted cross-entropy of `k`-wide rows of logits, each row replaced by its residual; adds the
    /// residuals into `grad_b`. An exp per sample and class, in f64 for the loss (the line search compares values
    /// that differ in their last digits) and f32 for the probabilities.
    fn residuals(chunk: &mut [f32], k: usize, w: &Labels, grad_b: &mut [f64]) -> f64 => residuals_in
}

#[inline(always)]
fn residuals_in(chunk: &mut [f32], k: usize, w: &Labels, grad_b: &mut [f64]) -> f64 {
    let mut loss = 0f64;
    let mut e = vec![0f64; k];
    for ((row, &yi), &sw) in chunk.chunks_exact_mut(k).zip(w.y).zip(w.sample_w) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        // The exps first (a loop the compiler vectorises), then their sum in eight partial sums.
        for (e, &v) in e.iter_mut().zip(row.iter()) {
            *e = kernels::exp_f64((v - max) as f64);
        }
        let sum = sum_f64(&e);
        let lse = max as f64 + sum.ln();
        let yi = yi as usize;
        let s = sw / w.total_w;
        loss += s * (lse - row[yi] as f64);
        // The probabilities from the same exps: eⱼ / Σe.
        let scale = s / sum;
        for ((j, v), &e) in row.iter_mut().enumerate().zip(&e) {
            let g = e * scale - if j == yi { s } else { 0.0 };
            grad_b[j] += g;
            *v = g as f32;
        }
    }
    loss
}

/// Σ xᵢ in f64 with eight partial sums (vectorised; a plain fold is one serial chain).
#[inline(always)]
fn sum_f64(x: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f64>() + rest.iter().sum::<f64>()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits the model. `x` is n×d row-major, `y` holds label indices `< k`. `init` warm-starts the optimiser.
pub fn fit(
    x: &[f32],
    d: usize,
    y: &[u32],
    k: usize,
    opts: &FitOptions,
    init: Option<&LinearWeights>,
) -> Result<(LinearWeights, FitInfo), MlError> {
    let n = y.len();
    if n == 0 || x.len() != n * d {
        return Err(MlError::Train(format!("expected {n}×{d} features, got {}", x.len())));
    }
    if !(opts.c > 0.0 && opts.c.is_finite()) {
        return Err(MlError::Train(format!("C must be a positive number, not {}", opts.c)));
    }
    let mut counts = vec![0usize; k];
    for &l in y {
        counts[l as usize] += 1;
    }
    let sample_w: Vec<f64> = y
        .iter()
        .map(|&l| if opts.balanced { n as f64 / (k as f64 * counts[l as usize] as f64) } else { 1.0 })
        .collect();
    let p = Problem::new(x, d, y, k, sample_w, opts.c);
    let mut theta: Vec<f64> = match init {
        Some(w) if w.weights.len() == k * d && w.bias.len() == k => {
            w.weights.iter().chain(&w.bias).map(|&v| v as f64).collect()
        }
        _ => vec![0.0; k * d + k],
    };
    let info = lbfgs(&p, &mut theta, opts)?;
    let weights = theta[..k * d].iter().map(|&v| v as f32).collect();
    let bias = theta[k * d..].iter().map(|&v| v as f32).collect();
    Ok((LinearWeights { weights, bias }, info))
}

/// L-BFGS (two-loop recursion, 10 pairs) with a backtracking Armijo line search: the problem is smooth and
/// strictly convex, so this simple search is enough.
fn lbfgs(p: &Problem, theta: &mut [f64], opts: &FitOptions) -> Result<FitInfo, MlError> {
    const MEMORY: usize = 10;
    let (mut f, mut g) = p.eval(theta)?;
    let mut hist: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(MEMORY);
    let mut iterations = 0;
    let mut converged = false;
    let mut stalled = 0;
    while iterations < opts.max_iter {
        let gmax = g.iter().fold(0f64, |m, v| m.max(v.abs()));
        if gmax < opts.tol {
            converged = true;
            break;
        }
        iterations += 1;
        // Two-loop recursion: dir = -H·g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, yv, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push(a);
        }
        let gamma = hist
            .back()
            .map(|(s, yv, _)| dot(s, yv) / dot(yv, yv))
            .unwrap_or_else(|| 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0));
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, yv, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(yv, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += si * (a - b));
        }
        let mut dir: Vec<f64> = q.into_iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            hist.clear();
            dir = g.iter().map(|v| -v).collect();
            slope = dot(&g, &dir);
        }
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let cand: Vec<f64> = theta.iter().zip(&dir).map(|(t, dv)| t + step * dv).collect();
            let (fc, gc) = p.eval(&cand)?;
            if fc <= f + 1e-4 * step * slope {
                accepted = Some((cand, fc, gc));
                break;
            }
            step *= 0.5;
        }
        let Some((cand, fc, gc)) = accepted else { break };
        let s: Vec<f64> = cand.iter().zip(theta.iter()).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = gc.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &yv);
        if sy > 1e-12 {
            if hist.len() == MEMORY {
                hist.pop_front();
            }
            hist.push_back((s, yv, 1.0 / sy));
        }
        stalled = if (f - fc).abs() <= 1e-12 * f.abs().max(1.0) { stalled + 1 } else { 0 };
        theta.copy_from_slice(&cand);
        f = fc;
        g = gc;
        if stalled >= 3 {
            converged = true;
            break;
        }
    }
    Ok(FitInfo { iterations, converged, loss: f })
}

/// Σ aᵢbᵢ with eight partial sums, so it vectorises (a plain fold is one serial chain of adds).
#[inline(always)]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
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

/// Softmax probabilities of a linear model for one input; compiled for AVX2+FMA where the CPU has it (this is
/// most of a prediction's cost once the embedding is cached).
#[cfg_attr(target_arch = "x86_64", expect(unsafe_code, reason = "calls the AVX2 build after checking the CPU"))]
pub fn predict_proba(w: &LinearWeights, x: &[f32], out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn avx2(w: &LinearWeights, x: &[f32], out: &mut Vec<f32>) {
        predict_proba_in(w, x, out)
    }
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2Fma, Avx512 and Amx are only chosen when the CPU has AVX2 and FMA (Isa::detect).
        Isa::Avx2Fma | Isa::Avx512 | Isa::Amx => unsafe { avx2(w, x, out) },
        _ => predict_proba_in(w, x, out),
    }
}

#[inline(always)]
fn predict_proba_in(w: &LinearWeights, x: &[f32], out: &mut Vec<f32>) {
    let d = x.len();
    out.clear();
    let mut max = f32::MIN;
    for (row, b) in w.weights.chunks_exact(d).zip(&w.bias) {
        let z = dot_f32(row, x) + b;
        max = max.max(z);
        out.push(z);
    }
    let mut sum = 0f32;
    for z in out.iter_mut() {
        *z = kernels::exp(*z - max);
        sum += *z;
    }
    out.iter_mut().for_each(|z| *z /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated Gaussian blobs in 4-d: the fit must separate them and match the closed-form gradient.
    #[test]
    fn separates_blobs_and_converges() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let centers = [[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..300 {
            let c = i % 3;
            for &m in &centers[c] {
                x.push(m + rng.random_range(-1.0f32..1.0));
            }
            y.push(c as u32);
        }
        let opts = FitOptions { c: 1.0, balanced: false, max_iter: 200, tol: 1e-6 };
        let (w, info) = fit(&x, 4, &y, 3, &opts, None).unwrap();
        assert!(info.converged, "{info:?}");
        let mut p = Vec::new();
        let correct = x
            .chunks(4)
            .zip(&y)
            .filter(|(xi, &yi)| {
                predict_proba(&w, xi, &mut p);
                let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
                best == yi as usize
            })
            .count();
        assert!(correct >= 295, "{correct}/300");
        let s: f32 = p.iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let x = vec![0.5f32, -1.0, 1.5, 0.2, -0.3, 0.8, 1.0, 1.0];
        let y = vec![0u32, 1, 2, 1];
        let p = Problem::new(&x, 2, &y, 3, vec![1.0, 2.0, 1.0, 0.5], 0.7);
        let theta: Vec<f64> = (0..9).map(|i| (i as f64 * 0.37).sin()).collect();
        let (_, g) = p.eval(&theta).unwrap();
        for i in 0..theta.len() {
            let h = 1e-3;
            let mut a = theta.clone();
            a[i] += h;
            let mut b = theta.clone();
            b[i] -= h;
            let num = (p.eval(&a).unwrap().0 - p.eval(&b).unwrap().0) / (2.0 * h);
            assert!((num - g[i]).abs() < 1e-4, "component {i}: numeric {num} vs analytic {}", g[i]);
        }
    }
}
