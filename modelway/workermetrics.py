"""`--workers N`: a scrape of any worker's /metrics reports the whole server.

Each worker keeps its counters in its own process (metrics.py: nothing shared on the
request path). Every SNAPSHOT_S it writes them to a file of its own in a directory the
main process made (MODELWAY_METRICS_DIR), replaced atomically; the worker that answers a
scrape adds every other worker's last snapshot to its own live figures. Counters of a
worker that has exited stay counted (a counter must not go down); its in-flight gauge does
not. Figures of other workers are at most SNAPSHOT_S old.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from modelway.metrics import DURATION_BUCKETS, TTFT_BUCKETS, Histogram, Metrics
from modelway.routes import held_requests

if TYPE_CHECKING:
    from modelway.runtime import Runtime

SNAPSHOT_S = 0.5
DIR_ENV = "MODELWAY_METRICS_DIR"


@dataclass(slots=True)
class Others:
    """What the other workers add to this one's gauges."""

    inflight: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    held: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    router_errors: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    state_errors: int = 0


def dump(runtime: Runtime) -> bytes:
    m = runtime.metrics
    inflight: defaultdict[str, int] = defaultdict(int)
    for route in runtime.models.values():
        for deployment in route.deployments:
            inflight[deployment.provider.name] += deployment.stats.inflight
    for deployment in runtime.table.extra_deployments():
        inflight[deployment.provider.name] += deployment.stats.inflight
    return orjson.dumps({
        "requests": [[*k, v] for k, v in list(m.requests.items())],
        "attempts": [[*k, v] for k, v in list(m.attempts.items())],
        "tokens": [[*k, v] for k, v in list(m.tokens.items())],
        "cost": [[*k, v] for k, v in list(m.cost.items())],
        "durations": [[*k, h.counts, h.total] for k, h in list(m.durations.items())],
        "ttfts": [[*k, h.counts, h.total] for k, h in list(m.ttfts.items())],
        "config_reloads": dict(m.config_reloads),
        "router_errors": dict(runtime.routers.errors),
        "state_errors": runtime.state_backend_errors(),
        "inflight": inflight,
        "held": held_requests(runtime.models.values()),
    })


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def others(directory: Path, own_pid: int) -> list[tuple[int, dict[str, Any]]]:
    found = []
    for path in directory.glob("*.json"):
        pid = int(path.stem) if path.stem.isdigit() else -1
        if pid == own_pid or pid < 0:
            continue
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            found.append((pid, orjson.loads(path.read_bytes())))
    return found


def combined(own: Metrics, snapshots: list[tuple[int, dict[str, Any]]]) -> tuple[Metrics, Others]:
    """This worker's metrics plus the other workers' snapshots, as one Metrics."""
    total = Metrics()
    extra = Others()
    for name in ("requests", "attempts", "tokens", "cost"):
        target = getattr(total, name)
        for key, value in list(getattr(own, name).items()):
            target[key] += value
        for _, snapshot in snapshots:
            for *key, value in snapshot.get(name, []):
                target[tuple(key)] += value
    for name, bounds in (("durations", DURATION_BUCKETS), ("ttfts", TTFT_BUCKETS)):
        target = getattr(total, name)
        for key, histogram in list(getattr(own, name).items()):
            merge_histogram(target, key, histogram.counts, histogram.total, bounds)
        for _, snapshot in snapshots:
            for model, provider, counts, sum_ in snapshot.get(name, []):
                merge_histogram(target, (model, provider), counts, sum_, bounds)
    for result, value in list(own.config_reloads.items()):
        total.config_reloads[result] += value
    for pid, snapshot in snapshots:
        for result, value in snapshot.get("config_reloads", {}).items():
            total.config_reloads[result] += value
        for router, value in snapshot.get("router_errors", {}).items():
            extra.router_errors[router] += value
        extra.state_errors += int(snapshot.get("state_errors", 0))
        if alive(pid):
            for provider, value in snapshot.get("inflight", {}).items():
                extra.inflight[provider] += value
            for model, value in snapshot.get("held", {}).items():
                extra.held[model] += value
    return total, extra


def merge_histogram(
    target: dict[tuple[str, str], Histogram], key: tuple[str, str], counts: list[int], sum_: float,
    bounds: tuple[float, ...],
) -> None:
    histogram = target.get(key)
    if histogram is None:
        histogram = target[key] = Histogram(bounds)
    if len(counts) != len(histogram.counts):
        return  # another version's buckets: not comparable
    histogram.counts = [a + b for a, b in zip(histogram.counts, counts, strict=True)]
    histogram.total += sum_


class SnapshotWriter:
    """Writes this worker's snapshot every SNAPSHOT_S (and once more when it stops)."""

    def __init__(self, directory: Path, runtime: Any) -> None:
        self.path = directory / f"{os.getpid()}.json"
        self.runtime = runtime  # a callable returning the current Runtime
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def run(self) -> None:
        while True:
            self.write()
            await asyncio.sleep(SNAPSHOT_S)

    def write(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        with contextlib.suppress(OSError):
            temporary.write_bytes(dump(self.runtime()))
            temporary.replace(self.path)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.write()
