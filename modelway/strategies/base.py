"""The one strategy interface: `choose(ctx, candidates)` picks, `observe(outcome)` learns.

Neither does I/O. Filters (health, cooldown, tried-already, concurrency caps) have already
narrowed `candidates` to the usable ones of one priority group, never empty.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.proxy.context import RequestContext


@dataclass(slots=True, frozen=True)
class Outcome:
    deployment: Deployment
    ok: bool
    status: int | None  # upstream status, None when no response arrived
    error: str | None  # retry_on class of the failure ("timeout", "connect_error", ...)
    duration_s: float
    ttft_s: float | None  # first body byte, for streams
    stream: bool


class Strategy(Protocol):
    def choose(self, ctx: RequestContext, candidates: Sequence[Deployment]) -> Deployment: ...

    def observe(self, outcome: Outcome) -> None: ...


class BaseStrategy:
    """Holds what every strategy is built from; `observe` does nothing by default.

    `clock` (seconds, monotonic) and `rng` are the strategy's only sources of time and
    chance, so `modelway simulate` can run it in virtual time with a seed.
    """

    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        self.model = model
        self.deployments = list(deployments)
        self.clock: Callable[[], float] = time.monotonic
        self.rng = random.Random()

    def observe(self, outcome: Outcome) -> None:
        return None
