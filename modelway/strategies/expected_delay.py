"""Join the shortest expected delay: the deployment where a new request is expected to
see its first token soonest, counting the queue it would join.

For each candidate d, with n = view.inflight(d) (requests at d: every instance's with the redis state backend):

    expected_d = prefill_d + max(0, n + 1 - slots_d) * service_d / slots_d

  prefill_d  EWMA of d's time to first token (total time for non-streamed answers);
             a sample counts at most 4x the average, so one queued request does not
             read as a slow GPU, while a GPU that really slows down still shows
  service_d  slow EWMA of how long a request holds one of d's slots: its decode time
             (total - time to first token) plus prefill_d
  slots_d    how many requests d runs at once: the highest `running` count its engine
             metrics have shown (metrics.source: prometheus, from vLLM/SGLang gauges).

Ties go to the lower share of slots in use. Until every candidate has been measured
and shows its slots — no Prometheus metrics, or warming up — it picks by
(n + 1) / weight, shortest expected delay with weights as capacities, ties by the
higher weight. A deployment not measured for STALE_AFTER_S gets one probe request
when it is idle, so one that was slow and recovered is seen again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from modelway.loadmetrics.score import provider_key, unpack_score
from modelway.strategies.base import BaseStrategy, Outcome

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View

PREFILL_ALPHA = 0.05
SERVICE_ALPHA = 0.01  # request durations are heavy-tailed: average over ~100 of them
OUTLIER_CAP = 4.0
STALE_AFTER_S = 30.0


class ExpectedDelay(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self.prefill: dict[int, float] = {}
        self.service: dict[int, float] = {}
        self.slots: dict[int, int] = {}
        self.seen_at: dict[int, float] = {}

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        self._learn_slots(view.load, candidates)
        if len(candidates) == 1:
            return candidates[0]
        now = view.now
        for deployment in candidates:
            seen = self.seen_at.get(deployment.index)
            if seen is not None and now - seen > STALE_AFTER_S and view.inflight(deployment) == 0:
                self.seen_at[deployment.index] = now  # one probe per STALE_AFTER_S
                return deployment
        if all(d.index in self.service and d.index in self.slots for d in candidates):
            return min(candidates, key=lambda d: self.expected_delay(d, view.inflight(d)))
        return min(candidates, key=lambda d: ((view.inflight(d) + 1) / d.weight, -d.weight))

    def expected_delay(self, deployment: Deployment, inflight: int) -> tuple[float, float]:
        i = deployment.index
        slots = self.slots[i]
        after = inflight + 1
        queued = max(0, after - slots)
        return self.prefill[i] + queued * self.service[i] / slots, after / slots

    def _learn_slots(self, metrics: Mapping[str, float], candidates: Sequence[Deployment]) -> None:
        if not metrics:
            return
        for deployment in candidates:
            score = metrics.get(provider_key(deployment.provider.name))
            if score is not None:
                running = int(unpack_score(score).running)
                if running > self.slots.get(deployment.index, 0):
                    self.slots[deployment.index] = running

    def observe(self, outcome: Outcome) -> None:
        if not outcome.ok:
            return
        i = outcome.deployment.index
        first = outcome.ttft_s if outcome.stream and outcome.ttft_s is not None else outcome.duration_s
        prefill = self.prefill.get(i)
        if prefill is None:
            prefill = first
        else:
            prefill += PREFILL_ALPHA * (min(first, OUTLIER_CAP * prefill) - prefill)
        self.prefill[i] = prefill
        held = outcome.duration_s - first + prefill
        service = self.service.get(i)
        self.service[i] = held if service is None else service + SERVICE_ALPHA * (held - service)
        self.seen_at[i] = outcome.at
