"""Latency-corrected round robin: weighted round robin, overruled when another deployment
is clearly faster right now — so it prefers the faster of independent backends without
sending everything to the one that was fastest a moment ago.

Each pick compares the smooth WRR pick with one other candidate drawn at random (by
weight); the other takes the request when its cost is under half the WRR pick's:

    cost(d) = latency(d) + inflight(d) * duration(d) / weight(d)

  latency(d)   EWMA (ALPHA) of d's time to first byte for streams, of its total time
               otherwise: two averages, a request is compared on its own kind. A
               failure counts as at least FAILURE_PENALTY_S.
  duration(d)  EWMA (DURATION_ALPHA) of how long d's requests last: how long each request
               in flight there will keep it busy, its weight standing for its capacity.

Latency alone herds: outcomes arrive when requests end, seconds after the picks they
judge, and every pick in between goes to the deployment that looked fastest, which then
queues. Counting the requests in flight sees a pick the moment it is made, and starting
from round robin keeps the spread the weights ask for until the numbers say otherwise.

A deployment never measured, or not measured for STALE_AFTER_S, gets one probe request
(then waits for its answer or for the next STALE_AFTER_S, whichever first), so one that
was slow and has recovered gets traffic again.
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
DURATION_ALPHA = 0.1
OVERRULE = 0.5  # the other candidate wins below this share of the round-robin pick's cost
STALE_AFTER_S = 30.0
FAILURE_PENALTY_S = 5.0


class Latency(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()
        self._ewma: dict[tuple[int, bool], float] = {}  # (deployment index, stream) -> seconds
        self._fresh_until: dict[tuple[int, bool], float] = {}  # measured or probed until then
        self._duration: dict[int, float] = {}  # deployment index -> seconds

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
        pick = self._wrr.pick(measured, now)
        if len(measured) == 1:
            return pick
        others = [d for d in measured if d is not pick]
        other = self.rng.choices(others, weights=[d.weight for d in others])[0]
        return other if self.cost(view, other, stream) < OVERRULE * self.cost(view, pick, stream) else pick

    def cost(self, view: View, deployment: Deployment, stream: bool) -> float:
        busy = view.inflight(deployment) * self._duration.get(deployment.index, 0.0) / deployment.weight
        return self._ewma[(deployment.index, stream)] + busy

    def observe(self, outcome: Outcome) -> None:
        index = outcome.deployment.index
        key = (index, outcome.stream)
        if outcome.ok:
            sample = outcome.ttft_s if outcome.stream and outcome.ttft_s is not None else outcome.duration_s
            duration = self._duration.get(index)
            self._duration[index] = (
                outcome.duration_s if duration is None else duration + DURATION_ALPHA * (outcome.duration_s - duration)
            )
        else:
            sample = max(outcome.duration_s, FAILURE_PENALTY_S)
        previous = self._ewma.get(key)
        value = sample if previous is None else ALPHA * sample + (1 - ALPHA) * previous
        self._ewma[key] = value
        self._fresh_until[key] = outcome.at + STALE_AFTER_S
