#!/usr/bin/env python3
"""Celery + Redis peer of `strato-bench workflows`: chains of 100 no-op tasks (a workflow of 100 steps, each step
a message through Redis), and the latency of a 3-step chain. Same worker setup as peer_celery.py (whose worker
and app this reuses).

Run with the venv from setup_celery.sh:
    bench/.venv-celery/bin/python bench/peer_celery_chain.py [--chains 20] [--length 100] [--pool prefork:2]

Prints one JSON line per measurement. transitions/s = chains × length / (first send → last task's end); the
last task of each chain INCRs a counter and the one that completes the last chain pushes to a list the driver
BLPOPs. Celery acknowledges before running and keeps no history: at-most-once, no durable state between steps.
"""
import argparse
import json
import time
import uuid

from celery import chain

import peer_celery as pc
from peer_celery import rconn, step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=20)
    ap.add_argument("--length", type=int, default=100)
    ap.add_argument("--pool", default="prefork:2")
    ap.add_argument("--latency-runs", type=int, default=200)
    args = ap.parse_args()
    (pc.HERE / "out").mkdir(exist_ok=True)
    pool, concurrency = args.pool.split(":")
    rconn().flushdb()
    w = pc.Worker(pool, int(concurrency))
    try:
        run = uuid.uuid4().hex
        t0 = time.monotonic()
        for _ in range(args.chains):
            chain(*[step.si(run, args.chains, i == args.length - 1) for i in range(args.length)]).apply_async()
        secs = pc.wait_finished(run) - t0
        print(json.dumps({"bench": "workflows", "backend": "celery", "measure": "chain", "pool": args.pool,
                          "chains": args.chains, "length": args.length, "seconds": secs,
                          "transitions_per_s": args.chains * args.length / secs}), flush=True)
        lat = []
        for _ in range(args.latency_runs):
            run = uuid.uuid4().hex
            t0 = time.monotonic()
            chain(*[step.si(run, 1, i == 2) for i in range(3)]).apply_async()
            lat.append((pc.wait_finished(run) - t0) * 1000)
        lat.sort()
        print(json.dumps({"bench": "workflows", "backend": "celery", "measure": "latency_3_steps", "pool": args.pool,
                          "runs": len(lat), "p50_ms": pc.percentile(lat, 0.5), "p99_ms": pc.percentile(lat, 0.99)}),
              flush=True)
    finally:
        w.stop()
        rconn().flushdb()


if __name__ == "__main__":
    main()
