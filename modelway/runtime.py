"""The immutable runtime: everything a request needs, built once from a validated config.

Reload builds a new Runtime and swaps one reference (`RuntimeRef.current`); requests in
flight finish on the one they started with. Only `proxy.pipeline.handle` holds a Runtime
on the request path: it hands each stage the parts that stage needs.
"""

from __future__ import annotations

import time

from modelway.config.schema import Config
from modelway.failover.policy import Failover
from modelway.failover.probe import HealthProber
from modelway.importing import resolve
from modelway.loadmetrics import build_source
from modelway.mapping import ModelMapper
from modelway.metrics import Metrics
from modelway.providers import PROVIDER_KINDS
from modelway.providers.base import Provider
from modelway.proxy.auth import ClientKeys
from modelway.proxy.settings import ProxySettings
from modelway.routers.chain import RouterChain
from modelway.routes import ModelTable


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.created = int(time.time())
        self.mapper = ModelMapper(config.model_mapping)
        routing = config.routing
        self.failover = Failover(routing)
        self.metrics = Metrics()
        self.max_body_bytes = config.server.max_body_bytes
        self.client_keys = ClientKeys(config.auth)
        self.providers: dict[str, Provider] = {
            p.name: resolve(PROVIDER_KINDS, p.kind, "provider kind")(p) for p in config.providers
        }
        self.table = ModelTable(config, self.providers, self.failover.health)
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
            models=self.models,
            max_attempts=1 + routing.retries,
            model_key=self.mapper.key_path,
            # Encoded once: it is added to every upstream request when configured.
            selected_provider_header=header.lower().encode("latin-1") if header else None,
            rewrite_response_model=config.server.response_model == "requested",
            load=self.metrics_source,  # an empty snapshot until started
        )

    async def start(self) -> None:
        for provider in self.providers.values():
            await provider.start()
        self.prober.start()
        if self.metrics_source is not None:
            await self.metrics_source.start()
        await self.routers.start()

    async def close(self) -> None:
        await self.routers.close()
        await self.prober.stop()
        for provider in self.providers.values():
            await provider.close()
        if self.metrics_source is not None:
            await self.metrics_source.close()

    def state_backend_errors(self) -> int:
        return 0  # the memory backend cannot fail; the Redis state backend will count here


class RuntimeRef:
    """The one mutable reference: the runtime requests start on."""

    __slots__ = ("current",)

    def __init__(self, runtime: Runtime) -> None:
        self.current = runtime
