"""External load metrics for the `least_load` strategy (SPEC section 2, `metrics:`).

A metrics source is a background task that refreshes a snapshot every `refresh_ms`;
requests only read the snapshot (`snapshot()`, which strategies see as `View.load`), so a
slow or dead metrics backend never fails or delays a request.

Snapshot keys, which `least_load` looks up for a deployment in this order:
  * `metric_key`             — source `redis`: the value at `<redis_prefix><metric_key>`
  * `provider:<provider>`    — source `prometheus`: a score from the provider's
                               `metrics_url` (see `prometheus_source.load_score`)

    redis_source.RedisMetrics            one MGET of every metric_key per refresh
    prometheus_source.PrometheusMetrics  one scrape of every metrics_url per refresh
both built on polling.PollingSource (the loop, the snapshot, logging state changes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelway.config.schema import Config
    from modelway.loadmetrics.polling import PollingSource


def build_source(config: Config) -> PollingSource | None:
    """The metrics source a config asks for, not yet started; None without `metrics:`."""
    metrics = config.metrics
    if metrics is None:
        return None
    refresh_s = metrics.refresh_ms / 1000
    if metrics.source == "redis":
        from modelway.loadmetrics.redis_source import RedisMetrics

        keys = sorted({d.metric_key for m in config.models for d in m.deployments if d.metric_key})
        return RedisMetrics(
            url=metrics.redis_url or config.state.redis_url,
            prefix=metrics.redis_prefix,
            keys=keys,
            refresh_s=refresh_s,
            timeout_s=config.state.timeout_ms / 1000,
        )
    from modelway.loadmetrics.prometheus_source import PrometheusMetrics

    targets = {p.name: p.metrics_url for p in config.providers if p.metrics_url}
    return PrometheusMetrics(targets=targets, refresh_s=refresh_s)
