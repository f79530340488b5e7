"""The immutable runtime: everything a request needs, built once from a validated config.

Reload builds a new Runtime and swaps one reference (`RuntimeRef.current`); requests in
flight finish on the one they started with. Only `proxy.pipeline.handle` holds a Runtime
on the request path: it hands each stage the parts that stage needs.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from modelway.accesslog import AccessLog
from modelway.config.schema import Config
from modelway.decisions import RecentDecisions
from modelway.failover.health import MemoryHealth
from modelway.failover.policy import Failover
from modelway.failover.probe import HealthProber
from modelway.forward_auth import ForwardAuthClient
from modelway.importing import resolve
from modelway.loadmetrics import build_source
from modelway.mapping import ModelMapper
from modelway.metrics import Metrics
from modelway.passthrough import Passthrough
from modelway.providers import PROVIDER_KINDS
from modelway.providers.base import Provider
from modelway.proxy.admission import Gate
from modelway.proxy.auth import ClientKeys
from modelway.proxy.settings import ProxySettings
from modelway.routers.chain import RouterChain
from modelway.routes import ModelTable
from modelway.state.backend import Attached, StateBackend
from modelway.state.build import build_state
from modelway.tracing import Tracing

if TYPE_CHECKING:
    from modelway.deployment import Deployment

RETIRE_PATIENCE_S = 3600.0  # the longest a replaced runtime waits for its last stream
RETIRE_POLL_S = 0.25


class Runtime:
    """Everything requests read, built from one config. `previous` is the runtime a reload
    replaces: providers whose settings did not change are taken over with their connection
    pools, key pools and health, as are the deployments' cooldowns (while the cooldown
    settings are the same), the state backend (while `state:` is the same: its Redis link,
    rate-limit buckets and tasks), the metrics and the recent decisions."""

    failover: Failover
    state_errors_before: int

    def __init__(self, config: Config, previous: Runtime | None = None) -> None:
        self.config = config
        self.created: int = previous.created if previous is not None else int(time.time())
        self.mapper = ModelMapper(config.model_mapping)
        routing = config.routing
        same_state = previous is not None and previous.config.state == config.state
        self.state: StateBackend = previous.state if previous is not None and same_state else build_state(config.state)
        self.state_taken_over = same_state  # running already, in `previous`
        # modelway_state_backend_errors_total carries on across a reload that replaced the backend
        self.state_errors_before = 0 if previous is None else (
            previous.state_errors_before if same_state else previous.state_backend_errors())
        health = self.state.health(routing.cooldown)
        if previous is not None and previous.config.routing.cooldown == routing.cooldown:
            if same_state:
                health = previous.failover.health
            elif isinstance(health, MemoryHealth) and isinstance(previous.failover.health, MemoryHealth):
                health.adopt(previous.failover.health)  # another backend: the cooldowns carry over
        self.failover = Failover(routing, health)
        self.metrics: Metrics = previous.metrics if previous is not None else Metrics()
        self.decisions: RecentDecisions = previous.decisions if previous is not None else RecentDecisions()
        self.active = 0  # requests in the pipeline on this runtime: a replaced one closes at 0
        self.draining: bool = previous.draining if previous is not None else False  # /ready answers 503
        kept_log = previous.access if previous is not None else None
        telemetry = config.telemetry
        if previous is not None and previous.tracing is not None and previous.config.telemetry == telemetry:
            self.tracing: Tracing | None = previous.tracing
        else:
            self.tracing = Tracing(telemetry) if telemetry is not None and telemetry.otlp_endpoint else None
        wanted = any(m.passthrough_url for m in config.models)
        self.passthrough: Passthrough | None = Passthrough() if wanted else None
        self.access: AccessLog | None = (kept_log or AccessLog()) if config.server.access_log else None
        self.max_body_bytes = config.server.max_body_bytes
        self.client_keys = ClientKeys(config.auth)
        forward_auth = config.auth.forward_auth
        self.forward_auth = ForwardAuthClient(forward_auth) if forward_auth is not None else None
        # Before routing: forward auth, then the key's rpm/tpm. None when neither is configured.
        self.gate = Gate.build(self.state.limits, self.forward_auth, self.client_keys)
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
        self.table = ModelTable(config, self.providers, self.failover.health, self.state.affinity)
        self.models = self.table.models
        self.discovery = self.table.discovery
        self.prober = HealthProber(
            list(self.providers.values()), routing.health_check.interval_s, routing.health_check.path
        )
        self.metrics_source = build_source(config)  # started in start(); least_load reads its snapshot
        self.routers = RouterChain.build(routing.routers)  # new instances on every build (reload)
        header = routing.selected_provider_header
        self.proxy = ProxySettings(
            failover=self.failover,
            metrics=self.metrics,
            decisions=self.decisions,
            models=self.models,
            max_attempts=1 + routing.retries,
            model_key=self.mapper.key_path,
            # Encoded once: it is added to every upstream request when configured.
            selected_provider_header=header.lower().encode("latin-1") if header else None,
            rewrite_response_model=config.server.response_model == "requested",
            load=self.metrics_source,  # an empty snapshot until started
            access=self.access,
            passthrough=self.passthrough,
            tracing=self.tracing,
            stream_ping_s=config.server.stream_ping_s,
        )

    async def start(self) -> None:
        for name, provider in self.providers.items():
            if name not in self.taken_over:
                await provider.start()
        self.prober.start()
        if self.metrics_source is not None:
            await self.metrics_source.start()
        if self.forward_auth is not None:
            await self.forward_auth.start()
        if self.passthrough is not None:
            await self.passthrough.start()
        await self.routers.start()
        if not self.state_taken_over:
            await self.state.start()
        self.state.attach(Attached(self.failover.health, self.providers, self.all_deployments, self.models))

    def all_deployments(self) -> list[Deployment]:
        """Every deployment: the public models', then those built on demand."""
        found = [d for route in self.models.values() for d in route.deployments]
        return found + self.table.extra_deployments()

    async def close(self, successor: Runtime | None = None) -> None:
        """Stop everything this runtime started; providers and the state backend a successor
        took over stay open."""
        await self.routers.close()
        await self.prober.stop()
        if self.forward_auth is not None:
            await self.forward_auth.close()
        if successor is None or successor.state is not self.state:
            await self.state.close()
        still_used = {id(p) for p in successor.providers.values()} if successor is not None else set()
        for provider in self.providers.values():
            if id(provider) not in still_used:
                await provider.close()
        if self.metrics_source is not None:
            await self.metrics_source.close()
        if self.passthrough is not None:
            await self.passthrough.close()
        if self.tracing is not None and (successor is None or successor.tracing is not self.tracing):
            self.tracing.close()
        if self.access is not None and successor is None:
            self.access.flush()  # the process is stopping: what is still batched

    async def retire(self, successor: Runtime, patience_s: float = RETIRE_PATIENCE_S) -> None:
        """After a reload: wait until the requests and streams still running on this
        runtime have finished (for at most `patience_s`), then close it."""
        deadline = time.monotonic() + patience_s
        while self.active > 0 and time.monotonic() < deadline:
            await asyncio.sleep(RETIRE_POLL_S)
        await self.close(successor)

    def state_backend_errors(self) -> int:
        return self.state_errors_before + self.state.errors()


class RuntimeRef:
    """The one mutable reference: the runtime requests start on."""

    __slots__ = ("current",)

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
