"""A deployment: one (provider, upstream model) that serves a public model."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelway.failover.health import HealthRecord

if TYPE_CHECKING:
    from modelway.providers.base import Provider


@dataclass(slots=True)
class DeploymentStats:
    """Live per-instance counters a strategy may read (never I/O)."""

    inflight: int = 0
    others: int = 0  # in flight at the other instances, as they last published (redis state backend)
    peers: int = 0  # how many other instances published, at the last tick
    published: int = 0  # this instance's count as it published it at the last tick
    prefilled_at: float = 0.0  # when the prompts this instance sent are expected prefilled (prefix_affinity)
    others_prefilled_at: float = 0.0  # and the other instances' prompts, as they last published
    quota_low_until: float = 0.0  # the upstream said its rate limit is nearly used up

    def fleet(self) -> int:
        """In flight at every instance, as far as this one can tell. Between ticks the others'
        counts are guessed to grow as this instance's has, `peers` times over (a load balancer
        spreads requests evenly): without the guess every instance sees the same deployment
        least loaded for up to 0.1 s and piles on it. Not to shrink: this instance's requests
        ending says nothing of when theirs do."""
        inflight = self.inflight
        grown = inflight - self.published
        return inflight + self.others + (self.peers * grown if grown > 0 else 0)


@dataclass(eq=False, slots=True)
class Deployment:
    index: int  # unique within one runtime; strategies key their state by it
    model_name: str  # the public model it serves
    provider: Provider
    upstream_model: str | None  # None: keep the name after mapping
    weight: int = 1
    priority: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    metric_key: str | None = None
    input_cost_per_mtok: float = 0.0
    output_cost_per_mtok: float = 0.0
    max_concurrency: int | None = None
    max_context: int | None = None
    max_output_tokens: int | None = None  # clamps the output limit a client asks for
    stats: DeploymentStats = field(default_factory=DeploymentStats)
    health: HealthRecord = field(default_factory=HealthRecord)
    # x-modelway-provider and, when the upstream name is fixed, x-modelway-model: encoded
    # once here rather than for every answer.
    route_head: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        head = [(b"x-modelway-provider", self.provider.name.encode())]
        if self.upstream_model is not None:
            head.append((b"x-modelway-model", self.upstream_model.encode()))
        self.route_head = tuple(head)

    @property
    def name(self) -> str:
        return f"{self.provider.name}/{self.upstream_model or self.model_name}"

    @property
    def key(self) -> str:
        """Stable identity across reloads and instances: where shared state is kept."""
        return f"{self.model_name}|{self.provider.name}|{self.upstream_model or ''}"

    def effective_weight(self, now: float) -> float:
        """The configured weight, ramped up for SLOW_START_S after a cooldown ends."""
        health = self.health
        if health.ramp_until <= now:
            return self.weight
        return self.weight * health.weight_factor(now)

    def __repr__(self) -> str:
        return f"Deployment({self.name}, weight={self.weight}, priority={self.priority})"


def usable(deployment: Deployment, now: float | None = None) -> bool:
    """Could this deployment take a request right now? The filter every candidate passes
    before a strategy sees it: healthy provider, not cooling, under its concurrency cap,
    a usable credential."""
    if now is None:
        now = time.monotonic()
    provider = deployment.provider
    cap = deployment.max_concurrency
    return (
        provider.healthy
        and not deployment.health.cooling(now)
        and (cap is None or deployment.stats.inflight < cap)
        and provider.credentials.has_usable(now)
    )
