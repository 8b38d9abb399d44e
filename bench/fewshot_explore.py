#!/usr/bin/env python3
"""Exploration behind Strato's few-shot answering (issue 27): scores and threshold rules measured on the draws that
`strato-bench fewshot` writes (same embeddings, same mentors), with numpy. Not a benchmark: it is how the rule in
crates/strato-ml/src/offtopic.rs was chosen, kept so the choice can be re-examined.

    bench/.venv-fewshot/bin/python bench/fewshot_explore.py OUT_DIR CSV [--share 0.36]

Every threshold rule here looks only at the mentor's own phrasings (no labelled off-topic data); `oracle` tunes on
the test set itself and shows how well a score separates at best.
"""
import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def load(out, csv_path):
    texts = json.loads((out / "texts.json").read_text())
    emb = np.fromfile(out / "embeddings.f32", dtype="<f4").reshape(len(texts), -1)
    index = {t: i for i, t in enumerate(texts)}
    spec = json.loads((out / "draws.json").read_text())
    test = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r["split"] == "test":
                test.append((r["text"], r["label"]))
    return emb, index, spec, test


def class_scores(q, X, y, n, skip=None):
    """Per-class nearest-neighbour and prototype cosine for queries q (m×d) against rows X (unit) of classes y."""
    sims = q @ X.T  # m×r
    if skip is not None:
        sims = np.where(skip, -np.inf, sims)
    nn = np.full((q.shape[0], n), -np.inf)
    for c in range(n):
        cols = y == c
        if cols.any():
            nn[:, c] = sims[:, cols].max(axis=1)
    return nn


def proto_scores(q, X, y, n, weights=None):
    P = np.zeros((n, X.shape[1]))
    np.add.at(P, y, X if weights is None else X * weights[:, None])
    P /= np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-9)
    return q @ P.T


def evaluate(pred, score, accept_threshold, truth):
    given = np.where(score >= accept_threshold, pred, -1)
    in_mask = truth >= 0
    in_right = ((given == truth) & in_mask).sum()
    off_rej = ((given == -1) & ~in_mask).sum()
    called_off = (given == -1).sum()
    p = off_rej / called_off if called_off else 0.0
    r = off_rej / max(1, (~in_mask).sum())
    return {
        "overall": (in_right + off_rej) / len(truth),
        "in_scope": in_right / max(1, in_mask.sum()),
        "f1": 2 * p * r / (p + r) if p + r else 0.0,
    }


def best_threshold(scores_in, right_in, scores_off, share):
    """Threshold maximising (1 - share)·P(in-scope answered right) + share·P(off-topic rejected)."""
    cands = np.unique(np.concatenate([scores_in, scores_off]))
    best = (-1.0, -np.inf)
    for t in cands:
        a = (1 - share) * np.mean((scores_in >= t) & right_in) if len(scores_in) else 0.0
        b = share * np.mean(scores_off < t)
        if a + b > best[0]:
            best = (a + b, t)
    return best[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("csv")
    ap.add_argument("--shares", default="0.2,0.36,0.5,0.67")
    args = ap.parse_args()
    emb, index, spec, test = load(Path(args.out), args.csv)
    global xt_global
    xt = emb[[index[t] for t, _ in test]]
    xt_global = xt
    shares = [float(s) for s in args.shares.split(",")]
    res = defaultdict(list)
    for k in spec["ks"]:
        for d in spec["draws"]:
            intents = [a["intent"] for a in d["answers"]]
            cid = {c: i for i, c in enumerate(intents)}
            n = len(intents)
            rows = [(p, cid[a["intent"]]) for a in d["answers"] for p in a["phrasings"][: 1 + k]]
            X = emb[[index[t] for t, _ in rows]]
            y = np.array([c for _, c in rows])
            truth = np.array([cid.get(l, -1) for _, l in test])
            nn_t = class_scores(xt, X, y, n)
            pr_t = proto_scores(xt, X, y, n)
            # Leave-one-answer-out (pseudo off-topic) and leave-one-phrasing-out (in scope) on the training rows.
            self_sims = X @ X.T
            same = y[:, None] == y[None, :]
            nn_off = np.where(same, -np.inf, self_sims)
            nn_off_cls = np.full((len(y), n), -np.inf)
            nn_in_cls = np.full((len(y), n), -np.inf)
            eye = np.eye(len(y), dtype=bool)
            for c in range(n):
                cols = y == c
                nn_off_cls[:, c] = np.where(cols[None, :], nn_off, -np.inf).max(axis=1)
                nn_in_cls[:, c] = np.where(cols[None, :] & ~eye, self_sims, -np.inf).max(axis=1)
            for name, st, s_in, right_in, s_off in methods(nn_t, pr_t, X, y, n, nn_in_cls, nn_off_cls):
                pred_t = st.argmax(axis=1)
                score_t = st.max(axis=1)
                for share in shares if name == "nn" else []:
                    t = best_threshold(s_in, right_in, s_off, share) if len(s_in) else np.quantile(s_off, 1 - share / 2)
                    res[(name, f"loo@{share}", k)].append(evaluate(pred_t, score_t, t, truth))
                # oracle on test
                best = max((evaluate(pred_t, score_t, t, truth)["overall"], t)
                           for t in np.quantile(score_t, np.linspace(0, 1, 101)))
                res[(name, "oracle-acc", k)].append(evaluate(pred_t, score_t, best[1], truth))
                best = max((evaluate(pred_t, score_t, t, truth)["f1"], t)
                           for t in np.quantile(score_t, np.linspace(0, 1, 101)))
                res[(name, "oracle-f1", k)].append(evaluate(pred_t, score_t, best[1], truth))
                res[(name, "closed", k)].append({"overall": 0, "in_scope": np.mean(pred_t[truth >= 0] == truth[truth >= 0]), "f1": 0})
    for key in sorted(res):
        ms = res[key]
        mean = {m: np.mean([x[m] for x in ms]) for m in ms[0]}
        print(f"{key[0]:12s} {key[1]:12s} k={key[2]}  overall {mean['overall']:.3f}  in {mean['in_scope']:.3f}  "
              f"F1 {mean['f1']:.3f}")


def methods(nn_t, pr_t, X, y, n, nn_in_cls, nn_off_cls):
    """(name, test class scores, LOO in-scope scores, their predicted classes, LOO off-topic scores)."""
    has_in = np.isfinite(nn_in_cls[np.arange(len(y)), y])
    # Nearest neighbour.
    s_in = nn_in_cls[has_in].max(axis=1)
    right_in = nn_in_cls[has_in].argmax(axis=1) == y[has_in]
    yield "nn", nn_t, s_in, right_in, nn_off_cls.max(axis=1)
    def softmax_max(S, tau):
        Z = (S - S.max(axis=1, keepdims=True)) / tau
        P = np.exp(Z)
        return P / P.sum(axis=1, keepdims=True)
    for tau in (0.02, 0.05, 0.1):
        sm = lambda S: np.log(softmax_max(np.where(np.isfinite(S), S, -10), tau))
        yield f"nnsm{tau}", sm(nn_t), sm(nn_in_cls[has_in]).max(axis=1), right_in, sm(nn_off_cls).max(axis=1)
    yield "proto", pr_t, s_in, right_in, nn_off_cls.max(axis=1)
    mix = (nn_t + pr_t) / 2
    yield "mix", mix, s_in, right_in, nn_off_cls.max(axis=1)
    for tau in (0.02, 0.05):
        P = softmax_max(mix, tau)
        yield f"mixsm{tau}", np.log(P) + 0 * mix, s_in, right_in, nn_off_cls.max(axis=1)
    # margin of nn
    srt = np.sort(nn_t, axis=1)
    marg = nn_t.copy()
    marg_score = srt[:, -1] - srt[:, -2]
    yield "margin", np.where(nn_t == srt[:, -1:], marg_score[:, None], -np.inf), s_in, right_in, nn_off_cls.max(axis=1)
    from sklearn.linear_model import LogisticRegression
    for C in (1, 10, 100):
        lr = LogisticRegression(C=C, max_iter=1000).fit(X, y)
        yield f"lr{C}", np.log(lr.predict_proba(xt_global)), s_in, right_in, nn_off_cls.max(axis=1)


if __name__ == "__main__":
    main()
