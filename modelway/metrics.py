"""Prometheus metrics (SPEC section 7) at almost no cost per request.

The request path only bumps plain counters in dicts keyed by label tuples and drops a
duration into a histogram's bucket list — no locks, no label lookups in a client
library. Gauges (in-flight, health) are not tracked at all: they are read from the live
deployments when `/metrics` is scraped (exposition.py turns it all into Prometheus text).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelway.deployment import Deployment

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Metrics:
    """Everything counted in one process."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.attempts: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.tokens: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.cost: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.durations: dict[tuple[str, str], Histogram] = {}
        self.ttfts: dict[tuple[str, str], Histogram] = {}
        self.config_reloads: defaultdict[str, int] = defaultdict(int)

    def request(
        self, model: str, provider: str, status: int | str, duration_s: float, ttft_s: float | None
    ) -> None:
        self.requests[(model, provider, str(status))] += 1
        key = (model, provider)
        histogram = self.durations.get(key)
        if histogram is None:
            histogram = self.durations[key] = Histogram(DURATION_BUCKETS)
        histogram.observe(duration_s)
        if ttft_s is not None:
            histogram = self.ttfts.get(key)
            if histogram is None:
                histogram = self.ttfts[key] = Histogram(TTFT_BUCKETS)
            histogram.observe(ttft_s)

    def rejected(self, model: str, status: int) -> None:
        """An answer modelway gave itself (4xx, 502/503/504): no provider answered it."""
        self.requests[(model, "", str(status))] += 1

    def attempt(self, model: str, provider: str, outcome: str) -> None:
        self.attempts[(model, provider, outcome)] += 1

    def usage(self, model: str, deployment: Deployment, prompt: int, completion: int) -> None:
        provider = deployment.provider.name
        self.tokens[(model, provider, "input")] += prompt
        self.tokens[(model, provider, "output")] += completion
        cost = (prompt * deployment.input_cost_per_mtok + completion * deployment.output_cost_per_mtok) / 1e6
        if cost:
            self.cost[(model, provider)] += cost
