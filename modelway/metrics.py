"""Prometheus metrics (SPEC section 7) at almost no cost per request.

The request path only bumps plain counters in dicts keyed by label tuples and drops a
duration into a histogram's bucket list — no locks, no label lookups in a client
library. Gauges (in-flight, health) are not tracked at all: they are read from the live
deployments when `/metrics` is scraped. A custom collector turns it all into Prometheus
families for prometheus_client's text exposition.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from modelway.failover.chain import usable

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.runtime import Runtime

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


class MetricsCollector(Collector):
    def __init__(self, metrics: Metrics, runtime: Callable[[], Runtime]) -> None:
        self.metrics = metrics
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        runtime = self.runtime()
        yield _counter("modelway_requests", "Requests answered", ["model", "provider", "status"], m.requests)
        yield _counter("modelway_attempts", "Upstream attempts", ["model", "provider", "outcome"], m.attempts)
        yield _histogram(
            "modelway_request_duration_seconds", "Time to the end of the answer", m.durations
        )
        yield _histogram("modelway_ttft_seconds", "Time to the first streamed byte", m.ttfts)
        yield _counter("modelway_tokens", "Tokens by direction", ["model", "provider", "direction"], m.tokens)
        yield _counter("modelway_cost_usd", "Cost in USD at configured prices", ["model", "provider"], m.cost)
        inflight: defaultdict[str, int] = defaultdict(int)
        up: dict[tuple[str, str], bool] = {}
        for route in runtime.models.values():
            for deployment in route.deployments:
                inflight[deployment.provider.name] += deployment.stats.inflight
                key = (route.name, deployment.provider.name)  # several deployments may share it: any usable
                up[key] = up.get(key, False) or usable(deployment)
        healthy = GaugeMetricFamily(
            "modelway_deployment_healthy", "1 when the deployment may take requests", labels=["model", "provider"]
        )
        for (model, provider), ok in up.items():
            healthy.add_metric([model, provider], 1.0 if ok else 0.0)
        for deployment in runtime.extra_deployments():
            inflight[deployment.provider.name] += deployment.stats.inflight
        gauge = GaugeMetricFamily("modelway_inflight", "Requests in flight per provider", labels=["provider"])
        for name in runtime.providers:
            gauge.add_metric([name], float(inflight.get(name, 0)))
        yield gauge
        yield healthy
        errors = CounterMetricFamily("modelway_router_errors", "Router plugin failures", labels=["router"])
        for entry in runtime.routers.routers:
            errors.add_metric([entry.id], float(runtime.routers.errors.get(entry.id, 0)))
        yield errors
        state = CounterMetricFamily("modelway_state_backend_errors", "State backend errors (Redis)")
        state.add_metric([], float(runtime.state_backend_errors()))
        yield state
        reloads = CounterMetricFamily("modelway_config_reloads", "Config reloads", labels=["result"])
        for result in ("ok", "error"):
            reloads.add_metric([result], float(m.config_reloads.get(result, 0)))
        yield reloads


def _counter(name: str, doc: str, labels: list[str], values: Mapping[Any, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in list(values.items()):
        family.add_metric(list(key), float(value))
    return family


def _histogram(name: str, doc: str, values: dict[tuple[str, str], Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["model", "provider"])
    for (model, provider), histogram in list(values.items()):
        family.add_metric([model, provider], histogram.buckets(), histogram.total)
    return family


def build_registry(metrics: Metrics, runtime: Callable[[], Runtime]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics, runtime))
    return registry
