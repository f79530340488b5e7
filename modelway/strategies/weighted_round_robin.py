"""Smooth weighted round robin, nginx's algorithm (ngx_http_upstream_get_peer).

Each pick adds every candidate's weight to its current weight, takes the largest,
and subtracts the total from the winner. Weights 3:1 give a a b a, evenly spread.
Running it over the current candidates only keeps the spread exact when some are
filtered out for a while. Weights are the effective ones: a deployment back from a
cooldown ramps up (slow start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View


class SmoothWeighted:
    """The bare algorithm, reusable by strategies that break ties by round robin."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: dict[int, float] = {}

    def pick(self, candidates: Sequence[Deployment], now: float) -> Deployment:
        """The next of `candidates`, weighted by their effective weights at `now`."""
        if len(candidates) == 1:
            return candidates[0]
        current = self.current
        total = 0.0
        best: Deployment | None = None
        best_weight = 0.0
        for deployment in candidates:
            effective = deployment.effective_weight(now)
            weight = current.get(deployment.index, 0) + effective
            current[deployment.index] = weight
            total += effective
            if best is None or weight > best_weight:
                best, best_weight = deployment, weight
        assert best is not None
        current[best.index] = best_weight - total
        return best


class WeightedRoundRobin(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        return self._wrr.pick(candidates, view.now)
