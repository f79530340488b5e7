"""Models learned from providers with `discover: true`.

All such providers are asked at once, each with its own auth and models_path; a failing
provider is skipped and logged, never failing the list. The merged answer is cached for
TTL_S, and concurrent callers share one refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from modelway.errors import UpstreamError
from modelway.providers.base import Provider

log = logging.getLogger("modelway.discovery")
TTL_S = 15.0


class Discovery:
    def __init__(self, providers: Sequence[Provider]) -> None:
        self.providers = [p for p in providers if p.config.discover]
        self._models: dict[str, list[Provider]] = {}
        self._entries: list[dict[str, Any]] = []
        self._fetched_at = -TTL_S
        self._refresh: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    async def models(self) -> dict[str, list[Provider]]:
        """Model id → providers that serve it, refreshed when older than TTL_S."""
        await self._fresh()
        return self._models

    async def entries(self) -> list[dict[str, Any]]:
        """OpenAI model entries, first occurrence of each id kept."""
        await self._fresh()
        return self._entries

    async def _fresh(self) -> None:
        if not self.providers or time.monotonic() - self._fetched_at < TTL_S:
            return
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.get_running_loop().create_task(self._fetch())
        await asyncio.shield(self._refresh)

    async def _fetch(self) -> None:
        results = await asyncio.gather(*(self._ask(p) for p in self.providers))
        models: dict[str, list[Provider]] = {}
        entries: list[dict[str, Any]] = []
        for provider, listed in zip(self.providers, results, strict=True):
            for entry in listed:
                ident = entry["id"]
                if ident not in models:
                    models[ident] = []
                    entries.append(
                        {
                            "id": ident,
                            "object": "model",
                            "created": entry.get("created", 0),
                            "owned_by": entry.get("owned_by", provider.name),
                        }
                    )
                models[ident].append(provider)
        self._models, self._entries = models, entries
        self._fetched_at = time.monotonic()

    async def _ask(self, provider: Provider) -> list[dict[str, Any]]:
        try:
            return await provider.list_models()
        except UpstreamError as exc:
            log.warning("model discovery skipped provider %s: %s", provider.name, exc.message)
        except ValueError as exc:  # a models endpoint that answers something not JSON
            log.warning("model discovery skipped provider %s: unreadable answer (%s)", provider.name, exc)
        return []
