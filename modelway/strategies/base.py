"""The one strategy interface: `choose(view, candidates)` picks, `observe(outcome)` learns.

Neither does I/O. Filters (health, cooldown, tried-already, concurrency caps) have already
narrowed `candidates` to the usable ones of one priority group, never empty.

A strategy reads a request only through a `View`: the few read-only facts strategies use
(stream flag, hash key, load-metrics snapshot, in-flight counts, the time, and the prompt's
prefix identity, computed only when asked for: strategies/prefix.py). The gateway
builds one per attempt (proxy/attempts.py); the simulator and tests pass a `FixedView`.
Time comes from the view (`now`) and the outcome (`at`), chance from the strategy's `rng`,
so `modelway simulate` runs strategies in virtual time with a seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from modelway.config.schema import HashOn, ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.prefix import Prefix

NO_LOAD: Mapping[str, float] = MappingProxyType({})


@dataclass(slots=True, frozen=True)
class Outcome:
    deployment: Deployment
    ok: bool
    status: int | None  # upstream status, None when no response arrived
    error: str | None  # retry_on class of the failure ("timeout", "connect_error", ...)
    duration_s: float
    ttft_s: float | None  # first body byte, for streams
    stream: bool
    at: float  # when it ended, on the clock of `View.now` (monotonic seconds)


class View(Protocol):
    """What a strategy may know of the request it chooses for."""

    @property
    def stream(self) -> bool: ...

    @property
    def now(self) -> float:
        """Monotonic seconds (virtual ones in `modelway simulate`)."""

    @property
    def load(self) -> Mapping[str, float]:
        """The external load-metrics snapshot (loadmetrics/); empty without a metrics source."""

    def hash_key(self, hash_on: HashOn) -> str | None:
        """The consistent-hash key the request carries for `hash_on`, or None."""

    def inflight(self, deployment: Deployment) -> int:
        """Requests in flight at `deployment`: this instance's, plus the other instances' as
        they last published them (state.backend: redis; at most INFLIGHT_INTERVAL_S old)."""

    def prefix(self) -> Prefix | None:
        """The prompt's prefix identity (strategies/prefix.py), computed on each call: a
        strategy that wants it asks once per choice. None: no request body to read."""


@dataclass(slots=True, frozen=True)
class FixedView:
    """A View of plain values, for the simulator and for tests: `key` answers every
    `hash_key`, `prompt` every `prefix()`; in-flight counts are the deployments' own."""

    stream: bool = True
    now: float = 0.0
    load: Mapping[str, float] = field(default_factory=lambda: NO_LOAD)
    key: str | None = None
    prompt: Prefix | None = None

    def hash_key(self, hash_on: HashOn) -> str | None:
        return self.key

    def inflight(self, deployment: Deployment) -> int:
        return deployment.stats.inflight

    def prefix(self) -> Prefix | None:
        return self.prompt


class Strategy(Protocol):
    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment: ...

    def observe(self, outcome: Outcome) -> None: ...


class BaseStrategy:
    """Holds what every strategy is built from; `observe` does nothing by default.
    `rng` is the strategy's only source of chance (seeded by `modelway simulate`)."""

    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        self.model = model
        self.deployments = list(deployments)
        self.rng = random.Random()

    def observe(self, outcome: Outcome) -> None:
        return None
