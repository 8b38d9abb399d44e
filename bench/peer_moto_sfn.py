#!/usr/bin/env python3
"""moto's Step Functions emulation (LocalStack's States Language interpreter, ported into moto; in memory, nothing
durable) as the AWS-compatible peer of `strato-bench workflows`: chains of 100 Pass states, transitions/s from the
first start to the last execution seen SUCCEEDED, and a 3-state workflow's start → SUCCEEDED latency, both through
boto3 against `moto_server` with `stepfunctions.execute_state_machine` on.

Run with the venv `.ci/run` builds (target/ci-venv, moto 5.2.5):
    target/ci-venv/bin/python bench/peer_moto_sfn.py [--chains 100] [--latency-runs 200]
Prints one JSON line per measurement.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
from botocore.config import Config


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def chain(n):
    states = {f"S{i}": ({"Type": "Pass", "End": True} if i == n - 1 else {"Type": "Pass", "Next": f"S{i + 1}"})
              for i in range(n)}
    return json.dumps({"StartAt": "S0", "States": states})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chains", type=int, default=100)
    ap.add_argument("--latency-runs", type=int, default=200)
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/moto-api/", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        req = urllib.request.Request(base + "/moto-api/config", method="POST",
                                     data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode())
        urllib.request.urlopen(req, timeout=5)
        sfn = boto3.client("stepfunctions", endpoint_url=base, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x", config=Config(retries={"max_attempts": 1}))
        role = "arn:aws:iam::123456789012:role/r"
        arn = sfn.create_state_machine(name="chain", definition=chain(100), roleArn=role)["stateMachineArn"]
        t0 = time.monotonic()
        xs = [sfn.start_execution(stateMachineArn=arn, name=f"c{i}", input='{"n": 1}')["executionArn"]
              for i in range(args.chains)]
        for x in xs:
            while sfn.describe_execution(executionArn=x)["status"] == "RUNNING":
                time.sleep(0.001)
            assert sfn.describe_execution(executionArn=x)["status"] == "SUCCEEDED", x
        secs = time.monotonic() - t0
        print(json.dumps({"bench": "workflows", "backend": "moto", "measure": "pass_chain", "executions": args.chains,
                          "states": 100, "seconds": secs, "transitions_per_s": args.chains * 100 / secs}), flush=True)
        arn = sfn.create_state_machine(name="three", definition=json.dumps({"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "C"}, "C": {"Type": "Succeed"}}}),
            roleArn=role)["stateMachineArn"]
        lat = []
        for i in range(args.latency_runs + 20):
            t = time.monotonic()
            x = sfn.start_execution(stateMachineArn=arn, name=f"t{i}")["executionArn"]
            while sfn.describe_execution(executionArn=x)["status"] == "RUNNING":
                time.sleep(0.0002)
            if i >= 20:
                lat.append((time.monotonic() - t) * 1000)
        lat.sort()
        print(json.dumps({"bench": "workflows", "backend": "moto", "measure": "latency_3_states", "runs": len(lat),
                          "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99) - 1]}), flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
