"""What a client key's rpm/tpm limits cost a request (issue 12): the p50 of keys with
limits next to one without, through one gateway, with a local redis-server (`state.backend:
redis`: one Lua script per request of a limited key) and with the memory backend.

Two limited keys: `rpm` only (the request is taken from its bucket: one Redis round trip),
and `rpm` + `tpm` (the answer's real usage is charged as well, beside the answer; back to
back requests, as here, wait for the previous one's charge to land first, so that the
buckets stay exact: up to two round trips).

    .venv/bin/python -m benchmarks.limits_cost            # about 30 s
    .venv/bin/python -m benchmarks.limits_cost --requests 500

Everything runs on 127.0.0.1: a redis-server of its own on a free port, `modelway serve` with
a `simulated` provider answering at once (no upstream socket, so the figures are the
gateway's own), and one client sending sequential requests on one keep-alive connection,
alternating between the two keys in short rounds so that drift hits both alike. The limits
are set so high that no request is refused: what is measured is the check and the charge.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from benchmarks.procs import free_port

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "How far is the moon?"}]}).encode()
ROUND = 50  # requests per key before switching to the other


def config(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "server": {"watch_config": False},
        "state": state,
        "auth": {"keys": [
            {"name": "free", "key": "free-key"},
            {"name": "rpm-only", "key": "rpm-key", "rpm": 10**9},
            {"name": "limited", "key": "limited-key", "rpm": 10**9, "tpm": 10**12},
        ]},
        "providers": [{"name": "sim", "kind": "simulated",
                       "simulate": {"latency_ms": 0, "tokens_per_s": 1e9, "output_tokens": 8}}],
        "models": [{"name": "m", "deployments": [{"provider": "sim"}]}],
    }


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the gateway exited early")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


def timed(conn: http.client.HTTPConnection, key: str) -> float:
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", BODY,
                 {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"unexpected status {response.status} for key {key}")
    return elapsed


def measure(state: dict[str, Any], requests: int) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(config(state)))
        env = {**os.environ, "MODELWAY_LOG_LEVEL": "warning"}
        env.pop("MODELWAY_CONFIG", None)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "modelway", "serve", "--config", str(path), "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/health", gateway)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            samples: dict[str, list[float]] = {"free-key": [], "rpm-key": [], "limited-key": []}
            for key in samples:  # warm up: connections, caches, the script's SHA
                for _ in range(200):
                    timed(conn, key)
            while len(samples["limited-key"]) < requests:
                for key in samples:
                    samples[key].extend(timed(conn, key) for _ in range(ROUND))
            conn.close()
        finally:
            gateway.terminate()
            gateway.wait(10)
    free, rpm, limited = (statistics.median(samples[key]) * 1e6 for key in samples)
    return {"free_p50_us": free, "rpm_p50_us": rpm, "limited_p50_us": limited,
            "rpm_added_p50_us": rpm - free, "limited_added_p50_us": limited - free}


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is required (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return process, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    process.terminate()
    raise SystemExit("redis-server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per key and backend")
    args = parser.parse_args()
    redis_process, redis_url = start_redis()
    try:
        results = {
            "redis": measure({"backend": "redis", "redis_url": redis_url}, args.requests),
            "memory": measure({"backend": "memory"}, args.requests),
        }
    finally:
        redis_process.terminate()
        redis_process.wait(10)
    print(f"p50 per request, {args.requests} sequential requests per key, 127.0.0.1")
    print(f"{'backend':<8} {'no limits':>10} {'rpm':>18} {'rpm + tpm':>18}")
    for name, r in results.items():
        print(f"{name:<8} {r['free_p50_us']:>7.0f} µs {r['rpm_p50_us']:>6.0f} µs (+{r['rpm_added_p50_us']:>3.0f})"
              f" {r['limited_p50_us']:>6.0f} µs (+{r['limited_added_p50_us']:>3.0f})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
