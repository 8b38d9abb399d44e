//! The real model on speech made with espeak-ng: word error rate and cue timing.
//!
//! Needs `STRATO_TEST_WHISPER_DIR` (a directory `strato_fetch::pull_whisper_model` installed, tiny.en for speed)
//! and `espeak-ng` and `ffmpeg` on the PATH; skips with a message when the variable is unset.

use std::path::{Path, PathBuf};
use std::process::Command;

use strato_whisper::{webvtt, Precision, Precisions, TranscribeOptions, Whisper};

const RATE: usize = 16_000;

fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("STRATO_TEST_WHISPER_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("skipping: set STRATO_TEST_WHISPER_DIR to a Whisper model directory (tiny.en) to run this test");
            None
        }
    }
}

/// `text` spoken by espeak-ng at 150 words a minute, as 16 kHz mono f32.
fn speak(dir: &Path, i: usize, text: &str) -> Vec<f32> {
    let wav = dir.join(format!("s{i}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (apt-get install espeak-ng) when STRATO_TEST_WHISPER_DIR is set");
    assert!(status.success(), "espeak-ng failed");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&wav)
        .args(["-f", "f32le", "-ac", "1", "-ar", "16000", "-"])
        .output()
        .expect("ffmpeg must be installed when STRATO_TEST_WHISPER_DIR is set");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Sentences after `lead` seconds of silence, `gap` seconds apart; returns the samples and each sentence's start.
fn clip(dir: &Path, sentences: &[&str], lead: f64, gap: f64) -> (Vec<f32>, Vec<f64>) {
    let mut pcm = vec![0f32; (lead * RATE as f64) as usize];
    let mut starts = Vec::new();
    for (i, s) in sentences.iter().enumerate() {
        if i > 0 {
            pcm.extend(std::iter::repeat_n(0f32, (gap * RATE as f64) as usize));
        }
        let speech = speak(dir, i, s);
        // espeak-ng leads with a few milliseconds of near-silence; time the sentence from its first sound.
        let onset = speech.iter().position(|v| v.abs() > 0.01).unwrap_or(0);
        starts.push((pcm.len() + onset) as f64 / RATE as f64);
        pcm.extend(speech);
    }
    (pcm, starts)
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-')
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate: word-level Levenshtein distance over the reference's length.
fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rw != hw)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

#[test]
fn wer_helper() {
    assert_eq!(wer("The cat sat.", "the cat sat"), 0.0);
    assert_eq!(wer("a b c d", "a x c"), 0.5);
    assert_eq!(wer("well-known fact", "well known fact"), 0.0);
}

/// Start times (s) of the cues in a WebVTT document.
fn cue_starts(vtt: &str) -> Vec<f64> {
    vtt.lines()
        .filter_map(|l| l.split_once(" --> "))
        .map(|(a, _)| {
            let p: Vec<f64> = a.split(':').map(|x| x.parse().unwrap()).collect();
            (p[0] * 60.0 + p[1]) * 60.0 + p[2]
        })
        .collect()
}

#[test]
fn transcribes_spoken_sentences_with_timed_cues() {
    let Some(dir) = model_dir() else { return };
    let whisper = Whisper::load(&dir).expect("loading the model");
    let tmp = tempfile::tempdir().unwrap();
    // The first clip runs past 30 s, so the second window starts where the first one's last timestamp says.
    let clips: [(&[&str], f64, f64); 2] = [
        (
            &[
                "The weather today is sunny and warm.",
                "Please send the report to my office before noon.",
                "Our team will meet again next week to review the plan.",
                "Students should read the first chapter of the book.",
                "The train leaves the station early in the morning.",
                "We need more time to finish the new kitchen.",
                "Thank you all for listening to this short talk.",
            ],
            0.5,
            // Whisper (faster-whisper too) times the first two sentences as one segment; the split at the pause
            // (`snap_to_speech`) must give the second its own cue.
            2.0,
        ),
        (
            &[
                "My favorite color is blue.",
                "I like to walk in the park with my dog.",
                "Water boils when it gets very hot.",
            ],
            1.2,
            1.5,
        ),
    ];
    let mut total_audio = 0.0;
    for (sentences, lead, gap) in clips {
        let (pcm, starts) = clip(tmp.path(), sentences, lead, gap);
        let secs = pcm.len() as f64 / RATE as f64;
        total_audio += secs;
        let mut fractions = Vec::new();
        let t = std::time::Instant::now();
        let transcript = whisper
            .transcribe(&pcm, &TranscribeOptions::default(), &mut |f| {
                fractions.push(f);
                true
            })
            .expect("transcribing");
        let took = t.elapsed().as_secs_f64();
        let reference = sentences.join(" ");
        let rate = wer(&reference, &transcript.text);
        eprintln!(
            "{secs:.1}s of audio in {took:.2}s (RTF {:.3}), WER {rate:.3}\n  said: {reference}\n  heard: {}\n  segments: {:?}",
            took / secs,
            transcript.text,
            transcript.segments
        );
        assert!(rate <= 0.15, "WER {rate:.3} > 0.15");
        assert_eq!(fractions.last(), Some(&1.0));
        assert!((transcript.duration - secs).abs() < 1e-6);

        let vtt = webvtt(&transcript.segments);
        let cues = cue_starts(&vtt);
        for (sentence, start) in sentences.iter().zip(&starts) {
            let nearest = cues.iter().map(|c| (c - start).abs()).fold(f64::INFINITY, f64::min);
            assert!(nearest <= 1.0, "no cue starts within 1 s of {start:.2}s ({sentence:?}); cues at {cues:?}\n{vtt}");
        }
    }
    assert!(total_audio < 60.0);
}

#[test]
fn f32_everywhere_transcribes_too() {
    let Some(dir) = model_dir() else { return };
    let whisper = Whisper::load_with(&dir, Precisions::all(Precision::F32)).expect("loading the model");
    let tmp = tempfile::tempdir().unwrap();
    let sentences = ["My favorite color is blue.", "I like to walk in the park with my dog."];
    let (pcm, _) = clip(tmp.path(), &sentences, 1.0, 1.5);
    let transcript = whisper.transcribe(&pcm, &TranscribeOptions::default(), &mut |_| true).expect("transcribing");
    let rate = wer(&sentences.join(" "), &transcript.text);
    assert!(rate <= 0.15, "WER {rate:.3} > 0.15: {}", transcript.text);
}
