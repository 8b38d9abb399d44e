#!/usr/bin/env bash
# Builds the throwaway venv for the Celery + Redis peer of the job-queue benchmark at bench/.venv-celery.
# Idempotent: a marker written only after every install succeeded makes re-runs a no-op.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-celery"
marker="$venv/.celery-complete"

if [[ -f "$marker" ]]; then
  echo "celery venv already complete: $venv"
  exit 0
fi

rm -rf "$venv"   # a half-built venv from an interrupted run is not worth repairing
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "celery[redis]==5.7.0"
"$venv/bin/python" -c "import celery, redis; print('celery', celery.__version__, 'redis-py', redis.__version__)"

touch "$marker"
echo "celery venv ready: $venv ($(du -sh "$venv" | cut -f1))"
