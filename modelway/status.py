"""The live status of one gateway process, as the /ui page shows it.

`status(runtime)` reads what is already kept for /metrics and routing — deployments'
health and in-flight counts, the metrics' counters and histograms, the recent decisions —
and nothing on the request path changes for it: the page costs only when it is looked at.
Rates are left to the page, which has two snapshots to compare.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modelway.decisions import Decision
from modelway.deployment import usable
from modelway.metrics import Histogram

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.runtime import Runtime

def quantile(histogram: Histogram | None, q: float) -> float | None:
    """The q-quantile of a histogram's observations, interpolated within its bucket as
    Prometheus's histogram_quantile does; None without observations."""
    if histogram is None:
        return None
    total = sum(histogram.counts)
    if total == 0:
        return None
    rank = q * total
    running = 0
    lower = 0.0
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts, strict=True):
        if running + count >= rank and count:
            if bound == float("inf"):
                return lower  # beyond the last bound: the last bound is all that is known
            return lower + (bound - lower) * (rank - running) / count
        running += count
        lower = bound
    return lower


def deployment_status(runtime: Runtime, route_name: str, deployment: Deployment, now: float) -> dict[str, Any]:
    metrics = runtime.metrics
    provider = deployment.provider.name
    key = (route_name, provider)
    requests = errors = 0
    for (model, prov, status), count in list(metrics.requests.items()):
        if model == route_name and prov == provider:
            requests += count
            if not status.isdigit() or int(status) >= 500:
                errors += count
    cooled_until = deployment.health.cooled_until
    return {
        "model": route_name,
        "provider": provider,
        "upstream_model": deployment.upstream_model or route_name,
        "weight": deployment.weight,
        "priority": deployment.priority,
        "healthy": usable(deployment, now),
        "provider_healthy": deployment.provider.healthy,
        "cooldown_s": round(cooled_until - now, 1) if cooled_until > now else 0.0,
        "inflight": deployment.stats.inflight,
        "inflight_elsewhere": deployment.stats.others,  # at the other instances (redis state backend)
        "requests": requests,
        "errors": errors,
        "latency_p50_s": quantile(metrics.durations.get(key), 0.5),
        "latency_p99_s": quantile(metrics.durations.get(key), 0.99),
        "ttft_p50_s": quantile(metrics.ttfts.get(key), 0.5),
        "ttft_p99_s": quantile(metrics.ttfts.get(key), 0.99),
        "input_tokens": metrics.tokens.get((route_name, provider, "input"), 0),
        "output_tokens": metrics.tokens.get((route_name, provider, "output"), 0),
        "cost_usd": round(metrics.cost.get(key, 0.0), 6),
    }


def reason(runtime: Runtime, decision: Decision) -> str:
    """Who decided, in words: the strategy of the model that answered, or a router."""
    route = runtime.models.get(decision.served_by)
    if route is None:  # a route built on demand: a router's deployment decision or a discovered model
        parts = [f"router or discovery ({decision.served_by})"]
    else:
        parts = [f"strategy {route.config.strategy}"]
        if decision.served_by != decision.model:  # a fallback, or a router's model decision
            parts.append(f"served by {decision.served_by}")
    if decision.attempts > 1:
        parts.append(f"{decision.attempts} attempts")
    return ", ".join(parts)


def status(runtime: Runtime) -> dict[str, Any]:
    now = time.monotonic()
    deployments = [
        deployment_status(runtime, route.name, d, now) for route in runtime.models.values() for d in route.deployments
    ]
    inflight: dict[str, int] = {}
    for route in runtime.models.values():
        for d in route.deployments:
            inflight[d.provider.name] = inflight.get(d.provider.name, 0) + d.stats.inflight
    for d in runtime.table.extra_deployments():
        inflight[d.provider.name] = inflight.get(d.provider.name, 0) + d.stats.inflight
    providers = [
        {"name": name, "kind": p.config.kind, "healthy": p.healthy, "inflight": inflight.get(name, 0)}
        for name, p in runtime.providers.items()
    ]
    metrics = runtime.metrics
    requests = sum(metrics.requests.values())
    errors = sum(n for (_, _, s), n in list(metrics.requests.items()) if not s.isdigit() or int(s) >= 500)
    return {
        "time": time.time(),
        "started": runtime.created,
        "totals": {
            "requests": requests,
            "errors": errors,
            "input_tokens": sum(n for (_, _, d), n in list(metrics.tokens.items()) if d == "input"),
            "output_tokens": sum(n for (_, _, d), n in list(metrics.tokens.items()) if d == "output"),
            "cost_usd": round(sum(metrics.cost.values()), 6),
            "inflight": sum(inflight.values()),
        },
        "providers": providers,
        "models": [
            {"name": route.name, "strategy": route.config.strategy, "fallbacks": route.config.fallbacks}
            for route in runtime.models.values()
        ],
        "deployments": deployments,
        "decisions": [
            {"at": d.at, "model": d.model, "provider": d.provider, "status": d.status, "reason": reason(runtime, d)}
            for d in reversed(runtime.decisions.items)
        ],
    }
