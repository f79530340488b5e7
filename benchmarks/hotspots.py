"""Where a proxy spends its CPU under load: py-spy samples of one worker while wrk drives it.

    .venv/bin/pip install py-spy
    .venv/bin/python -m benchmarks.hotspots                 # modelway, non-streaming, 10 s
    .venv/bin/python -m benchmarks.hotspots --stream        # the streaming path
    .venv/bin/python -m benchmarks.hotspots --target bare   # the bare proxy, for comparison

Same setup as benchmarks.overhead (nginx upstream and wrk on one CPU, the proxy on the
other). py-spy samples with --native, so time in C (uvloop, httptools, the GC, syscalls)
is seen too; its pauses slow the process, so shares are meaningful, throughput is not.
Prints and writes benchmarks/results/hotspots-<target>[-stream].md; the collapsed stacks go
to a .txt beside it (not committed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from benchmarks.loadgen import run_wrk
from benchmarks.overhead import RESULTS, prepare_process
from benchmarks.procs import Services, ensure_tools
from benchmarks.report import table
from benchmarks.systems import (
    CHAT_BODY,
    CHAT_PATH,
    GATEWAY_CPU,
    LOAD_CPU,
    STREAM_BODY,
    STREAM_PATH,
    service_port,
    start_bare,
    start_modelway,
    start_upstream,
)

# Where the innermost Python frame of a sample lives decides whose time it is.
COMPONENTS = (
    ("modelway", ("modelway/",)),
    ("uvicorn (server, ASGI glue)", ("uvicorn/",)),
    (
        "aiohttp client (+ yarl, multidict)",
        ("aiohttp/", "yarl/", "multidict/", "propcache/", "aiohappyeyeballs/"),
    ),
    ("asyncio (tasks, futures, events)", ("asyncio/",)),
    ("benchmarks (bare proxy)", ("benchmarks/",)),
)
GC_FRAMES = ("gc_collect_main", "gc_collect_with_callback", "collect_generations")
BARE_LOOP = "event loop, I/O and parsing outside any Python frame"


def frame_path(frame: str) -> str:
    """'relay (modelway/proxy/relay.py:34)' → 'modelway/proxy/relay.py'."""
    inner = frame.rpartition("(")[2].rstrip(")")
    return inner.rpartition(":")[0] or inner


def is_python(frame: str) -> bool:
    return frame_path(frame).endswith(".py")


def component(stack: list[str]) -> str:
    if any(f.split(" ", 1)[0] in GC_FRAMES for f in stack):
        return "cyclic GC (gc_collect_main)"
    for frame in reversed(stack):
        if not is_python(frame):
            continue
        path = frame_path(frame)
        if path.startswith("asyncio/runners.py") or "uvicorn/server.py" in path or "uvicorn/main.py" in path:
            return BARE_LOOP  # only the loop's run() below: uvloop/httptools C code
        for name, prefixes in COMPONENTS:
            if path.startswith(prefixes):
                return name
        return "other Python (stdlib: contextlib, weakref, ...)"
    return BARE_LOOP


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(stacks: Iterable[tuple[list[str], int]], top: int = 25) -> list[str]:
    stacks = list(stacks)
    total = sum(n for _, n in stacks) or 1
    components: Counter[str] = Counter()
    own_inclusive: Counter[str] = Counter()
    own_self: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        components[component(frames)] += n
        leaves[frames[-1]] += n
        seen = set()
        for frame in frames:
            if frame_path(frame).startswith(("modelway/", "benchmarks/")):
                name = frame.rsplit(":", 1)[0] + ")"  # per function, not per line
                if name not in seen:
                    seen.add(name)
                    own_inclusive[name] += n
        python = [f for f in frames if is_python(f)]
        if python and frame_path(python[-1]).startswith(("modelway/", "benchmarks/")):
            own_self[python[-1]] += n

    def pct(n: int) -> str:
        return f"{100 * n / total:.1f}%"

    lines = [f"{total} samples.", "", "**CPU by component** (innermost Python frame of each sample):", ""]
    lines += table(["component", "share"], [[name, pct(n)] for name, n in components.most_common()])
    lines += ["", "**Own code, inclusive** (the function and everything it calls):", ""]
    own = [(f, n) for f, n in own_inclusive.most_common() if n < total]  # not the roots (main, run)
    lines += table(["function", "share"], [[f"`{f}`", pct(n)] for f, n in own[:top]])
    lines += ["", "**Own code, self** (lines whose own Python work, or C called directly, was sampled):", ""]
    lines += table(["line", "share"], [[f"`{f}`", pct(n)] for f, n in own_self.most_common(top)])
    lines += ["", "**Leaf frames overall:**", ""]
    lines += table(["frame", "share"], [[f"`{f}`", pct(n)] for f, n in leaves.most_common(top)])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hotspots", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--target", choices=("modelway", "bare"), default="modelway")
    parser.add_argument("--stream", action="store_true", help="profile the streaming path")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--source", type=Path, help="profile the modelway package of another checkout")
    parser.add_argument("--summarize", type=Path, help="only summarize an existing collapsed-stacks file")
    args = parser.parse_args(argv)
    if args.summarize:
        print("\n".join(summarize(read_stacks(args.summarize))))
        return 0
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is needed: .venv/bin/pip install py-spy")
    nginx = ensure_tools()
    prepare_process()
    source = args.source.resolve() if args.source else None
    suffix = f"@{source.name}" if source else ""
    name = f"hotspots-{args.target}{suffix}{'-stream' if args.stream else ''}"
    raw = RESULTS / f"{name}.txt"
    RESULTS.mkdir(exist_ok=True)
    services = Services()
    try:
        with tempfile.TemporaryDirectory(prefix="modelway-hotspots-") as tmp:
            workdir = Path(tmp)
            upstream = start_upstream(services, nginx, workdir)
            if args.target == "bare":
                proxy = start_bare(services, workdir, "bare", upstream)
                path = STREAM_PATH if args.stream else CHAT_PATH
            else:
                providers = {
                    "bench": f"http://127.0.0.1:{upstream}/v1",
                    "bench-stream": f"http://127.0.0.1:{upstream}/stream/v1",
                }
                proxy = start_modelway(services, workdir, "modelway", providers, 1, GATEWAY_CPU, source)
                path = CHAT_PATH
            url = f"http://127.0.0.1:{service_port(proxy)}{path}"
            body = STREAM_BODY if args.stream else CHAT_BODY
            run_wrk(url, connections=32, seconds=2, body=body, cpu=LOAD_CPU)  # warm up
            load = threading.Thread(
                target=run_wrk,
                kwargs={
                    "url": url,
                    "connections": 32,
                    "seconds": args.seconds + 3,
                    "body": body,
                    "cpu": LOAD_CPU,
                },
            )
            load.start()
            argv_spy = [py_spy, "record", "--native", "-p", str(proxy.pid), "-d", str(args.seconds),
                        "-r", str(args.rate), "-f", "raw", "-o", str(raw)]  # fmt: skip
            subprocess.run(argv_spy, check=True, timeout=args.seconds + 60, capture_output=True)
            load.join(args.seconds + 60)
    finally:
        services.stop_all()
    what = f"{args.target}{suffix}, {'streaming' if args.stream else 'non-streaming'} at 32 connections"
    lines = [f"## Hotspots: {what}", "", f"`py-spy record --native -r {args.rate}` for {args.seconds} s.", ""]
    lines += summarize(read_stacks(raw))
    text = "\n".join(lines) + "\n"
    print(text)
    (RESULTS / f"{name}.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
