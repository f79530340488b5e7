"""`GET /metrics`: the counters of `metrics.Metrics` and gauges read from the live
deployments, as Prometheus families for prometheus_client's text exposition."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from modelway.deployment import usable
from modelway.routes import held_requests

if TYPE_CHECKING:
    from modelway.metrics import Histogram, Metrics
    from modelway.runtime import Runtime
    from modelway.workermetrics import Others


class MetricsCollector(Collector):
    def __init__(self, metrics: Metrics, runtime: Callable[[], Runtime], others: Others | None = None) -> None:
        self.metrics = metrics
        self.runtime = runtime
        self.others = others  # under --workers N: what the other workers add to the gauges

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
        for deployment in runtime.table.extra_deployments():
            inflight[deployment.provider.name] += deployment.stats.inflight
        others = self.others
        if others is not None:
            for provider, count in others.inflight.items():
                inflight[provider] += count
        gauge = GaugeMetricFamily("modelway_inflight", "Requests in flight per provider", labels=["provider"])
        for name in runtime.providers:
            gauge.add_metric([name], float(inflight.get(name, 0)))
        yield gauge
        yield healthy
        held = GaugeMetricFamily(
            "modelway_held_requests",
            "Requests waiting at the gateway for an engine slot (late binding), per model",
            labels=["model"],
        )
        for model, count in held_requests(runtime.models.values()).items():
            held.add_metric([model], float(count + (others.held.get(model, 0) if others is not None else 0)))
        yield held
        errors = CounterMetricFamily("modelway_router_errors", "Router plugin failures", labels=["router"])
        for entry in runtime.routers.routers:
            extra = others.router_errors.get(entry.id, 0) if others is not None else 0
            errors.add_metric([entry.id], float(runtime.routers.errors.get(entry.id, 0) + extra))
        yield errors
        state = CounterMetricFamily("modelway_state_backend_errors", "State backend errors (Redis)")
        state.add_metric([], float(runtime.state_backend_errors() + (others.state_errors if others else 0)))
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


def build_registry(
    metrics: Metrics, runtime: Callable[[], Runtime], others: Others | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics, runtime, others))
    return registry
