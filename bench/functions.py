"""Functions: Strato's warm and cold Lambda invocations beside python-lambda-local (the seeds' local runner: a fresh
interpreter per event, as `sls invoke --local` does), on the same handler and events, in one run.

    python3 bench/functions.py          # builds the release binary, sets up bench/.venv-functions (awslambdaric and
                                        # python-lambda-local from PyPI) and prints a JSON summary

Measured, for an echo handler (`return event`):
- warm synchronous invoke through Lambda's Invoke API, sequential over one keep-alive connection: client latency
  p50/p99, and the overhead above the handler's own time (latency minus the REPORT line's Duration);
- throughput with `wrk` and 2 instances (`--functions-max-instances 2`) on this machine's cores: 2 connections (one
  per instance), and 8 (the calls past the limit get 429 TooManyRequestsException at once, as Lambda's throttling);
- cold start: the first invoke after the function's configuration changed (a new instance: process start, AWS's
  runtime client, handler import), client-side, p50 over 15;
- the peer: python-lambda-local on the same handler and event, wall time per event, p50 over 15.
"""
import base64
import http.client
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run import OUT, REPO, ensure_tools, wait_http, wrk  # noqa: E402

VENV = REPO / "bench" / ".venv-functions"
HANDLER = "def handler(event, context):\n    return event\n"
EVENT = {"message": "hello", "n": 1}


def venv_python():
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "awslambdaric==4.2.2", "python-lambda-local==0.1.13"],
                       check=True)
    return py


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def invoke(conn, name, tail=False):
    headers = {"content-type": "application/json"}
    if tail:
        headers["x-amz-log-type"] = "Tail"
    t = time.perf_counter()
    conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body=json.dumps(EVENT), headers=headers)
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t
    assert r.status == 200 and json.loads(body) == EVENT, (r.status, body)
    duration_ms = None
    if tail:
        log = base64.b64decode(r.getheader("x-amz-log-result")).decode()
        report = next(line for line in log.splitlines() if line.startswith("REPORT"))
        duration_ms = float(report.split("Duration: ")[1].split(" ms")[0])
    return dt * 1000, duration_ms


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    py = venv_python()
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "strato-cli"], cwd=REPO, check=True)
    strato = REPO / "target" / "release" / "strato"
    model_home = REPO / "target" / "test-model"
    subprocess.run([str(strato), "--data-dir", str(model_home), "model", "pull"], check=True)
    work = Path(tempfile.mkdtemp(prefix="strato-fn-bench-"))
    code = work / "code"
    code.mkdir()
    (code / "app.py").write_text(HANDLER)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(code / "app.py", "app.py")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, STRATO_FUNCTIONS_PYTHON=str(py), STRATO_FUNCTIONS_MAX_INSTANCES="2", STRATO_LOG="warn",
               STRATO_EMBEDDING_MODEL=str(model_home / "models" / "all-MiniLM-L6-v2"))
    server = subprocess.Popen([str(strato), "--data-dir", str(work / "data"), "serve", "--addr", f"127.0.0.1:{port}"],
                              env=env)
    out = {"cpu": platform_cpu(), "cores": os.cpu_count()}
    try:
        wait_http(base)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        create = {"name": "echo", "runtime": "python3.11", "handler": "app.handler", "timeout": 10,
                  "zip_base64": base64.b64encode(buf.getvalue()).decode()}
        conn.request("POST", "/v1/functions", body=json.dumps(create), headers={"content-type": "application/json"})
        r = conn.getresponse()
        assert r.status == 201, r.read()
        r.read()

        # Cold starts: a configuration change retires the instance, so the next call starts a new one.
        cold = []
        for i in range(15):
            conn.request("PATCH", "/v1/functions/echo", body=json.dumps({"description": f"cold {i}"}),
                         headers={"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200
            cold.append(invoke(conn, "echo")[0])
        out["cold_start_ms"] = {"p50": statistics.median(cold), "min": min(cold), "max": max(cold)}

        # Warm, sequential.
        for _ in range(200):
            invoke(conn, "echo")
        lat, over = [], []
        for _ in range(2000):
            ms, dur = invoke(conn, "echo", tail=True)
            lat.append(ms)
            over.append(ms - dur)
        out["warm_latency_ms"] = {"p50": pct(lat, 50), "p99": pct(lat, 99)}
        out["warm_overhead_ms"] = {"p50": pct(over, 50), "p99": pct(over, 99)}

        # Throughput with two instances: two connections keep both busy; eight show the throttling (429s) past
        # the process's instance limit.
        url = f"{base}/2015-03-31/functions/echo/invocations"
        out["throughput"] = wrk(url, [EVENT], 10, conns=2, threads=2)
        over = wrk(url, [EVENT], 10, conns=8, threads=2)
        over["ok_per_s"] = (over["requests"] - over["non_2xx"]) / over["seconds"]
        out["throughput_8_connections"] = over
    finally:
        server.terminate()
        server.wait(timeout=30)

    # The peer: python-lambda-local, a fresh interpreter per event.
    (work / "event.json").write_text(json.dumps(EVENT))
    peer = []
    cli = VENV / "bin" / "python-lambda-local"
    for _ in range(15):
        t = time.perf_counter()
        p = subprocess.run([str(cli), "-f", "handler", "-t", "10", str(code / "app.py"), str(work / "event.json")],
                           capture_output=True, text=True)
        peer.append((time.perf_counter() - t) * 1000)
        assert p.returncode == 0 and "hello" in (p.stdout + p.stderr), p.stdout + p.stderr
    out["peer_python_lambda_local_ms"] = {"p50": statistics.median(peer), "min": min(peer), "max": max(peer)}
    out["ratio_peer_over_strato_warm_p50"] = out["peer_python_lambda_local_ms"]["p50"] / out["warm_latency_ms"]["p50"]
    out["ratio_peer_over_strato_cold_p50"] = out["peer_python_lambda_local_ms"]["p50"] / out["cold_start_ms"]["p50"]
    print(json.dumps(out, indent=2))
    shutil.rmtree(work, ignore_errors=True)


def platform_cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
