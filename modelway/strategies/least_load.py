"""Lowest external load metric (Higress ai-load-balancer style).

The metric values arrive as a snapshot on the request context (refreshed in the
background by the metrics source, never fetched here). Deployments with a metric rank
before those without; ties, and no metrics at all, go by smooth WRR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.proxy.context import RequestContext


class LeastLoad(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()

    def choose(self, ctx: RequestContext, candidates: Sequence[Deployment]) -> Deployment:
        metrics = ctx.load_metrics()
        scored = [
            (metrics[d.metric_key], d) for d in candidates if d.metric_key is not None and d.metric_key in metrics
        ]
        if not scored:
            return self._wrr.pick(candidates)
        lowest = min(score for score, _ in scored)
        return self._wrr.pick([d for score, d in scored if score == lowest])
