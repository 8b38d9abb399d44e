#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with schemathesis (installed from PyPI into a venv under
# target/): a real `strato serve` (SQLite, the real embedding model) with an admin token configured. Fails on any
# 5xx, on any response whose status, content type, headers or body the document does not describe, on invalid input
# that is accepted, on a missing 401 without credentials, on a 405 without `Allow`, and on resources that stay
# visible after their DELETE. Not checked: that every schema-valid request succeeds ("positive data acceptance"):
# rules across fields (exactly one of `text`/`texts`), dataset contents, and the compatibility APIs' 400s for unknown
# ids (their originals' behaviour) are beyond what the schema states.
#
# One schemathesis worker: with two, hypothesis has raised internal errors (a race in its source cache).
# Usage: scripts/api-fuzz.sh [extra schemathesis options]   (STRATO_FUZZ_MAX_EXAMPLES: cases per operation)
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
venv="$PWD/target/schemathesis-venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

cargo build --locked -p strato-cli
model_home="${STRATO_TEST_MODEL_HOME:-$PWD/target/test-model}"
./target/debug/strato --data-dir "$model_home" model pull

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
token="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
base="http://127.0.0.1:$port"
STRATO_ADMIN_TOKEN="$token" ./target/debug/strato --data-dir "$work" \
  --embedding-model "$model_home/models/all-MiniLM-L6-v2" --log warn --log-format text \
  serve --addr "127.0.0.1:$port" --workers 1 >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

# Something real to find, named as the document's examples name them: `demo` (a dataset, a trained model, a trained
# mentor) and `scratch` (the same, for the examples of the DELETE operations).
api() { curl -fsS -H "Authorization: Bearer $token" "$@" >/dev/null; }
for name in demo scratch; do
  api -X PUT "$base/v1/datasets/$name" -H 'content-type: text/csv' --data-binary $'text,label\nhello there,greeting\nhi,greeting\ngood morning,greeting\nbye now,farewell\nsee you later,farewell\ngoodbye,farewell\n'
  api -X POST "$base/v1/models" -d "{\"id\":\"$name\",\"dataset\":\"$name\"}"
  api -X PUT "$base/v1/mentors/$name" -d '{"id":"'$name'","name":"Demo","type":"CHAT","answers":[
    {"id":"a1","question":{"id":"q1","text":"what is your name","paraphrases":["who are you"]},"transcript":"I am Demo."},
    {"id":"a2","question":{"id":"q2","text":"where do you work","paraphrases":["what is your job"]},"transcript":"At the lab."},
    {"id":"a3","question":{"id":"q3","text":"_OFF_TOPIC_","type":"UTTERANCE","name":"_OFF_TOPIC_"},"transcript":"Ask me something else."}]}'
  api -X POST "$base/v1/mentors/$name/train"
done
# Workflows: `demo` (a standard machine whose `demo` execution waits an hour) and `scratch` (to delete).
for name in demo scratch; do
  api -X POST "$base/v1/state-machines" -d '{"name":"'$name'","definition":{"StartAt":"Nap","States":{"Nap":{"Type":"Wait","Seconds":3600,"End":true}}}}'
done
api -X POST "$base/v1/state-machines/demo/executions" -d '{"name":"demo","input":{}}'
# The trainings finish before fuzzing starts, so the happy paths (predict, answer) are exercised too.
for _ in $(seq 1 300); do
  pending="$(curl -fsS -H "Authorization: Bearer $token" "$base/v1/jobs?limit=1000" |
    python3 -c 'import json, sys; print(sum(j["status"] in ("QUEUED", "IN_PROGRESS") for j in json.load(sys.stdin)["jobs"]))')"
  [ "$pending" = 0 ] && break
  sleep 0.2
done

# Both credentials the document declares, valid: an API key (checked first) and the admin token. Left to itself,
# schemathesis would fill `x-api-key` with made-up values and most requests would stop at the 401.
key="$(curl -fsS -H "Authorization: Bearer $token" "$base/v1/api-keys" -d '{"name":"fuzz","role":"admin"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["secret"])')"

status=0
# From the scratch directory: schemathesis keeps a cache of past failures in the working directory.
(cd "$work" && "$venv/bin/schemathesis" run "$base/openapi.json" \
  --header "Authorization: Bearer $token" --header "x-api-key: $key" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples "${STRATO_FUZZ_MAX_EXAMPLES:-30}" --seed 20261122 --workers 1 \
  --request-timeout 30 --suppress-health-check all --warnings off "$@") || status=$?

if [ "$status" -ne 0 ]; then
  echo "--- server log (last 100 lines) ---"
  tail -n 100 "$work/server.log"
fi
exit "$status"
