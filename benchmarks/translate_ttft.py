"""Streaming time to first byte through a translation, beside native relaying (issue 11:
"within 0.3 ms of native relaying").

One modelway process (1 worker) in front of one SSE upstream (`slow_upstream.py` with no
pause: 20 chat.completion.chunk events and [DONE], written as they are made). Two kinds of
request, on one keep-alive connection each, alternating in rounds so that the machine's drift
hits both alike:

    native      POST /v1/chat/completions, stream   the upstream's bytes relayed untouched
    translated  POST /v1/messages, stream           Anthropic Messages → chat/completions, the
                                                    chat stream translated back event by event

TTFB is the time from sending the request to the first body byte (`streams.StreamTimer`);
every answer is checked (the native one byte for byte, the translated one for its
message_stop). Printed: the median and p90 of each, and the difference of the medians.

    .venv/bin/python -m benchmarks.translate_ttft [--rounds 10] [--per-round 50] [--cpus 0,1]

Everything runs on 127.0.0.1; `--cpus` pins the gateway with taskset (default: not pinned).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import orjson
import yaml

from benchmarks.procs import Service, Services, free_port
from benchmarks.slow_upstream import expected_body
from benchmarks.streams import StreamTimer

CHUNKS = 20
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
NATIVE = ("/v1/chat/completions", orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": True}))
TRANSLATED = ("/v1/messages", orjson.dumps({"model": "bench", "messages": MESSAGES, "stream": True,
                                            "max_tokens": 64}))


def config(upstream_port: int) -> dict[str, object]:
    return {
        "server": {"watch_config": False},
        "providers": [{"name": "chat", "kind": "openai-compatible",
                       "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                       "auth": {"header": {"Authorization": "Bearer bench-upstream-key"}}}],
        "models": [{"name": "bench", "deployments": [{"provider": "chat"}]}],
    }


def measure(timer: StreamTimer, path: str, body: bytes, n: int, translated: bool) -> list[float]:
    expected = expected_body(CHUNKS)
    out = []
    for _ in range(n):
        status, answer, ttfb, _ = timer.post(path, body)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {answer[:300]!r}")
        if translated and not answer.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n'):
            raise RuntimeError(f"{path}: not a complete Messages stream: {answer[-300:]!r}")
        if not translated and answer != expected:
            raise RuntimeError(f"{path}: not the upstream's bytes: {answer[:300]!r}")
        out.append(ttfb * 1000)
    return out


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--cpus", default=None, help="taskset CPU list for the gateway (default: not pinned)")
    args = parser.parse_args()
    services = Services()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        try:
            upstream_port = free_port()
            services.start(Service("upstream", [sys.executable, "-m", "benchmarks.slow_upstream", "--port",
                                                str(upstream_port), "--chunks", str(CHUNKS), "--interval", "0"],
                                   workdir / "upstream.log"), upstream_port)
            path = workdir / "modelway.yaml"
            path.write_text(yaml.safe_dump(config(upstream_port)))
            port = free_port()
            env = {**os.environ, "MODELWAY_LOG_LEVEL": "warning"}  # the translation's log line is an info
            services.start(Service("modelway", [sys.executable, "-m", "modelway", "serve", "--config", str(path),
                                                "--port", str(port)], workdir / "modelway.log", cpus=args.cpus,
                                   env=env),
                           port, health_url=f"http://127.0.0.1:{port}/health")
            native, translated = StreamTimer(port), StreamTimer(port)
            measure(native, *NATIVE, n=50, translated=False)  # warm-up: connections, caches, the JIT of nothing
            measure(translated, *TRANSLATED, n=50, translated=True)
            figures: dict[str, list[float]] = {"native": [], "translated": []}
            for i in range(args.rounds):
                order = [("native", native, NATIVE), ("translated", translated, TRANSLATED)]
                for name, timer, (route, body) in order if i % 2 == 0 else reversed(order):
                    figures[name] += measure(timer, route, body, args.per_round, name == "translated")
            native.close()
            translated.close()
        finally:
            services.stop_all()
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(f"streaming TTFB through modelway, {len(figures['native'])} requests each, {CHUNKS}-event streams")
    for name, values in figures.items():
        print(f"  {name:<10}  median {medians[name]:.3f} ms   p90 {p90(values):.3f} ms")
    difference = medians["translated"] - medians["native"]
    print(f"  translated - native: {difference:+.3f} ms at the median (the aim: within 0.3 ms)")


if __name__ == "__main__":
    main()
