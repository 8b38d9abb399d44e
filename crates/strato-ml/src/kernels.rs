//! The encoder's matrix product: weights packed once at load into column panels, activations read in place, the
//! bias, residual and activation function applied in the same pass that writes each output tile.
//!
//! Why not a general GEMM library: the weights never change, so packing them per call (what a general GEMM must
//! do) is pure overhead; a single query is only ~12 rows, where that overhead dominates; and the epilogue saves
//! two or three passes over each output. The AVX2+FMA kernel is chosen at run time; elsewhere a portable kernel
//! with the same blocking runs (the compiler vectorises it for the build's baseline).
//!
//! Blocking: a tile is `MR` rows × `NR` columns of the output, held in registers while `KC` steps of the inner
//! dimension stream through it; one `KC × NR` weight block (16 KiB) stays in L1 while every row tile passes over
//! it, and the activations' `M × KC` block stays in L2.

#![expect(unsafe_code, reason = "SIMD intrinsics and raw-pointer tiles; each unsafe block states its bounds")]

/// Output columns per panel: two 8-lane vectors.
pub(crate) const NR: usize = 16;
/// Output rows per tile: 6 rows × 2 vectors = 12 accumulators, leaving registers for the operands.
const MR: usize = 6;
/// Inner-dimension steps per block.
const KC: usize = 256;
/// Multiply-adds below which a product runs on the calling thread: splitting smaller ones costs more in
/// hand-offs than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// The instruction set the kernels use, chosen once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// x86-64 with AVX2 and FMA.
    Avx2Fma,
    /// Whatever the build targets.
    Portable,
}

impl Isa {
    /// The best this CPU supports.
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Self::Avx2Fma;
        }
        Self::Portable
    }
}

/// What happens to each output value after the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Nothing.
    Identity,
    /// GELU, exact (erf) form: transformers' `gelu`.
    GeluErf,
    /// GELU's tanh approximation: `gelu_new`, `gelu_pytorch_tanh`.
    GeluTanh,
    /// max(0, x).
    Relu,
}

/// A `[k, n]` weight matrix (the transpose of PyTorch's `[out, in]`) in `NR`-column panels, each `k × NR`
/// row-major, the last one zero-padded; 64-byte aligned so no vector load splits a cache line.
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    buf: Vec<f32>,
    offset: usize,
}

impl PackedB {
    /// Packs PyTorch's `[out, in]` weight (`y = x Wᵀ`).
    pub(crate) fn from_out_in(w: &[f32], out: usize, inp: usize) -> Self {
        assert_eq!(w.len(), out * inp, "weight is not [out, in]");
        let panels = out.div_ceil(NR);
        let len = panels * inp * NR;
        let mut buf = vec![0f32; len + 16];
        let offset = buf.as_ptr().align_offset(64).min(16);
        let data = &mut buf[offset..offset + len];
        for (o, row) in w.chunks_exact(inp).enumerate() {
            let panel = &mut data[(o / NR) * inp * NR..][..inp * NR];
            for (i, &v) in row.iter().enumerate() {
                panel[i * NR + o % NR] = v;
            }
        }
        Self { k: inp, n: out, buf, offset }
    }

    fn panels(&self) -> usize {
        self.n.div_ceil(NR)
    }

    fn data(&self) -> &[f32] {
        &self.buf[self.offset..self.offset + self.panels() * self.k * NR]
    }
}

/// The product's operands: `c[m, n] = act(a[m, k] · b + bias (+ residual))`, all row-major.
pub(crate) struct Product<'a> {
    pub a: &'a [f32],
    pub m: usize,
    pub b: &'a PackedB,
    pub bias: &'a [f32],
    /// Added after the bias, before the activation (shape of `c`).
    pub residual: Option<&'a [f32]>,
    pub act: Activation,
}

/// Runs the product into `c`, on two or more threads when it is big enough (rayon's pool).
pub(crate) fn matmul(isa: Isa, p: &Product, c: &mut [f32]) {
    let (m, k, n) = (p.m, p.b.k, p.b.n);
    assert!(p.a.len() >= m * k, "a is shorter than m × k");
    assert!(c.len() >= m * n, "c is shorter than m × n");
    assert_eq!(p.bias.len(), n, "bias is not n long");
    if let Some(r) = p.residual {
        assert!(r.len() >= m * n, "residual is shorter than m × n");
    }
    let panels = p.b.panels();
    let threads = if m * n * k >= PARALLEL_MIN_WORK { rayon::current_num_threads().min(panels) } else { 1 };
    let c = SharedOut(c.as_mut_ptr());
    if threads <= 1 {
        // SAFETY: c holds m × n values (asserted) and this call is the only writer.
        unsafe { run_panels(isa, p, c, 0..panels) };
        return;
    }
    // Threads take disjoint runs of panels: disjoint column ranges of c.
    rayon::scope(|s| {
        let per = panels.div_ceil(threads);
        for t in 1..threads {
            let range = (t * per).min(panels)..((t + 1) * per).min(panels);
            let c = &c;
            // SAFETY: as above; no two tasks share a column of c.
            s.spawn(move |_| unsafe { run_panels(isa, p, *c, range) });
        }
        // SAFETY: as above; this thread's columns are the first run.
        unsafe { run_panels(isa, p, c, 0..per.min(panels)) };
    });
}

/// The output, shared by the threads that write disjoint columns of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each thread writes only its own columns (see `matmul`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// Everything one tile needs.
struct Tile {
    rows: usize,
    kc: usize,
    /// The tile's packed activations: `kc` steps of `rows` values.
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    /// Valid columns of this panel (`NR` except in a zero-padded last panel).
    cols: usize,
    /// The bias at this panel's columns on the first block, else null (accumulate onto `c`).
    bias: *const f32,
    /// On the last block: the residual at this tile, or null.
    residual: *const f32,
    /// On the last block: the activation.
    act: Option<Activation>,
}

/// # Safety
/// `c` must hold `p.m × p.b.n` values, with no other writer of the columns of `panels`.
unsafe fn run_panels(isa: Isa, p: &Product, c: SharedOut, panels: std::ops::Range<usize>) {
    let (m, k, n) = (p.m, p.b.k, p.b.n);
    let data = p.b.data();
    PACKED_A.with_borrow_mut(|packed| {
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            let (first, last) = (k0 == 0, k0 + kc == k);
            pack_a(p.a, m, k, k0, kc, packed);
            for j in panels.clone() {
                let col = j * NR;
                let b = data[j * k * NR + k0 * NR..].as_ptr();
                let mut i0 = 0;
                while i0 < m {
                    let rows = MR.min(m - i0);
                    let t = Tile {
                        rows,
                        kc,
                        a: packed[i0 * kc..].as_ptr(),
                        b,
                        // SAFETY: row i0 < m, column col < n: inside c.
                        c: unsafe { c.0.add(i0 * n + col) },
                        ldc: n,
                        cols: NR.min(n - col),
                        bias: if first { p.bias[col..].as_ptr() } else { std::ptr::null() },
                        residual: match (last, p.residual) {
                            (true, Some(r)) => r[i0 * n + col..].as_ptr(),
                            _ => std::ptr::null(),
                        },
                        act: last.then_some(p.act),
                    };
                    // SAFETY: the tile's rows, kc steps and cols lie inside a, b and c (built from their bounds).
                    unsafe { tile(isa, &t) };
                    i0 += rows;
                }
            }
            k0 += kc;
        }
    });
}

thread_local! {
    /// Each thread's copy of the activations' current block, in the order the tiles read them.
    static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copies columns `k0..k0 + kc` of `a` (`[m, k]`) into tiles of `MR` rows, each `[kc, MR]`: a tile's operands
/// for one step are then adjacent (one stream for the prefetcher instead of `MR`). A last, shorter tile keeps
/// its own row count as its stride.
fn pack_a(a: &[f32], m: usize, k: usize, k0: usize, kc: usize, out: &mut Vec<f32>) {
    // Every value is overwritten below: only growth needs filling.
    out.resize(m * kc, 0.0);
    let mut i0 = 0;
    while i0 < m {
        let rows = MR.min(m - i0);
        let dst = &mut out[i0 * kc..(i0 + rows) * kc];
        for r in 0..rows {
            let src = &a[(i0 + r) * k + k0..][..kc];
            for (p, &v) in src.iter().enumerate() {
                dst[p * rows + r] = v;
            }
        }
        i0 += rows;
    }
}

/// # Safety
/// The tile's pointers must cover `rows × kc` of `a`, `kc × NR` of `b`, `rows × cols` of `c`
/// and the residual (row stride `ldc`), and `cols` of the bias.
unsafe fn tile(isa: Isa, t: &Tile) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2Fma is only chosen when the CPU has both (Isa::detect); bounds as the caller promised.
        Isa::Avx2Fma => unsafe {
            match t.rows {
                6 => avx2::tile::<6>(t),
                5 => avx2::tile::<5>(t),
                4 => avx2::tile::<4>(t),
                3 => avx2::tile::<3>(t),
                2 => avx2::tile::<2>(t),
                _ => avx2::tile::<1>(t),
            }
        },
        // SAFETY: bounds as the caller promised.
        _ => unsafe {
            match t.rows {
                6 => portable_tile::<6>(t),
                5 => portable_tile::<5>(t),
                4 => portable_tile::<4>(t),
                3 => portable_tile::<3>(t),
                2 => portable_tile::<2>(t),
                _ => portable_tile::<1>(t),
            }
        },
    }
}

/// Finishes one output row of a tile: bias or the partial sum already in `c`, the residual, the activation.
///
/// # Safety
/// `c` (and `residual`, `bias` when not null) must hold `cols` values.
#[inline(always)]
unsafe fn finish_row(acc: &mut [f32; NR], t: &Tile, r: usize) {
    let cols = t.cols;
    // SAFETY: row r < rows and cols values of each, as the caller promised.
    unsafe {
        let c = t.c.add(r * t.ldc);
        if t.bias.is_null() {
            for (x, i) in acc.iter_mut().zip(0..cols) {
                *x += *c.add(i);
            }
        } else {
            for (x, i) in acc.iter_mut().zip(0..cols) {
                *x += *t.bias.add(i);
            }
        }
        if !t.residual.is_null() {
            let res = t.residual.add(r * t.ldc);
            for (x, i) in acc.iter_mut().zip(0..cols) {
                *x += *res.add(i);
            }
        }
        if let Some(act) = t.act {
            apply(act, acc);
        }
        std::ptr::copy_nonoverlapping(acc.as_ptr(), c, cols);
    }
}

#[inline(always)]
fn apply(act: Activation, v: &mut [f32]) {
    match act {
        Activation::Identity => {}
        Activation::GeluErf => v.iter_mut().for_each(|x| *x = gelu_erf(*x)),
        Activation::GeluTanh => v.iter_mut().for_each(|x| *x = gelu_tanh(*x)),
        Activation::Relu => v.iter_mut().for_each(|x| *x = x.max(0.0)),
    }
}

/// # Safety
/// As [`tile`].
unsafe fn portable_tile<const R: usize>(t: &Tile) {
    let mut acc = [[0f32; NR]; R];
    for p in 0..t.kc {
        // SAFETY: p < kc, r < rows = R: inside a and b.
        let b: &[f32; NR] = unsafe { &*(t.b.add(p * NR) as *const [f32; NR]) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let a = unsafe { *t.a.add(p * R + r) };
            for (x, &w) in acc.iter_mut().zip(b) {
                *x += a * w;
            }
        }
    }
    for (r, acc) in acc.iter_mut().enumerate() {
        // SAFETY: as the caller promised.
        unsafe { finish_row(acc, t, r) };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{finish_row, Tile, NR};

    /// # Safety
    /// The CPU must have AVX2 and FMA; bounds as [`super::tile`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const R: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let (a, b) = (t.a, t.b);
        for p in 0..t.kc {
            // SAFETY: p < kc, r < R = rows: inside a and b (the caller's promise).
            unsafe {
                let b0 = _mm256_load_ps(b.add(p * NR));
                let b1 = _mm256_load_ps(b.add(p * NR + 8));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(p * R + r));
                    acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let mut row = [0f32; NR];
            // SAFETY: row holds 16 values; finish_row's bounds are the caller's promise.
            unsafe {
                _mm256_storeu_ps(row.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), acc[1]);
                finish_row(&mut row, t, r);
            }
        }
    }
}

/// `eˣ` to about 2 ulp for the range softmax and GELU use, in plain arithmetic the compiler vectorises: no libm
/// calls (`expf`, `roundf`, and `fmaf` without the FMA target feature are calls per element).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
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
pub(crate) fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's tanh approximation (`gelu_new`).
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
    // tanh(u) = 1 − 2 / (e²ᵘ + 1)
    let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + t)
}

/// Σ xᵢ with eight partial sums, so the compiler keeps a vector accumulator (a plain fold is one serial chain).
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], m: usize, w: &[f32], n: usize, k: usize, bias: &[f32], res: Option<&[f32]>) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for r in 0..m {
            for o in 0..n {
                let mut s = bias[o] as f64;
                for i in 0..k {
                    s += a[r * k + i] as f64 * w[o * k + i] as f64;
                }
                if let Some(res) = res {
                    s += res[r * n + o] as f64;
                }
                c[r * n + o] = s as f32;
            }
        }
        c
    }

    fn check(isa: Isa, m: usize, n: usize, k: usize, residual: bool, act: Activation) {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 997) as f32 / 498.0 - 1.0).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 - 0.5).collect();
        let res: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32 - 6.0).collect();
        let b = PackedB::from_out_in(&w, n, k);
        let mut want = reference(&a, m, &w, n, k, &bias, residual.then_some(&res[..]));
        apply(act, &mut want);
        let mut c = vec![f32::NAN; m * n];
        let p = Product { a: &a, m, b: &b, bias: &bias, residual: residual.then_some(&res[..]), act };
        matmul(isa, &p, &mut c);
        for (i, (got, want)) in c.iter().zip(&want).enumerate() {
            let tol = 1e-4 * (k as f32).sqrt() * (1.0 + want.abs());
            assert!((got - want).abs() <= tol, "{isa:?} m={m} n={n} k={k} at {i}: {got} vs {want}");
        }
    }

    #[test]
    fn every_shape_matches_a_plain_product() {
        let isas = [Isa::Portable, Isa::detect()];
        for isa in isas {
            // Row tails (1..6), partial panels (n not a multiple of 16), several k blocks, the parallel path.
            for (m, n, k) in [(1, 16, 3), (5, 17, 40), (7, 33, 300), (13, 48, 520), (12, 384, 384), (64, 1536, 384)] {
                check(isa, m, n, k, false, Activation::Identity);
                check(isa, m, n, k, true, Activation::Identity);
                check(isa, m, n, k, false, Activation::GeluErf);
            }
            check(isa, 9, 40, 70, true, Activation::Relu);
            check(isa, 9, 40, 70, false, Activation::GeluTanh);
        }
    }

    #[test]
    fn packing_pads_the_last_panel_with_zeros() {
        let w: Vec<f32> = (0..20 * 3).map(|i| i as f32 + 1.0).collect();
        let b = PackedB::from_out_in(&w, 20, 3);
        assert_eq!(b.data().len(), 2 * 3 * NR);
        assert_eq!(b.data().as_ptr() as usize % 64, 0);
        // Output 17 (panel 1, column 1), input 2.
        assert_eq!(b.data()[3 * NR + 2 * NR + 1], w[17 * 3 + 2]);
        assert!(b.data()[3 * NR + 4..3 * NR + NR].iter().all(|&v| v == 0.0));
    }

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
}
