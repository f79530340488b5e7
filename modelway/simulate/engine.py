"""The discrete-event loop. Each strategy run gets fresh Runtimes built from a config of
`simulated` providers — one per gateway instance — so the strategy objects and
`Deployment`s are the ones the server builds; the loop then drives them as the request
path does:

    arrival:      the request's instance (chosen at random, as a load balancer in front would)
                  candidates = the highest-priority group under its max_concurrency caps
                  deployment = strategy.choose(view, candidates); deployment.stats.inflight += 1
    completion:   deployment.stats.inflight -= 1; strategy.observe(Outcome(...))

`view` is a `SimView` (view.py) of the virtual time, the request's session (its hash key),
its prefix identity, the instance's load-metrics snapshot and in-flight counts. Each
instance refreshes its snapshot every `refresh_s` of virtual time (the instances out of
phase) from the backends' true queue, running count and slot use, scored as the
Prometheus source scores vLLM — so strategies see data exactly as stale as in production.

Gateway instances (`Gateways`): each has its own in-flight counts and strategy state. With
`share="inflight"` every instance publishes its counts every `publish_s` and reads its own
live counts plus the others' last published ones (the redis state backend's design); with
`share="all"` a strategy's affinity table is shared too, each instance's records reaching
the others at the next publish.

Late binding (strategies/holding.py): a strategy that holds a request instead of queueing
it at a full engine gets it back, as the request path does, when a request of the same
instance and model ends (the WAKE_PER_END oldest) and every RECHECK_S (all of them), and
sends it at the latest after HOLD_MAX_S. Its times count from its arrival in the results;
the strategy learns them from when it was sent (the request path's Outcome does the same).
Between publishes an instance guesses the others' counts as the request path does
(DeploymentStats.fleet): they grow as its own has, once for each other instance.
With shared state, every instance publishes its held requests with its counts, and a slot
freed where the fleet's oldest held request is another instance's is passed to that
instance, `pass_s` later (SlotGate.freed; the redis state backend tells it with one XADD).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelway.config.schema import Config
from modelway.loadmetrics.score import load_score, provider_key
from modelway.routes import ModelRoute
from modelway.runtime import Runtime
from modelway.simulate.backends import Backend, BackendSpec, Job
from modelway.simulate.view import SimView, shared_affinity
from modelway.strategies.base import NO_LOAD, BaseStrategy, Outcome
from modelway.strategies.holding import HOLD_MAX_S, RECHECK_S, WAKE_PER_END, FleetLine, Holder, Holding

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.simulate.workload import SimRequest, Workload

ORACLE = "oracle"

# Event kinds, in the order they run when they fall on the same instant.
SPEED, PUBLISH, REFRESH, DONE, PASSED, RECHECK, ARRIVE = range(7)
SHARES = ("none", "inflight", "all")


@dataclass(frozen=True, slots=True)
class Gateways:
    """The gateway instances in front of the backends, and what they share."""

    instances: int = 1
    share: str = "none"  # none | inflight (counts, published every publish_s) | all (and affinity)
    publish_s: float = 0.1  # the redis state backend publishes in-flight counts every 0.1 s
    pass_s: float | None = 0.003  # a freed slot passed to another instance reaches it this much later
    # (2.5-3.2 ms measured through a local redis-server: tests/e2e/test_fleet_line.py)
    # (None: the instances do not share their held requests, each has its own line)


@dataclass(frozen=True, slots=True)
class SpeedChange:
    at: float  # seconds of virtual time
    backend: str
    speed: float


@dataclass
class RunResult:
    strategy: str
    jobs: list[Job]  # every request, in arrival order
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
    gateways: Gateways | None = None,
    block_tokens: int = 16,
) -> RunResult:
    gateways = gateways or Gateways()
    models = sorted({r.model for r in workload.requests})
    oracle = strategy == ORACLE
    count = 1 if oracle else gateways.instances
    config = sim_config("weighted_round_robin" if oracle else strategy, specs, models)
    runtimes = [Runtime(config) for _ in range(count)]
    backends = {s.name: Backend(s, block_tokens) for s in specs}
    for number, runtime in enumerate(runtimes):
        for i, route in enumerate(runtime.models.values()):
            chooser = route.strategy
            if isinstance(chooser, BaseStrategy):
                chooser.rng.seed(f"{seed}:{strategy}:{i}" if number == 0 else f"{seed}:{strategy}:{i}:{number}")
    shared = gateways.share != "none" and count > 1
    hubs = shared_affinity(runtimes, models) if gateways.share == "all" and count > 1 else []

    heap: list[tuple[float, int, int, Any]] = []
    seq = itertools.count()
    for change in events:
        heapq.heappush(heap, (change.at, SPEED, next(seq), change))
    placement = random.Random(f"{seed}:instances")
    for request in workload.requests:
        heapq.heappush(heap, (request.arrival, ARRIVE, next(seq), (request, placement.randrange(count))))
    for number in range(count):  # instances refresh out of phase
        heapq.heappush(heap, (refresh_s * number / count, REFRESH, next(seq), number))
    if shared:
        heapq.heappush(heap, (0.0, PUBLISH, next(seq), None))
    holding = not oracle and any(isinstance(r.strategy, Holding) for rt in runtimes for r in rt.models.values())
    if holding:
        heapq.heappush(heap, (RECHECK_S, RECHECK, next(seq), None))
    held: dict[tuple[int, str], list[tuple[SimRequest, int]]] = {}  # by instance and model, oldest first

    loads: list[Mapping[str, float]] = [NO_LOAD] * count
    deployments = [{d.index: d for route in rt.models.values() for d in route.deployments} for rt in runtimes]
    lines: list[dict[str, FleetLine]] = [{} for _ in range(count)]  # the others' held requests, by model
    passed = 0  # slots passed to another instance
    pending = len(workload.requests)
    jobs: list[Job] = []
    rejected = 0

    def finish_at(job: Job) -> None:
        heapq.heappush(heap, (job.done, DONE, next(seq), job))

    def send(request: SimRequest, number: int, route: ModelRoute, deployment: Deployment, now: float) -> None:
        deployment.stats.inflight += 1
        backend = backends[deployment.provider.name]
        job = Job(request, backend, deployment, route, request.arrival, number, now)
        jobs.append(job)
        if backend.admit(job, now):
            finish_at(job)

    def place(request: SimRequest, number: int, route: ModelRoute, candidates: list[Deployment], now: float) -> None:
        """Send the request, or hold it (late binding) where its strategy would rather."""
        strategy = route.strategy
        view = SimView(now, loads[number], request)
        if isinstance(strategy, Holding) and now - request.arrival < HOLD_MAX_S and strategy.may_hold(view, candidates):
            proposed = strategy.propose(view, candidates)
            if not strategy.admit(view, proposed):
                strategy.held[proposed.index] = strategy.held.get(proposed.index, 0) + 1
                held.setdefault((number, request.model), []).append((request, proposed.index))
                return
        send(request, number, route, strategy.choose(view, candidates), now)

    def release(number: int, model: str, now: float, limit: int | None) -> None:
        """Take held requests again, the oldest first: each is sent, or held anew."""
        waiting = held.get((number, model))
        if not waiting:
            return
        route = runtimes[number].models[model]
        strategy = route.strategy
        assert isinstance(strategy, Holding)
        taken, held[(number, model)] = waiting[:limit], waiting[len(waiting[:limit]) :]
        for request, index in taken:
            strategy.held[index] -= 1
            place(request, number, route, candidates_of(route) or route.deployments, now)
        held[(number, model)].sort(key=lambda entry: entry[0].arrival)  # those held anew keep their turn

    def freed(number: int, model: str, deployment: Deployment, now: float) -> None:
        """A request ended: its slot goes to the fleet's oldest held request (SlotGate.freed)."""
        nonlocal passed
        line = lines[number].get(model)
        if line is not None:
            own = held.get((number, model))
            claimant = line.claimant(own[0][0].arrival if own else None)
            if claimant is not None:
                deployment.stats.others += 1  # the slot is the claimant's (RedisState.give)
                passed += 1
                passing = (int(claimant), model, deployment.index)
                heapq.heappush(heap, (now + (gateways.pass_s or 0.0), PASSED, next(seq), passing))
                return
        release(number, model, now, WAKE_PER_END)

    while heap and pending:
        now, kind, _, item = heapq.heappop(heap)
        if kind == ARRIVE:
            request, number = item
            route = runtimes[number].models[request.model]
            candidates = candidates_of(route)
            if not candidates:
                rejected += 1
                pending -= 1
                continue
            if oracle:
                deployment = min(
                    candidates, key=lambda d: backends[d.provider.name].expected_ttft(request, now)
                )
                send(request, number, route, deployment, now)
            else:
                place(request, number, route, candidates, now)
        elif kind == DONE:
            job = item
            pending -= 1
            deployment = job.deployment
            deployment.stats.inflight -= 1
            if not oracle:
                job.route.strategy.observe(
                    Outcome(
                        deployment,
                        True,
                        200,
                        None,
                        job.done - job.sent,
                        job.first_token - job.sent,
                        True,
                        now,
                    )
                )
            started = job.backend.finish(job, now)
            if started is not None:
                finish_at(started)
            if holding:
                freed(job.instance, job.request.model, deployment, now)
        elif kind == PASSED:  # another instance passed this one a slot
            number, model, index = item
            stats = deployments[number][index].stats
            if stats.others > 0:
                stats.others -= 1
            release(number, model, now, WAKE_PER_END)
        elif kind == RECHECK:
            for number, model in list(held):
                release(number, model, now, None)
            heapq.heappush(heap, (now + RECHECK_S, RECHECK, next(seq), None))
        elif kind == REFRESH:
            loads[item] = {
                provider_key(b.name): load_score(len(b.queue), b.busy, b.busy / b.spec.slots)
                for b in backends.values()
            }
            heapq.heappush(heap, (now + refresh_s, REFRESH, next(seq), item))
        elif kind == PUBLISH:
            published = [inflight_counts(r) for r in runtimes]
            backlogs = [prefill_backlogs(r, now) for r in runtimes]
            total: dict[int, int] = {}
            for counts in published:
                for index, n in counts.items():
                    total[index] = total.get(index, 0) + n
            fleet_backlog: dict[int, float] = {}
            for backlog in backlogs:
                for index, seconds in backlog.items():
                    fleet_backlog[index] = fleet_backlog.get(index, 0.0) + seconds
            for number, counts in enumerate(published):
                for index, d in deployments[number].items():  # as RedisState.tick sets them
                    stats = d.stats
                    stats.others = total.get(index, 0) - counts.get(index, 0)
                    stats.published = stats.inflight
                    stats.peers = count - 1
                    theirs = fleet_backlog.get(index, 0.0) - backlogs[number].get(index, 0.0)
                    stats.others_prefilled_at = now + theirs if theirs > 0 else 0.0
                if gateways.pass_s is not None:
                    lines[number] = fleet_lines(held, number)
            for hub in hubs:
                hub.publish()
            heapq.heappush(heap, (now + gateways.publish_s, PUBLISH, next(seq), None))
        else:
            backends[item.backend].speed = item.speed
    jobs.sort(key=lambda j: j.arrival)  # held requests were sent after later arrivals
    return RunResult(strategy, jobs, list(backends.values()), rejected, {"passed": passed})


def fleet_lines(held: Mapping[tuple[int, str], list[tuple[SimRequest, int]]], number: int) -> dict[str, FleetLine]:
    """What instance `number` reads of the others' held requests: by model, each instance's
    count and oldest (a held request waits from its arrival), oldest first."""
    holders: dict[str, list[Holder]] = {}
    for (other, model), waiting in held.items():
        if other != number and waiting:
            holders.setdefault(model, []).append(Holder(waiting[0][0].arrival, str(other), len(waiting)))
    return {model: FleetLine(sorted(found, key=lambda h: h.since)) for model, found in holders.items()}


def prefill_backlogs(runtime: Runtime, now: float) -> dict[int, float]:
    """The prefill backlog an instance expects at each deployment (prefix_affinity), in seconds."""
    return {
        d.index: d.stats.prefilled_at - now
        for route in runtime.models.values()
        for d in route.deployments
        if d.stats.prefilled_at > now
    }


def inflight_counts(runtime: Runtime) -> dict[int, int]:
    return {d.index: d.stats.inflight for route in runtime.models.values() for d in route.deployments}
