"""Fewest in-flight requests relative to weight (every instance's, with the redis state backend); ties by smooth WRR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View




class LeastBusy(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        busyness = [view.inflight(d) / d.weight for d in candidates]
        least = min(busyness)
        return self._wrr.pick([d for d, busy in zip(candidates, busyness, strict=True) if busy == least], view.now)
