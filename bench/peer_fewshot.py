#!/usr/bin/env python3
"""Python peers for the few-shot mentor protocol (`strato-bench fewshot`, which runs this with `--peer PYTHON`).

Reads what strato-bench wrote in OUT_DIR (texts.json + embeddings.f32: every CLINC150 utterance embedded once by
Strato's encoder, which matches sentence-transformers; draws.json: the drawn mentors) and, for each draw and k,
trains and answers the test split with:

- MentorPal's algorithm, as in mentorpal/classifier-service (module/classifier/arch/lr_transformer/train.py and
  predict.py): scikit-learn RidgeClassifier(alpha=1.0) on the mentor's questions and paraphrases; a question whose
  highest decision_function value is below OFF_TOPIC_THRESHOLD_DEFAULT (-0.631) gets the off-topic answer.
- Logistic regression (C=10, as Strato's classifier) with a max-probability threshold tuned on CLINC150's labelled
  val split (val utterances of the drawn intents in scope, the others off-topic), once for the best overall accuracy
  and once for the best off-topic F1: labelled off-topic data that a real mentor does not have.

    bench/.venv-fewshot/bin/python bench/peer_fewshot.py OUT_DIR CSV   (numpy + scikit-learn)
"""
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeClassifier

MENTORPAL_OFF_TOPIC_THRESHOLD = -0.631


def metrics(truth, given):
    """truth/given: lists of intent or None (off-topic)."""
    in_right = in_n = off_rej = off_n = called_off = 0
    for t, g in zip(truth, given):
        if g is None:
            called_off += 1
        if t is None:
            off_n += 1
            off_rej += g is None
        else:
            in_n += 1
            in_right += g == t
    p = off_rej / called_off if called_off else 0.0
    r = off_rej / off_n if off_n else 0.0
    return {
        "overall_accuracy": (in_right + off_rej) / max(1, in_n + off_n),
        "in_scope_accuracy": in_right / max(1, in_n),
        "off_topic_precision": p,
        "off_topic_recall": r,
        "off_topic_f1": 2 * p * r / (p + r) if p + r else 0.0,
    }


def summary(all_metrics, fit_s):
    keys = all_metrics[0].keys()
    arr = {k: np.array([m[k] for m in all_metrics]) for k in keys}
    return {
        "mean": {k: float(v.mean()) for k, v in arr.items()},
        "sd": {k: float(v.std()) for k, v in arr.items()},
        "fit_s_mean": float(np.mean(fit_s)),
        "draws": all_metrics,
    }


def tuned_threshold(probs, classes, truth, key):
    """The max-probability threshold maximising `key` on labelled data (rejecting the i lowest, for every i)."""
    top = probs.max(axis=1)
    pred = classes[probs.argmax(axis=1)]
    order = np.argsort(top, kind="stable")
    top = top[order]
    is_off = np.array([truth[i] is None for i in order])
    right = np.array([truth[i] is not None and truth[i] == pred[i] for i in order])
    n_off, n_in = is_off.sum(), (~is_off).sum()
    # Rejecting the first i: off-topic rejected, in-scope right among the accepted.
    off_rej = np.concatenate([[0], np.cumsum(is_off)])
    right_acc = right.sum() - np.concatenate([[0], np.cumsum(right)])
    called_off = np.arange(len(top) + 1)
    if key == "overall_accuracy":
        score = (off_rej + right_acc) / max(1, n_in + n_off)
    else:
        p = np.where(called_off > 0, off_rej / np.maximum(called_off, 1), 0.0)
        r = off_rej / max(1, n_off)
        score = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
    # Only cut between distinct values.
    valid = np.ones(len(top) + 1, dtype=bool)
    valid[1:-1] = top[1:] > top[:-1]
    i = int(np.argmax(np.where(valid, score, -1.0)))
    if i == 0:
        return 0.0
    if i == len(top):
        return float(top[-1]) + 1e-9
    return float((top[i - 1] + top[i]) / 2)


def main():
    out, csv_path = Path(sys.argv[1]), sys.argv[2]
    texts = json.loads((out / "texts.json").read_text())
    raw = np.fromfile(out / "embeddings.f32", dtype="<f4")
    emb = raw.reshape(len(texts), -1)
    index = {t: i for i, t in enumerate(texts)}
    spec = json.loads((out / "draws.json").read_text())
    test, val = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["split"] == "test":
                test.append((r["text"], r["label"]))
            elif r["split"] == "val":
                val.append((r["text"], r["label"]))
    xt = emb[[index[t] for t, _ in test]]
    xv = emb[[index[t] for t, _ in val]]
    results = {"mentorpal": {}, "lr_val_accuracy": {}, "lr_val_f1": {}}
    for k in spec["ks"]:
        runs = {name: ([], []) for name in results}
        for d in spec["draws"]:
            known = {a["intent"] for a in d["answers"]}
            uni = set(d["universe"])
            tmask = np.array([l in uni for _, l in test])
            vmask = np.array([l in uni for _, l in val])
            rows = [(p, a["intent"]) for a in d["answers"] for p in a["phrasings"][: 1 + k]]
            x = emb[[index[t] for t, _ in rows]]
            y = np.array([l for _, l in rows])
            truth = [l if l in known else None for (_, l), m in zip(test, tmask) if m]
            # MentorPal
            t0 = time.perf_counter()
            ridge = RidgeClassifier(alpha=1.0).fit(x, y)
            fit = time.perf_counter() - t0
            dec = ridge.decision_function(xt[tmask])
            pred = ridge.classes_[dec.argmax(axis=1)]
            given = [None if s < MENTORPAL_OFF_TOPIC_THRESHOLD else c for s, c in zip(dec.max(axis=1), pred)]
            runs["mentorpal"][0].append(metrics(truth, given))
            runs["mentorpal"][1].append(fit)
            # LR, threshold tuned on val
            t0 = time.perf_counter()
            lr = LogisticRegression(C=10, max_iter=1000).fit(x, y)
            fit = time.perf_counter() - t0
            pv = lr.predict_proba(xv[vmask])
            truth_v = [l if l in known else None for (_, l), m in zip(val, vmask) if m]
            pt = lr.predict_proba(xt[tmask])
            top, pred = pt.max(axis=1), lr.classes_[pt.argmax(axis=1)]
            for name, key in (("lr_val_accuracy", "overall_accuracy"), ("lr_val_f1", "off_topic_f1")):
                thr = tuned_threshold(pv, lr.classes_, truth_v, key)
                given = [None if p < thr else c for p, c in zip(top, pred)]
                runs[name][0].append(metrics(truth, given))
                runs[name][1].append(fit)
        for name, (ms, fits) in runs.items():
            results[name][str(k)] = summary(ms, fits)
            print(f"{name} k={k}: {results[name][str(k)]['mean']}", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
