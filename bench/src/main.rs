//! In-process measurements for bench/run.py, printed as one JSON object:
//!
//! - `strato-bench embed MODEL_DIR CSV [N]`: batch-32 embedding throughput on CLINC150 texts (after a warm-up).
//! - `strato-bench predict DATA_DIR MODEL_DIR MODEL_ID CSV [N]`: single-query predict latency (embed one text +
//!   classify, through the service as the HTTP handler calls it) over N distinct test texts.
//! - `strato-bench jobs [--database-url URL] …`: the job queue under no-op jobs (throughput, enqueue → start
//!   latency, idle CPU) on SQLite and PostgreSQL; one JSON line per measurement (see `jobs.rs`).

#![allow(clippy::print_stdout, reason = "prints its measurements")]

mod fewshot;
mod jobs;
mod media;
mod workflows;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

fn texts(csv: &str, split: &[&str], n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for r in csv::Reader::from_path(csv).with_context(|| format!("reading {csv}"))?.records() {
        let r = r?;
        if split.contains(&&r[2]) {
            out.push(r[0].to_string());
        }
        if out.len() == n {
            break;
        }
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn precision(arg: Option<&String>) -> Result<strato_ml::Precision> {
    Ok(match arg.map(String::as_str) {
        None | Some("f32") => strato_ml::Precision::F32,
        Some("int8") => strato_ml::Precision::Int8,
        Some("bf16") => strato_ml::Precision::Bf16,
        Some(other) => bail!("unknown precision {other:?}: f32, int8 or bf16"),
    })
}

fn embed(args: &[String]) -> Result<serde_json::Value> {
    let [dir, csv, rest @ ..] = args else { bail!("usage: embed MODEL_DIR CSV [N] [f32|int8|bf16]") };
    let n: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(2048);
    let precision = precision(rest.get(1))?;
    let opts = strato_ml::LoadOptions { precision, ..Default::default() };
    let e = strato_ml::Embedder::load_opts(&PathBuf::from(dir), opts)?;
    let texts = texts(csv, &["test", "val"], n)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    e.embed_batch(&refs[..32])?;
    let t = Instant::now();
    for chunk in refs.chunks(32) {
        e.embed_batch(chunk)?;
    }
    let secs = t.elapsed().as_secs_f64();
    let tokens = refs.iter().map(|t| e.token_count(t)).sum::<Result<usize, _>>()?;
    // One text per call, as a lone query is embedded.
    let mut ms = Vec::new();
    for t in refs.iter().take(520) {
        let start = Instant::now();
        e.embed_batch(&[t])?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let mut ms = ms.split_off(20.min(ms.len()));
    ms.sort_by(f64::total_cmp);
    Ok(json!({
        "embed_batch32_per_s": refs.len() as f64 / secs, "n": refs.len(),
        "tokens_per_text": tokens as f64 / refs.len() as f64,
        "embed_single_p50_ms": percentile(&ms, 0.5), "embed_single_p99_ms": percentile(&ms, 0.99),
    }))
}

/// The machine's fp32 multiply-add peak: independent FMA chains on every thread at once (AVX2+FMA where the CPU
/// has it, else scalar), in GFLOP/s per thread and in all.
fn peak() -> Result<serde_json::Value> {
    let threads = std::env::var("RAYON_NUM_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2usize);
    let iters = 100_000_000u64;
    let run = |f: fn(u64) -> f64| -> Vec<f64> {
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || f(iters))).collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0.0)).collect()
        })
    };
    let (avx2, avx512, vnni, madd) = (run(fma_gflops::<8>), run(fma_gflops::<16>), run(vnni_gops), run(madd_gops));
    let (bf16, int8) = (run(bf16_gflops), run(int8_gops));
    // A tile instruction is 256 times a vector one: fewer iterations take as long.
    let amx = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || amx_bf16_gflops(iters / 50))).collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).collect::<Vec<_>>()
    });
    let total = |v: &[f64]| v.iter().sum::<f64>();
    Ok(json!({
        "gflops": total(&avx2).max(total(&avx512)), "gflops_avx2": total(&avx2), "gflops_avx512": total(&avx512),
        "gflops_per_thread": if total(&avx512) > total(&avx2) { &avx512 } else { &avx2 },
        "int16_gops_vnni": total(&vnni), "int16_gops_avx2": total(&madd),
        // What the int8 mode runs on this CPU: vpdpwssd where there is VNNI, else vpmaddwd + vpaddd.
        "int16_gops": total(&vnni).max(total(&madd)), "threads": threads,
        // What the bf16 mode runs where the CPU has AVX512-BF16 (0 where it has not).
        "bf16_gflops": total(&bf16),
        // What it runs where the CPU has AMX tiles (`tdpbf16ps`; 0 where it has not).
        "amx_bf16_gflops": total(&amx),
        // The limit with 8-bit activations (`vpdpbusd`), which no precision mode runs.
        "int8_gops_vnni": total(&int8),
    }))
}

/// f32 FMA throughput with `LANES`-wide vectors (8: AVX2, 16: AVX-512), or 0 where the CPU lacks them.
#[expect(unsafe_code, reason = "calls the SIMD loops after checking the CPU")]
fn fma_gflops<const LANES: usize>(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if LANES == 8 && avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { fma_loop(iters) };
        }
        if LANES == 16 && avx2 && is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { fma_loop512(iters) };
        }
    }
    0.0
}

/// 12 independent 8-lane FMA chains (two FMA units × four cycles of latency × margin).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn fma_loop(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(0.999_9), _mm256_set1_ps(1e-5));
    let mut acc = [_mm256_set1_ps(0.5); 12];
    let t = Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    iters as f64 * 12.0 * 16.0 / secs / 1e9
}

/// The same with 16-lane vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn fma_loop512(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm512_set1_ps(0.999_9), _mm512_set1_ps(1e-5));
    let mut acc = [_mm512_set1_ps(0.5); 12];
    let t = Instant::now();
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, b, c);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    iters as f64 * 12.0 * 32.0 / secs / 1e9
}

/// Defines `$name(iters)`: the throughput of one register-only 512-bit instruction that does `$ops` operations
/// (a multiply and an add each), on 12 independent chains, in G operations per second on one thread, or 0 where
/// the CPU lacks `$features`. As assembly: with constant operands LLVM hoists an intrinsic's products out of the
/// loop and adds them with `vpaddd` instead (half of the intrinsic calls were), which overstated the limit 1.6
/// times.
macro_rules! asm_peak {
    ($(#[$doc:meta])* $name:ident: $instr:literal, $features:literal [$($feature:tt),+], $ops:expr,
     $acc:expr, $a:expr, $b:expr) => {
        $(#[$doc])*
        #[expect(unsafe_code, reason = "runs the instruction as assembly after checking the CPU")]
        fn $name(iters: u64) -> f64 {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $features)]
            fn run(iters: u64) -> f64 {
                use std::arch::x86_64::*;
                let (a, b) = ($a, $b);
                let mut acc = [$acc; 12];
                let t = Instant::now();
                for _ in 0..iters {
                    for x in acc.iter_mut() {
                        // SAFETY: a register-only instruction the CPU has (checked below).
                        unsafe {
                            std::arch::asm!(
                                concat!($instr, " {acc}, {a}, {b}"),
                                acc = inout(zmm_reg) *x,
                                a = in(zmm_reg) a,
                                b = in(zmm_reg) b,
                                options(pure, nomem, nostack, preserves_flags),
                            );
                        }
                    }
                }
                let secs = t.elapsed().as_secs_f64();
                std::hint::black_box(acc);
                iters as f64 * 12.0 * $ops / secs / 1e9
            }
            #[cfg(target_arch = "x86_64")]
            if $(is_x86_feature_detected!($feature))&&+ {
                // SAFETY: the CPU has every feature `run` is compiled for (checked just above).
                return unsafe { run(iters) };
            }
            0.0
        }
    };
}

asm_peak! {
    /// 16-bit integer pair multiply-adds with AVX512-VNNI's `vpdpwssd`, what the int8 kernels run.
    vnni_gops: "vpdpwssd", "avx512f,avx512bw,avx512vnni" ["avx512f", "avx512bw", "avx512vnni"], 64.0,
    _mm512_setzero_si512(), _mm512_set1_epi16(3), _mm512_set1_epi16(-2)
}

asm_peak! {
    /// Bfloat16 pair multiply-adds with AVX512-BF16's `vdpbf16ps`, what the bf16 kernels run (0.5 × -0.5: sums
    /// that stay finite).
    bf16_gflops: "vdpbf16ps", "avx512f,avx512bf16" ["avx512f", "avx512bf16"], 64.0,
    _mm512_setzero_ps(), _mm512_set1_epi16(0x3F00), _mm512_set1_epi16(-16_640)
}

asm_peak! {
    /// 8-bit quadruple multiply-adds (unsigned × signed) with AVX512-VNNI's `vpdpbusd`: what kernels with 8-bit
    /// activations would run. No precision mode does (BENCHMARKS.md has the accuracy that ruled it out).
    int8_gops: "vpdpbusd", "avx512f,avx512bw,avx512vnni" ["avx512f", "avx512bw", "avx512vnni"], 128.0,
    _mm512_setzero_si512(), _mm512_set1_epi8(3), _mm512_set1_epi8(-2)
}

/// Bfloat16 tile products with Intel AMX's `tdpbf16ps` (16 × 32 by 32 × 16 into 16 × 16 f32 sums, 16,384
/// operations each) on four independent accumulator tiles, what the bf16 kernels run where the CPU has AMX, in
/// GFLOP/s on one thread; 0 where the CPU lacks it or Linux refuses the tile state.
fn amx_bf16_gflops(iters: u64) -> f64 {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    return amx_loop(iters);
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    0.0
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[expect(unsafe_code, reason = "AMX instructions as assembly after checking the CPU and asking Linux")]
fn amx_loop(iters: u64) -> f64 {
    use std::arch::x86_64::{__cpuid_count, __get_cpuid_max};
    // CPUID leaf 7: AMX-BF16 is bit 22 of EDX, AMX-TILE bit 24.
    let has = __get_cpuid_max(0).0 >= 7 && __cpuid_count(7, 0).edx & (5 << 22) == 5 << 22;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: this arch_prctl only widens the process's permitted register state.
    if !has || unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } != 0 {
        return 0.0;
    }
    // Palette 1, every tile 16 rows of 64 bytes.
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    for t in 0..8 {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = 16;
    }
    let t = Instant::now();
    // SAFETY: the CPU has AMX-TILE and AMX-BF16 and Linux granted their state (checked above); cfg is a valid
    // configuration; the loop touches registers only.
    unsafe {
        std::arch::asm!(
            "ldtilecfg [{cfg}]",
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            "2:",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "dec {n}",
            "jnz 2b",
            "tilerelease",
            cfg = in(reg) cfg.as_ptr(),
            n = inout(reg) iters.max(1) => _,
            options(nostack, readonly),
        );
    }
    iters.max(1) as f64 * 4.0 * 16_384.0 / t.elapsed().as_secs_f64() / 1e9
}

/// 16-bit integer multiply-add throughput without VNNI, as the AVX2 int8 kernel runs it (`vpmaddwd` then
/// `vpaddd`: 32 operations per pair), or 0 where the CPU lacks AVX2.
#[expect(unsafe_code, reason = "calls the AVX2 loop after checking the CPU")]
fn madd_gops(iters: u64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { madd_loop(iters) };
    }
    0.0
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[expect(unsafe_code, reason = "vpmaddwd and vpaddd as assembly")]
fn madd_loop(iters: u64) -> f64 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_epi16(3), _mm256_set1_epi16(-2));
    let mut acc = [_mm256_setzero_si256(); 12];
    let t = Instant::now();
    for _ in 0..iters {
        for x in acc.iter_mut() {
            // As assembly for the reason vnni_loop gives: constant operands would let LLVM hoist the product.
            // SAFETY: register-only instructions the CPU has (checked by the caller).
            unsafe {
                std::arch::asm!(
                    "vpmaddwd {p}, {a}, {b}",
                    "vpaddd {acc}, {acc}, {p}",
                    acc = inout(ymm_reg) *x,
                    p = out(ymm_reg) _,
                    a = in(ymm_reg) a,
                    b = in(ymm_reg) b,
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    iters as f64 * 12.0 * 32.0 / secs / 1e9
}

/// The training path's embedding: every train and test text through `embed_all` (length-sorted batches).
fn embed_all(args: &[String]) -> Result<serde_json::Value> {
    let [dir, csv, rest @ ..] = args else { bail!("usage: embed-all MODEL_DIR CSV [f32|int8|bf16]") };
    let opts = strato_ml::LoadOptions { precision: precision(rest.first())?, ..Default::default() };
    let e = strato_ml::Embedder::load_opts(&PathBuf::from(dir), opts)?;
    let texts = texts(csv, &["train", "test"], usize::MAX)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    e.embed_all(&refs, |_, _| true)?;
    let secs = t.elapsed().as_secs_f64();
    Ok(json!({"texts": refs.len(), "seconds": secs, "per_s": refs.len() as f64 / secs}))
}

/// One text embedded N times after loading, for `valgrind --tool=callgrind
/// --toggle-collect=*Embedder::embed_batch`: the instruction count of one query, repeatable on a noisy machine.
fn embed_once(args: &[String]) -> Result<serde_json::Value> {
    let [dir, text, rest @ ..] = args else { bail!("usage: embed-once MODEL_DIR TEXT [N] [f32|int8|bf16]") };
    let n: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let opts = strato_ml::LoadOptions { precision: precision(rest.get(1))?, ..Default::default() };
    let e = strato_ml::Embedder::load_opts(&PathBuf::from(dir), opts)?;
    let tokens = e.token_count(text)?;
    for _ in 0..n {
        std::hint::black_box(e.embed_batch(&[text.as_str()])?);
    }
    Ok(json!({"tokens": tokens, "n": n}))
}

/// How far reduced-precision (int8 by default, or bf16) embeddings are from f32 ones on CLINC150's test split:
/// worst and mean cosine.
fn precision_gap(args: &[String]) -> Result<serde_json::Value> {
    let [dir, csv, rest @ ..] = args else { bail!("usage: precision MODEL_DIR CSV [int8|bf16]") };
    let reduced = precision(Some(rest.first().cloned().unwrap_or_else(|| "int8".into())).as_ref())?;
    let texts = texts(csv, &["test"], usize::MAX)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let load = |precision| {
        strato_ml::Embedder::load_opts(&PathBuf::from(dir), strato_ml::LoadOptions { precision, ..Default::default() })
    };
    let a = load(strato_ml::Precision::F32)?.embed_all(&refs, |_, _| true)?;
    let b = load(reduced)?.embed_all(&refs, |_, _| true)?;
    let mut cos: Vec<(f64, usize)> = a
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (x, y))| (x.iter().zip(y).map(|(p, q)| (*p as f64) * (*q as f64)).sum::<f64>(), i))
        .collect();
    cos.sort_by(|x, y| x.0.total_cmp(&y.0));
    Ok(json!({
        "precision": format!("{reduced:?}"),
        "cosine_worst": cos[0].0, "cosine_mean": cos.iter().map(|c| c.0).sum::<f64>() / cos.len() as f64,
        "worst_texts": cos.iter().take(5).map(|&(c, i)| json!([refs[i], c])).collect::<Vec<_>>(), "n": cos.len(),
    }))
}

async fn predict(args: &[String]) -> Result<serde_json::Value> {
    let [data_dir, model_dir, model, csv, rest @ ..] = args else {
        bail!("usage: predict DATA_DIR MODEL_DIR MODEL_ID CSV [N] [f32|int8|bf16]")
    };
    let n: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let mut opts = strato_service::StratoOptions::new(data_dir);
    opts.embedding_model = Some(PathBuf::from(model_dir));
    opts.embedding_precision = precision(rest.get(1))?;
    let s = strato_service::Strato::open(opts).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let texts = texts(csv, &["test"], n)?;
    for t in texts.iter().take(20) {
        s.models().predict(model, vec![t.clone()], 5).await.map_err(|e| anyhow::anyhow!(e.message))?;
    }
    let mut ms = Vec::with_capacity(texts.len());
    for t in &texts {
        let start = Instant::now();
        s.models().predict(model, vec![t.clone()], 5).await.map_err(|e| anyhow::anyhow!(e.message))?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok(json!({"predict_p50_ms": percentile(&ms, 0.5), "predict_p99_ms": percentile(&ms, 0.99), "n": ms.len()}))
}

/// Open-intent (off-topic) evaluation on CLINC150: train a mentor model on the known intents' train rows, then
/// score the test split (unknown intents must come back off-topic).
fn offtopic(args: &[String]) -> Result<serde_json::Value> {
    let [dir, csv, known, rest @ ..] = args else { bail!("usage: offtopic MODEL_DIR CSV KNOWN_INTENTS [TOL]") };
    let known: std::collections::HashSet<String> =
        std::fs::read_to_string(known)?.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let e = strato_ml::Embedder::load(&PathBuf::from(dir))?;
    let mut train = Vec::new();
    let mut test = Vec::new();
    for r in csv::Reader::from_path(csv)?.records() {
        let r = r?;
        match (&r[2], known.contains(&r[1])) {
            ("train", true) => train.push(strato_ml::Example { text: r[0].into(), label: r[1].into(), split: None }),
            ("test", _) => test.push((r[0].to_string(), r[1].to_string())),
            _ => {}
        }
    }
    let t = Instant::now();
    let texts: Vec<&str> = train.iter().map(|x| x.text.as_str()).collect();
    let emb = e.embed_all(&texts, |_, _| true)?;
    let embed_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let id = strato_ml::EmbeddingIdentity { name: "bench".into(), sha256: String::new() };
    let mut params = strato_ml::TrainParams { val_fraction: 0.0, ..Default::default() };
    if let Some(tol) = rest.first() {
        params.tol = tol.parse()?;
    }
    let model = strato_ml::mentor_model::MentorModel::train(&train, &emb, &[], &params, &id, String::new())?;
    let fit_s = t.elapsed().as_secs_f64();
    let test_texts: Vec<&str> = test.iter().map(|(t, _)| t.as_str()).collect();
    let test_emb = e.embed_all(&test_texts, |_, _| true)?;
    let m = model
        .open_intent_metrics(test_emb.iter().zip(&test).map(|(q, (_, label))| (q.as_slice(), label.as_str())), |l| {
            known.contains(l)
        });
    Ok(json!({
        "off_topic_precision": m.off_topic_precision, "off_topic_recall": m.off_topic_recall,
        "off_topic_f1": m.off_topic_f1, "in_scope_accuracy": m.in_scope_accuracy, "threshold": model.offtopic.threshold,
        "cv_f1": model.offtopic.cv_f1, "cv_accuracy": model.offtopic.cv_accuracy, "f2_weight": model.offtopic.f2_weight, "embed_s": embed_s, "fit_s": fit_s,
    }))
}

/// A synthetic mentor built from CLINC150's train split: answer i takes 1 + `paraphrases` consecutive utterances of
/// intent i mod 150 as its question and paraphrases. bench/peer_mentor.py builds the same mentor.
fn synthetic_mentor(csv: &str, id: &str, answers: usize, paraphrases: usize) -> Result<strato_types::Mentor> {
    let mut by_intent: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in csv::Reader::from_path(csv)?.records() {
        let r = r?;
        if &r[2] == "train" {
            by_intent.entry(r[1].to_string()).or_default().push(r[0].to_string());
        }
    }
    let intents: Vec<&String> = by_intent.keys().collect();
    let mut used = vec![0usize; intents.len()];
    let mut list = Vec::new();
    for i in 0..answers {
        let k = i % intents.len();
        let texts = &by_intent[intents[k]];
        let take: Vec<String> = texts.iter().skip(used[k]).take(1 + paraphrases).cloned().collect();
        used[k] += 1 + paraphrases;
        if take.is_empty() {
            bail!("not enough utterances for {answers} answers");
        }
        list.push(serde_json::json!({
            "id": format!("a{i}"),
            "question": {"id": format!("q{i}"), "text": take[0], "paraphrases": take[1..], "type": "QUESTION"},
            "transcript": format!("answer {i} about {}", intents[k]),
            "status": "COMPLETE",
        }));
    }
    Ok(serde_json::from_value(json!({"id": id, "name": "Bench Mentor", "type": "CHAT", "answers": list}))?)
}

async fn open_service(data_dir: &str, model_dir: &str) -> Result<strato_service::Strato> {
    let mut opts = strato_service::StratoOptions::new(data_dir);
    opts.embedding_model = Some(PathBuf::from(model_dir));
    strato_service::Strato::open(opts).await.map_err(|e| anyhow::anyhow!(e.message))
}

/// Training time (through the job queue) and answer latency for one mentor of N answers × P paraphrases.
async fn mentor(args: &[String]) -> Result<serde_json::Value> {
    let [data_dir, model_dir, csv, rest @ ..] = args else {
        bail!("usage: mentor DATA_DIR MODEL_DIR CSV [ANSWERS] [PARAPHRASES]")
    };
    let answers: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let paraphrases: usize = rest.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3);
    let s = open_service(data_dir, model_dir).await?;
    s.embeddings().embedder().await.map_err(|e| anyhow::anyhow!(e.message))?;
    let m = synthetic_mentor(csv, "bench", answers, paraphrases)?;
    s.mentors().put("bench", m).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let pool = s.start_workers(Default::default());
    let t = Instant::now();
    let job = s.mentors().submit_training("bench", None).await.map_err(|e| anyhow::anyhow!(e.message))?;
    let job = loop {
        let j = s.jobs().get(&job.id).await.map_err(|e| anyhow::anyhow!(e.message))?;
        if j.status.is_final() {
            break j;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let train_s = t.elapsed().as_secs_f64();
    if job.status != strato_types::JobStatus::Success {
        bail!("training failed: {:?}", job.error);
    }
    let queries = texts(csv, &["test"], 520)?;
    for q in queries.iter().take(20) {
        s.mentors().answer("bench", q, None).await.map_err(|e| anyhow::anyhow!(e.message))?;
    }
    let mut ms = Vec::new();
    for q in &queries[20..] {
        let t = Instant::now();
        s.mentors().answer("bench", q, None).await.map_err(|e| anyhow::anyhow!(e.message))?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    pool.shutdown().await;
    Ok(json!({
        "answers": answers, "paraphrases": paraphrases, "mentor_train_s": train_s,
        "answer_p50_ms": percentile(&ms, 0.5), "answer_p99_ms": percentile(&ms, 0.99),
        "off_topic": job.result.map(|r| r["off_topic"].clone()),
    }))
}

/// Fills DATA_DIR with N trained mentors of A answers (1 question + 3 paraphrases each, CLINC150 train
/// utterances), for the many-mentors serving benchmark. Texts are embedded once and shared; each mentor's model is
/// trained exactly as a training job trains it and published through the same code.
async fn many_mentors(args: &[String]) -> Result<serde_json::Value> {
    let [data_dir, model_dir, csv, rest @ ..] = args else {
        bail!("usage: many-mentors DATA_DIR MODEL_DIR CSV [N] [ANSWERS]")
    };
    let n: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let answers: usize = rest.get(1).map(|s| s.parse()).transpose()?.unwrap_or(100);
    let s = open_service(data_dir, model_dir).await?;
    let (embedder, identity) = s.embeddings().embedder_with_identity().await.map_err(|e| anyhow::anyhow!(e.message))?;
    let mut by_intent: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    let mut pool = Vec::new();
    for r in csv::Reader::from_path(csv)?.records() {
        let r = r?;
        if &r[2] == "train" {
            by_intent.entry(r[1].to_string()).or_default().push(pool.len());
            pool.push(r[0].to_string());
        }
    }
    let t = Instant::now();
    let refs: Vec<&str> = pool.iter().map(String::as_str).collect();
    let emb = std::sync::Arc::new(embedder.embed_all(&refs, |_, _| true)?);
    let embed_s = t.elapsed().as_secs_f64();
    let intents: Vec<&Vec<usize>> = by_intent.values().collect();
    let t = Instant::now();
    for m in 0..n {
        let id = format!("m{m:04}");
        let mut list = Vec::new();
        let mut examples = Vec::new();
        let mut rows = Vec::new();
        for j in 0..answers {
            // 7 is coprime with 150: a mentor's answers all come from different intents.
            let idx = intents[(m * 7 + j) % intents.len()];
            let texts: Vec<usize> = (0..4).map(|t| idx[(m * 4 + t) % idx.len()]).collect();
            list.push(json!({
                "id": format!("a{j}"),
                "question": {"id": format!("q{j}"), "text": pool[texts[0]], "paraphrases": texts[1..].iter().map(|&i| &pool[i]).collect::<Vec<_>>()},
                "transcript": format!("answer {j}"),
            }));
            for &i in &texts {
                examples.push(strato_ml::Example { text: pool[i].clone(), label: format!("a{j}"), split: None });
                rows.push(i);
            }
        }
        let mentor: strato_types::Mentor =
            serde_json::from_value(json!({"id": id, "name": format!("Mentor {m}"), "answers": list}))?;
        s.mentors().put(&id, mentor).await.map_err(|e| anyhow::anyhow!(e.message))?;
        let (emb, identity) = (emb.clone(), identity.clone());
        let model = tokio::task::spawn_blocking(move || {
            let e: Vec<Vec<f32>> = rows.iter().map(|&i| emb[i].clone()).collect();
            let params = strato_ml::TrainParams { val_fraction: 0.0, ..Default::default() };
            strato_ml::mentor_model::MentorModel::train(&examples, &e, &[], &params, &identity, String::new())
        })
        .await??;
        s.mentors().publish_model(&id, &model, None).await?;
    }
    Ok(json!({"mentors": n, "answers": answers, "embed_s": embed_s, "train_all_s": t.elapsed().as_secs_f64()}))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("jobs") {
        return jobs::run(&args[1..]).await;
    }
    if args.first().map(String::as_str) == Some("workflows") {
        return workflows::run(&args[1..]).await;
    }
    if args.first().map(String::as_str) == Some("media") {
        return media::run(&args[1..]).await;
    }
    let out = match args.first().map(String::as_str) {
        Some("embed") => embed(&args[1..])?,
        Some("predict") => predict(&args[1..]).await?,
        Some("precision") => precision_gap(&args[1..])?,
        Some("embed-once") => embed_once(&args[1..])?,
        Some("embed-all") => embed_all(&args[1..])?,
        Some("peak") => peak()?,
        Some("offtopic") => offtopic(&args[1..])?,
        Some("fewshot") => fewshot::run(&args[1..])?,
        Some("mentor") => mentor(&args[1..]).await?,
        Some("many-mentors") => many_mentors(&args[1..]).await?,
        _ => bail!(
            "usage: strato-bench embed|predict|precision|offtopic|fewshot|mentor|many-mentors|jobs|workflows|media …"
        ),
    };
    println!("{out}");
    Ok(())
}
