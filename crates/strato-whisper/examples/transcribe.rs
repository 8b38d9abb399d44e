//! Transcribes audio files with a Whisper model directory and prints the text, the segments and the real-time
//! factor (processing time / audio time; below 1 is faster than real time).
//!
//! `cargo run --release -p strato-whisper --example transcribe -- MODEL_DIR FILE... [--language xx] [--vtt]`
//!
//! A `.f32` file is raw 16 kHz mono f32le samples; anything else is decoded with `ffmpeg` on the PATH.
#![expect(clippy::print_stdout, reason = "a command-line example prints its results")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use strato_whisper::{webvtt, Precision, Precisions, TranscribeOptions, Whisper};

fn read_pcm(path: &Path) -> Result<Vec<f32>, String> {
    let bytes = if path.extension().is_some_and(|e| e == "f32") {
        std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(path)
            .args(["-f", "f32le", "-ac", "1", "-ar", "16000", "-"])
            .output()
            .map_err(|e| format!("running ffmpeg: {e}"))?;
        if !out.status.success() {
            return Err(format!("ffmpeg failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr)));
        }
        out.stdout
    };
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// CPU time this process has used (all threads, user and system), in seconds; 0 where `/proc` is missing. Unlike
/// the wall time, it hardly changes when other processes share the CPU.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends at the last ')'): utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after.split_whitespace().skip(11).take(2).filter_map(|v| v.parse::<f64>().ok()).sum();
    ticks / 100.0
}

fn main() -> Result<(), String> {
    // RUST_LOG=strato_whisper=debug shows the encoder and decoder time of each window.
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let mut args = std::env::args().skip(1);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut opts = TranscribeOptions::default();
    let mut vtt = false;
    let model_dir =
        PathBuf::from(args.next().ok_or("usage: transcribe MODEL_DIR FILE... [--language xx|auto] [--vtt]")?);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--language" => {
                let l = args.next().ok_or("--language needs a value")?;
                opts.language = (l != "auto").then_some(l);
            }
            "--vtt" => vtt = true,
            _ => files.push(a.into()),
        }
    }
    let t = Instant::now();
    // STRATO_WHISPER_PRECISION=ENCODER[,DECODER] (f32, int8 or bf16; one value for both) sets the products'
    // precisions.
    let parse = |p: &str| match p {
        "f32" => Ok(Precision::F32),
        "int8" => Ok(Precision::Int8),
        "bf16" => Ok(Precision::Bf16),
        other => Err(format!("STRATO_WHISPER_PRECISION: unknown precision {other:?}")),
    };
    let mut precisions = Precisions::default();
    if let Ok(p) = std::env::var("STRATO_WHISPER_PRECISION") {
        let (e, d) = p.split_once(',').unwrap_or((&p, &p));
        precisions = Precisions { encoder: parse(e)?, decoder: parse(d)? };
    }
    let whisper = Whisper::load_with(&model_dir, precisions).map_err(|e| e.to_string())?;
    println!("loaded {} in {:.2}s: {:?}", model_dir.display(), t.elapsed().as_secs_f64(), whisper.config());
    let (mut audio_total, mut time_total) = (0.0, 0.0);
    for file in &files {
        let pcm = read_pcm(file)?;
        let (t, cpu) = (Instant::now(), cpu_seconds());
        let transcript = whisper.transcribe(&pcm, &opts, &mut |_| true).map_err(|e| e.to_string())?;
        let secs = t.elapsed().as_secs_f64();
        audio_total += transcript.duration;
        time_total += secs;
        println!(
            "== {} ({:.1}s audio, {:.2}s, RTF {:.3}, language {}, cpu {:.2}s)",
            file.display(),
            transcript.duration,
            secs,
            secs / transcript.duration,
            transcript.language,
            cpu_seconds() - cpu
        );
        for s in &transcript.segments {
            println!("  [{:7.2} -> {:7.2}] {}", s.start, s.end, s.text);
        }
        println!("TEXT\t{}\t{}", file.display(), transcript.text);
        if vtt {
            print!("{}", webvtt(&transcript.segments));
        }
    }
    println!("TOTAL audio {audio_total:.1}s, time {time_total:.2}s, RTF {:.3}", time_total / audio_total.max(1e-9));
    Ok(())
}
