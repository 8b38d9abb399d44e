"""Whisper: Strato's in-binary transcription beside faster-whisper 1.2.1 (CTranslate2 int8), on the same model
directory and the same clips, in one run.

    python3 bench/peer_whisper.py MODEL_DIR [--threads 2] [--keep DIR]

MODEL_DIR is what `strato_fetch::pull_whisper_model` installs (model.bin, config.json, vocabulary.txt and the
tokenizer.json faster-whisper needs). Needs espeak-ng and ffmpeg on the PATH, cargo, and faster-whisper==1.2.1 in
the Python running this script (e.g. a venv: `python -m venv V && V/bin/pip install faster-whisper==1.2.1`).

The clips are sentences spoken by espeak-ng (150 words a minute) separated by known pauses: a 12 s one, a 34 s
one (two windows) and a 62 s one (three windows). Both sides get the same 16 kHz f32 samples, decode greedily
(beam 1) in English with timestamps, no VAD, conditioned on previous text; Strato runs its release example
`transcribe` (default precisions: f32 encoder, int8 decoder; STRATO_WHISPER_PRECISION=ENC[,DEC] overrides;
2 rayon threads unless --threads), faster-whisper `compute_type="int8"`, `cpu_threads`. RTF is
transcription time over audio time, model load excluded. WER is word-level Levenshtein over lowercased words
without punctuation; "start error" is, per sentence, the distance from its true start to the nearest segment
start.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

RATE = 16000
ROOT = Path(__file__).resolve().parent.parent

SENTENCES = [
    "The weather today is sunny and warm.",
    "Please send the report to my office before noon.",
    "Our team will meet again next week to review the plan.",
    "Students should read the first chapter of the book.",
    "The train leaves the station early in the morning.",
    "We need more time to finish the new kitchen.",
    "Thank you all for listening to this short talk.",
    "My favorite color is blue.",
    "I like to walk in the park with my dog.",
    "Water boils when it gets very hot.",
    "The children played outside until the sun went down.",
    "She bought fresh bread and cheese at the market.",
    "Remember to turn off the lights when you leave.",
    "The museum is closed on Mondays and holidays.",
]

CLIPS = {
    "short": (SENTENCES[7:10], 1.2, 1.5),
    "two_windows": (SENTENCES[0:7], 0.5, 2.0),
    "sixty_seconds": (SENTENCES[0:14], 0.8, 1.8),
}


def speak(text, tmp):
    wav = os.path.join(tmp, "s.wav")
    subprocess.run(["espeak-ng", "-s", "150", "-w", wav, text], check=True)
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", wav, "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
        check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype="<f4")


def make_clip(sentences, lead, gap, tmp):
    parts, starts, pos = [np.zeros(int(lead * RATE), "<f4")], [], int(lead * RATE)
    for i, s in enumerate(sentences):
        if i:
            parts.append(np.zeros(int(gap * RATE), "<f4"))
            pos += int(gap * RATE)
        speech = speak(s, tmp)
        loud = np.nonzero(np.abs(speech) > 0.01)[0]
        starts.append((pos + (int(loud[0]) if len(loud) else 0)) / RATE)
        parts.append(speech)
        pos += len(speech)
    return np.concatenate(parts), starts


def words(text):
    return [w for w in (re.sub(r"[^\w]", "", w) for w in text.lower().replace("-", " ").split()) if w]


def wer(ref, hyp):
    r, h = words(ref), words(hyp)
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r):
        cur = [i + 1] * (len(h) + 1)
        for j, hw in enumerate(h):
            cur[j + 1] = min(prev[j] + (rw != hw), prev[j + 1] + 1, cur[j] + 1)
        prev = cur
    return prev[len(h)] / max(1, len(r))


def start_errors(starts, segment_starts):
    return [min((abs(s - c) for c in segment_starts), default=float("inf")) for s in starts]


def run_strato(model_dir, files, threads):
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "strato-whisper", "--example", "transcribe"],
                   cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([str(target / "release/examples/transcribe"), model_dir, *files],
                         check=True, capture_output=True, text=True, env=env).stdout
    results, current = {}, None
    for line in out.splitlines():
        m = re.match(r"== (\S+) \(([\d.]+)s audio, ([\d.]+)s, RTF", line)
        if m:
            current = m.group(1)
            results[current] = {"audio_s": float(m.group(2)), "time_s": float(m.group(3)), "segments": []}
            continue
        m = re.match(r"\s+\[\s*([\d.]+) ->\s*([\d.]+)\] (.*)", line)
        if m and current:
            results[current]["segments"].append((float(m.group(1)), float(m.group(2)), m.group(3)))
        if line.startswith("TEXT\t"):
            _, name, text = line.split("\t", 2)
            results[name]["text"] = text
    return results


def run_faster_whisper(model_dir, files, threads):
    from faster_whisper import WhisperModel
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads)
    results = {}
    for f in files:
        audio = np.fromfile(f, dtype="<f4")
        t = time.perf_counter()
        segments, info = model.transcribe(audio, beam_size=1, language="en", vad_filter=False,
                                          condition_on_previous_text=True, temperature=0.0)
        segments = [(s.start, s.end, s.text.strip()) for s in segments]
        took = time.perf_counter() - t
        results[f] = {"audio_s": len(audio) / RATE, "time_s": took, "segments": segments,
                      "text": " ".join(s[2] for s in segments)}
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", help="write the clips here instead of a temporary directory")
    args = ap.parse_args()
    tmp = args.keep or tempfile.mkdtemp(prefix="peer-whisper-")
    os.makedirs(tmp, exist_ok=True)
    clips = {}
    for name, (sentences, lead, gap) in CLIPS.items():
        pcm, starts = make_clip(sentences, lead, gap, tmp)
        path = os.path.join(tmp, name + ".f32")
        pcm.astype("<f4").tofile(path)
        with wave.open(os.path.join(tmp, name + ".wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(RATE)
            w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
        clips[path] = {"reference": " ".join(sentences), "starts": starts}

    files = list(clips)
    report = {"model_dir": args.model_dir, "threads": args.threads, "clips": {}}
    totals = {}
    for side, run in [("strato", run_strato), ("faster_whisper", run_faster_whisper)]:
        results = run(args.model_dir, files, args.threads)
        audio = sum(r["audio_s"] for r in results.values())
        took = sum(r["time_s"] for r in results.values())
        all_ref = " ".join(clips[f]["reference"] for f in files)
        all_hyp = " ".join(results[f]["text"] for f in files)
        totals[side] = {"audio_s": round(audio, 1), "time_s": round(took, 2), "rtf": round(took / audio, 3),
                        "wer": round(wer(all_ref, all_hyp), 4)}
        for f in files:
            r = results[f]
            errs = start_errors(clips[f]["starts"], [s[0] for s in r["segments"]])
            report["clips"].setdefault(Path(f).stem, {})[side] = {
                "audio_s": round(r["audio_s"], 1), "time_s": round(r["time_s"], 2),
                "rtf": round(r["time_s"] / r["audio_s"], 3), "wer": round(wer(clips[f]["reference"], r["text"]), 4),
                "max_start_error_s": round(max(errs), 2), "text": r["text"]}
    report["totals"] = totals
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
