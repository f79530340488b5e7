"""Soak: N minutes of mixed traffic through one gateway process, watching what it holds.

    .venv/bin/python -m benchmarks.soak                 # 30 minutes
    .venv/bin/python -m benchmarks.soak --minutes 5 --concurrency 24

Not part of CI (tests/e2e/test_soak.py runs its core for 2 minutes). Everything is local and
bounded: a gateway (`python -m modelway serve`, one worker) on 127.0.0.1, an upstream of our
own in this process (aiohttp) on 127.0.0.1, `--concurrency` clients in this process's event
loop, each a loop of requests with a short random pause; the run stops by itself.

The traffic mix: JSON answers, streams, slow answers (1 s before the headers), streams the
client leaves mid-way (the upstream must see each cancelled), and failing upstreams — 500s,
429s, dropped connections, answers slower than the timeout, streams that break — on a model
of their own, so that their cooldowns do not touch the healthy one. Clients reuse their
connection (keep-alive) or open a new one. Config reloads run every `--reload-every` s when
the gateway has the admin API (POST /admin/reload answering 200); without it they are
skipped and the summary says so.

Printed: the gateway's RSS every `--report-every` s with requests and errors so far; at the
end the RSS growth after the warm-up (target under 5%), the outcomes by class, and what is
left once the traffic stops: open file descriptors against the count before the traffic,
upstream connections, `modelway_inflight`, upstream requests neither finished nor cancelled,
and tracebacks in the gateway's log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from benchmarks.procs import free_port, status_kib

ADMIN_KEY = "soak-admin-key"
CHUNKED_END = b"\r\n0\r\n\r\n"
REQUEST_TIMEOUT_S = 20.0
SETTLE_S = 10.0  # the most what is left after the traffic may take to go
# What clients ask for, and how often (weights). The failing kinds go to the model "bad".
MIX = {
    "json": 30, "stream": 25, "slow": 4, "disconnect": 8,
    "e500": 5, "e429": 3, "drop": 3, "hang": 2, "break": 4,
}
HEALTHY = {"json", "stream", "slow", "disconnect"}


class SoakUpstream:
    """An OpenAI-shaped upstream whose behaviour each request picks with `x-soak: <kind>`
    (a client header the gateway forwards); counts what it started, finished and had
    cancelled (its client, the gateway, went away first)."""

    def __init__(self) -> None:
        self.started = self.finished = self.cancelled = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True, keepalive_timeout=2.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def open_connections(self) -> int:
        server = self.runner.server if self.runner else None
        return len(server.connections) if server is not None else 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.started += 1
        try:
            response = await self.answer(request, request.headers.get("x-soak", "json"))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished += 1
        return response

    async def answer(self, request: web.Request, kind: str) -> web.StreamResponse:
        await request.read()
        if kind in ("json", "slow"):
            if kind == "slow":
                await asyncio.sleep(1.0)
            return web.json_response(completion())
        if kind == "e500":
            return web.json_response({"error": {"message": "soak 500"}}, status=500)
        if kind == "e429":
            return web.json_response({"error": {"message": "soak 429"}}, status=429)
        if kind == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if kind == "hang":
            await asyncio.sleep(30)  # beyond the provider's timeout_ms: the gateway gives up first
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunks, gap = {"stream": (10, 0.05), "disconnect": (40, 0.1), "break": (6, 0.05)}.get(kind, (3, 0.05))
        for i in range(chunks):
            if kind == "break" and i == 3:
                assert request.transport is not None
                request.transport.abort()
                return response
            await response.write(b"data: %s\n\n" % json.dumps(chunk(i)).encode())
            await asyncio.sleep(gap)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-soak", "object": "chat.completion", "created": 1, "model": "soak",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "soak"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def chunk(i: int) -> dict[str, Any]:
    return {"id": "chatcmpl-soak", "object": "chat.completion.chunk", "created": 1, "model": "soak",
            "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]}


def gateway_config(upstream_port: int, weight: int = 1) -> dict[str, Any]:
    base = f"http://127.0.0.1:{upstream_port}"
    providers = [
        {"name": name, "kind": "openai-compatible", "base_url": f"{base}/{name}/v1", "timeout_ms": 2000}
        for name in ("ok1", "ok2", "bad1", "bad2")
    ]
    return {
        "server": {"watch_config": False},
        "auth": {"admin_key": ADMIN_KEY},
        "providers": providers,
        "models": [
            {"name": "ok", "deployments": [{"provider": "ok1", "weight": weight}, {"provider": "ok2"}]},
            {"name": "bad", "deployments": [{"provider": "bad1"}, {"provider": "bad2"}]},
        ],
        "routing": {"retries": 1, "cooldown": {"failures": 5, "window_s": 10, "cooldown_s": 1}},
    }


@dataclass
class Gateway:
    config_path: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("MODELWAY_CONFIG", "MODELWAY_HTTP")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelway", "serve", "--config", str(self.config_path), "--port",
                 str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the gateway did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mib(self) -> float:
        return status_kib(self.pid, "VmRSS") / 1024


@dataclass
class SoakResult:
    minutes: float
    requests: int
    outcomes: Counter[str]
    rss_mib: list[tuple[float, float]]  # (seconds since start, RSS)
    rss_growth: float  # after the warm-up: (end - start) / start
    reloads: int | None  # None: the gateway has no admin API
    fds_before: int
    fds_after: int
    upstream_connections: int
    inflight: float
    upstream_started: int
    upstream_finished: int
    upstream_cancelled: int
    disconnects: int
    tracebacks: int

    @property
    def unexpected(self) -> dict[str, int]:
        """Outcomes no kind of request should have (see `expected`)."""
        return {k: v for k, v in self.outcomes.items() if not expected(k)}

    @property
    def left_in_progress(self) -> int:
        return self.upstream_started - self.upstream_finished - self.upstream_cancelled


def expected(outcome: str) -> bool:
    kind, _, what = outcome.partition(" ")
    if kind == "reload":
        return what == "200"
    if kind in ("json", "slow"):
        return what == "200"
    if kind == "stream":
        return what == "200 complete"
    if kind == "disconnect":
        return what == "left mid-stream"
    # failing upstreams: any status the gateway gives for them, none of its own 500s, and no
    # answer missing or cut short (a broken stream ends with its error event)
    return what in ("429", "500 passed through", "502", "503", "504", "200 stream_broken")


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        return status, headers, b"".join(parts)
    if b"content-length" in headers:
        return status, headers, await reader.readexactly(int(headers[b"content-length"]))
    return status, headers, await reader.read()


class Clients:
    def __init__(self, port: int, seed: int) -> None:
        self.port = port
        self.random = random.Random(seed)
        self.outcomes: Counter[str] = Counter()
        self.requests = 0
        self.disconnects = 0
        self.stopping = False

    async def worker(self, until: float = float("inf")) -> None:
        """Requests one after the other, until the traffic stops (or `until`, monotonic)."""
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        kinds, weights = list(MIX), list(MIX.values())
        while not self.stopping and time.monotonic() < until:
            kind = self.random.choices(kinds, weights)[0]
            if writer is None or self.random.random() < 0.3:  # a new connection, or keep-alive
                if writer is not None:
                    writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert reader is not None
            outcome, keep = await self.one(kind, reader, writer)
            self.requests += 1
            self.outcomes[f"{kind} {outcome}"] += 1
            if not keep:
                writer.close()
                writer = None
            await asyncio.sleep(self.random.uniform(0, 0.05))
        if writer is not None:
            writer.close()

    async def one(self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, bool]:
        stream = kind in ("stream", "disconnect", "break")
        model = "ok" if kind in HEALTHY else "bad"
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "soak"}], "stream": stream})
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
            b"x-soak: %s\r\nContent-Length: %d\r\n\r\n%s" % (kind.encode(), len(body), body.encode())
        )
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                if kind == "disconnect":
                    await reader.readuntil(b"data: ")  # the head and the first chunk came: leave
                    self.disconnects += 1
                    return "left mid-stream", False
                status, headers, content = await read_answer(reader)
        except TimeoutError:
            return "client timeout", False
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            return f"connection {type(exc).__name__}", False
        keep = headers.get(b"connection", b"").lower() != b"close"
        if status == 200 and stream:
            if content.endswith(b"data: [DONE]\n\n"):
                return "200 complete", keep
            return ("200 stream_broken" if b'"stream_broken"' in content else "200 cut short"), keep
        if status == 500 and b"soak 500" in content:
            return "500 passed through", keep
        return str(status), keep


def scrape_inflight(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(r"^modelway_inflight(?:\{[^}]*\})? (\S+)$", text, re.M))


def admin_reload(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/reload", data=b"", method="POST",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


async def run_soak(
    seconds: float,
    warmup_s: float,
    concurrency: int = 24,
    report_every_s: float = 60.0,
    reload_every_s: float = 60.0,
    seed: int = 1,
    out: Any = sys.stdout,
    warmup_concurrency: int = 0,
) -> SoakResult:
    upstream = SoakUpstream()
    await upstream.start()
    workdir = Path(tempfile.mkdtemp(prefix="modelway-soak-"))
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(gateway_config(upstream.port)))
    gateway = Gateway(config_path, workdir / "gateway.log")
    try:
        await asyncio.to_thread(gateway.start)
        fds_before = gateway.fds()
        reloading = await asyncio.to_thread(admin_reload, gateway.port) == 200
        reloads = 0
        clients = Clients(gateway.port, seed)
        started = time.monotonic()
        workers = [asyncio.create_task(clients.worker()) for _ in range(concurrency)]
        # The warm-up runs more clients: the gateway's memory settles after a number of
        # requests (its garbage collections' rhythm and the allocator's arenas), not of minutes.
        workers += [
            asyncio.create_task(clients.worker(until=started + warmup_s))
            for _ in range(max(0, warmup_concurrency - concurrency))
        ]
        samples: list[tuple[float, float]] = []
        next_report = next_reload = 0.0
        reload_plan = f"every {reload_every_s:g} s" if reloading else "no admin API here, skipped"
        print(f"soak: {seconds / 60:g} min, {concurrency} clients, warm-up {warmup_s / 60:.3g} min"
              f" ({max(concurrency, warmup_concurrency)} clients);"
              f" config reloads: {reload_plan}", file=out, flush=True)
        while (elapsed := time.monotonic() - started) < seconds:
            samples.append((elapsed, gateway.rss_mib()))
            if elapsed >= next_report:
                errors = sum(v for k, v in clients.outcomes.items() if not expected(k))
                print(f"  {elapsed / 60:5.1f} min  RSS {samples[-1][1]:6.1f} MiB  requests {clients.requests:7d}"
                      f"  unexpected {errors}", file=out, flush=True)
                next_report += report_every_s
            if reloading and elapsed >= next_reload and elapsed > 0:
                config_path.write_text(yaml.safe_dump(gateway_config(upstream.port, weight=1 + reloads % 3)))
                status = await asyncio.to_thread(admin_reload, gateway.port)
                clients.outcomes[f"reload {status}"] += 1
                reloads += 1
            if elapsed >= next_reload:
                next_reload += reload_every_s
            await asyncio.sleep(min(5.0, report_every_s / 4))
        clients.stopping = True
        await asyncio.wait(workers, timeout=REQUEST_TIMEOUT_S + 5)
        samples.append((time.monotonic() - started, gateway.rss_mib()))
        # what is left: wait (bounded) for it to go
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and (
            gateway.fds() > fds_before or upstream.open_connections() or
            upstream.started - upstream.finished - upstream.cancelled
        ):
            await asyncio.sleep(0.1)
        inflight = await asyncio.to_thread(scrape_inflight, gateway.port)
        await asyncio.sleep(0.5)  # the scrape's own connection closes
        log = gateway.log_path.read_text(errors="replace")
        result = SoakResult(
            minutes=seconds / 60,
            requests=clients.requests,
            outcomes=clients.outcomes,
            rss_mib=samples,
            rss_growth=growth(samples, warmup_s),
            reloads=reloads if reloading else None,
            fds_before=fds_before,
            fds_after=gateway.fds(),
            upstream_connections=upstream.open_connections(),
            inflight=inflight,
            upstream_started=upstream.started,
            upstream_finished=upstream.finished,
            upstream_cancelled=upstream.cancelled,
            disconnects=clients.disconnects,
            tracebacks=log.count("Traceback"),
        )
    finally:
        gateway.stop()
        await upstream.stop()
    report(result, warmup_s, out)
    return result


def growth(samples: list[tuple[float, float]], warmup_s: float) -> float:
    """RSS growth after the warm-up: the median of the last minute's samples against the
    median of the first minute's after the warm-up (medians: one sample taken mid-burst
    does not decide)."""
    after = [(t, rss) for t, rss in samples if t >= warmup_s]
    if len(after) < 2:
        return 0.0
    window = min(60.0, (after[-1][0] - after[0][0]) / 3)
    first = statistics.median(rss for t, rss in after if t <= after[0][0] + window)
    last = statistics.median(rss for t, rss in after if t >= after[-1][0] - window)
    return (last - first) / first


def report(result: SoakResult, warmup_s: float, out: Any) -> None:
    after = [rss for t, rss in result.rss_mib if t >= warmup_s]
    print(f"\nsoak done: {result.requests} requests in {result.minutes:g} min", file=out)
    print(f"RSS after the warm-up ({warmup_s / 60:.3g} min): {after[0] if after else 0:.1f} -> "
          f"{after[-1] if after else 0:.1f} MiB, growth {result.rss_growth * 100:+.2f}% (target < 5%)", file=out)
    print("outcomes by class:", file=out)
    for outcome, count in sorted(result.outcomes.items()):
        print(f"  {outcome:32s} {count:7d}{'' if expected(outcome) else '   <- unexpected'}", file=out)
    print(f"config reloads: {result.reloads if result.reloads is not None else 'skipped (no admin API)'}", file=out)
    print(f"left after the traffic: fds {result.fds_after} (before {result.fds_before}),"
          f" upstream connections {result.upstream_connections}, modelway_inflight {result.inflight:g},"
          f" upstream requests in progress {result.left_in_progress}"
          f" (started {result.upstream_started}, finished {result.upstream_finished},"
          f" cancelled {result.upstream_cancelled}; client disconnects {result.disconnects}),"
          f" tracebacks in the gateway's log {result.tracebacks}", file=out, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="soak the gateway with mixed traffic (127.0.0.1 only)")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup-minutes", type=float, default=None, help="default: a tenth, at least 1 min")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--warmup-concurrency", type=int, default=0, help="more clients during the warm-up")
    parser.add_argument("--report-every", type=float, default=60, help="seconds between RSS lines")
    parser.add_argument("--reload-every", type=float, default=60, help="seconds between config reloads")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    seconds = args.minutes * 60
    warmup = (args.warmup_minutes * 60) if args.warmup_minutes is not None else max(60.0, seconds / 10)
    result = asyncio.run(
        run_soak(seconds, min(warmup, seconds / 2), args.concurrency, args.report_every, args.reload_every,
                 args.seed, warmup_concurrency=args.warmup_concurrency)
    )
    failed = result.unexpected or result.rss_growth >= 0.05 or result.left_in_progress or result.tracebacks
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
