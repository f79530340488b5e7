"""What a strategy sees of a simulated request (the `View` of strategies/base.py), and the
affinity tables of several gateway instances shared as a state backend would share them.

A simulated prompt has no bytes: its prefix identity is made from its segments as the
gateway makes it from a body (strategies/prefix.py), taking `BYTES_PER_TOKEN` bytes per
token: key i names the prompt's first `BOUNDARIES[i]` bytes, so two requests share it
exactly when they share the segment those bytes end in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from modelway.strategies.prefix import BOUNDARIES, BYTES_PER_TOKEN, Prefix

if TYPE_CHECKING:
    from modelway.config.schema import HashOn
    from modelway.deployment import Deployment
    from modelway.runtime import Runtime
    from modelway.simulate.workload import SimRequest
    from modelway.strategies.affinity import AffinityTable

LEVELS = len(BOUNDARIES)


def request_prefix(request: SimRequest) -> Prefix:
    size = request.prompt_tokens * BYTES_PER_TOKEN
    segments = request.segments
    if not segments or size < BOUNDARIES[0]:
        return Prefix((), size)
    keys: list[int] = []
    part = 0
    for level, boundary in enumerate(BOUNDARIES):
        if boundary > size:
            break
        last = (boundary - 1) // BYTES_PER_TOKEN  # the token the boundary's bytes end in
        while part < len(segments) and segments[part][1] <= last:
            part += 1
        if part == len(segments):
            break  # beyond the parts the trace names: no identity
        keys.append(segments[part][0] * LEVELS + level)
    return Prefix(tuple(keys), size)


class SimView:
    """One instance's view of one request: its deployments' in-flight counts include the
    other instances' (DeploymentStats.fleet) where the engine loop shares them."""

    __slots__ = ("_request", "load", "now")
    stream = True

    def __init__(self, now: float, load: Mapping[str, float], request: SimRequest) -> None:
        self.now = now
        self.load = load
        self._request = request

    def hash_key(self, hash_on: HashOn) -> str | None:
        return self._request.session

    def inflight(self, deployment: Deployment) -> int:
        return deployment.stats.fleet()

    def prefix(self) -> Prefix:
        return request_prefix(self._request)


class ReplicatedAffinity:
    """An instance's affinity table: its own records at once, the others' at the next
    publish, every key of the prompt — what the redis state backend does
    (state/affinity.py: its ticker publishes the records every 0.1 s)."""

    __slots__ = ("hub", "local", "number")

    def __init__(self, local: AffinityTable, hub: AffinityHub, number: int) -> None:
        self.local = local
        self.hub = hub
        self.number = number

    def matches(self, prefix: Prefix, wanted: Collection[int]) -> dict[int, tuple[int, int]]:
        return self.local.matches(prefix, wanted)

    def record(self, prefix: Prefix, index: int, known: int) -> None:
        self.local.record(prefix, index, known)
        self.hub.pending.append((self.number, prefix, index))


class AffinityHub:
    """The affinity tables of one model's strategy in every instance."""

    def __init__(self, tables: list[AffinityTable]) -> None:
        self.tables = tables
        self.pending: list[tuple[int, Prefix, int]] = []

    def publish(self) -> None:
        for number, prefix, index in self.pending:
            for other, table in enumerate(self.tables):
                if other != number:
                    table.record(prefix, index, -1)
        self.pending.clear()


def shared_affinity(runtimes: Sequence[Runtime], models: Iterable[str]) -> list[AffinityHub]:
    """Connect the affinity tables of each model's strategies across instances (strategies
    without one are left alone)."""
    hubs = []
    for model in models:
        strategies = [runtime.models[model].strategy for runtime in runtimes]
        found = [getattr(s, "affinity", None) for s in strategies]
        tables: list[AffinityTable] = [t for t in found if t is not None]
        if len(tables) < len(strategies):
            continue
        hub = AffinityHub(tables)
        for number, strategy in enumerate(strategies):
            strategy.affinity = ReplicatedAffinity(tables[number], hub, number)  # type: ignore[attr-defined]
        hubs.append(hub)
    return hubs
