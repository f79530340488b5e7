"""Prefix affinity: send a request where its prompt's prefix is most likely in the engine's
KV cache, unless waiting there costs more than the prefill it saves — and never pile a
hot prefix onto a loaded engine.

It is expected_delay (the same n, slots and service per deployment) with the prefill
part of each candidate's expected time to first token computed for this prompt:

    expected(d) = wait(d) + backlog(d) + prefill_d(uncached(d))

  wait(d)        max(0, n + 1 - slots) * service / slots: the queue the request would join
                 (expected_delay's queue_wait: only where the slots are known exactly)
  backlog(d)     the prefills sent to d that are not expected done yet: an engine
                 prefills one prompt after another, so a long prompt sent a moment ago is
                 ahead of this one however warm d's cache is. Each send moves d's
                 `prefilled_at` to max(now, prefilled_at) + prefill_d(its uncached bytes);
                 with the redis state backend the other instances' backlogs at d are added,
                 as they last published them (every 0.1 s, with their in-flight counts);
                 counted up to 4x prefill(d), as a sample of it is (its waits are in it).
  uncached(d)    the prompt's bytes less the deepest prefix of it the affinity table has
                 seen go to d (strategies/affinity.py; keys from strategies/prefix.py);
                 the whole prompt for a d outside the load bound
  prefill_d(x)   prefill(d) * x / typical(d): expected_delay's prefill(d) (its robust
                 average time to first token) for the uncached bytes d's requests
                 typically have (an EWMA, typical(d), of the uncached(d) of the requests
                 sent there), scaled to this prompt's.

Bounded load: a deployment is held to its prefixes only while it has a free slot
(n + 1 <= slots) or n + 1 <= ceil((1 + EPSILON) * (sum n + 1) * slots / sum slots): its
share of the candidates' requests with this one, EPSILON over, rounded up (consistent
hashing with bounded loads, Mirrokni et al.). Beyond that a request with a hot prefix goes
where its expected time to first token is shortest without it, and the table records that
deployment too (a key keeps its last few), so the prefix spreads with its load.

Until every candidate has been measured (warming up, or no Prometheus metrics to learn
slots from) it picks, among the candidates within the bound (weights as capacities),
the one holding the deepest prefix of the prompt; without one, expected_delay's
(n + 1) / weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from modelway.strategies.affinity import AffinityTable, MemoryAffinity
from modelway.strategies.expected_delay import OUTLIER_CAP, PREFILL_ALPHA, ExpectedDelay, by_weight

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View
    from modelway.strategies.prefix import Prefix

EPSILON = 0.25


class PrefixAffinity(ExpectedDelay):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self.affinity: AffinityTable = MemoryAffinity()
        self.typical: dict[int, float] = {}  # EWMA of the uncached bytes sent to each deployment
        self._proposed: tuple[Prefix | None, Mapping[int, tuple[int, int]]] = (None, {})  # the last propose's

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        chosen = self.propose(view, candidates)
        prefix, matches = self._proposed
        i = chosen.index
        level, held = matches.get(i, (-1, 0))
        if prefix is not None and prefix.keys:
            self.affinity.record(prefix, i, level)
        if prefix is not None:
            uncached = prefix.size - held
            typical = self.typical.get(i)
            self.typical[i] = typical = uncached if typical is None else typical + PREFILL_ALPHA * (uncached - typical)
            if i in self.prefill:
                stats = chosen.stats
                stats.prefilled_at = max(view.now, stats.prefilled_at) + self.prefill[i] * uncached / max(typical, 1.0)
        return chosen

    def propose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        """The choice, without recording it: a held request (late binding) is proposed again
        when a slot frees, and only where it goes is recorded (`choose`)."""
        self._learn_slots(view.load, candidates, view.now)
        prefix = view.prefix()
        keys = prefix.keys if prefix is not None else ()
        matches = self.affinity.matches(prefix, {d.index for d in candidates}) if prefix and keys else {}
        self._proposed = (prefix, matches)
        return self.pick(view, candidates, prefix, matches)

    def pick(
        self,
        view: View,
        candidates: Sequence[Deployment],
        prefix: Prefix | None,
        matches: Mapping[int, tuple[int, int]],
    ) -> Deployment:
        forced = self.forced(view, candidates)
        if forced is not None:
            return forced
        counts = self.inflight(view, candidates)
        measured = self.measured(candidates)
        bound = self.within_bound(candidates, counts, measured)
        saved = {i: held for i, (_, held) in matches.items() if i in bound}
        if prefix is not None and measured and all(d.index in self.typical for d in candidates):
            size = prefix.size
            held = [matches[d.index][1] if d.index in matches else 0 for d in candidates]
            if min(held) == max(held):  # the cache tells them apart no more than load does
                return min(candidates, key=lambda d: self.expected_delay(d, counts[d.index]))
            now = view.now
            return min(
                candidates, key=lambda d: self.expected_ttft(d, counts[d.index], size - saved.get(d.index, 0), now)
            )
        if saved:
            return max(
                (d for d in candidates if d.index in saved),
                key=lambda d: (saved[d.index], -(counts[d.index] + 1) / d.weight),
            )
        return by_weight(candidates, counts)

    def within_bound(
        self, candidates: Sequence[Deployment], counts: Mapping[int, float], measured: bool
    ) -> set[int]:
        """The candidates that may take a request for its prefix: a free slot, or at most
        its share of (1 + EPSILON) times the requests in flight with this one, rounded up
        (consistent hashing with bounded loads; slots as capacities, weights until the
        slots are known)."""
        slots = self.slots
        capacity = {d.index: float(slots[d.index] if measured else d.weight) for d in candidates}
        allowed = (1 + EPSILON) * (sum(counts.values()) + 1) / sum(capacity.values())
        return {
            d.index
            for d in candidates
            if (measured and counts[d.index] + 1 <= slots[d.index])
            or counts[d.index] + 1 <= math.ceil(allowed * capacity[d.index])
        }

    def expected_ttft(
        self, deployment: Deployment, inflight: float, uncached: int, now: float
    ) -> tuple[float, float]:
        i = deployment.index
        after = inflight + 1
        # prefill(d) is a time to first token, waits included: in overload each send adds
        # waits the sends before it already counted, so the backlog counts at most what a
        # sample does (OUTLIER_CAP times the average) rather than run away.
        stats = deployment.stats
        backlog = max(0.0, stats.prefilled_at - now) + max(0.0, stats.others_prefilled_at - now)
        backlog = min(backlog, OUTLIER_CAP * self.prefill[i])
        own = self.prefill[i] * uncached / max(self.typical[i], 1.0)
        return self.queue_wait(i, after) + backlog + own, after / self.slots[i]
