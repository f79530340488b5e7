"""The state backend (`state.backend`): what instances of one gateway share, behind one
interface, kept in this process (`memory`, the default) or in Redis (`redis`).

    limits       per-key rpm/tpm buckets (state/limits.py), read by the admission stage
    health(...)  the HealthState of passive health and pool keys (failover/health.py),
                 whose changes a shared backend publishes and applies from the others
    attach(...)  the runtime whose deployments it applies others' news to (a reload
                 attaches its new runtime) and whose in-flight counts it publishes
    affinity(...) the affinity table of a route's prefix_affinity strategy: the memory
                 one it was built with, or one whose records the other instances get too
    start/close  with the runtime that made it; a reload with the same `state:` takes it over

The request path never waits on it for what it can read locally: cooldowns and key states
are applied to the local records as they arrive, others' in-flight counts land in
`DeploymentStats.others`. Only a key with rpm/tpm limits waits for Redis (one atomic
script, bounded by `state.timeout_ms`), since its limits are exact across instances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from modelway.failover.health import HealthState, MemoryHealth
from modelway.state.limits import MemoryLimits, RateLimiter

if TYPE_CHECKING:
    from modelway.config.schema import CooldownConfig
    from modelway.deployment import Deployment
    from modelway.providers.base import Provider
    from modelway.routes import ModelRoute
    from modelway.strategies.affinity import AffinityTable, MemoryAffinity


@dataclass(frozen=True, slots=True)
class Attached:
    """The parts of a runtime a state backend reads and applies news to."""

    health: HealthState
    providers: Mapping[str, Provider]
    deployments: Callable[[], Iterable[Deployment]]  # every deployment, those built on demand included
    routes: Mapping[str, ModelRoute]  # the public models, by name


class StateBackend(Protocol):
    name: str

    @property
    def limits(self) -> RateLimiter: ...

    def health(self, cooldown: CooldownConfig) -> HealthState: ...

    def attach(self, attached: Attached) -> None: ...

    def affinity(self, deployments: Sequence[Deployment], table: MemoryAffinity) -> AffinityTable:
        """The table a route's strategy keeps, given the route's deployments and the table
        the strategy was built with (called as routes are built, before `start`)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def errors(self) -> int:
        """Failed or timed-out calls so far: modelway_state_backend_errors_total."""

    def describe(self) -> dict[str, Any]: ...


class MemoryState:
    """One process: nothing is shared. Under `--workers N` each worker has its own (see
    docs/scaling.md)."""

    name = "memory"

    def __init__(self) -> None:
        self.limits = MemoryLimits()

    def health(self, cooldown: CooldownConfig) -> HealthState:
        return MemoryHealth(cooldown)

    def attach(self, attached: Attached) -> None:
        return None

    def affinity(self, deployments: Sequence[Deployment], table: MemoryAffinity) -> AffinityTable:
        return table

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def errors(self) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {"backend": "memory", "shared": False}
