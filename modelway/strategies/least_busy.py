"""Fewest in-flight requests relative to weight (this instance's counts); ties by smooth WRR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.proxy.context import RequestContext


def busyness(deployment: Deployment) -> float:
    return deployment.stats.inflight / deployment.weight


class LeastBusy(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()

    def choose(self, ctx: RequestContext, candidates: Sequence[Deployment]) -> Deployment:
        least = min(busyness(d) for d in candidates)
        return self._wrr.pick([d for d in candidates if busyness(d) == least])
