"""Active health checks: with routing.health_check.interval_s > 0, each provider's
models_path (or health_check.path) is probed in the background. A failed probe takes
the provider's deployments out of routing; the next good one brings them back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from modelway.errors import UpstreamError
from modelway.providers.base import Provider

log = logging.getLogger("modelway.health")


class HealthProber:
    def __init__(self, providers: Sequence[Provider], interval_s: float, path: str | None) -> None:
        self.providers = list(providers)
        self.interval_s = interval_s
        self.path = path
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval_s > 0 and self.providers:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.gather(*(self.check(p) for p in self.providers))
            await asyncio.sleep(self.interval_s)

    async def check(self, provider: Provider) -> None:
        try:
            await asyncio.wait_for(provider.probe(self.path), timeout=max(self.interval_s, 1.0))
        except (UpstreamError, TimeoutError, ValueError) as exc:
            if provider.healthy:
                log.warning("provider %s failed its health check: %s", provider.name, getattr(exc, "message", exc))
            provider.healthy = False
        else:
            if not provider.healthy:
                log.info("provider %s passed its health check again", provider.name)
            provider.healthy = True
