"""The model table: each public model's route (its deployments by priority and its
strategy), and the routes built on demand — models that only a discovering provider knows,
and the one-deployment routes of routers' `deployment` decisions.

Built once per Runtime from a validated config; the routes built on demand are cached so
their strategies keep their state across requests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from modelway.config.schema import Config, DeploymentConfig, ModelConfig
from modelway.deployment import Deployment, usable
from modelway.discovery import Discovery
from modelway.failover.budget import RetryBudget
from modelway.importing import resolve
from modelway.strategies import STRATEGIES
from modelway.strategies.affinity import MemoryAffinity
from modelway.strategies.base import BaseStrategy
from modelway.strategies.holding import Holding, SlotGate

if TYPE_CHECKING:
    from modelway.failover.health import HealthState
    from modelway.providers.base import Provider
    from modelway.strategies.affinity import KeepsAffinity, ShareAffinity
    from modelway.strategies.base import Strategy

ROUTER_ROUTES_MAX = 1024  # cached (provider, target_model) routes of routers' deployment decisions


@dataclass(eq=False)
class ModelRoute:
    """A public model: its deployments grouped by priority (highest first) and its strategy."""

    name: str
    config: ModelConfig
    deployments: list[Deployment]
    strategy: Strategy
    groups: list[list[Deployment]] = field(default_factory=list)
    budget: RetryBudget = field(default_factory=RetryBudget)  # per public model, as Envoy's is per cluster
    observes: bool = True  # False when the strategy ignores outcomes: no Outcome is built per request
    chain: list[ModelRoute] = field(default_factory=list)  # itself, then its fallbacks: set by the table
    gate: SlotGate | None = None  # where requests wait for a slot, when the strategy holds them (late binding)

    def __post_init__(self) -> None:
        priorities = sorted({d.priority for d in self.deployments}, reverse=True)
        self.groups = [[d for d in self.deployments if d.priority == p] for p in priorities]
        self.observes = getattr(type(self.strategy), "observe", None) is not BaseStrategy.observe
        if isinstance(self.strategy, Holding) and len(self.deployments) > 1:
            self.gate = SlotGate()


class ModelTable:
    """`share_affinity`: where a strategy that keeps an affinity table gets the one it
    uses (the state backend's `affinity`: shared by the instances with redis); None: its own."""

    def __init__(
        self,
        config: Config,
        providers: Mapping[str, Provider],
        health: HealthState,
        share_affinity: ShareAffinity | None = None,
    ) -> None:
        self.providers = providers
        self._health = health
        self._share_affinity = share_affinity
        self._indexes = itertools.count()
        self.models: dict[str, ModelRoute] = {m.name: self.build_route(m) for m in config.models}
        for route in self.models.values():
            route.chain = [route, *(self.models[n] for n in route.config.fallbacks if n in self.models)]
        default = config.routing.default_model
        self.default_model = default
        self.default: ModelRoute | None = self.models[default] if default is not None else None
        self.discovery = Discovery(list(providers.values()))
        self._discovered_routes: dict[tuple[str, tuple[str, ...]], ModelRoute] = {}
        self.router_routes: dict[tuple[str, str | None], ModelRoute] = {}

    def build_route(self, model: ModelConfig) -> ModelRoute:
        deployments = [self._build_deployment(model.name, d) for d in model.deployments]
        strategy = resolve(STRATEGIES, model.strategy, "strategy")(model, deployments)
        table = getattr(strategy, "affinity", None)
        if self._share_affinity is not None and isinstance(table, MemoryAffinity):
            cast("KeepsAffinity", strategy).affinity = self._share_affinity(deployments, table)
        return ModelRoute(model.name, model, deployments, strategy)

    def _build_deployment(self, public_name: str, d: DeploymentConfig) -> Deployment:
        deployment = Deployment(
            index=next(self._indexes),
            model_name=public_name,
            provider=self.providers[d.provider],
            upstream_model=d.model,
            weight=d.weight,
            priority=d.priority,
            options=dict(d.options),
            metric_key=d.metric_key,
            input_cost_per_mtok=d.input_cost_per_mtok,
            output_cost_per_mtok=d.output_cost_per_mtok,
            max_concurrency=d.max_concurrency,
            max_context=d.max_context,
            max_output_tokens=d.max_output_tokens,
        )
        deployment.health = self._health.record(deployment.key)
        return deployment

    async def find(self, name: str) -> ModelRoute | None:
        """The route of a public model, else of a model a discovering provider serves."""
        return self.models.get(name) or await self.discovered_route(name)

    async def discovered_route(self, name: str) -> ModelRoute | None:
        """A route for a model only a discovering provider knows, served by its own name."""
        if not self.discovery.enabled:
            return None
        providers = (await self.discovery.models()).get(name)
        if not providers:
            return None
        key = (name, tuple(p.name for p in providers))
        route = self._discovered_routes.get(key)
        if route is None:
            model = ModelConfig(name=name, deployments=[DeploymentConfig(provider=p.name) for p in providers])
            route = self.build_route(model)
            self._discovered_routes[key] = route
        return route

    def deployment_route(self, provider: str, target_model: str | None) -> ModelRoute:
        """A one-deployment route for a router's `deployment` decision (target_model None:
        the requested name is sent). Cached, so its strategy state lives across requests."""
        key = (provider, target_model)
        route = self.router_routes.get(key)
        if route is None:
            name = f"{provider}/{target_model or '*'}"
            deployment = DeploymentConfig(provider=provider, model=target_model)
            route = self.build_route(ModelConfig(name=name, deployments=[deployment]))
            if len(self.router_routes) < ROUTER_ROUTES_MAX:  # routers may pass on names clients chose
                self.router_routes[key] = route
        return route

    def extra_deployments(self) -> list[Deployment]:
        """Deployments built on demand (discovered models, routers' deployment decisions)."""
        routes = [*self._discovered_routes.values(), *self.router_routes.values()]
        return [d for route in routes for d in route.deployments]

    def healthy_deployments(self) -> int:
        return sum(1 for route in self.models.values() for d in route.deployments if usable(d))


def held_requests(routes: Iterable[ModelRoute]) -> dict[str, int]:
    """Requests held at the gateway now (late binding), by model: every model whose
    strategy holds, 0 included."""
    return {route.name: route.gate.held for route in routes if route.gate is not None}
