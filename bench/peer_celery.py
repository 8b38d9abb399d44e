#!/usr/bin/env python3
"""Celery + Redis peer of `strato-bench jobs`: the same three measurements with a no-op Celery task.

Run with the venv from setup_celery.sh (bench/run.py --only-jobs does both):
    bench/.venv-celery/bin/python bench/peer_celery.py [--jobs 20000] [--pools prefork:1,prefork:2,threads:2,solo:1]

Prints one JSON line per measurement, like `strato-bench jobs`:

1. throughput: one worker process per pool setting (`prefork:1` is prefork with one child); N tasks sent by E
   processes at once (as API processes would) while it runs them (`concurrent`), or all sent while the worker's
   consumer is cancelled and then re-added (`drain`). jobs/s = N / (first send, or re-adding the consumer → the
   last task's end). Each task INCRs a Redis counter and the one that reaches N pushes to a list the driver
   BLPOPs, so the driver never polls.
2. latency: one send every 1/rate s; each task computes time.monotonic() at its start minus the sender's
   time.monotonic() just before apply_async (CLOCK_MONOTONIC is system-wide on Linux, so the two processes'
   readings compare).
3. idle_cpu: CPU time of the worker process and its children (all threads, /proc/*/task/*/schedstat) while idle.

The worker runs with --without-gossip --without-mingle --without-heartbeat and --loglevel=WARNING, and tasks
ignore results (no result backend): Celery's fastest setup. Messages are acknowledged before the task runs
(Celery's default), which is at-most-once; Strato's queue is at-least-once and writes every outcome durably.
Everything lives in one Redis database (REDIS_DB, default 11), flushed before and after.
"""
import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import celery
import redis
from celery import Celery

HERE = Path(__file__).resolve().parent
REDIS_DB = int(os.environ.get("PEER_CELERY_REDIS_DB", "11"))
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
QUEUE = "bench"

app = Celery("peer_celery", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_redis = None


def rconn():
    # Per process and created on first use: a prefork child must not share its parent's socket.
    global _redis
    if _redis is None:
        # redis-py 8 times socket reads out after 5 s by default; the driver's BLPOP waits for a whole run.
        _redis = redis.Redis.from_url(BROKER, socket_timeout=700)
    return _redis


@app.task(name="noop")
def noop(run, total):
    if rconn().incr(f"bench:done:{run}") == total:
        rconn().rpush(f"bench:fin:{run}", time.monotonic())


@app.task(name="noop_timed")
def noop_timed(run, sent_at):
    started = time.monotonic()
    rconn().rpush(f"bench:lat:{run}", started - sent_at)


@app.task(name="step")
def step(run, total, last):
    """One step of peer_celery_chain.py's chains: the last step of the last chain to end signals the driver."""
    if last and rconn().incr(f"bench:chains:{run}") == total:
        rconn().rpush(f"bench:fin:{run}", time.monotonic())


def percentile(xs, q):
    return xs[min(len(xs) - 1, round((len(xs) - 1) * q))]


class Worker:
    """One `celery worker` process, started and stopped by the driver."""

    def __init__(self, pool, concurrency):
        self.name = f"bench-{uuid.uuid4().hex[:8]}@localhost"
        self.log = open(HERE / "out" / "celery-worker.log", "ab")
        cmd = [str(Path(sys.executable).parent / "celery"), "-A", "peer_celery", "worker", "-P", pool,
               "-c", str(concurrency), "-n", self.name, "-Q", QUEUE, "--loglevel=WARNING",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.proc = subprocess.Popen(cmd, cwd=HERE, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[self.name], timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"celery worker did not start; see {self.log.name}")

    def control(self, what):
        reply = getattr(app.control, what)(QUEUE, destination=[self.name], reply=True, timeout=5)
        if not reply:
            raise SystemExit(f"celery worker did not answer {what}")

    def pids(self):
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        return pids

    def cpu_ns(self):
        total = 0
        for pid in self.pids():
            for task in Path(f"/proc/{pid}/task").iterdir():
                try:
                    total += int((task / "schedstat").read_text().split()[0])
                except (FileNotFoundError, ProcessLookupError):
                    pass
        return total

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def enqueuer(run, total, share, ready, go):
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()
        ready.release()
        go.wait()
        for _ in range(share):
            noop.apply_async((run, total), producer=producer)


def send_concurrently(run, n, processes):
    """Sends N no-op tasks from `processes` processes; returns (time.monotonic() at the go signal, send seconds)."""
    ctx = multiprocessing.get_context("spawn")
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=enqueuer, args=(run, n, n // processes + (i < n % processes), ready, go))
             for i in range(processes)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t0 = time.monotonic()
    go.set()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit("an enqueuer process failed")
    return t0, time.monotonic() - t0


def wait_finished(run, limit=600):
    got = rconn().blpop(f"bench:fin:{run}", timeout=limit)
    if got is None:
        raise SystemExit("the worker did not run every task in time")
    return float(got[1])


def throughput(args, pool, concurrency, drain):
    rconn().flushdb()
    w = Worker(pool, concurrency)
    try:
        run = uuid.uuid4().hex
        if drain:
            w.control("cancel_consumer")
            _, send_s = send_concurrently(run, args.jobs, args.enqueuers)
            t0 = time.monotonic()
            w.control("add_consumer")
        else:
            t0, send_s = send_concurrently(run, args.jobs, args.enqueuers)
        secs = wait_finished(run) - t0
    finally:
        w.stop()
    return {"bench": "jobs", "backend": "celery", "measure": "throughput", "mode": "drain" if drain else "concurrent",
            "pool": pool, "concurrency": concurrency, "enqueuers": args.enqueuers, "jobs": args.jobs, "seconds": secs,
            "jobs_per_s": args.jobs / secs, "enqueue_per_s": args.jobs / send_s}


def latency_and_idle(args, pool, concurrency):
    rconn().flushdb()
    w = Worker(pool, concurrency)
    try:
        run = uuid.uuid4().hex
        n = max(1, round(args.rate * args.latency_secs))
        time.sleep(0.5)
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection()
            start = time.monotonic()
            calls = []
            for i in range(n):
                delay = start + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                sent = time.monotonic()
                noop_timed.apply_async((run, sent), producer=producer)
                calls.append((time.monotonic() - sent) * 1000)
        achieved = n / (time.monotonic() - start)
        key = f"bench:lat:{run}"
        deadline = time.monotonic() + 120
        while rconn().llen(key) < n:
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not run every timed task in time")
            time.sleep(0.05)
        ms = sorted(float(x) * 1000 for x in rconn().lrange(key, 0, -1))
        latency = {"bench": "jobs", "backend": "celery", "measure": "latency", "pool": pool,
                   "concurrency": concurrency, "rate": args.rate, "jobs": n, "achieved_rate": achieved,
                   "p50_ms": percentile(ms, 0.5), "p90_ms": percentile(ms, 0.9), "p99_ms": percentile(ms, 0.99),
                   "max_ms": ms[-1], "enqueue_call_p50_ms": percentile(sorted(calls), 0.5)}
        time.sleep(0.5)
        c0, t0 = w.cpu_ns(), time.monotonic()
        time.sleep(args.idle_secs)
        c1, secs = w.cpu_ns(), time.monotonic() - t0
        cpu_ms = (c1 - c0) / 1e6
        idle = {"bench": "jobs", "backend": "celery", "measure": "idle_cpu", "pool": pool, "concurrency": concurrency,
                "seconds": secs, "cpu_ms": cpu_ms, "cpu_pct_of_core": cpu_ms / 10 / secs, "processes": len(w.pids())}
    finally:
        w.stop()
    return [latency, idle]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--enqueuers", type=int, default=4)
    ap.add_argument("--pools", default="prefork:1,prefork:2,threads:2,solo:1",
                    help="worker settings to try for throughput, POOL:CONCURRENCY; the fastest runs the rest")
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--latency-secs", type=float, default=10)
    ap.add_argument("--idle-secs", type=float, default=5)
    args = ap.parse_args()
    (HERE / "out").mkdir(exist_ok=True)
    emit = lambda r: print(json.dumps(r), flush=True)
    emit({"bench": "jobs", "backend": "celery", "measure": "versions", "celery": celery.__version__,
          "redis_py": redis.__version__, "redis_server": rconn().info("server")["redis_version"],
          "python": sys.version.split()[0]})
    try:
        best = None
        for setting in args.pools.split(","):
            pool, concurrency = setting.split(":")
            r = throughput(args, pool, int(concurrency), drain=False)
            emit(r)
            if best is None or r["jobs_per_s"] > best[0]:
                best = (r["jobs_per_s"], pool, int(concurrency))
        _, pool, concurrency = best
        emit(throughput(args, pool, concurrency, drain=True))
        for r in latency_and_idle(args, pool, concurrency):
            emit(r)
    finally:
        rconn().flushdb()


if __name__ == "__main__":
    main()
