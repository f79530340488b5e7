"""What modelway's proxying costs, next to no proxy, nginx, and a bare Python proxy (issue 3).

    .venv/bin/python -m benchmarks.overhead            # full run, ~5 minutes
    .venv/bin/python -m benchmarks.overhead --quick    # smoke run, ~1 minute

Phases, every one bounded in time, all traffic on 127.0.0.1:
  1. load:    wrk (1 thread) at 32 and 1 connections, JSON and SSE answers, against every
              system in turn; repetitions alternate between systems, medians reported.
  2. timing:  time to first / last byte of streams, sequential requests on one connection.
  3. memory:  many concurrent slow streams (1 event per 100 ms) through one process each of
              the bare proxy and modelway, every stream checked byte for byte; peak RSS.
The table is printed and written to benchmarks/results/latest.md (raw figures to latest.json).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

import uvloop

from benchmarks import report
from benchmarks.loadgen import WrkResult, own_cpu, run_wrk
from benchmarks.procs import Service, Services, busy_seconds, ensure_tools, free_port
from benchmarks.report import JSON1, JSON32, SSE32, Results
from benchmarks.slow_upstream import expected_body
from benchmarks.streams import StreamTimer, run_slow_streams
from benchmarks.systems import (
    ALL_SYSTEMS,
    CHAT_BODY,
    DEFAULT_SYSTEMS,
    GATEWAY_CPU,
    LOAD_CPU,
    SLOW_BODY,
    STREAM_BODY,
    System,
    compare_name,
    service_port,
    start_bare,
    start_load_systems,
    start_modelway,
)

RESULTS = Path(__file__).parent / "results"
NOISY_LOAD = 0.15  # of one CPU, used by processes not ours during a run: repeat it
QUIET_LOAD = 0.05
QUIET_WAIT_S = 30.0
MAX_RETRIES = 2


@dataclass(frozen=True)
class Plan:
    reps: int = 3
    seconds_c32: float = 6
    seconds_c1: float = 5
    seconds_sse: float = 5
    warmup_s: float = 2
    timed_streams: int = 300  # sequential stream requests per system and repetition
    slow_streams: int = 1000
    slow_chunks: int = 100  # events per slow stream, one per 100 ms
    budget_s: int = 1200  # hard stop for the whole run

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            reps=1,
            seconds_c32=2,
            seconds_c1=2,
            seconds_sse=2,
            warmup_s=1,
            timed_streams=60,
            slow_streams=200,
            slow_chunks=30,
            budget_s=300,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="one short repetition, 200 slow streams (~1 minute)"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument(
        "--output", type=Path, help="markdown file (default results/latest.md; quick: quick.md)"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the slow-stream memory test")
    parser.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help=f"comma-separated subset of {','.join(ALL_SYSTEMS)} (direct always runs)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also run the modelway of another checkout (e.g. a git worktree before/after a change) "
        "beside this one, in every phase; repeatable",
    )
    args = parser.parse_args(argv)
    compare = [d.resolve() for d in args.compare]
    if bad := [str(d) for d in compare if not (d / "modelway" / "__init__.py").exists()]:
        parser.error(f"no modelway package in {', '.join(bad)}")
    names = [n for n in args.systems.split(",") if n]
    if unknown := set(names) - set(ALL_SYSTEMS):
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    plan = Plan.quick() if args.quick else Plan()
    if args.reps:
        plan = Plan(**{**asdict(plan), "reps": args.reps})
    output = args.output or RESULTS / ("quick.md" if args.quick else "latest.md")

    def out_of_time(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"benchmark exceeded its {plan.budget_s} s budget")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    signal.alarm(plan.budget_s)
    nginx = ensure_tools()
    prepare_process()
    started = time.monotonic()
    services = Services()
    try:
        with tempfile.TemporaryDirectory(prefix="modelway-bench-") as tmp:
            results = run(plan, nginx, Path(tmp), services, names, compare, memory=not args.no_memory)
    finally:
        services.stop_all()
        signal.alarm(0)
    text = report.render(results, header(plan, time.monotonic() - started, nginx, compare))
    print(text)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps(raw_figures(results, plan), indent=1) + "\n")
    print(f"written to {output} and {output.with_suffix('.json').name}")
    return 0


def prepare_process() -> None:
    """Room for thousands of sockets, and this process (the clients) on the load CPU."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    cpus = os.sched_getaffinity(0)
    if not {int(GATEWAY_CPU), int(LOAD_CPU)} <= cpus:
        raise SystemExit(f"needs CPUs {GATEWAY_CPU} and {LOAD_CPU}; this process may use {sorted(cpus)}")
    os.sched_setaffinity(0, {int(LOAD_CPU)})


def run(
    plan: Plan,
    nginx: str,
    workdir: Path,
    services: Services,
    names: list[str],
    compare: list[Path],
    memory: bool,
) -> Results:
    others = [n for n in names if n != "direct"] + [compare_name(d) for d in compare]
    print(f"starting the upstream and {', '.join(others)} ...", flush=True)
    systems = start_load_systems(services, nginx, workdir, names, compare)
    single = [s for s in systems if s.name != "modelway-w2"]
    for system in systems:
        if system.name == "modelway-w2":
            wait_for_workers(system.service, 2)
    results = Results({s.name: s.label for s in systems})
    check_answers(systems)
    for system in systems:  # warm pools and caches; not measured
        run_wrk(system.url(), connections=32, seconds=plan.warmup_s, body=CHAT_BODY, cpu=LOAD_CPU)
    scenarios = [
        (JSON32, 32, False, plan.seconds_c32, systems),
        (JSON1, 1, False, plan.seconds_c1, single),
        (SSE32, 32, True, plan.seconds_sse, single),
    ]
    retry_until = time.monotonic() + plan.budget_s * 0.5
    for rep in range(plan.reps):
        for scenario, connections, stream, seconds, group in scenarios:
            shift = rep % len(group)  # rotate the order so no system always runs first
            for system in group[shift:] + group[:shift]:
                run = functools.partial(
                    run_wrk,
                    system.url(stream),
                    connections=connections,
                    seconds=seconds,
                    body=STREAM_BODY if stream else CHAT_BODY,
                    cpu=LOAD_CPU,
                    measure_pids=system.pids(),
                    own_pids=services.pids(),
                )
                result = measure_quietly(run, services, retry_until)
                results.add_run(scenario, system.name, result)
                print(
                    f"  rep {rep + 1}/{plan.reps} {scenario:8} {system.name:12} {result.rps:9,.0f} req/s"
                    f"  p50 {result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms"
                    f"  cpu {fmt_cpu(result.cpu_us_per_request)}  other load {result.foreign_cpu:4.0%}",
                    flush=True,
                )
        time_streams(single, plan.timed_streams, results, rep)
    for system in reversed(systems):
        if system.service is not None:
            services.stop(system.service)
    services.stop_all()  # the upstream
    if memory:
        run_memory(plan, workdir, services, results, [n for n in ("bare", "modelway") if n in names], compare)
    return results


def measure_quietly(run: Callable[[], WrkResult], services: Services, retry_until: float) -> WrkResult:
    """A run that other processes on the machine disturbed (they used more than
    NOISY_LOAD of a CPU meanwhile) is repeated once they are quiet, up to MAX_RETRIES times
    and only until `retry_until` (monotonic), so that retries cannot exhaust the budget."""
    result = run()
    for _ in range(MAX_RETRIES):
        if result.foreign_cpu <= NOISY_LOAD or time.monotonic() > retry_until:
            break
        print(
            f"    other processes used {result.foreign_cpu:.0%} of a CPU meanwhile: waiting, then again",
            flush=True,
        )
        wait_for_quiet(services)
        result = run()
    return result


def wait_for_quiet(services: Services, timeout: float = QUIET_WAIT_S) -> None:
    """Until other processes use less than QUIET_LOAD of a CPU over half a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ours, (busy, _) = own_cpu(services.pids()), busy_seconds()
        time.sleep(0.5)
        ours_after, (busy_after, _) = own_cpu(services.pids()), busy_seconds()
        if (busy_after - busy) - (ours_after - ours) < QUIET_LOAD * 0.5:
            return


def fmt_cpu(value: float | None) -> str:
    return "-" if value is None else f"{value:6.1f} µs/req"


def wait_for_workers(service: Service | None, workers: int, timeout: float = 30) -> None:
    """uvicorn answers /health once the first worker is up; wait for every worker."""
    if service is None:
        return
    deadline = time.monotonic() + timeout
    while len(service.pids()) < workers + 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name}: workers did not start:\n{service.log_tail()}")
        time.sleep(0.1)
    time.sleep(1.0)


def check_answers(systems: list[System]) -> None:
    """Every proxy must relay the upstream's bytes unchanged before any figure counts."""
    expected: dict[bool, bytes] = {}
    for system in systems:
        timer = StreamTimer(system.port)
        try:
            for stream in (False, True):
                path = system.url(stream).split(str(system.port), 1)[1]
                status, body, _, _ = timer.post(path, STREAM_BODY if stream else CHAT_BODY)
                if status != 200 or body != expected.setdefault(stream, body):
                    raise RuntimeError(
                        f"{system.name} answered {status} with unexpected content:\n{body[:400]!r}"
                    )
        finally:
            timer.close()


def time_streams(systems: list[System], count: int, results: Results, rep: int) -> None:
    """Median time to first / last byte of `count` sequential streams per system."""
    shift = rep % len(systems)
    expected: bytes | None = None
    for system in systems[shift:] + systems[:shift]:
        timer = StreamTimer(system.port)
        path = system.url(True).split(str(system.port), 1)[1]
        first, last = [], []
        try:
            for i in range(count + 5):
                status, body, ttfb, ttlb = timer.post(path, STREAM_BODY)
                expected = expected or body
                if status != 200 or body != expected:
                    raise RuntimeError(f"{system.name}: stream answered {status} with unexpected content")
                if i >= 5:  # the first few warm the connection
                    first.append(ttfb)
                    last.append(ttlb)
        finally:
            timer.close()
        results.timings.setdefault(system.name, []).append(
            (statistics.median(first), statistics.median(last))
        )
        print(
            f"  rep {rep + 1} stream timing {system.name:12} TTFB {statistics.median(first) * 1000:6.3f} ms"
            f"  TTLB {statistics.median(last) * 1000:6.3f} ms",
            flush=True,
        )


def run_memory(
    plan: Plan, workdir: Path, services: Services, results: Results, names: list[str], compare: list[Path]
) -> None:
    sources: dict[str, Path | None] = {name: None for name in names}
    sources.update({compare_name(d): d for d in compare})
    if not sources:
        return
    slow_port = free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.slow_upstream",
        "--port",
        str(slow_port),
        "--chunks",
        str(plan.slow_chunks),
        "--interval",
        "0.1",
    ]
    services.start(Service("slow-upstream", argv, workdir / "slow-upstream.log", cpus=LOAD_CPU), slow_port)
    expected = expected_body(plan.slow_chunks)
    timeout = plan.slow_chunks * 0.1 * 3 + 30
    for name, source in sources.items():
        print(f"  {plan.slow_streams} slow streams through {name} ...", flush=True)
        if name == "bare":
            service = start_bare(services, workdir, "bare-slow", slow_port)
        else:
            providers = {"bench-slow": f"http://127.0.0.1:{slow_port}/v1"}
            service = start_modelway(services, workdir, f"{name}-slow", providers, 1, GATEWAY_CPU, source)
        time.sleep(0.5)
        url = f"http://127.0.0.1:{service_port(service)}/v1/chat/completions"
        outcome = uvloop.run(
            run_slow_streams(
                url,
                SLOW_BODY,
                expected,
                streams=plan.slow_streams,
                chunks_per_stream=plan.slow_chunks + 1,
                pids=service.pids(),
                timeout=timeout,
            )
        )
        results.slow_streams[name] = outcome
        print(
            f"    {outcome.ok}/{outcome.streams} correct in {outcome.seconds:.1f} s, peak RSS "
            f"{outcome.peak_rss_mib:.1f} MiB, {outcome.cpu_us_per_chunk:.1f} µs CPU per event",
            flush=True,
        )
        services.stop(service)


def header(plan: Plan, elapsed: float, nginx: str, compare: list[Path]) -> list[str]:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
    return [
        "## modelway proxy overhead (issue 3)",
        "",
        f"Run {when} in {elapsed:.0f} s on {machine}, Python {platform.python_version()}.",
        f"modelway at commit {git_commit(Path(__file__).parent)}; {versions(nginx)}.",
        *(f"Compared with the modelway of {d} at commit {git_commit(d)}." for d in compare),
        f"wrk -t1 at 32 connections ({plan.seconds_c32:g} s) and 1 connection ({plan.seconds_c1:g} s),"
        f" streaming at 32 connections ({plan.seconds_sse:g} s); {plan.reps} repetition(s) alternating"
        f" between systems, medians; stream TTFB/TTLB: median of {plan.timed_streams} sequential requests"
        " per repetition.",
        f"Proxy under test pinned to CPU {GATEWAY_CPU}; wrk, the nginx upstream and the clients to"
        f" CPU {LOAD_CPU}. CPU µs/req: utime+stime of the proxy process from /proc over the run ÷ requests."
        ' "added": median over repetitions of (system - direct) measured in the same repetition.',
    ]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit(where: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=where,
            check=False,
        )
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def versions(nginx: str) -> str:
    names = ("uvicorn", "uvloop", "httptools", "aiohttp", "orjson")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False, timeout=10)
    return ", ".join(found) + f", {done.stderr.strip().removeprefix('nginx version: ')}"


def raw_figures(results: Results, plan: Plan) -> dict[str, object]:
    return {
        "plan": asdict(plan),
        "runs": {
            scenario: {
                name: [{**asdict(r), "rps": r.rps, "cpu_us_per_request": r.cpu_us_per_request} for r in runs]
                for name, runs in systems.items()
            }
            for scenario, systems in results.runs.items()
        },
        "stream_timings_s": results.timings,
        "slow_streams": {
            name: {**asdict(s), "cpu_us_per_chunk": s.cpu_us_per_chunk}
            for name, s in results.slow_streams.items()
        },
    }


if __name__ == "__main__":
    sys.exit(main())
