"""Cheapest deployment by configured price per million tokens; ties by smooth WRR."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View


def price(deployment: Deployment) -> float:
    return deployment.input_cost_per_mtok + deployment.output_cost_per_mtok


class Cheapest(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        cheapest = min(price(d) for d in candidates)
        return self._wrr.pick([d for d in candidates if price(d) == cheapest], view.now)
