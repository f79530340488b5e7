"""Weighted random choice."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.proxy.context import RequestContext


class WeightedRandom(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._random = random.Random()

    def choose(self, ctx: RequestContext, candidates: Sequence[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        now = time.monotonic()
        return self._random.choices(candidates, weights=[d.effective_weight(now) for d in candidates])[0]
