//! The encoder's matrix product: weights packed once at load into column panels, the bias, residual and
//! activation function applied in the same pass that writes each output tile; in f32, or with int8 weights.
//!
//! Why not a general GEMM library: the weights never change, so packing them per call (what a general GEMM must
//! do) is pure overhead; a single query is only ~12 rows, where that overhead dominates; and the epilogue saves
//! two or three passes over each output. The AVX2+FMA kernels are chosen at run time; elsewhere portable ones
//! with the same blocking run (the compiler vectorises them for the build's baseline).
//!
//! f32: a tile is `MR` rows × `NR` columns of the output (× up to four panels with AVX-512), held in registers while `KC` steps of the inner
//! dimension stream through it; one `KC × NR` weight block (16 KiB) stays in L1 while every row tile passes over
//! it, and the activations' `M × KC` block, read in place row by row, stays in L2.
//!
//! Int8: each weight column is quantised in blocks of `QBLOCK` inner steps, one scale per block (as llama.cpp's
//! Q8_0), and each activation row to 16 bits with one scale; `vpmaddwd` multiplies pairs of steps into 32-bit
//! sums, which are scaled into f32 once per block (so they cannot overflow: 32 × 32767 × 127 < 2³¹). A weight
//! panel then fits L1 whole, the weights take a quarter of the memory traffic, and each instruction does twice
//! the multiply-adds.
//!
//! Bf16: weights and activations rounded to bfloat16 (to nearest even), multiplied in pairs into f32 sums by
//! AVX512-BF16's `vdpbf16ps`: the int8 mode's multiply-adds per instruction with no per-block scaling (the
//! sums are f32 already) and no widening of the weights, so a tile's accumulators all stay in registers.
//! Where the CPU lacks AVX512-BF16 the same products run through portable tiles. Where it has Intel AMX, its tile
//! registers run them instead (`tdpbf16ps`, 16 × 32 by 32 × 16 per instruction: on the Xeon measured, 7.3
//! TFLOP/s on two cores against 0.23 for `vdpbf16ps` and 0.48 for f32 FMA), on the same packed weights.

#![expect(unsafe_code, reason = "SIMD intrinsics and raw-pointer tiles; each unsafe block states its bounds")]

use std::ops::Range;

/// Output columns per panel: two 8-lane vectors.
pub(crate) const NR: usize = 16;
/// Output rows per tile: 6 rows × 2 vectors = 12 accumulators, leaving registers for the operands.
const MR: usize = 6;
/// Inner-dimension steps per f32 block.
const KC: usize = 256;
/// Rows per block of a tall product (a multiple of `MR`): 240 × `KC` f32 is 240 KiB, a quarter of L2.
const MC: usize = 240;
/// Activations up to this size are not split into blocks.
const SMALL_A_BYTES: usize = 96 << 10;
/// Inner-dimension steps that share one scale in an int8 weight column (coarser blocks, measured: 128 and 256 left
/// the worst CLINC150 test embedding at cosine 0.9983 and 0.9979 to f32, under the 0.999 the tests hold).
pub(crate) const QBLOCK: usize = 32;
/// Multiply-adds below which a product runs on the calling thread: splitting smaller ones costs more in
/// hand-offs than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// The instruction set the kernels use, chosen once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// [`Isa::Avx512`] with Intel AMX's BF16 tiles, which run the bf16 products.
    Amx,
    /// x86-64 with AVX-512 (F, BW, VL), AVX512-VNNI, AVX2 and FMA: 16-lane f32 tiles of up to four panels,
    /// `vpdpwssd` for int8.
    Avx512,
    /// x86-64 with AVX2 and FMA.
    Avx2Fma,
    /// Whatever the build targets.
    Portable,
}

impl Isa {
    /// The best this CPU supports, capped by `STRATO_CPU_FEATURES` (`avx512`, `avx2` or `portable`) when set,
    /// so each level can be measured on one machine. Read once.
    pub(crate) fn detect() -> Self {
        static DETECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            let cap = match std::env::var("STRATO_CPU_FEATURES").as_deref() {
                Ok("portable") => Self::Portable,
                Ok("avx2") => Self::Avx2Fma,
                Ok("avx512") => Self::Avx512,
                _ => Self::Amx,
            };
            Self::supported().into_iter().find(|isa| isa.rank() <= cap.rank()).unwrap_or(Self::Portable)
        })
    }

    /// Every level this CPU runs, best first (the tests check each).
    pub(crate) fn supported() -> Vec<Self> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            if avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
            {
                if amx::available() {
                    out.push(Self::Amx);
                }
                out.push(Self::Avx512);
            }
            if avx2 {
                out.push(Self::Avx2Fma);
            }
        }
        out.push(Self::Portable);
        out
    }

    fn rank(self) -> u8 {
        match self {
            Self::Amx => 3,
            Self::Avx512 => 2,
            Self::Avx2Fma => 1,
            Self::Portable => 0,
        }
    }

    /// Panels one f32 tile covers.
    fn f32_panels(self) -> usize {
        match self {
            Self::Amx | Self::Avx512 => 4,
            _ => 1,
        }
    }

    /// Panels one int8 tile covers for `m` rows: four when many row tiles reuse each weight block (its f32 sums
    /// then live on the stack, touched once per block), two for a few rows, whose weights stream from memory
    /// (measured: batch-32 +6 %, a single text 35 % slower with four).
    fn i8_panels(self, m: usize) -> usize {
        match self {
            Self::Amx | Self::Avx512 if m > 2 * MR => 4,
            Self::Amx | Self::Avx512 => 2,
            _ => 1,
        }
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
pub(crate) struct PackedF32 {
    k: usize,
    n: usize,
    buf: Vec<f32>,
    offset: usize,
}

impl PackedF32 {
    /// Packs PyTorch's `[out, in]` weight (`y = x Wᵀ`).
    pub(crate) fn from_out_in(w: &[f32], out: usize, inp: usize) -> Self {
        assert_eq!(w.len(), out * inp, "weight is not [out, in]");
        let mut packed = Self::zeroed(inp, out);
        let mut panels: Vec<&mut [f32]> = packed.panels_mut().collect();
        for (o, row) in w.chunks_exact(inp).enumerate() {
            let panel = &mut panels[o / NR];
            for (i, &v) in row.iter().enumerate() {
                panel[i * NR + o % NR] = v;
            }
        }
        packed
    }

    /// A zeroed `[in, out]` matrix, to be filled in place through [`Self::panels_mut`].
    pub(crate) fn zeroed(inp: usize, out: usize) -> Self {
        let len = out.div_ceil(NR) * inp * NR;
        let buf = vec![0f32; len + 16];
        let offset = buf.as_ptr().align_offset(64).min(16);
        Self { k: inp, n: out, buf, offset }
    }

    /// Each panel's `k × NR` values (row `i`'s columns `j·NR..` at `i·NR`); a last panel's padding columns must
    /// stay zero.
    pub(crate) fn panels_mut(&mut self) -> std::slice::ChunksExactMut<'_, f32> {
        let len = self.n.div_ceil(NR) * self.k * NR;
        self.buf[self.offset..self.offset + len].chunks_exact_mut(self.k * NR)
    }

    fn data(&self) -> &[f32] {
        &self.buf[self.offset..self.offset + self.n.div_ceil(NR) * self.k * NR]
    }

    /// Inner dimension (input width).
    pub(crate) fn k(&self) -> usize {
        self.k
    }
}

/// A `[k, n]` weight matrix in int8: `NR`-column panels of `⌈k/2⌉` step pairs, each pair 32 bytes (columns
/// 0-7 then 8-15, a column's two steps adjacent, as `vpmaddwd` pairs them), and per panel `⌈k/QBLOCK⌉` blocks
/// of `NR` scales.
pub(crate) struct PackedI8 {
    k: usize,
    n: usize,
    pairs: usize,
    blocks: usize,
    data: Vec<i8>,
    scales: Vec<f32>,
}

impl PackedI8 {
    /// Quantises PyTorch's `[out, in]` weight: per column and block of `QBLOCK` steps, absmax to ±127.
    pub(crate) fn from_out_in(w: &[f32], out: usize, inp: usize) -> Self {
        assert_eq!(w.len(), out * inp, "weight is not [out, in]");
        let (panels, pairs, blocks) = (out.div_ceil(NR), inp.div_ceil(2), inp.div_ceil(QBLOCK));
        let mut data = vec![0i8; panels * pairs * 32];
        let mut scales = vec![0f32; panels * blocks * NR];
        for (o, row) in w.chunks_exact(inp).enumerate() {
            let (j, c) = (o / NR, o % NR);
            for (b, block) in row.chunks(QBLOCK).enumerate() {
                let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = max / 127.0;
                scales[(j * blocks + b) * NR + c] = scale;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                for (i, &v) in block.iter().enumerate() {
                    let kk = b * QBLOCK + i;
                    data[(j * pairs + kk / 2) * 32 + (c / 8) * 16 + (c % 8) * 2 + kk % 2] =
                        (v * inv).round().clamp(-127.0, 127.0) as i8;
                }
            }
        }
        Self { k: inp, n: out, pairs, blocks, data, scales }
    }

    /// Inner dimension (input width).
    pub(crate) fn k(&self) -> usize {
        self.k
    }
}

/// f32 to bfloat16, rounded to nearest even (as PyTorch's `.to(torch.bfloat16)`); NaN is never an input here.
#[inline(always)]
fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    (b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// A `[k, n]` weight matrix in bfloat16: `NR`-column panels of `⌈k/2⌉` step pairs, each pair 64 bytes (column
/// `c`'s two steps at lane `c`, as `vdpbf16ps` pairs them), 64-byte aligned.
pub(crate) struct PackedBf16 {
    k: usize,
    n: usize,
    pairs: usize,
    buf: Vec<u16>,
    offset: usize,
}

impl PackedBf16 {
    /// Rounds PyTorch's `[out, in]` weight to bfloat16 and packs it.
    pub(crate) fn from_out_in(w: &[f32], out: usize, inp: usize) -> Self {
        assert_eq!(w.len(), out * inp, "weight is not [out, in]");
        let (panels, pairs) = (out.div_ceil(NR), inp.div_ceil(2));
        let len = panels * pairs * 2 * NR;
        let mut buf = vec![0u16; len + 32];
        let offset = (64 - buf.as_ptr() as usize % 64) % 64 / 2;
        let data = &mut buf[offset..offset + len];
        for (o, row) in w.chunks_exact(inp).enumerate() {
            let (j, c) = (o / NR, o % NR);
            for (kk, &v) in row.iter().enumerate() {
                data[(j * pairs + kk / 2) * 2 * NR + c * 2 + kk % 2] = bf16(v);
            }
        }
        Self { k: inp, n: out, pairs, buf, offset }
    }

    fn data(&self) -> &[u16] {
        &self.buf[self.offset..self.offset + self.n.div_ceil(NR) * self.pairs * 2 * NR]
    }

    /// Inner dimension (input width).
    pub(crate) fn k(&self) -> usize {
        self.k
    }
}

/// A layer's weights, in the precision the encoder runs.
pub(crate) enum Weights {
    F32(PackedF32),
    I8(PackedI8),
    Bf16(PackedBf16),
}

impl Weights {
    fn k(&self) -> usize {
        match self {
            Self::F32(b) => b.k,
            Self::I8(b) => b.k,
            Self::Bf16(b) => b.k,
        }
    }

    fn n(&self) -> usize {
        match self {
            Self::F32(b) => b.n,
            Self::I8(b) => b.n,
            Self::Bf16(b) => b.n,
        }
    }
}

/// The product's operands: `c[m, n] = act(a[m, k] · b + bias (+ residual))`, all row-major.
pub(crate) struct Product<'a> {
    pub a: &'a [f32],
    pub m: usize,
    pub b: &'a Weights,
    pub bias: &'a [f32],
    /// Added after the bias, before the activation (shape of `c`).
    pub residual: Option<&'a [f32]>,
    pub act: Activation,
    /// Whether the product may split across rayon's threads (when big enough).
    pub split: bool,
}

/// Runs the product into `c`, on two or more threads when allowed and big enough (rayon's pool).
pub(crate) fn matmul(isa: Isa, p: &Product, c: &mut [f32]) {
    let (m, k, n) = (p.m, p.b.k(), p.b.n());
    assert!(p.a.len() >= m * k, "a is shorter than m × k");
    assert!(c.len() >= m * n, "c is shorter than m × n");
    assert_eq!(p.bias.len(), n, "bias is not n long");
    if let Some(r) = p.residual {
        assert!(r.len() >= m * n, "residual is shorter than m × n");
    }
    let panels = n.div_ceil(NR);
    let pool = if p.split && m * n * k >= PARALLEL_MIN_WORK { rayon::current_num_threads() } else { 1 };
    // Many rows split between threads by rows: each thread then keeps whole groups of panels (a split by columns
    // of the logistic regression's 10 panels left each thread a group of four and a lone one). Few rows split
    // by columns, so that each thread streams only its share of the weights.
    let by_rows = m >= 8 * MR * pool;
    let threads = if by_rows { pool } else { pool.min(panels) };
    let c = SharedOut(c.as_mut_ptr());
    // The thread's buffer is taken for the product, not borrowed: while this thread waits on the others below,
    // rayon has it run queued work, which may be another product (a nested one then starts from an empty buffer).
    let mut qa = QUANTISED_A.take();
    match p.b {
        Weights::I8(_) => quantise_a(isa, p.a, m, k, &mut qa),
        Weights::Bf16(_) => round_a(isa, p.a, m, k, &mut qa),
        Weights::F32(_) => {}
    }
    let quantised = &qa;
    let run = |rows: Range<usize>, cols: Range<usize>| match p.b {
        // SAFETY: c holds m × n values (asserted); each call writes only its own rows' and panels' values,
        // and the threads' runs of rows or of panels are disjoint.
        Weights::F32(b) => unsafe { run_f32(isa, p, b, c, rows, cols) },
        // SAFETY: as above; qa was just made from p.a.
        Weights::I8(b) => unsafe { run_i8(isa, p, b, quantised, c, rows, cols) },
        // SAFETY: as above; qa was just made from p.a.
        Weights::Bf16(b) => unsafe { run_bf16(isa, p, b, quantised, c, rows, cols) },
    };
    if threads <= 1 {
        run(0..m, 0..panels);
    } else {
        let (len, per) =
            if by_rows { (m, m.div_ceil(threads).next_multiple_of(MR)) } else { (panels, panels.div_ceil(threads)) };
        let part = |t: usize| (t * per).min(len)..((t + 1) * per).min(len);
        let split = |t: usize| if by_rows { (part(t), 0..panels) } else { (0..m, part(t)) };
        if threads == 2 {
            // A spinning helper during a single sequence's pass (crate::pair); rayon's split otherwise.
            let ((r0, c0), (r1, c1)) = (split(0), split(1));
            if crate::pair::split_two(&|| run(r1.clone(), c1.clone()), || run(r0.clone(), c0.clone())) {
                QUANTISED_A.set(qa);
                return;
            }
        }
        rayon::scope(|s| {
            for t in 1..threads {
                let (rows, cols) = split(t);
                let run = &run;
                s.spawn(move |_| run(rows, cols));
            }
            let (rows, cols) = split(0);
            run(rows, cols);
        });
    }
    QUANTISED_A.set(qa);
}

/// The output, shared by the threads that write disjoint rows or columns of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: each thread writes only its own rows or columns (see `matmul`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

/// Where a tile's results go and what happens to them on the way.
struct Out {
    c: *mut f32,
    ldc: usize,
    /// Columns from here to the end of the row (fewer than `NR` in a zero-padded last panel).
    width: usize,
    /// The bias at this panel's columns on the first block, else null (accumulate onto `c`).
    bias: *const f32,
    /// On the last block: the residual at this tile, or null.
    residual: *const f32,
    /// On the last block: the activation.
    act: Option<Activation>,
}

impl Out {
    /// The output at row `i0`, column `col`: the first block adds the bias, the last the residual and the
    /// activation.
    ///
    /// # Safety
    /// `i0 < p.m`, `col < n`, and `c` holds `p.m × n` values.
    unsafe fn at(p: &Product, c: SharedOut, i0: usize, col: usize, first: bool, last: bool) -> Self {
        let n = p.b.n();
        Out {
            // SAFETY: as the caller promised.
            c: unsafe { c.0.add(i0 * n + col) },
            ldc: n,
            width: n - col,
            bias: if first { p.bias[col..].as_ptr() } else { std::ptr::null() },
            residual: match (last, p.residual) {
                (true, Some(r)) => r[i0 * n + col..].as_ptr(),
                _ => std::ptr::null(),
            },
            act: last.then_some(p.act),
        }
    }

    /// Valid columns of this panel.
    fn cols(&self) -> usize {
        NR.min(self.width)
    }

    /// The same for the `q`-th panel after this one's (a tile of several panels); only meaningful while
    /// `q * NR < width`, which the tiles' bounds guarantee.
    #[inline(always)]
    fn panel(&self, q: usize) -> Self {
        let off = q * NR;
        let shift = |p: *const f32| if p.is_null() { p } else { p.wrapping_add(off) };
        Out {
            c: self.c.wrapping_add(off),
            ldc: self.ldc,
            width: self.width - off,
            bias: shift(self.bias),
            residual: shift(self.residual),
            act: self.act,
        }
    }
}

/// One f32 tile.
struct Tile {
    rows: usize,
    kc: usize,
    /// The tile's first row of activations at this block; the next rows follow every `lda` (read in place: the
    /// hardware prefetcher follows six rows as well as one packed stream, and packing cost a tenth of the time).
    a: *const f32,
    lda: usize,
    /// The first panel's weights at this block: `kc` steps of `NR`; the tile's next panels follow at `b_stride`.
    b: *const f32,
    b_stride: usize,
    out: Out,
}

/// # Safety
/// `c` must hold `p.m × n` values, with no other writer of `rows` × the columns of `panels`; `rows` ⊆ `0..p.m`.
unsafe fn run_f32(isa: Isa, p: &Product, b: &PackedF32, c: SharedOut, rows: Range<usize>, panels: Range<usize>) {
    let (m, k) = (p.m, b.k);
    let data = b.data();
    // A few rows take the whole inner dimension at once: their activations fit L1 anyway, and each weight panel
    // is then read front to back, which the prefetcher streams best (the weights come from memory).
    let block = if m * k * 4 <= SMALL_A_BYTES { k } else { KC };
    // Many rows go MC at a time through every panel, so that their block of activations is read from memory
    // once and then from L2 for each group of panels (the logistic regression's 18,000 rows otherwise streamed
    // from memory once per group).
    for mc in rows.clone().step_by(MC) {
        let rows = mc..(mc + MC).min(rows.end);
        let mut k0 = 0;
        while k0 < k {
            let kc = block.min(k - k0);
            let (first, last) = (k0 == 0, k0 + kc == k);
            let mut j = panels.start;
            while j < panels.end {
                let group = isa.f32_panels().min(panels.end - j);
                let bp = data[j * k * NR + k0 * NR..].as_ptr();
                let mut i0 = rows.start;
                while i0 < rows.end {
                    let tile_rows = MR.min(rows.end - i0);
                    let a = p.a[i0 * k + k0..].as_ptr();
                    // SAFETY: i0 < m and j * NR < n; c as the caller promised.
                    let out = unsafe { Out::at(p, c, i0, j * NR, first, last) };
                    let t = Tile { rows: tile_rows, kc, a, lda: k, b: bp, b_stride: k * NR, out };
                    // SAFETY: the tile's rows, kc steps and `group` panels lie inside a, b and c (built from their
                    // bounds: j + group ≤ panels.end).
                    unsafe { tile_f32(isa, &t, group) };
                    i0 += tile_rows;
                }
                j += group;
            }
            k0 += kc;
        }
    }
}

thread_local! {
    /// The calling thread's int8 activations for the product under way.
    static QUANTISED_A: std::cell::Cell<QuantisedA> = std::cell::Cell::new(QuantisedA::default());
}

/// Activations as 16-bit integers, one scale per row, row-major: each row `⌈k/2⌉` step pairs, a pair packed in a
/// `u32` (low half first, as `vpmaddwd` pairs them; the last pair's high half is 0 when `k` is odd), which is
/// simply the row's 16-bit values in order.
#[derive(Default)]
struct QuantisedA {
    pairs: Vec<u32>,
    scales: Vec<f32>,
}

/// Defines `fn $name(isa, args…)` that runs `$inner(args…)` compiled for the instruction set `isa` names: the
/// same source vectorised with 16 lanes (AVX-512), 8 lanes with FMA (AVX2), or for the build's baseline.
/// `$inner` must be `#[inline(always)]`, so that its body is compiled into each version.
macro_rules! isa_versions {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $inner:path) => {
        $(#[$meta])*
        #[cfg_attr(target_arch = "x86_64", expect(unsafe_code, reason = "calls the SIMD builds after checking the CPU"))]
        $vis fn $name(isa: $crate::kernels::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                $inner($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $inner($($arg),*)
            }
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Amx and Avx512 are only chosen when the CPU has AVX-512 (Isa::supported).
                $crate::kernels::Isa::Amx | $crate::kernels::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Avx2Fma is only chosen when the CPU has both (Isa::supported).
                $crate::kernels::Isa::Avx2Fma => unsafe { avx2($($arg),*) },
                _ => $inner($($arg),*),
            }
        }
    };
}
pub(crate) use isa_versions;

isa_versions! {
    /// Quantises the activations for an int8 product (this runs once per product, before the threads split the
    /// work, so it must not be the slow part).
    fn quantise_a(a: &[f32], m: usize, k: usize, out: &mut QuantisedA) => quantise_a_in
}

#[inline(always)]
fn quantise_a_in(a: &[f32], m: usize, k: usize, out: &mut QuantisedA) {
    let pairs = k.div_ceil(2);
    // Grown, never shrunk: products of different widths alternate, and each regrowth zeroed the buffer.
    if out.pairs.len() < m * pairs {
        out.pairs.resize(m * pairs, 0);
    }
    out.scales.clear();
    // Round to nearest by adding 1.5·2²³ (|v · inv| ≤ 32767): the sum's low mantissa bits are then the integer
    // itself, read off with integer arithmetic (a float-to-int cast checks for NaN per value and does not
    // vectorise; `round` is a libm call).
    const ROUND: f32 = 12_582_912.0;
    const ROUND_BITS: i32 = 0x4B40_0000;
    let values: &mut [i16] = bytemuck::cast_slice_mut(&mut out.pairs[..]);
    for (row, dst) in a[..m * k].chunks_exact(k).zip(values.chunks_exact_mut(2 * pairs)) {
        let max = abs_max(row);
        let scale = max / 32767.0;
        out.scales.push(scale);
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = ((v * inv + ROUND).to_bits() as i32 - ROUND_BITS) as i16;
        }
        // An odd k's last pair: its second step multiplies the weights' zero padding, but must not be garbage.
        dst[k..].fill(0);
    }
}

/// Rounds the activations to bfloat16 pairs for a bf16 product, into the int8 path's buffer (`pairs` only, the
/// row scales unused): with AVX512-BF16's conversion where the products are native, else [`round_a_plain`].
#[cfg_attr(target_arch = "x86_64", expect(unsafe_code, reason = "calls the AVX512-BF16 build after checking the CPU"))]
fn round_a(isa: Isa, a: &[f32], m: usize, k: usize, out: &mut QuantisedA) {
    #[cfg(target_arch = "x86_64")]
    if bf16_native(isa) {
        // SAFETY: bf16_native says the CPU has AVX-512 and AVX512-BF16.
        return unsafe { avx512::round_a(a, m, k, out) };
    }
    round_a_plain(isa, a, m, k, out)
}

isa_versions! {
    /// [`round_a`] in portable code.
    fn round_a_plain(a: &[f32], m: usize, k: usize, out: &mut QuantisedA) => round_a_in
}

#[inline(always)]
fn round_a_in(a: &[f32], m: usize, k: usize, out: &mut QuantisedA) {
    for (row, dst) in a[..m * k].chunks_exact(k).zip(bf16_rows(out, m, k)) {
        for (d, &v) in dst.iter_mut().zip(row) {
            *d = bf16(v);
        }
        dst[k..].fill(0);
    }
}

/// `out`'s buffer as `m` rows of `⌈k/2⌉` bf16 pairs, grown if need be, plus `AMX_PAD_ROWS` rows: AMX tiles read
/// whole tiles of rows, so the last one's rows past `m` must be readable (their sums are dropped).
#[inline(always)]
fn bf16_rows(out: &mut QuantisedA, m: usize, k: usize) -> std::slice::ChunksExactMut<'_, u16> {
    let pairs = k.div_ceil(2);
    if out.pairs.len() < (m + AMX_PAD_ROWS) * pairs {
        out.pairs.resize((m + AMX_PAD_ROWS) * pairs, 0);
    }
    out.scales.clear();
    let values: &mut [u16] = bytemuck::cast_slice_mut(&mut out.pairs[..m * pairs]);
    values.chunks_exact_mut(2 * pairs)
}

/// Whether this CPU multiplies bf16 natively (AMX tiles, or AVX512-BF16's `vdpbf16ps`); elsewhere bf16 runs on
/// portable kernels, several times slower than f32.
pub(crate) fn bf16_is_native() -> bool {
    let isa = Isa::detect();
    (isa == Isa::Amx) || bf16_native(isa)
}

/// Whether bf16 products run `vdpbf16ps` here: the AVX-512 kernels and AVX512-BF16 (read once).
fn bf16_native(isa: Isa) -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    matches!(isa, Isa::Amx | Isa::Avx512)
        && *HAS.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            return is_x86_feature_detected!("avx512bf16");
            #[cfg(not(target_arch = "x86_64"))]
            false
        })
}

/// Rows past the last that [`round_a`] leaves readable: an AMX tile's worth.
const AMX_PAD_ROWS: usize = 16;

/// One bf16 tile: the whole inner dimension at once.
struct TileBf16 {
    rows: usize,
    /// The tile's first row of activations: `pairs` bf16 pairs; the next rows follow every `pairs`.
    a: *const u32,
    /// The first panel's weights: `pairs` × 32 values; the tile's next panels follow every `pairs` × 32.
    b: *const u16,
    pairs: usize,
    out: Out,
}

/// # Safety
/// `c` must hold `p.m × n` values, with no other writer of `rows` × the columns of `panels`; `rows` ⊆ `0..p.m`;
/// `qa` must be `p.a` rounded by [`round_a`].
unsafe fn run_bf16(
    isa: Isa,
    p: &Product,
    b: &PackedBf16,
    qa: &QuantisedA,
    c: SharedOut,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    let m = p.m;
    assert!(qa.pairs.len() >= (m + AMX_PAD_ROWS) * b.pairs, "activations not rounded for this product");
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Amx && b.pairs.is_multiple_of(amx::PAIRS) {
        // SAFETY: AMX is available, the pairs a whole number of tiles, and qa holds AMX_PAD_ROWS rows past m
        // (round_a); the rest as the caller promised.
        return unsafe { amx::run_bf16(p, b, qa, c, rows, panels) };
    }
    let native = bf16_native(isa);
    let data = b.data();
    let mut j = panels.start;
    while j < panels.end {
        let group = if native { isa.i8_panels(m) } else { 1 }.min(panels.end - j);
        let mut i0 = rows.start;
        while i0 < rows.end {
            let tile_rows = MR.min(rows.end - i0);
            let t = TileBf16 {
                rows: tile_rows,
                a: qa.pairs[i0 * b.pairs..].as_ptr(),
                b: data[j * b.pairs * 2 * NR..].as_ptr(),
                pairs: b.pairs,
                // SAFETY: i0 < m and j * NR < n; c as the caller promised.
                out: unsafe { Out::at(p, c, i0, j * NR, true, true) },
            };
            // SAFETY: the tile's pointers cover its rows, pairs and `group` panels (built from the buffers'
            // bounds: j + group ≤ panels.end).
            unsafe { tile_bf16(isa, native, &t, group) };
            i0 += tile_rows;
        }
        j += group;
    }
}

/// One int8 tile: the whole inner dimension at once (a panel is at most a few tens of KiB).
struct TileI8 {
    rows: usize,
    /// The tile's first row of activations: `pairs` step pairs; the next rows follow every `pairs`.
    a: *const u32,
    /// The rows' scales.
    a_scales: *const f32,
    /// The first panel's weights: `pairs` × 32 bytes; the tile's next panels follow every `pairs` × 32 bytes.
    b: *const i8,
    /// The first panel's scales: `blocks` × `NR`; the next panels' follow every `blocks` × `NR`.
    scales: *const f32,
    pairs: usize,
    blocks: usize,
    out: Out,
}

/// # Safety
/// `c` must hold `p.m × n` values, with no other writer of `rows` × the columns of `panels`; `rows` ⊆ `0..p.m`;
/// `qa` must be `p.a` quantised.
unsafe fn run_i8(
    isa: Isa,
    p: &Product,
    b: &PackedI8,
    qa: &QuantisedA,
    c: SharedOut,
    rows: Range<usize>,
    panels: Range<usize>,
) {
    let m = p.m;
    assert!(qa.pairs.len() >= m * b.pairs && qa.scales.len() == m, "activations not quantised for this product");
    let mut j = panels.start;
    while j < panels.end {
        let group = isa.i8_panels(m).min(panels.end - j);
        let mut i0 = rows.start;
        while i0 < rows.end {
            let tile_rows = MR.min(rows.end - i0);
            let t = TileI8 {
                rows: tile_rows,
                a: qa.pairs[i0 * b.pairs..].as_ptr(),
                a_scales: qa.scales[i0..].as_ptr(),
                b: b.data[j * b.pairs * 32..].as_ptr(),
                scales: b.scales[j * b.blocks * NR..].as_ptr(),
                pairs: b.pairs,
                blocks: b.blocks,
                // SAFETY: i0 < m and j * NR < n; c as the caller promised.
                out: unsafe { Out::at(p, c, i0, j * NR, true, true) },
            };
            // SAFETY: the tile's pointers cover its rows, pairs and `group` panels (built from the buffers'
            // bounds: j + group ≤ panels.end).
            unsafe { tile_i8(isa, &t, group) };
            i0 += tile_rows;
        }
        j += group;
    }
}

/// Picks the tile kernel for `rows` (1..=MR), as a const generic so each size keeps its accumulators in
/// registers (with a second const generic, when given, for the panels).
macro_rules! by_rows {
    ($rows:expr, $f:ident, $t:expr) => {
        match $rows {
            6 => $f::<6>($t),
            5 => $f::<5>($t),
            4 => $f::<4>($t),
            3 => $f::<3>($t),
            2 => $f::<2>($t),
            _ => $f::<1>($t),
        }
    };
    ($rows:expr, $f:ident, $p:literal, $t:expr) => {
        match $rows {
            6 => $f::<6, $p>($t),
            5 => $f::<5, $p>($t),
            4 => $f::<4, $p>($t),
            3 => $f::<3, $p>($t),
            2 => $f::<2, $p>($t),
            _ => $f::<1, $p>($t),
        }
    };
}

/// [`by_rows`] for tiles of 1 to 4 panels.
macro_rules! by_panels {
    ($rows:expr, $panels:expr, $f:ident, $t:expr) => {
        match $panels {
            4 => by_rows!($rows, $f, 4, $t),
            3 => by_rows!($rows, $f, 3, $t),
            2 => by_rows!($rows, $f, 2, $t),
            _ => by_rows!($rows, $f, 1, $t),
        }
    };
}

/// # Safety
/// The tile's pointers must cover `rows × kc` of `a`, `kc × NR` of `b` for each of `panels` panels (`b_stride`
/// apart), `rows × cols` of `c` and the residual (row stride `ldc`) and `cols` of the bias for each panel;
/// `panels` is at most `isa.f32_panels()`.
unsafe fn tile_f32(isa: Isa, t: &Tile, panels: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Amx and Avx512 are only chosen when the CPU has AVX-512 (Isa::supported); bounds as the caller
        // promised.
        Isa::Amx | Isa::Avx512 => unsafe {
            use avx512::tile_f32 as k;
            by_panels!(t.rows, panels, k, t)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2Fma is only chosen when the CPU has both (Isa::supported); bounds as the caller promised.
        Isa::Avx2Fma => unsafe {
            use avx2::tile_f32 as k;
            by_rows!(t.rows, k, t)
        },
        // SAFETY: bounds as the caller promised.
        _ => unsafe { by_rows!(t.rows, portable_f32, t) },
    }
}

/// # Safety
/// The tile's pointers must cover `pairs × rows` of `a`, `rows` row scales, `pairs × 32` bytes of `b` and
/// `blocks × NR` scales for each of `panels` panels, and `rows × cols` of `c` and the residual (row stride
/// `ldc`) and `cols` of the bias for each panel; `panels` is at most four.
unsafe fn tile_i8(isa: Isa, t: &TileI8, panels: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Amx and Avx512 are only chosen when the CPU has AVX-512 (Isa::supported); bounds as the caller
        // promised.
        Isa::Amx | Isa::Avx512 => unsafe {
            use avx512::tile_i8 as k;
            by_panels!(t.rows, panels, k, t)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2Fma is only chosen when the CPU has both (Isa::supported); bounds as the caller promised.
        Isa::Avx2Fma => unsafe {
            use avx2::tile_i8 as k;
            by_rows!(t.rows, k, t)
        },
        // SAFETY: bounds as the caller promised.
        _ => unsafe { by_rows!(t.rows, portable_i8, t) },
    }
}

/// # Safety
/// The tile's pointers must cover `pairs × rows` of `a` and `pairs × 32` values of `b` for each of `panels`
/// panels, and `rows × cols` of `c` and the residual (row stride `ldc`) and `cols` of the bias for each panel;
/// `panels` is one unless `native`, then at most four; `native` only where [`bf16_native`] says so.
unsafe fn tile_bf16(isa: Isa, native: bool, t: &TileBf16, panels: usize) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: native only where the CPU has AVX-512 and AVX512-BF16 (bf16_native); bounds as promised.
        Isa::Amx | Isa::Avx512 if native => unsafe {
            use avx512::tile_bf16 as k;
            by_panels!(t.rows, panels, k, t)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Amx, Avx512 and Avx2Fma are only chosen when the CPU has AVX2 and FMA (Isa::supported).
        Isa::Amx | Isa::Avx512 | Isa::Avx2Fma => unsafe {
            use avx2::portable_bf16 as k;
            by_rows!(t.rows, k, t)
        },
        // SAFETY: bounds as the caller promised.
        _ => unsafe { by_rows!(t.rows, portable_bf16, t) },
    }
}

/// Finishes one output row of a tile: bias or the partial sum already in `c`, the residual, the activation.
///
/// # Safety
/// `c` (and `residual`, `bias` when not null) must hold `cols` values at row `r`.
#[inline(always)]
unsafe fn finish_row(acc: &mut [f32; NR], t: &Out, r: usize) {
    let cols = t.cols();
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
/// As [`tile_f32`].
unsafe fn portable_f32<const R: usize>(t: &Tile) {
    let mut acc = [[0f32; NR]; R];
    for p in 0..t.kc {
        // SAFETY: p < kc, r < rows = R: inside a and b.
        let b: &[f32; NR] = unsafe { &*(t.b.add(p * NR) as *const [f32; NR]) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let a = unsafe { *t.a.add(r * t.lda + p) };
            for (x, &w) in acc.iter_mut().zip(b) {
                *x += a * w;
            }
        }
    }
    for (r, acc) in acc.iter_mut().enumerate() {
        // SAFETY: as the caller promised.
        unsafe { finish_row(acc, &t.out, r) };
    }
}

/// # Safety
/// As [`tile_i8`].
unsafe fn portable_i8<const R: usize>(t: &TileI8) {
    let mut f = [[0f32; NR]; R];
    for blk in 0..t.blocks {
        let qs = blk * QBLOCK / 2..((blk + 1) * QBLOCK / 2).min(t.pairs);
        let mut acc = [[0i32; NR]; R];
        for q in qs {
            // SAFETY: q < pairs: inside b.
            let b: &[i8; 32] = unsafe { &*(t.b.add(q * 32) as *const [i8; 32]) };
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: q < pairs, r < rows = R: inside a.
                let pair = unsafe { *t.a.add(r * t.pairs + q) };
                let (lo, hi) = (pair as u16 as i16 as i32, (pair >> 16) as u16 as i16 as i32);
                for (c, x) in acc.iter_mut().enumerate() {
                    let at = (c / 8) * 16 + (c % 8) * 2;
                    *x += lo * b[at] as i32 + hi * b[at + 1] as i32;
                }
            }
        }
        // SAFETY: blk < blocks: inside the scales.
        let s: &[f32; NR] = unsafe { &*(t.scales.add(blk * NR) as *const [f32; NR]) };
        for (f, acc) in f.iter_mut().zip(&acc) {
            for c in 0..NR {
                f[c] += acc[c] as f32 * s[c];
            }
        }
    }
    for (r, f) in f.iter_mut().enumerate() {
        // SAFETY: r < rows: inside the row scales; the rest as the caller promised.
        unsafe {
            let sa = *t.a_scales.add(r);
            f.iter_mut().for_each(|x| *x *= sa);
            finish_row(f, &t.out, r);
        }
    }
}

/// # Safety
/// As [`tile_bf16`] with one panel.
#[inline(always)]
unsafe fn portable_bf16<const R: usize>(t: &TileBf16) {
    let widen = |v: u16| f32::from_bits((v as u32) << 16);
    let mut acc = [[0f32; NR]; R];
    for q in 0..t.pairs {
        // SAFETY: q < pairs: inside b.
        let b: &[u16; 2 * NR] = unsafe { &*(t.b.add(q * 2 * NR) as *const [u16; 2 * NR]) };
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: q < pairs, r < rows = R: inside a.
            let pair = unsafe { *t.a.add(r * t.pairs + q) };
            let (lo, hi) = (widen(pair as u16), widen((pair >> 16) as u16));
            for (c, x) in acc.iter_mut().enumerate() {
                *x += lo * widen(b[2 * c]) + hi * widen(b[2 * c + 1]);
            }
        }
    }
    for (r, acc) in acc.iter_mut().enumerate() {
        // SAFETY: as the caller promised.
        unsafe { finish_row(acc, &t.out, r) };
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{finish_row, Tile, TileI8, NR, QBLOCK};

    /// [`super::portable_bf16`] compiled for AVX2+FMA (the CPU has no AVX512-BF16, or no AVX-512).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; bounds as [`super::tile_bf16`] with one panel.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn portable_bf16<const R: usize>(t: &super::TileBf16) {
        // SAFETY: as the caller promised.
        unsafe { super::portable_bf16::<R>(t) }
    }

    /// How far ahead (in f32 values) the weights are prefetched.
    const PREFETCH: usize = 512;

    /// # Safety
    /// The CPU must have AVX2 and FMA; bounds as [`super::tile_f32`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_f32<const R: usize>(t: &Tile) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let (a, b) = (t.a, t.b);
        for p in 0..t.kc {
            // SAFETY: p < kc, r < R = rows: inside a and b (the caller's promise); b is 32-byte aligned.
            unsafe {
                // The weights stream from memory when few rows reuse them: ask for them well ahead.
                _mm_prefetch::<_MM_HINT_T0>(b.add(p * NR + PREFETCH) as *const i8);
                let b0 = _mm256_load_ps(b.add(p * NR));
                let b1 = _mm256_load_ps(b.add(p * NR + 8));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*a.add(r * t.lda + p));
                    acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            // SAFETY: the caller's promise.
            unsafe { finish(acc[0], acc[1], &t.out, r) };
        }
    }

    /// [`finish_row`] for a full panel in vector registers; a partial one goes through `finish_row`.
    ///
    /// # Safety
    /// As [`finish_row`].
    #[inline(always)]
    unsafe fn finish(mut x0: __m256, mut x1: __m256, t: &super::Out, r: usize) {
        // SAFETY: row r and `cols` values of each pointer, as the caller promised.
        unsafe {
            let c = t.c.add(r * t.ldc);
            if t.cols() != NR {
                let mut row = [0f32; NR];
                _mm256_storeu_ps(row.as_mut_ptr(), x0);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), x1);
                return finish_row(&mut row, t, r);
            }
            let base = if t.bias.is_null() { c as *const f32 } else { t.bias };
            x0 = _mm256_add_ps(x0, _mm256_loadu_ps(base));
            x1 = _mm256_add_ps(x1, _mm256_loadu_ps(base.add(8)));
            if !t.residual.is_null() {
                let res = t.residual.add(r * t.ldc);
                x0 = _mm256_add_ps(x0, _mm256_loadu_ps(res));
                x1 = _mm256_add_ps(x1, _mm256_loadu_ps(res.add(8)));
            }
            match t.act {
                Some(super::Activation::GeluErf) => {
                    _mm256_storeu_ps(c, gelu_erf(x0));
                    _mm256_storeu_ps(c.add(8), gelu_erf(x1));
                }
                act => {
                    _mm256_storeu_ps(c, x0);
                    _mm256_storeu_ps(c.add(8), x1);
                    if let Some(act) = act {
                        super::apply(act, std::slice::from_raw_parts_mut(c, NR));
                    }
                }
            }
        }
    }

    /// GELU (erf form) on 8 values, as the AVX-512 tiles' (Abramowitz & Stegun 7.1.28), with a division: AVX2's
    /// reciprocal has 12 bits, too few before the sixteenth power.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu_erf(x: __m256) -> __m256 {
        let c = _mm256_set1_ps;
        let u = _mm256_mul_ps(x, c(std::f32::consts::FRAC_1_SQRT_2));
        let sign = _mm256_and_ps(u, c(-0.0));
        let a = _mm256_min_ps(_mm256_andnot_ps(c(-0.0), u), c(6.0));
        let mut p = c(super::ERF_A7128[0]);
        for &k in &super::ERF_A7128[1..] {
            p = _mm256_fmadd_ps(p, a, c(k));
        }
        let mut t = _mm256_div_ps(c(1.0), p);
        for _ in 0..4 {
            t = _mm256_mul_ps(t, t);
        }
        let erf = _mm256_or_ps(_mm256_sub_ps(c(1.0), t), sign);
        _mm256_mul_ps(_mm256_mul_ps(c(0.5), x), _mm256_add_ps(c(1.0), erf))
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; bounds as [`super::tile_i8`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_i8<const R: usize>(t: &TileI8) {
        let mut f = [[_mm256_setzero_ps(); 2]; R];
        let (a, b) = (t.a, t.b);
        for blk in 0..t.blocks {
            let (q0, q1) = (blk * QBLOCK / 2, ((blk + 1) * QBLOCK / 2).min(t.pairs));
            let mut acc = [[_mm256_setzero_si256(); 2]; R];
            for q in q0..q1 {
                // SAFETY: q < pairs, r < R = rows: inside a and b (the caller's promise).
                unsafe {
                    let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(q * 32) as *const __m128i));
                    let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(q * 32 + 16) as *const __m128i));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let x = _mm256_set1_epi32(*a.add(r * t.pairs + q) as i32);
                        acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x, b0));
                        acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(x, b1));
                    }
                }
            }
            // SAFETY: blk < blocks: inside the scales.
            let (s0, s1) =
                unsafe { (_mm256_loadu_ps(t.scales.add(blk * NR)), _mm256_loadu_ps(t.scales.add(blk * NR + 8))) };
            for (f, acc) in f.iter_mut().zip(&acc) {
                f[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[0]), s0, f[0]);
                f[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[1]), s1, f[1]);
            }
        }
        for (r, f) in f.iter().enumerate() {
            // SAFETY: r < rows: inside the row scales; the rest is the caller's promise.
            unsafe {
                let sa = _mm256_set1_ps(*t.a_scales.add(r));
                finish(_mm256_mul_ps(f[0], sa), _mm256_mul_ps(f[1], sa), &t.out, r);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{finish_row, Out, Tile, TileBf16, TileI8, NR, QBLOCK};

    /// How far ahead (in f32 values) the weights are prefetched.
    const PREFETCH: usize = 512;

    /// [`super::transpose`] of the first `cols` columns (a multiple of 16) in 16 × 16 blocks: four rounds of
    /// in-register shuffles (pairs, quads, then 128-bit lanes twice) instead of 256 scalar moves per block.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; `src` and `dst` bounds as [`super::transpose`] asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose(src: &[f32], stride: usize, rows: usize, cols: usize, dst: &mut [f32], ldd: usize) {
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        for r0 in (0..rows).step_by(16) {
            for c0 in (0..cols).step_by(16) {
                // SAFETY: row r0 + i < rows and columns c0..c0 + 16 ≤ cols lie in src; the stores cover columns
                // c0..c0 + 16 of dst's rows r0..r0 + 16 ≤ ldd (the caller's bounds).
                unsafe {
                    let mut r = [_mm512_setzero_ps(); 16];
                    for (i, v) in r.iter_mut().enumerate().take(rows - r0) {
                        *v = _mm512_loadu_ps(s.add((r0 + i) * stride + c0));
                    }
                    // Pairs of rows interleaved: block q of t[2i] holds columns 4q, 4q+1 of rows 2i, 2i+1.
                    let mut t = [_mm512_setzero_ps(); 16];
                    for i in 0..8 {
                        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
                    }
                    // Block q of r[4g + c] now holds column 4q + c of rows 4g..4g+4.
                    for g in 0..4 {
                        r[4 * g] = _mm512_shuffle_ps::<0x44>(t[4 * g], t[4 * g + 2]);
                        r[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * g], t[4 * g + 2]);
                        r[4 * g + 2] = _mm512_shuffle_ps::<0x44>(t[4 * g + 1], t[4 * g + 3]);
                        r[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * g + 1], t[4 * g + 3]);
                    }
                    // Then a 4 × 4 transpose of 128-bit blocks across r[c], r[4 + c], r[8 + c], r[12 + c].
                    for c in 0..4 {
                        let u0 = _mm512_shuffle_f32x4::<0x88>(r[c], r[4 + c]);
                        let u1 = _mm512_shuffle_f32x4::<0xDD>(r[c], r[4 + c]);
                        let v0 = _mm512_shuffle_f32x4::<0x88>(r[8 + c], r[12 + c]);
                        let v1 = _mm512_shuffle_f32x4::<0xDD>(r[8 + c], r[12 + c]);
                        let col = |q: usize| d.add((c0 + 4 * q + c) * ldd + r0);
                        _mm512_storeu_ps(col(0), _mm512_shuffle_f32x4::<0x88>(u0, v0));
                        _mm512_storeu_ps(col(1), _mm512_shuffle_f32x4::<0x88>(u1, v1));
                        _mm512_storeu_ps(col(2), _mm512_shuffle_f32x4::<0xDD>(u0, v0));
                        _mm512_storeu_ps(col(3), _mm512_shuffle_f32x4::<0xDD>(u1, v1));
                    }
                }
            }
        }
    }

    /// `R` rows × `P` panels of 16 columns, one 16-lane accumulator each (up to 24 of the 32 registers), so
    /// each broadcast activation feeds `P` multiply-adds and each weight vector `R`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; bounds as [`super::tile_f32`] with `P` panels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub(super) unsafe fn tile_f32<const R: usize, const P: usize>(t: &Tile) {
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        let (a, b, bs) = (t.a, t.b, t.b_stride);
        for p in 0..t.kc {
            // SAFETY: p < kc, r < R = rows, q < P panels: inside a and b (the caller's promise); panels are
            // 64-byte aligned and `k × NR` values long, so every load is aligned.
            unsafe {
                let mut w = [_mm512_setzero_ps(); P];
                for (q, w) in w.iter_mut().enumerate() {
                    let bq = b.add(q * bs + p * NR);
                    // The weights stream from memory when few rows reuse them: ask for them well ahead.
                    _mm_prefetch::<_MM_HINT_T0>(bq.wrapping_add(PREFETCH) as *const i8);
                    *w = _mm512_load_ps(bq);
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm512_set1_ps(*a.add(r * t.lda + p));
                    for (acc, &w) in acc.iter_mut().zip(&w) {
                        *acc = _mm512_fmadd_ps(x, w, *acc);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (q, &acc) in acc.iter().enumerate() {
                // SAFETY: panel q < P lies inside the tile (the caller's promise).
                unsafe { finish(acc, &t.out.panel(q), r) };
            }
        }
    }

    /// [`super::finish_row`] for a full panel in one register; a partial one goes through `finish_row`.
    ///
    /// # Safety
    /// As [`super::finish_row`].
    #[inline(always)]
    pub(super) unsafe fn finish(mut x: __m512, t: &Out, r: usize) {
        // SAFETY: row r and `cols` values of each pointer, as the caller promised.
        unsafe {
            let c = t.c.add(r * t.ldc);
            if t.cols() != NR {
                let mut row = [0f32; NR];
                _mm512_storeu_ps(row.as_mut_ptr(), x);
                return finish_row(&mut row, t, r);
            }
            let base = if t.bias.is_null() { c as *const f32 } else { t.bias };
            x = _mm512_add_ps(x, _mm512_loadu_ps(base));
            if !t.residual.is_null() {
                x = _mm512_add_ps(x, _mm512_loadu_ps(t.residual.add(r * t.ldc)));
            }
            match t.act {
                Some(super::Activation::GeluErf) => _mm512_storeu_ps(c, gelu_erf(x)),
                Some(act) => {
                    _mm512_storeu_ps(c, x);
                    super::apply(act, std::slice::from_raw_parts_mut(c, NR));
                }
                None => _mm512_storeu_ps(c, x),
            }
        }
    }

    /// GELU (erf form) on 16 values in a register, erf by Abramowitz & Stegun 7.1.28 (1 − (1 + Σ aᵢxⁱ)⁻¹⁶, error
    /// ≤ 3·10⁻⁷ like the scalar 7.1.26's 1.5·10⁻⁷, in half the operations: no exponential). Written out because the
    /// compiler left the slice version of [`super::gelu_erf`] at a fraction of this speed (the feed-forward
    /// product's GELU took 57 % of its tiles' time on Zen 4).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn gelu_erf(x: __m512) -> __m512 {
        let c = _mm512_set1_ps;
        let u = _mm512_mul_ps(x, c(std::f32::consts::FRAC_1_SQRT_2));
        // erf(6) is 1 in f32; beyond it the sixteenth power would overflow.
        let a = _mm512_min_ps(_mm512_abs_ps(u), c(6.0));
        let mut p = c(super::ERF_A7128[0]);
        for &k in &super::ERF_A7128[1..] {
            p = _mm512_fmadd_ps(p, a, c(k));
        }
        // 1 / p by the 14-bit reciprocal and one Newton step (≈ 2⁻²⁸ relative; a division is several times slower).
        let r0 = _mm512_rcp14_ps(p);
        let mut t = _mm512_mul_ps(r0, _mm512_fnmadd_ps(p, r0, c(2.0)));
        for _ in 0..4 {
            t = _mm512_mul_ps(t, t);
        }
        // 1 − p⁻¹⁶ is in [0, 1]: the sign is u's.
        let y = _mm512_sub_ps(c(1.0), t);
        let sign = _mm512_and_si512(_mm512_castps_si512(u), _mm512_set1_epi32(i32::MIN));
        let erf = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
        _mm512_mul_ps(_mm512_mul_ps(c(0.5), x), _mm512_add_ps(c(1.0), erf))
    }

    /// `acc + Σ pairs w·x` as one `vpdpwssd`, the activation pair `*x` read and broadcast by the instruction
    /// itself (with a broadcast of its own per row, a single text took 13 % longer on Zen 4). Written as assembly
    /// because LLVM, tuning for a generic x86-64, splits the intrinsic into `vpmaddwd` + `vpaddd` (twice the
    /// instructions; the int8 pass measured 5 % slower).
    ///
    /// # Safety
    /// The CPU must have AVX512-VNNI; `x` must be readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dpwssd(mut acc: __m512i, w: __m512i, x: *const u32) -> __m512i {
        // SAFETY: reads 4 bytes at x, which the caller promised readable.
        unsafe {
            std::arch::asm!(
                "vpdpwssd {acc}, {w}, dword ptr [{x}]{{1to16}}",
                acc = inout(zmm_reg) acc,
                w = in(zmm_reg) w,
                x = in(reg) x,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        acc
    }

    /// Int8 with `vpdpwssd`: each instruction multiplies 16 columns × a pair of steps and adds into 32-bit sums
    /// (the AVX2 kernel's multiply and add in one); `R` rows × `P` panels.
    ///
    /// # Safety
    /// The CPU must have AVX-512F/BW and AVX512-VNNI; bounds as [`super::tile_i8`] with `P` panels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
    pub(super) unsafe fn tile_i8<const R: usize, const P: usize>(t: &TileI8) {
        let mut f = [[_mm512_setzero_ps(); P]; R];
        let (a, b) = (t.a, t.b);
        let (bs, ss) = (t.pairs * 32, t.blocks * NR);
        for blk in 0..t.blocks {
            let (q0, q1) = (blk * QBLOCK / 2, ((blk + 1) * QBLOCK / 2).min(t.pairs));
            let mut acc = [[_mm512_setzero_si512(); P]; R];
            for s in q0..q1 {
                // SAFETY: s < pairs, r < R = rows, q < P panels: inside a and b (the caller's promise).
                unsafe {
                    let mut w = [_mm512_setzero_si512(); P];
                    for (q, w) in w.iter_mut().enumerate() {
                        *w = _mm512_cvtepi8_epi16(_mm256_loadu_si256(b.add(q * bs + s * 32) as *const __m256i));
                    }
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let x = a.add(r * t.pairs + s);
                        for (acc, &w) in acc.iter_mut().zip(&w) {
                            *acc = dpwssd(*acc, w, x);
                        }
                    }
                }
            }
            for q in 0..P {
                // SAFETY: blk < blocks, q < P panels: inside the scales.
                let sc = unsafe { _mm512_loadu_ps(t.scales.add(q * ss + blk * NR)) };
                for (f, acc) in f.iter_mut().zip(&acc) {
                    f[q] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[q]), sc, f[q]);
                }
            }
        }
        for (r, f) in f.iter().enumerate() {
            // SAFETY: r < rows: inside the row scales; panel q < P lies inside the tile (the caller's promise).
            unsafe {
                let sa = _mm512_set1_ps(*t.a_scales.add(r));
                for (q, &f) in f.iter().enumerate() {
                    finish(_mm512_mul_ps(f, sa), &t.out.panel(q), r);
                }
            }
        }
    }

    /// [`super::round_a`] with AVX512-BF16's `vcvtne2ps2bf16`, 32 values an instruction: the same rounding to
    /// nearest even, but subnormals become zero (as the bf16 products read them anyway).
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")]
    pub(super) unsafe fn round_a(a: &[f32], m: usize, k: usize, out: &mut super::QuantisedA) {
        let full = k - k % 32;
        for (row, dst) in a[..m * k].chunks_exact(k).zip(super::bf16_rows(out, m, k)) {
            for c in (0..full).step_by(32) {
                // SAFETY: c + 32 ≤ full ≤ k: inside the row and inside dst (2⌈k/2⌉ ≥ k values).
                unsafe {
                    let (lo, hi) = (_mm512_loadu_ps(row[c..].as_ptr()), _mm512_loadu_ps(row[c + 16..].as_ptr()));
                    let r: __m512i;
                    // The intrinsic's bf16 vector type is not stable; the instruction puts its second source in
                    // the low half.
                    std::arch::asm!(
                        "vcvtne2ps2bf16 {r}, {hi}, {lo}",
                        r = lateout(zmm_reg) r,
                        hi = in(zmm_reg) hi,
                        lo = in(zmm_reg) lo,
                        options(pure, nomem, nostack, preserves_flags),
                    );
                    _mm512_storeu_si512(dst[c..].as_mut_ptr() as *mut __m512i, r);
                }
            }
            for (d, &v) in dst[full..k].iter_mut().zip(&row[full..]) {
                *d = super::bf16(v);
            }
            dst[k..].fill(0);
        }
    }

    /// `acc + Σ pairs w·x` as one `vdpbf16ps`, the activation pair `*x` read and broadcast by the instruction
    /// (as [`dpwssd`]; assembly, as the intrinsic takes no memory operand).
    ///
    /// # Safety
    /// The CPU must have AVX512-BF16; `x` must be readable.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn dpbf16(mut acc: __m512, w: __m512i, x: *const u32) -> __m512 {
        // SAFETY: reads 4 bytes at x, which the caller promised readable.
        unsafe {
            std::arch::asm!(
                "vdpbf16ps {acc}, {w}, dword ptr [{x}]{{1to16}}",
                acc = inout(zmm_reg) acc,
                w = in(zmm_reg) w,
                x = in(reg) x,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        acc
    }

    /// Bf16 with `vdpbf16ps`: each instruction multiplies 16 columns × a pair of steps and adds into the f32
    /// sums, which stay in registers for the whole inner dimension (`R` × `P` ≤ 24 of them, `P` weights).
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX512-BF16; bounds as [`super::tile_bf16`] with `P` panels.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")]
    pub(super) unsafe fn tile_bf16<const R: usize, const P: usize>(t: &TileBf16) {
        let mut f = [[_mm512_setzero_ps(); P]; R];
        let (a, b) = (t.a, t.b);
        let bs = t.pairs * 2 * NR;
        for s in 0..t.pairs {
            // SAFETY: s < pairs, r < R = rows, q < P panels: inside a and b (the caller's promise).
            unsafe {
                let mut w = [_mm512_setzero_si512(); P];
                for (q, w) in w.iter_mut().enumerate() {
                    *w = _mm512_load_si512(b.add(q * bs + s * 2 * NR) as *const __m512i);
                }
                for (r, f) in f.iter_mut().enumerate() {
                    let x = a.add(r * t.pairs + s);
                    for (f, &w) in f.iter_mut().zip(&w) {
                        *f = dpbf16(*f, w, x);
                    }
                }
            }
        }
        for (r, f) in f.iter().enumerate() {
            for (q, &f) in f.iter().enumerate() {
                // SAFETY: panel q < P lies inside the tile (the caller's promise).
                unsafe { finish(f, &t.out.panel(q), r) };
            }
        }
    }
}

/// Intel AMX: eight 1 KiB tile registers and `tdpbf16ps`, which multiplies a 16 × 32 tile of bf16 activations by
/// a 32 × 16 one of weights into a 16 × 16 tile of f32 sums, 16,384 operations per instruction. The bf16 weights'
/// panels are already laid out as its weight tiles want (rows of 16 columns × a step pair, 64 bytes), and the
/// rounded activations' rows as its activation tiles (32 steps, 64 bytes, a row stride apart), so nothing is
/// repacked.
#[cfg(target_arch = "x86_64")]
mod amx {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::avx512::finish;
    use super::{Out, PackedBf16, Product, QuantisedA, SharedOut, NR};

    /// Rows of an activation tile and of an output tile.
    const ROWS: usize = super::AMX_PAD_ROWS;
    /// Step pairs per tile (64 bytes of bf16).
    pub(super) const PAIRS: usize = 16;

    /// Whether this process may run AMX-BF16 tiles: the CPU has them and Linux granted the tile data state (8 KiB
    /// more of each thread's saved registers, which a process must ask for before its first tile instruction).
    /// Decided once.
    pub(super) fn available() -> bool {
        static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *OK.get_or_init(|| {
            // CPUID leaf 7: AMX-BF16 is bit 22 of EDX, AMX-TILE bit 24.
            let has = __get_cpuid_max(0).0 >= 7 && {
                let edx = __cpuid_count(7, 0).edx;
                edx & (1 << 22) != 0 && edx & (1 << 24) != 0
            };
            has && request_tile_data()
        })
    }

    #[cfg(target_os = "linux")]
    fn request_tile_data() -> bool {
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;
        // SAFETY: this arch_prctl only widens the process's permitted register state; it touches no memory.
        unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }

    #[cfg(not(target_os = "linux"))]
    fn request_tile_data() -> bool {
        false
    }

    /// `ldtilecfg`'s operand: a palette, then each tile's bytes per row and rows.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// Four output tiles' sums, stored from the tile registers for the epilogue.
    #[repr(C, align(64))]
    struct Sums([f32; 4 * ROWS * NR]);

    macro_rules! tileload {
        ($t:literal, $ptr:expr, $stride:expr) => {
            asm!(
                concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
                p = in(reg) $ptr,
                s = in(reg) $stride as usize,
                options(nostack, preserves_flags, readonly),
            )
        };
    }

    macro_rules! dot {
        ($c:literal, $a:literal, $b:literal) => {
            asm!(concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b), options(nostack, preserves_flags, nomem))
        };
    }

    macro_rules! tilestore {
        ($t:literal, $ptr:expr) => {
            asm!(
                concat!("tilestored [{p} + {s}*1], tmm", $t),
                p = in(reg) $ptr,
                s = in(reg) NR * 4,
                options(nostack, preserves_flags),
            )
        };
    }

    /// `R` (1 or 2) activation tiles × `P` (1 or 2) weight panels over the whole inner dimension: output tile
    /// `2r + q` in register `tmm(2r + q)`, activations in tmm4-5, weights in tmm6-7.
    ///
    /// # Safety
    /// The tile configuration must be loaded; `a` must hold `R × ROWS` rows of `pairs` (a multiple of `PAIRS`)
    /// pairs at stride `pairs`, `b` `P` panels of `pairs × 32` values at stride `pairs × 32`.
    #[inline(always)]
    unsafe fn block<const R: usize, const P: usize>(a: *const u32, b: *const u16, pairs: usize) {
        let (lda, panel) = (pairs * 4, pairs * 2 * NR);
        // SAFETY: every load stays inside a's R × ROWS rows and b's P panels (the caller's promise).
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, preserves_flags, nomem)
            );
            for s in (0..pairs).step_by(PAIRS) {
                let (a, b) = (a.add(s), b.add(s * 2 * NR));
                tileload!(4, a, lda);
                tileload!(6, b, 64);
                if P == 2 {
                    tileload!(7, b.add(panel), 64);
                }
                dot!(0, 4, 6);
                if P == 2 {
                    dot!(1, 4, 7);
                }
                if R == 2 {
                    tileload!(5, a.add(ROWS * pairs), lda);
                    dot!(2, 5, 6);
                    if P == 2 {
                        dot!(3, 5, 7);
                    }
                }
            }
        }
    }

    /// The four output tiles' sums into `out`.
    ///
    /// # Safety
    /// The tile configuration must be loaded.
    #[inline(always)]
    unsafe fn store(out: &mut Sums) {
        let o = out.0.as_mut_ptr();
        // SAFETY: four tiles of ROWS × NR f32 at stride NR, inside `out`.
        unsafe {
            tilestore!(0, o);
            tilestore!(1, o.add(ROWS * NR));
            tilestore!(2, o.add(2 * ROWS * NR));
            tilestore!(3, o.add(3 * ROWS * NR));
        }
    }

    /// A block whose sums wait in a buffer for their epilogue: rows from `i0`, panels from `j`.
    #[derive(Clone, Copy)]
    struct Pending {
        buf: usize,
        i0: usize,
        rows: usize,
        j: usize,
        panels: usize,
    }

    /// [`super::run_bf16`] in blocks of 32 rows × 32 columns, a row block's activations kept in L1 while the
    /// weights pass. Each block's epilogue (bias, residual, activation) runs after the next block's tile products
    /// are issued, so that the vector units do it while the tile unit computes.
    ///
    /// # Safety
    /// As [`super::run_bf16`]; and [`available`] must have said yes, `b.pairs` must be a multiple of `PAIRS`, and
    /// `qa` must hold `ROWS` rows past `p.m` (read, their sums dropped).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub(super) unsafe fn run_bf16(
        p: &Product,
        b: &PackedBf16,
        qa: &QuantisedA,
        c: SharedOut,
        rows: Range<usize>,
        panels: Range<usize>,
    ) {
        let pairs = b.pairs;
        debug_assert!(pairs.is_multiple_of(PAIRS) && qa.pairs.len() >= (p.m + ROWS) * pairs);
        // Palette 1 has eight tiles; the other entries must be zero (else ldtilecfg faults).
        let (mut colsb, mut tile_rows) = ([0; 16], [0; 16]);
        colsb[..8].fill(64);
        tile_rows[..8].fill(ROWS as u8);
        let cfg = Config { palette: 1, start_row: 0, reserved: [0; 14], colsb, rows: tile_rows };
        // SAFETY: AMX is available and permitted (the caller's promise); cfg is a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, preserves_flags, readonly)) };
        let mut sums = [Sums([0.0; 4 * ROWS * NR]), Sums([0.0; 4 * ROWS * NR])];
        let epilogue = |sums: &Sums, d: Pending| {
            for (t, tile) in sums.0.chunks_exact(ROWS * NR).enumerate() {
                let (r0, q) = ((t / 2) * ROWS, t % 2);
                if q >= d.panels || r0 >= d.rows {
                    continue;
                }
                // SAFETY: row d.i0 + r0 < p.m and column (d.j + q) · NR < n; c as the caller promised.
                let out = unsafe { Out::at(p, c, d.i0 + r0, (d.j + q) * NR, true, true) };
                for r in 0..(d.rows - r0).min(ROWS) {
                    // SAFETY: tile holds ROWS × NR sums, 64-byte aligned; row r is inside the tile's rows.
                    unsafe { finish(_mm512_load_ps(tile[r * NR..].as_ptr()), &out, r) };
                }
            }
        };
        let data = b.data();
        let mut pending: Option<Pending> = None;
        let mut i0 = rows.start;
        while i0 < rows.end {
            let nr = (rows.end - i0).min(2 * ROWS);
            let x = qa.pairs[i0 * pairs..].as_ptr();
            let mut j = panels.start;
            while j < panels.end {
                let np = (panels.end - j).min(2);
                let w = data[j * pairs * 2 * NR..].as_ptr();
                // SAFETY: rows i0..i0 + 2·ROWS lie inside qa (ROWS rows past p.m), panels j..j + np inside b.
                unsafe {
                    match (nr > ROWS, np == 2) {
                        (true, true) => block::<2, 2>(x, w, pairs),
                        (true, false) => block::<2, 1>(x, w, pairs),
                        (false, true) => block::<1, 2>(x, w, pairs),
                        (false, false) => block::<1, 1>(x, w, pairs),
                    }
                }
                let buf = match pending.take() {
                    Some(done) => {
                        epilogue(&sums[done.buf], done);
                        1 - done.buf
                    }
                    None => 0,
                };
                // SAFETY: the configuration is loaded (above).
                unsafe { store(&mut sums[buf]) };
                pending = Some(Pending { buf, i0, rows: nr, j, panels: np });
                j += np;
            }
            i0 += nr;
        }
        if let Some(done) = pending {
            epilogue(&sums[done.buf], done);
        }
        // SAFETY: releases this thread's tile state (configured above).
        unsafe { asm!("tilerelease", options(nostack, preserves_flags, nomem)) };
    }
}

/// `dst[c · ldd + r] = src[r · stride + c]` for `r < rows`, `c < cols`, and zeros for `rows ≤ r < ⌈rows/16⌉·16`
/// (so `ldd` must be at least that): attention's keys turned into rows of one dimension across tokens. In 16 × 16
/// register blocks with AVX-512 (scalar stores were a sixth of the forward pass outside the products).
#[cfg_attr(target_arch = "x86_64", expect(unsafe_code, reason = "calls the AVX-512 build after checking the CPU"))]
pub(crate) fn transpose(isa: Isa, src: &[f32], stride: usize, rows: usize, cols: usize, dst: &mut [f32], ldd: usize) {
    let padded = rows.next_multiple_of(16);
    assert!(ldd >= padded && dst.len() >= (cols.max(1) - 1) * ldd + padded, "dst is too small");
    assert!(rows == 0 || src.len() >= (rows - 1) * stride + cols, "src is too small");
    let mut c0 = 0;
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Amx | Isa::Avx512) {
        c0 = cols - cols % 16;
        // SAFETY: the CPU has AVX-512F (Isa::supported); bounds asserted above, blocks only up to c0.
        unsafe { avx512::transpose(src, stride, rows, c0, dst, ldd) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    for c in c0..cols {
        let out = &mut dst[c * ldd..][..padded];
        for (r, o) in out.iter_mut().enumerate() {
            *o = if r < rows { src[r * stride + c] } else { 0.0 };
        }
    }
}

/// `eˣ` to about 2 ulp for the range softmax and GELU use, in plain arithmetic the compiler vectorises: no libm
/// calls (`expf`, `roundf`, and `fmaf` without the FMA target feature are calls per element).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // eˣ = 2ⁿ · eʳ with n = round(x / ln 2) (adding and removing 1.5·2²³ rounds to nearest), r = x − n·ln 2.
    // n itself is read off the sum's bits: a float-to-int cast checks for NaN and range per value, which keeps
    // the loop scalar (it was a seventh of the int8 pass's time, in the softmax).
    const ROUND: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    // Degree-6 polynomial (Cephes' expf coefficients).
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5e-1;
    let er = p * r * r + r + 1.0;
    er * f32::from_bits(((ni + 127) as u32) << 23)
}

/// `eˣ` in f64 to about 1 ulp, in plain arithmetic the compiler vectorises (libm's `exp` is a call per value:
/// the logistic regression's loss needs one per sample and class, and was most of a fit's time).
#[inline(always)]
pub(crate) fn exp_f64(x: f64) -> f64 {
    let x = x.clamp(-708.0, 709.0);
    // eˣ = 2ⁿ · eʳ, n = round(x / ln 2) read off the bits of x / ln 2 + 1.5·2⁵² (a float-to-int cast checks for
    // NaN per value and does not vectorise), r = x − n·ln 2 in two parts (Cephes' split of ln 2).
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let t = x * std::f64::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let ni = t.to_bits().wrapping_sub(ROUND.to_bits()) as i64;
    let r = x - n * 6.931_457_519_531_25e-1 - n * 1.428_606_820_309_417_3e-6;
    // Taylor series to r¹³/13! (|r| ≤ 0.35: the remainder is below 1e-17).
    let mut p = 1.0 / 6_227_020_800.0;
    for f in [479_001_600.0, 39_916_800.0, 3_628_800.0, 362_880.0, 40_320.0, 5_040.0, 720.0, 120.0, 24.0, 6.0, 2.0] {
        p = p * r + 1.0 / f;
    }
    let er = (p * r + 1.0) * r + 1.0;
    er * f64::from_bits(((ni + 1023) as u64) << 52)
}

/// Abramowitz & Stegun 7.1.28's coefficients, highest power first (then 1): erf(x) = 1 − p(x)⁻¹⁶ for x ≥ 0, to
/// 3·10⁻⁷; the vector tiles' GELU.
#[cfg(target_arch = "x86_64")]
const ERF_A7128: [f32; 7] = [4.30638e-5, 2.765672e-4, 1.520143e-4, 9.270527e-3, 4.228201e-2, 7.0523076e-2, 1.0];

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

/// max |xᵢ| with eight partial maxima (vectorised; a plain fold is one serial chain).
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            let v = c[i].abs();
            acc[i] = if v > acc[i] { v } else { acc[i] };
        }
    }
    rest.iter().chain(&acc).fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m })
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
        let b = Weights::F32(PackedF32::from_out_in(&w, n, k));
        let mut want = reference(&a, m, &w, n, k, &bias, residual.then_some(&res[..]));
        apply(act, &mut want);
        let mut c = vec![f32::NAN; m * n];
        let p = Product { a: &a, m, b: &b, bias: &bias, residual: residual.then_some(&res[..]), act, split: true };
        matmul(isa, &p, &mut c);
        for (i, (got, want)) in c.iter().zip(&want).enumerate() {
            let tol = 1e-4 * (k as f32).sqrt() * (1.0 + want.abs());
            assert!((got - want).abs() <= tol, "{isa:?} m={m} n={n} k={k} at {i}: {got} vs {want}");
        }
    }

    /// Int8 against the exact product: within the quantisation's own error bound (half a step of each weight
    /// block's and activation row's scale), which a wrong layout or scale would exceed by orders of magnitude.
    fn check_i8(isa: Isa, m: usize, n: usize, k: usize, residual: bool) {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        // Columns of very different magnitudes: per-column scales must follow them.
        let w: Vec<f32> =
            (0..n * k).map(|i| (((i * 104_729) % 997) as f32 / 498.0 - 1.0) * (1 + (i / k) % 5) as f32).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 - 0.5).collect();
        let res: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32 - 6.0).collect();
        let b = Weights::I8(PackedI8::from_out_in(&w, n, k));
        let want = reference(&a, m, &w, n, k, &bias, residual.then_some(&res[..]));
        let mut c = vec![f32::NAN; m * n];
        let p = Product {
            a: &a,
            m,
            b: &b,
            bias: &bias,
            residual: residual.then_some(&res[..]),
            act: Activation::Identity,
            split: true,
        };
        matmul(isa, &p, &mut c);
        for r in 0..m {
            let arow = &a[r * k..][..k];
            let amax = arow.iter().fold(0f32, |x, v| x.max(v.abs()));
            for o in 0..n {
                let wrow = &w[o * k..][..k];
                let mut bound = 0f64;
                for (blk, ws) in wrow.chunks(QBLOCK).enumerate() {
                    let wmax = ws.iter().fold(0f32, |x, v| x.max(v.abs())) as f64;
                    for (i, wv) in ws.iter().enumerate() {
                        let av = arow[blk * QBLOCK + i].abs() as f64;
                        bound += av * wmax / 254.0 + wv.abs() as f64 * amax as f64 / 65534.0;
                    }
                }
                let (got, want) = (c[r * n + o] as f64, want[r * n + o] as f64);
                let tol = bound * 1.01 + 1e-4 * (1.0 + want.abs());
                assert!(
                    (got - want).abs() <= tol,
                    "{isa:?} m={m} n={n} k={k} at ({r},{o}): {got} vs {want}, bound {bound}"
                );
            }
        }
    }

    /// (m, n, k) of the products checked: row tails (1..6 rows), partial panels (n not a multiple of 16), tiles of
    /// fewer panels than the widest (7 panels, with few and with many rows), an odd k (a half pair in int8), partial
    /// int8 blocks, several f32 k blocks, and the parallel path split by columns and (100 rows) by rows.
    const SHAPES: [(usize, usize, usize); 11] = [
        (1, 16, 3),
        (17, 16, 32),
        (40, 48, 64),
        (5, 17, 41),
        (3, 100, 64),
        (13, 100, 70),
        (7, 33, 300),
        (13, 48, 520),
        (12, 384, 384),
        (64, 1536, 384),
        (100, 150, 384),
    ];

    #[test]
    fn int8_products_stay_within_the_quantisation_error() {
        for isa in Isa::supported() {
            for (m, n, k) in SHAPES {
                check_i8(isa, m, n, k, false);
                check_i8(isa, m, n, k, true);
            }
        }
    }

    /// Bf16 against the exact product of the operands rounded to bfloat16: what is left is f32 summation error
    /// (a wrong layout, a missed rounding or a dropped half pair is off by orders of magnitude more).
    fn check_bf16(isa: Isa, m: usize, n: usize, k: usize, residual: bool, act: Activation) {
        let round = |v: &[f32]| -> Vec<f32> { v.iter().map(|&x| f32::from_bits((bf16(x) as u32) << 16)).collect() };
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 997) as f32 / 498.0 - 1.0).collect();
        let bias: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 - 0.5).collect();
        let res: Vec<f32> = (0..m * n).map(|i| (i % 13) as f32 - 6.0).collect();
        let b = Weights::Bf16(PackedBf16::from_out_in(&w, n, k));
        let mut want = reference(&round(&a), m, &round(&w), n, k, &bias, residual.then_some(&res[..]));
        apply(act, &mut want);
        let mut c = vec![f32::NAN; m * n];
        let p = Product { a: &a, m, b: &b, bias: &bias, residual: residual.then_some(&res[..]), act, split: true };
        matmul(isa, &p, &mut c);
        for (i, (got, want)) in c.iter().zip(&want).enumerate() {
            let tol = 1e-5 * (k as f32).sqrt() * (1.0 + want.abs());
            assert!((got - want).abs() <= tol, "{isa:?} m={m} n={n} k={k} at {i}: {got} vs {want}");
        }
    }

    #[test]
    fn bf16_products_match_the_rounded_operands() {
        for isa in Isa::supported() {
            for (m, n, k) in SHAPES {
                check_bf16(isa, m, n, k, false, Activation::Identity);
                check_bf16(isa, m, n, k, true, Activation::GeluErf);
            }
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        let one = 1.0f32.to_bits();
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: to the even one, 1; 1 + 3·2⁻⁸ halfway between 1 + 2⁻⁷ and
        // 1 + 2⁻⁶: to 1 + 2⁻⁶; just above halfway rounds up.
        assert_eq!(bf16(f32::from_bits(one + (1 << 15))), 0x3F80);
        assert_eq!(bf16(f32::from_bits(one + (3 << 15))), 0x3F82);
        assert_eq!(bf16(f32::from_bits(one + (1 << 15) + 1)), 0x3F81);
        assert_eq!(bf16(-2.5), 0xC020);
        assert_eq!(bf16(f32::INFINITY), 0x7F80);
        assert_eq!(bf16(0.0), 0);
    }

    #[test]
    fn int8_is_exact_for_values_on_its_grid() {
        // Weights that are integers ≤ 127 in magnitude and activations that are small integers quantise without
        // loss when the largest in each block/row hits the scale exactly: the product must then be exact.
        let (m, n, k) = (7, 20, 130);
        let a: Vec<f32> = (0..m * k).map(|i| if i % k == 0 { 32767.0 } else { ((i % 61) as f32) - 30.0 }).collect();
        let w: Vec<f32> =
            (0..n * k).map(|i| if (i % k) % QBLOCK == 0 { 127.0 } else { ((i % 255) as f32) - 127.0 }).collect();
        let bias = vec![0f32; n];
        let b = Weights::I8(PackedI8::from_out_in(&w, n, k));
        let want = reference(&a, m, &w, n, k, &bias, None);
        for isa in Isa::supported() {
            let mut c = vec![0f32; m * n];
            matmul(
                isa,
                &Product { a: &a, m, b: &b, bias: &bias, residual: None, act: Activation::Identity, split: true },
                &mut c,
            );
            for (got, want) in c.iter().zip(&want) {
                assert!((got - want).abs() <= want.abs() * 1e-6 + 1e-3, "{isa:?}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn every_shape_matches_a_plain_product() {
        for isa in Isa::supported() {
            for (m, n, k) in SHAPES {
                check(isa, m, n, k, false, Activation::Identity);
                check(isa, m, n, k, true, Activation::Identity);
                check(isa, m, n, k, false, Activation::GeluErf);
            }
            check(isa, 9, 40, 70, true, Activation::Relu);
            check(isa, 9, 40, 70, false, Activation::GeluTanh);
        }
    }

    #[test]
    fn packing_in_place_gives_the_same_panels() {
        let (out, inp) = (37, 11);
        let w: Vec<f32> = (0..out * inp).map(|i| i as f32).collect();
        let mut t = vec![0f32; out * inp];
        for o in 0..out {
            for i in 0..inp {
                t[i * out + o] = w[o * inp + i];
            }
        }
        // Filled in place as the logistic regression writes its residuals: row i's columns j·NR.. at i·NR of
        // panel j.
        let mut filled = PackedF32::zeroed(inp, out);
        for (j, panel) in filled.panels_mut().enumerate() {
            for (i, row) in t.chunks_exact(out).enumerate() {
                let cols = &row[j * NR..(j * NR + NR).min(out)];
                panel[i * NR..][..cols.len()].copy_from_slice(cols);
            }
        }
        assert_eq!(PackedF32::from_out_in(&w, out, inp).data(), filled.data());
    }

    #[test]
    fn packing_pads_the_last_panel_with_zeros() {
        let w: Vec<f32> = (0..20 * 3).map(|i| i as f32 + 1.0).collect();
        let b = PackedF32::from_out_in(&w, 20, 3);
        assert_eq!(b.data().len(), 2 * 3 * NR);
        assert_eq!(b.data().as_ptr() as usize % 64, 0);
        // Output 17 (panel 1, column 1), input 2.
        assert_eq!(b.data()[3 * NR + 2 * NR + 1], w[17 * 3 + 2]);
        assert!(b.data()[3 * NR + 4..3 * NR + NR].iter().all(|&v| v == 0.0));
    }

    /// A thread waiting inside a split product runs other queued work (rayon steals while it waits), which may be
    /// another product on the same thread: the per-thread buffers must not be borrowed across that wait.
    #[test]
    fn products_nest_on_one_thread_while_waiting() {
        use rayon::prelude::*;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let (m, n, k) = (1, 1536, 1536);
        let a: Vec<f32> = (0..8 * m * k).map(|i| (i % 17) as f32 / 17.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect();
        let bias = vec![0f32; n];
        for b in [Weights::F32(PackedF32::from_out_in(&w, n, k)), Weights::I8(PackedI8::from_out_in(&w, n, k))] {
            let product = |rows: usize, split: bool| {
                let mut c = vec![0f32; rows * n];
                let p =
                    Product { a: &a, m: rows, b: &b, bias: &bias, residual: None, act: Activation::Identity, split };
                matmul(Isa::detect(), &p, &mut c);
                c[n - 1]
            };
            let want = product(1, false);
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                // Batches: many small unsplit products queued into the pool.
                s.spawn(|| {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let got: Vec<f32> =
                            pool.install(|| (0..64).into_par_iter().map(|_| product(8, false)).collect());
                        assert!(got.iter().all(|v| v.is_finite()));
                    }
                });
                // Single texts: one split product at a time, waiting on the pool.
                for _ in 0..300 {
                    assert_eq!(pool.install(|| product(1, true)), want);
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }

    #[test]
    fn transpose_matches_the_definition() {
        for isa in Isa::supported() {
            for &(rows, cols) in &[(1usize, 16usize), (11, 384), (16, 32), (17, 40), (33, 7), (5, 0)] {
                let stride = cols + 3;
                let src: Vec<f32> = (0..rows * stride).map(|i| i as f32 + 0.5).collect();
                let ldd = rows.next_multiple_of(16) + 16;
                let mut dst = vec![f32::NAN; cols.max(1) * ldd];
                transpose(isa, &src, stride, rows, cols, &mut dst, ldd);
                for c in 0..cols {
                    for r in 0..rows.next_multiple_of(16) {
                        let want = if r < rows { src[r * stride + c] } else { 0.0 };
                        assert_eq!(dst[c * ldd + r], want, "{isa:?} {rows}x{cols} at row {r}, column {c}");
                    }
                }
            }
        }
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
    fn exp_f64_matches_libm() {
        let mut worst = 0f64;
        let mut x = -708.0f64;
        while x < 709.0 {
            let (got, want) = (exp_f64(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 1e-15, "relative error {worst}");
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(exp_f64(-1e6), exp_f64(-708.0));
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        // erf from its series, in f64, as the reference (beyond 3, where the series cancels, from erfc's
        // asymptotic series: its error there is under 10⁻⁸).
        fn erf64(x: f64) -> f64 {
            if x.abs() > 3.0 {
                let z = x.abs();
                let mut series = 1.0;
                let mut term = 1.0;
                for n in 1..6 {
                    term *= -((2 * n - 1) as f64) / (2.0 * z * z);
                    series += term;
                }
                let erfc = (-z * z).exp() / (z * std::f64::consts::PI.sqrt()) * series;
                return (1.0 - erfc).copysign(x);
            }
            let mut sum = 0.0;
            let mut term = x;
            for n in 0..200 {
                sum += term / (2 * n + 1) as f64;
                term *= -x * x / (n + 1) as f64;
            }
            2.0 / std::f64::consts::PI.sqrt() * sum
        }
        // Sixteen, so that the vector forms' chunks of 8 and 16 reach them too.
        const BIG: [f32; 16] =
            [-100.0, -50.0, -20.0, -15.0, -12.0, -9.0, -8.5, -8.0, 8.0, 8.5, 9.0, 12.0, 15.0, 20.0, 50.0, 100.0];
        let want = |x: f32| 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
        let xs: Vec<f32> = (-1200..1200).map(|i| i as f32 * 0.01).chain(BIG).collect();
        assert_eq!(xs.len() % 16, 0);
        for &x in &xs {
            let got = gelu_erf(x) as f64;
            assert!((got - want(x)).abs() < 1e-6 * (1.0 + want(x).abs()), "gelu({x}) = {got}, want {}", want(x));
        }
        // The AVX2 and AVX-512 tiles' own (a different approximation of erf).
        #[cfg(target_arch = "x86_64")]
        if Isa::supported().contains(&Isa::Avx2Fma) {
            for chunk in xs.chunks_exact(8) {
                let mut got = [0f32; 8];
                // SAFETY: the CPU has AVX2 and FMA (checked just above); 8 values in and out.
                unsafe {
                    use std::arch::x86_64::*;
                    _mm256_storeu_ps(got.as_mut_ptr(), avx2::gelu_erf(_mm256_loadu_ps(chunk.as_ptr())));
                }
                for (&x, &got) in chunk.iter().zip(&got) {
                    let (got, want) = (got as f64, want(x));
                    assert!((got - want).abs() < 1e-6 * (1.0 + want.abs()), "avx2 gelu({x}) = {got}, want {want}");
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if Isa::supported().contains(&Isa::Avx512) {
            for chunk in xs.chunks_exact(16) {
                let mut got = [0f32; 16];
                // SAFETY: the CPU has AVX-512 (checked just above); 16 values in and out.
                unsafe {
                    use std::arch::x86_64::*;
                    _mm512_storeu_ps(got.as_mut_ptr(), avx512::gelu_erf(_mm512_loadu_ps(chunk.as_ptr())));
                }
                for (&x, &got) in chunk.iter().zip(&got) {
                    let (got, want) = (got as f64, want(x));
                    assert!((got - want).abs() < 1e-6 * (1.0 + want.abs()), "avx512 gelu({x}) = {got}, want {want}");
                }
            }
        }
    }
}
