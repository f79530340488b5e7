"""Weighted random choice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.strategies.base import View


class WeightedRandom(BaseStrategy):
    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        now = view.now
        return self.rng.choices(candidates, weights=[d.effective_weight(now) for d in candidates])[0]
