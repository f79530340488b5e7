"""The discrete-event loop. Each strategy run gets a fresh Runtime built from a config
of `simulated` providers, so the strategy objects and `Deployment`s are the ones the
server builds; the loop then drives them as the request path does:

    arrival:      candidates = the highest-priority group under its max_concurrency caps
                  deployment = strategy.choose(view, candidates); deployment.stats.inflight += 1
    completion:   deployment.stats.inflight -= 1; strategy.observe(Outcome(...))

`view` is a `FixedView` (strategies/base.py) of the virtual time, the request's session
(its hash key) and the load-metrics snapshot. The snapshot is refreshed every `refresh_s`
of virtual time from the backends' true queue, running count and slot use, scored as the
Prometheus source scores vLLM — so least_load sees data exactly as stale as in production.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelway.config.schema import Config
from modelway.loadmetrics.score import load_score, provider_key
from modelway.routes import ModelRoute
from modelway.runtime import Runtime
from modelway.simulate.backends import Backend, BackendSpec, Job
from modelway.strategies.base import NO_LOAD, BaseStrategy, FixedView, Outcome

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.simulate.workload import Workload

ORACLE = "oracle"

# Event kinds, in the order they run when they fall on the same instant.
SPEED, REFRESH, DONE, ARRIVE = range(4)


@dataclass(frozen=True, slots=True)
class SpeedChange:
    at: float  # seconds of virtual time
    backend: str
    speed: float


@dataclass
class RunResult:
    strategy: str
    jobs: list[Job]  # every completed request, in arrival order
    backends: list[Backend]
    rejected: int = 0  # no candidate: every deployment at its max_concurrency
    extra: dict[str, Any] = field(default_factory=dict)


def sim_config(strategy: str, specs: Sequence[BackendSpec], models: Sequence[str]) -> Config:
    """A config of `simulated` providers, one deployment per backend in every model."""
    deployments = [
        {
            "provider": s.name,
            "model": s.name,
            "weight": s.weight,
            "input_cost_per_mtok": s.input_cost_per_mtok,
            "output_cost_per_mtok": s.output_cost_per_mtok,
        }
        for s in specs
    ]
    hash_on = {"header": "x-session-id"} if strategy == "consistent_hash" else None
    return Config.model_validate(
        {
            "providers": [{"name": s.name, "kind": "simulated"} for s in specs],
            "models": [
                {"name": m, "strategy": strategy, "hash_on": hash_on, "deployments": deployments}
                for m in models
            ],
        }
    )


def candidates_of(route: ModelRoute) -> list[Deployment]:
    for group in route.groups:
        usable = [d for d in group if d.max_concurrency is None or d.stats.inflight < d.max_concurrency]
        if usable:
            return usable
    return []


def simulate(
    strategy: str,
    specs: Sequence[BackendSpec],
    workload: Workload,
    events: Sequence[SpeedChange] = (),
    seed: int = 1,
    refresh_s: float = 0.5,
) -> RunResult:
    models = sorted({r.model for r in workload.requests})
    runtime = Runtime(sim_config("weighted_round_robin" if strategy == ORACLE else strategy, specs, models))
    backends = {s.name: Backend(s) for s in specs}
    now = 0.0
    for i, route in enumerate(runtime.models.values()):
        chooser = route.strategy
        if isinstance(chooser, BaseStrategy):
            chooser.rng.seed(f"{seed}:{strategy}:{i}")

    heap: list[tuple[float, int, int, Any]] = []
    seq = itertools.count()
    for change in events:
        heapq.heappush(heap, (change.at, SPEED, next(seq), change))
    for request in workload.requests:
        heapq.heappush(heap, (request.arrival, ARRIVE, next(seq), request))
    heapq.heappush(heap, (0.0, REFRESH, next(seq), None))

    load: Mapping[str, float] = NO_LOAD
    pending = len(workload.requests)
    jobs: list[Job] = []
    rejected = 0

    def finish_at(job: Job) -> None:
        heapq.heappush(heap, (job.done, DONE, next(seq), job))

    while heap and pending:
        now, kind, _, item = heapq.heappop(heap)
        if kind == ARRIVE:
            route = runtime.models[item.model]
            candidates = candidates_of(route)
            if not candidates:
                rejected += 1
                pending -= 1
                continue
            if strategy == ORACLE:
                deployment = min(candidates, key=lambda d: backends[d.provider.name].expected_ttft(item, now))
            else:
                view = FixedView(stream=True, now=now, load=load, key=item.session)
                deployment = route.strategy.choose(view, candidates)
            deployment.stats.inflight += 1
            backend = backends[deployment.provider.name]
            job = Job(item, backend, deployment, route, now)
            jobs.append(job)
            if backend.admit(job, now):
                finish_at(job)
        elif kind == DONE:
            job = item
            pending -= 1
            deployment = job.deployment
            deployment.stats.inflight -= 1
            if strategy != ORACLE:
                job.route.strategy.observe(
                    Outcome(
                        deployment,
                        True,
                        200,
                        None,
                        job.done - job.arrival,
                        job.first_token - job.arrival,
                        True,
                        now,
                    )
                )
            started = job.backend.finish(job, now)
            if started is not None:
                finish_at(started)
        elif kind == REFRESH:
            load = {
                provider_key(b.name): load_score(len(b.queue), b.busy, b.busy / b.spec.slots)
                for b in backends.values()
            }
            heapq.heappush(heap, (now + refresh_s, REFRESH, next(seq), None))
        else:
            backends[item.backend].speed = item.speed
    return RunResult(strategy, jobs, list(backends.values()), rejected)
