"""Lowest external load metric (Higress ai-load-balancer style).

The metric values arrive as a snapshot in the view (`View.load`, refreshed in the
background by a metrics source, `modelway.loadmetrics`, never fetched here). A
deployment's value is the snapshot's entry for its `metric_key` (source redis), else
for `provider:<provider name>` (source prometheus, scraped from the provider's
metrics_url). The lowest value wins; ties go by smooth WRR. Deployments with a value
rank before those without; no values at all (Redis down or empty): smooth WRR.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from modelway.loadmetrics.score import PROVIDER_KEY_PREFIX
from modelway.strategies.base import BaseStrategy
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View

def load_of(metrics: Mapping[str, float], deployment: Deployment) -> float | None:
    if deployment.metric_key is not None:
        value = metrics.get(deployment.metric_key)
        if value is not None:
            return value
    return metrics.get(PROVIDER_KEY_PREFIX + deployment.provider.name)


class LeastLoad(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        metrics = view.load
        if not metrics:
            return self._wrr.pick(candidates, view.now)
        lowest: float | None = None
        best: list[Deployment] = []
        for deployment in candidates:
            value = load_of(metrics, deployment)
            if value is None:
                continue
            if lowest is None or value < lowest:
                lowest, best = value, [deployment]
            elif value == lowest:
                best.append(deployment)
        return self._wrr.pick(best or candidates, view.now)
