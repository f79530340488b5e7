"""Lowest recent latency: an EWMA per deployment of time to first byte for streams and
of total time otherwise.

Exploration keeps the estimate honest: a deployment never measured, or not measured for
STALE_AFTER_S, is tried first, and a small share of picks goes to a random other
candidate so one that was slow and has recovered gets traffic again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy, Outcome
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.proxy.context import RequestContext

ALPHA = 0.3
EXPLORE_RATE = 0.05
STALE_AFTER_S = 30.0
FAILURE_PENALTY_S = 5.0


class Latency(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()
        self._ewma: dict[int, float] = {}
        self._seen_at: dict[int, float] = {}
        self._random = random.Random()

    def choose(self, ctx: RequestContext, candidates: Sequence[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        now = time.monotonic()
        unmeasured = [
            d for d in candidates if now - self._seen_at.get(d.index, -STALE_AFTER_S - 1) > STALE_AFTER_S
        ]
        if unmeasured:
            return self._wrr.pick(unmeasured)
        best = min(candidates, key=lambda d: self._ewma[d.index])
        if self._random.random() < EXPLORE_RATE:
            others = [d for d in candidates if d is not best]
            return self._random.choice(others)
        return best

    def observe(self, outcome: Outcome) -> None:
        index = outcome.deployment.index
        if outcome.ok:
            sample = outcome.ttft_s if outcome.stream and outcome.ttft_s is not None else outcome.duration_s
        else:
            sample = max(outcome.duration_s, FAILURE_PENALTY_S)
        previous = self._ewma.get(index)
        value = sample if previous is None else ALPHA * sample + (1 - ALPHA) * previous
        self._ewma[index] = value
        self._seen_at[index] = time.monotonic()
        outcome.deployment.stats.ewma_latency_s = value
