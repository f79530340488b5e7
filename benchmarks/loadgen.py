"""Driving load with wrk (benchmarks/chat.lua) and measuring the proxy's CPU over the run."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import busy_seconds, cpu_seconds

LUA_SCRIPT = Path(__file__).with_name("chat.lua")
RESULT_LINE = re.compile(r"^BENCH_RESULT (.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # connect, read, write, timeout errors and non-2xx/3xx answers
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_s: float | None  # utime + stime of the process(es) under test over the run
    foreign_cpu: float = 0.0  # CPUs' worth used by processes not ours during the run (noise)
    steal: float = 0.0  # CPUs' worth the hypervisor took during the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.cpu_s is None or not self.requests:
            return None
        return self.cpu_s * 1e6 / self.requests


def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    body: bytes,
    cpu: str | None,
    measure_pids: Sequence[int] = (),
    own_pids: Sequence[int] = (),
) -> WrkResult:
    """One wrk run of `seconds` against `url`; CPU of `measure_pids` is read around it.

    With `own_pids` (every process of the benchmark), CPU time used by anything else on the
    machine meanwhile is reported as `foreign_cpu`, so a disturbed run can be told apart.
    """
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_SCRIPT),
        url,
    ]
    if cpu:
        argv = ["taskset", "-c", cpu, *argv]
    env = {**os.environ, "BENCH_BODY": body.decode()}
    before = cpu_seconds(measure_pids) if measure_pids else None
    ours_before, (busy_before, steal_before) = own_cpu(own_pids), busy_seconds()
    started = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False)
    elapsed = time.monotonic() - started
    ours_after, (busy_after, steal_after) = own_cpu(own_pids), busy_seconds()
    after = cpu_seconds(measure_pids) if measure_pids else None
    foreign = (busy_after - busy_before) - (ours_after - ours_before)
    match = RESULT_LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    fields = {k: float(v) for k, v in (item.split("=", 1) for item in match.group(1).split())}
    errors = sum(int(fields[k]) for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=int(fields["requests"]),
        seconds=fields["duration_us"] / 1e6,
        errors=errors,
        p50_ms=fields["p50_us"] / 1000,
        p90_ms=fields["p90_us"] / 1000,
        p99_ms=fields["p99_us"] / 1000,
        cpu_s=None if before is None or after is None else after - before,
        foreign_cpu=max(0.0, foreign / elapsed) if own_pids else 0.0,
        steal=(steal_after - steal_before) / elapsed,
    )


def own_cpu(pids: Sequence[int]) -> float:
    """CPU seconds of the benchmark's processes, this one and its waited-for children (wrk)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    return cpu_seconds(pids) + children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime
