"""Load metrics scraped from each provider's `metrics_url` (vLLM or SGLang Prometheus text).

One score per provider, published as `provider:<name>` (see `least_load`), ordering
providers by waiting queue, then running requests, then KV-cache use (`score.py`):

    engine   waiting                    running                    KV-cache use (0..1)
    vLLM     vllm:num_requests_waiting  vllm:num_requests_running  vllm:kv_cache_usage_perc
                                                                   (older: vllm:gpu_cache_usage_perc)
    SGLang   sglang:num_queue_reqs      sglang:num_running_reqs    sglang:token_usage

Counts are summed over label sets (several models or data-parallel engines behind one
URL); KV use takes the highest. A provider whose last good scrape is older than the
staleness bound (a sample's own timestamp counts when it has one) has no score, so it
ranks after those with one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping

import aiohttp

from modelway.loadmetrics.polling import PollingSource, log
from modelway.loadmetrics.score import load_score, provider_key

WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
WANTED = frozenset((*WAITING, *RUNNING, *KV_USAGE))

MIN_STALE_S = 2.0
STALE_REFRESHES = 3  # a score older than max(MIN_STALE_S, 3 refreshes) is ignored


def parse_samples(text: str) -> Iterable[tuple[str, float, float | None]]:
    """(metric name, value, timestamp in seconds or None) for each sample line of
    Prometheus text format; labels are skipped, comments and junk lines ignored."""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        brace = line.find("{")
        space = line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name = line[:brace]
            end = _label_end(line, brace)
            if end == -1:
                continue
            rest = line[end + 1 :].split()
        else:
            if space == -1:
                continue
            name, rest = line[:space], line[space + 1 :].split()
        if not rest:
            continue
        try:
            value = float(rest[0])
            stamp = float(rest[1]) / 1000 if len(rest) > 1 else None
        except ValueError:
            continue
        yield name, value, stamp


def _label_end(line: str, start: int) -> int:
    """Index of the '}' closing the label set opened at `start` (quotes and escapes honoured)."""
    quoted = escaped = False
    for i in range(start + 1, len(line)):
        char = line[i]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return i
    return -1


def score_text(text: str, now_wall: float | None = None, stale_s: float = MIN_STALE_S) -> float | None:
    """The provider's load score from one scrape, or None if it exposes none of the gauges."""
    now_wall = time.time() if now_wall is None else now_wall
    sums: dict[str, float] = {}
    for name, value, stamp in parse_samples(text):
        if name not in WANTED or not math.isfinite(value):
            continue
        if stamp is not None and now_wall - stamp > stale_s:
            continue
        if name in KV_USAGE:
            sums[name] = max(sums.get(name, 0.0), value)
        else:
            sums[name] = sums.get(name, 0.0) + value
    if not sums:
        return None
    waiting = _first(sums, WAITING)
    running = _first(sums, RUNNING)
    kv = _first(sums, KV_USAGE)
    return load_score(waiting, running, kv)


def _first(sums: Mapping[str, float], names: tuple[str, ...]) -> float:
    for name in names:
        if name in sums:
            return sums[name]
    return 0.0


class PrometheusMetrics(PollingSource):
    name = "prometheus"

    def __init__(self, targets: Mapping[str, str], refresh_s: float, timeout_s: float | None = None) -> None:
        super().__init__(refresh_s)
        self.targets = dict(targets)  # provider name -> metrics_url
        self.stale_s = max(MIN_STALE_S, STALE_REFRESHES * refresh_s)
        self.timeout_s = timeout_s if timeout_s is not None else max(0.2, min(refresh_s, 2.0))
        self._last: dict[str, tuple[float, float]] = {}  # provider -> (score, monotonic time scraped)
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if not self.targets:
            log.warning("metrics.source is prometheus but no provider has a metrics_url: nothing to scrape")
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def poll(self) -> dict[str, float]:
        if not self.targets:
            return {}
        names = list(self.targets)
        results = await asyncio.gather(
            *(self._scrape(self.targets[n]) for n in names), return_exceptions=True
        )
        now = time.monotonic()
        failures = 0
        for name, result in zip(names, results, strict=True):
            if isinstance(result, float):
                self._last[name] = (result, now)
            elif isinstance(result, BaseException):
                failures += 1  # keep the last good score until it goes stale
            else:
                self._last.pop(name, None)  # answered, but with none of the gauges
        fresh = {
            provider_key(name): score for name, (score, at) in self._last.items() if now - at <= self.stale_s
        }
        if not fresh and failures == len(names):
            first = next(r for r in results if isinstance(r, BaseException))
            raise ConnectionError(f"every metrics_url failed, e.g. {type(first).__name__}: {first}")
        return fresh

    async def _scrape(self, url: str) -> float | None:
        assert self._session is not None, "poll() before open()"
        async with self._session.get(url) as response:
            if response.status != 200:
                raise ConnectionError(f"{url} answered {response.status}")
            text = await response.text(errors="replace")
        return score_text(text, stale_s=self.stale_s)
