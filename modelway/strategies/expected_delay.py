"""Join the shortest expected delay: the deployment where a new request is expected to
see its first token soonest, counting the queue it would join.

For each candidate d, with n its requests in flight (below; every instance's with the
redis state backend):

    expected_d = prefill_d + max(0, n + 1 - slots_d) * service_d / slots_d

  prefill_d  EWMA of d's time to first token (total time for non-streamed answers);
             a sample counts at most 4x the average, so one queued request does not
             read as a slow GPU, while a GPU that really slows down still shows
  service_d  slow EWMA of how long a request holds one of d's slots: its decode time
             (total - time to first token) plus prefill_d
  slots_d    how many requests d runs at once: the highest `running` count its engine
             metrics have shown (metrics.source: prometheus, from vLLM/SGLang gauges).
             The queue term counts only once d's engine was seen queueing at that count
             (waiting > 0): until then it is a lower bound, and d is taken to have room.

Ties go to the lower share of slots in use. Until every candidate has been measured
and shows its slots — no Prometheus metrics, or warming up — it picks by
(n + 1) / weight, shortest expected delay with weights as capacities, ties by the
higher weight. A deployment not measured for STALE_AFTER_S gets one probe request
when it is idle, so one that was slow and recovered is seen again.

n is the fleet's count as far as this instance can tell: `view.inflight(d)` (this
instance's requests, or every instance's where the state backend shares them) plus the
requests the engine's own gauges show beyond it — running + waiting at each metrics
refresh, less view.inflight when that refresh is first seen, averaged over refreshes
(OTHERS_ALPHA: a refresh is read a moment after it was taken, so one difference is
noisy). With several gateway instances and nothing shared, that is what shows the
others' requests; with one, or with shared counts, it stays near zero.

Late binding (the `Holding` side of strategies/holding.py, driven by proxy/attempts.py):
a request whose choice has no free slot waits at the gateway, not in that engine's queue,
and is chosen again whenever a slot of the route frees — so it goes where a slot frees
first, not where one was guessed to. Only for deployments whose slots are known exactly:
an engine seen queueing (waiting > 0) while running its highest count, within the last
SATURATED_S (`saturated`); without engine metrics nothing is ever held. A held request
counts where it would go (`held`), so the requests after it see the queue it makes.
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
OTHERS_ALPHA = 0.5
OTHERS_NOISE = 1.0  # requests that ended between a refresh and its first reading look like others'
SATURATED_S = 60.0  # how long an engine seen queueing at its slots is held for without queueing again


class ExpectedDelay(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self.prefill: dict[int, float] = {}
        self.service: dict[int, float] = {}
        self.slots: dict[int, int] = {}
        self.seen_at: dict[int, float] = {}
        self._snapshot: Mapping[str, float] | None = None  # the metrics snapshot last seen
        self.others: dict[int, float] = {}  # requests the engine's gauges show beyond view.inflight
        self.saturated: dict[int, float] = {}  # when each engine was last seen queueing at its slots
        self.held: dict[int, int] = {}  # requests held at the gateway, by where they would go

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        return self.propose(view, candidates)

    def propose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        """The choice, without recording it (prefix_affinity records in `choose`)."""
        self._learn_slots(view.load, candidates, view.now)
        forced = self.forced(view, candidates)
        if forced is not None:
            return forced
        counts = self.inflight(view, candidates)
        if self.measured(candidates):
            return min(candidates, key=lambda d: self.expected_delay(d, counts[d.index]))
        return by_weight(candidates, counts)

    def forced(self, view: View, candidates: Sequence[Deployment]) -> Deployment | None:
        """The choice when there is none to weigh: the only candidate, or one due a probe."""
        if len(candidates) == 1:
            return candidates[0]
        return self.probe(view, candidates)

    def may_hold(self, view: View, candidates: Sequence[Deployment]) -> bool:
        """Cheap: could a request be held now — a candidate known saturated with no free slot."""
        if not self.saturated or len(candidates) < 2:
            return False
        return any(not self.admit(view, d) for d in candidates)

    def admit(self, view: View, deployment: Deployment) -> bool:
        """May a request go to `deployment` now (False: hold it at the gateway)? Only an engine
        seen queueing at its slots is held for; when that was over SATURATED_S ago, one request
        more than its slots goes on, and the engine shows again whether it queues it (and the
        slots are right) or runs it (and they grow)."""
        i = deployment.index
        seen = self.saturated.get(i)
        if seen is None or i not in self.slots:
            return True
        over = 1 if view.now - seen > SATURATED_S else 0
        return self._engine_count(view, deployment) + 1 <= self.slots[i] + over

    def _engine_count(self, view: View, deployment: Deployment) -> float:
        """Requests sent to the deployment's engine (held ones not counted)."""
        return view.inflight(deployment) + max(self.others.get(deployment.index, 0.0) - OTHERS_NOISE, 0.0)

    def probe(self, view: View, candidates: Sequence[Deployment]) -> Deployment | None:
        """An idle candidate not measured for STALE_AFTER_S, once per STALE_AFTER_S."""
        now = view.now
        for deployment in candidates:
            seen = self.seen_at.get(deployment.index)
            if seen is not None and now - seen > STALE_AFTER_S and view.inflight(deployment) == 0:
                self.seen_at[deployment.index] = now
                return deployment
        return None

    def measured(self, candidates: Sequence[Deployment]) -> bool:
        return all(d.index in self.service and d.index in self.slots for d in candidates)

    def inflight(self, view: View, candidates: Sequence[Deployment]) -> dict[int, float]:
        """Requests in flight at each candidate's engine, by deployment index, as far as this
        instance can tell: view.inflight plus what the engine's gauges show beyond it."""
        metrics = view.load
        fresh = bool(metrics) and metrics is not self._snapshot
        if fresh:
            self._snapshot = metrics
        others = self.others
        held = self.held
        counts: dict[int, float] = {}
        for deployment in candidates:
            i = deployment.index
            mine = view.inflight(deployment)
            if fresh:
                score = metrics.get(provider_key(deployment.provider.name))
                if score is not None:
                    engine = unpack_score(score)
                    beyond = engine.running + engine.waiting - mine
                    previous = others.get(i)
                    others[i] = beyond if previous is None else previous + OTHERS_ALPHA * (beyond - previous)
            counts[i] = mine + max(others.get(i, 0.0) - OTHERS_NOISE, 0.0) + held.get(i, 0)
        return counts

    def expected_delay(self, deployment: Deployment, inflight: float) -> tuple[float, float]:
        i = deployment.index
        slots = self.slots[i]
        after = inflight + 1
        return self.prefill[i] + self.queue_wait(i, after), after / slots

    def queue_wait(self, i: int, after: float) -> float:
        """The wait for a slot with `after` requests at deployment i: counted only where its
        slots are known exactly (its engine was seen queueing at them). Elsewhere the highest
        running count seen is a lower bound: an engine the other deployments' speed kept at
        one request would otherwise look full for good and never be sent the requests that
        would show its slots."""
        if i not in self.saturated:
            return 0.0
        slots = self.slots[i]
        return max(0.0, after - slots) * self.service[i] / slots

    def _learn_slots(self, metrics: Mapping[str, float], candidates: Sequence[Deployment], now: float) -> None:
        if not metrics:
            return
        for deployment in candidates:
            score = metrics.get(provider_key(deployment.provider.name))
            if score is not None:
                engine = unpack_score(score)
                running = int(engine.running)
                i = deployment.index
                if running > self.slots.get(i, 0):
                    self.slots[i] = running
                if engine.waiting > 0 and 0 < running >= self.slots[i]:
                    self.saturated[i] = now  # queueing at its highest running count: slots are exact

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


def by_weight(candidates: Sequence[Deployment], counts: Mapping[int, float]) -> Deployment:
    """Before the slots are known: shortest expected delay with weights as capacities,
    (n + 1) / weight, ties to the higher weight."""
    return min(candidates, key=lambda d: ((counts[d.index] + 1) / d.weight, -d.weight))
