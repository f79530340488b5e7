"""Lowest recent latency: an EWMA per deployment of time to first byte for streams and
of total time otherwise (two separate averages: a request is compared on its own kind).

Exploration keeps the estimates honest:
  * a deployment never measured, or not measured for STALE_AFTER_S, gets one probe
    request (then waits for its answer or for the next STALE_AFTER_S, whichever first);
  * EXPLORE_RATE of the other picks go to a random other candidate,
so a deployment that was slow and has recovered gets traffic again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy, Outcome
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View

ALPHA = 0.3
EXPLORE_RATE = 0.05
STALE_AFTER_S = 30.0
FAILURE_PENALTY_S = 5.0


class Latency(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()
        self._ewma: dict[tuple[int, bool], float] = {}  # (deployment index, stream) -> seconds
        self._fresh_until: dict[tuple[int, bool], float] = {}  # measured or probed until then

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        stream = view.stream
        now = view.now
        stale = [d for d in candidates if self._fresh_until.get((d.index, stream), -1.0) < now]
        if stale:
            probe = self._wrr.pick(stale, now)
            self._fresh_until[(probe.index, stream)] = now + STALE_AFTER_S
            return probe
        measured = [d for d in candidates if (d.index, stream) in self._ewma]
        if not measured:  # only probes in flight so far
            return self._wrr.pick(candidates, now)
        best = min(measured, key=lambda d: self._ewma[(d.index, stream)])
        if self.rng.random() < EXPLORE_RATE:
            return self.rng.choice([d for d in candidates if d is not best])
        return best

    def observe(self, outcome: Outcome) -> None:
        key = (outcome.deployment.index, outcome.stream)
        if outcome.ok:
            sample = outcome.ttft_s if outcome.stream and outcome.ttft_s is not None else outcome.duration_s
        else:
            sample = max(outcome.duration_s, FAILURE_PENALTY_S)
        previous = self._ewma.get(key)
        value = sample if previous is None else ALPHA * sample + (1 - ALPHA) * previous
        self._ewma[key] = value
        self._fresh_until[key] = outcome.at + STALE_AFTER_S
