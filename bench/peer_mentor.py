#!/usr/bin/env python3
"""Python peer for the mentor benchmark: the same synthetic mentor strato-bench builds (answer i = 1 + P
consecutive CLINC150 train utterances of intent i mod 150, intents sorted by name), trained the way the original
MentorPal classifier trained (sentence-transformers embeddings + scikit-learn LogisticRegression), then answered
one query at a time (embed + predict_proba).

    bench/.venv/bin/python bench/peer_mentor.py --out bench/out/peer_mentor.json [--answers 500 --paraphrases 3]
"""
import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer import REPO, configure_env, embed, load_model  # noqa: E402


def synthetic_mentor(csv_path, answers, paraphrases):
    by_intent = defaultdict(list)
    with open(csv_path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["split"] == "train":
                by_intent[r["label"]].append(r["text"])
    intents = sorted(by_intent)
    used = defaultdict(int)
    texts, labels = [], []
    for i in range(answers):
        k = intents[i % len(intents)]
        take = by_intent[k][used[k]:used[k] + 1 + paraphrases]
        used[k] += 1 + paraphrases
        texts += take
        labels += [f"a{i}"] * len(take)
    return texts, labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", default=str(REPO / "tests/data/clinc150.csv"))
    ap.add_argument("--answers", type=int, default=500)
    ap.add_argument("--paraphrases", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench/out/peer_mentor.json"))
    args = ap.parse_args()
    configure_env(args.threads)
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    model = load_model(args.threads)
    texts, labels = synthetic_mentor(args.csv, args.answers, args.paraphrases)
    with open(args.csv, newline="", encoding="utf-8") as f:
        queries = [r["text"] for r in csv.DictReader(f) if r["split"] == "test"][:520]
    embed(model, queries[:32])  # warm-up
    t0 = time.perf_counter()
    x = embed(model, texts)
    clf = LogisticRegression(C=10, max_iter=1000).fit(x, labels)
    train_s = time.perf_counter() - t0
    for q in queries[:20]:
        clf.predict_proba(embed(model, [q]))
    lat = []
    for q in queries[20:]:
        t0 = time.perf_counter()
        p = clf.predict_proba(embed(model, [q]))[0]
        clf.classes_[p.argmax()], p.max()
        lat.append((time.perf_counter() - t0) * 1000)
    res = {"answers": args.answers, "paraphrases": args.paraphrases, "mentor_train_s": train_s,
           "answer_p50_ms": float(np.percentile(lat, 50)), "answer_p99_ms": float(np.percentile(lat, 99))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
