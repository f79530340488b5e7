"""The immutable runtime: everything a request needs, built once from a validated config.

Reload builds a new Runtime and swaps one reference (`RuntimeRef.current`); requests in
flight finish on the one they started with.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from modelway.config.schema import Config, DeploymentConfig, ModelConfig
from modelway.decisions import RecentDecisions
from modelway.deployment import Deployment
from modelway.discovery import Discovery
from modelway.failover.budget import RetryBudget
from modelway.failover.chain import usable
from modelway.failover.policy import Failover
from modelway.failover.probe import HealthProber
from modelway.importing import resolve
from modelway.loadmetrics import build_source
from modelway.mapping import ModelMapper
from modelway.metrics import Metrics
from modelway.providers import PROVIDER_KINDS
from modelway.providers.base import Provider
from modelway.proxy.auth import ClientKeys
from modelway.routers.chain import RouterChain
from modelway.strategies import STRATEGIES
from modelway.strategies.base import BaseStrategy

if TYPE_CHECKING:
    from modelway.strategies.base import Strategy

RETIRE_PATIENCE_S = 3600.0  # the longest a replaced runtime waits for its last stream
RETIRE_POLL_S = 0.25
ROUTER_ROUTES_MAX = 1024  # cached (provider, target_model) routes of routers' deployment decisions


class MetricsSnapshot(Protocol):
    def snapshot(self) -> Mapping[str, float]: ...


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
    chain: list[ModelRoute] = field(default_factory=list)  # itself, then its fallbacks: set by the Runtime

    def __post_init__(self) -> None:
        priorities = sorted({d.priority for d in self.deployments}, reverse=True)
        self.groups = [[d for d in self.deployments if d.priority == p] for p in priorities]
        self.observes = getattr(type(self.strategy), "observe", None) is not BaseStrategy.observe


class Runtime:
    """Everything requests read, built from one config. `previous` is the runtime a reload
    replaces: providers whose settings did not change are taken over with their connection
    pools, key pools and health, as are the deployments' cooldowns (while the cooldown
    settings are the same), the metrics and the recent decisions."""

    def __init__(self, config: Config, previous: Runtime | None = None) -> None:
        self.config = config
        self.created: int = previous.created if previous is not None else int(time.time())
        self.mapper = ModelMapper(config.model_mapping)
        routing = config.routing
        self.failover = Failover(routing)
        if previous is not None and previous.config.routing.cooldown == routing.cooldown:
            self.failover.health = previous.failover.health
        self.metrics: Metrics = previous.metrics if previous is not None else Metrics()
        self.active = 0  # requests in the pipeline on this runtime: a replaced one closes at 0
        # Encoded once: it is added to every upstream request when configured.
        header = routing.selected_provider_header
        self.selected_provider_header = header.lower().encode("latin-1") if header else None
        self.rewrite_response_model = config.server.response_model == "requested"
        self.max_body_bytes = config.server.max_body_bytes
        self.client_keys = ClientKeys(config.auth)
        kept = previous.providers if previous is not None else {}
        self.providers: dict[str, Provider] = {}
        self.taken_over: set[str] = set()  # providers running already, in `previous`
        for p in config.providers:
            old = kept.get(p.name)
            if old is not None and old.config == p:
                self.providers[p.name] = old
                self.taken_over.add(p.name)
            else:
                self.providers[p.name] = resolve(PROVIDER_KINDS, p.kind, "provider kind")(p)
        self._indexes = itertools.count()
        self.models: dict[str, ModelRoute] = {m.name: self._build_route(m) for m in config.models}
        for route in self.models.values():
            route.chain = [route, *(self.models[n] for n in route.config.fallbacks if n in self.models)]
        self.discovery = Discovery(list(self.providers.values()))
        self.prober = HealthProber(
            list(self.providers.values()), routing.health_check.interval_s, routing.health_check.path
        )
        self._discovered_routes: dict[tuple[str, tuple[str, ...]], ModelRoute] = {}
        # least_load reads snapshot() of this; a metrics source (Redis, Prometheus) sets it.
        self.load_metrics: MetricsSnapshot | None = None
        self.metrics_source = build_source(config)  # started in start(): fills load_metrics
        self.routers = RouterChain.build(routing.routers)  # new instances on every build (reload)
        self.router_routes: dict[tuple[str, str | None], ModelRoute] = {}
        self.decisions: RecentDecisions = previous.decisions if previous is not None else RecentDecisions()

    def _build_route(self, model: ModelConfig) -> ModelRoute:
        deployments = [self._build_deployment(model.name, d) for d in model.deployments]
        strategy = resolve(STRATEGIES, model.strategy, "strategy")(model, deployments)
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
        )
        deployment.health = self.failover.health.record(deployment.key)
        return deployment

    async def start(self) -> None:
        for name, provider in self.providers.items():
            if name not in self.taken_over:
                await provider.start()
        self.prober.start()
        if self.metrics_source is not None:
            await self.metrics_source.start()
            self.load_metrics = self.metrics_source
        await self.routers.start()

    async def close(self, successor: Runtime | None = None) -> None:
        """Stop everything this runtime started; providers a successor took over stay open."""
        await self.routers.close()
        await self.prober.stop()
        still_used = {id(p) for p in successor.providers.values()} if successor is not None else set()
        for provider in self.providers.values():
            if id(provider) not in still_used:
                await provider.close()
        if self.metrics_source is not None:
            await self.metrics_source.close()

    async def retire(self, successor: Runtime, patience_s: float = RETIRE_PATIENCE_S) -> None:
        """After a reload: wait until the requests and streams still running on this
        runtime have finished (for at most `patience_s`), then close it."""
        deadline = time.monotonic() + patience_s
        while self.active > 0 and time.monotonic() < deadline:
            await asyncio.sleep(RETIRE_POLL_S)
        await self.close(successor)

    def metric_model(self, name: str) -> str:
        """The model label of an answer modelway gave itself: names the client made up
        (unknown models) would grow the metric series without bound, so they read ""."""
        return name if name in self.models else ""

    def extra_deployments(self) -> list[Deployment]:
        """Deployments built on demand (discovered models, routers' deployment decisions)."""
        routes = [*self._discovered_routes.values(), *self.router_routes.values()]
        return [d for route in routes for d in route.deployments]

    def state_backend_errors(self) -> int:
        return 0  # the memory backend cannot fail; the Redis state backend will count here

    def healthy_deployments(self) -> int:
        return sum(1 for route in self.models.values() for d in route.deployments if usable(d))

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
            route = self._build_route(model)
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
            route = self._build_route(ModelConfig(name=name, deployments=[deployment]))
            if len(self.router_routes) < ROUTER_ROUTES_MAX:  # routers may pass on names clients chose
                self.router_routes[key] = route
        return route



class RuntimeRef:
    """The one mutable reference: the runtime requests start on."""

    __slots__ = ("current",)

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
