"""The loop every metrics source shares: poll, publish the snapshot, sleep, repeat.

`snapshot()` is what requests read: a plain dict replaced whole on each refresh, so a
reader never sees half an update and never waits. A failed poll publishes an empty
snapshot (least_load then falls back to weighted round robin) — never an exception
on a request. The source's state (ok / empty / unreachable) is logged once per change,
not once per poll, so a Redis that stays down for an hour writes one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping

log = logging.getLogger("modelway.loadmetrics")

EMPTY: Mapping[str, float] = {}


class PollingSource(ABC):
    name = "metrics"

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._values: Mapping[str, float] = EMPTY
        self._task: asyncio.Task[None] | None = None
        self.state: str | None = None  # "ok" | "empty" | "unreachable"; None before the first poll

    def snapshot(self) -> Mapping[str, float]:
        return self._values

    @abstractmethod
    async def poll(self) -> dict[str, float]:
        """Fetch fresh values. Raise on failure; the loop turns it into state 'unreachable'."""

    async def open(self) -> None:  # noqa: B027 (optional hook)
        """Create clients; runs inside the event loop before the first poll."""

    async def shutdown(self) -> None:  # noqa: B027 (optional hook)
        """Release clients."""

    async def start(self) -> None:
        """Open clients and poll once (each poll is bounded by its timeouts), so the first
        requests already see metrics; then refresh in the background."""
        await self.open()
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name=f"modelway-{self.name}-metrics")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.shutdown()

    async def refresh(self) -> None:
        """One poll: publish what it found, or an empty snapshot when it failed."""
        try:
            values = await self.poll()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the metrics backend: degrade, never raise
            self._values = EMPTY
            self._set_state("unreachable", f"{type(exc).__name__}: {exc}".rstrip(": "))
            return
        self._values = values
        if values:
            self._set_state("ok", f"{len(values)} value{'s' * (len(values) != 1)}")
        else:
            self._set_state("empty", "no values")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.refresh_s
        while True:  # runs until close() cancels it
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = loop.time() + self.refresh_s  # a slow poll delays the next one, never stacks
            await self.refresh()

    def _set_state(self, state: str, detail: str) -> None:
        if state == self.state:
            return
        previous, self.state = self.state, state
        if state == "ok":
            log.info("load metrics (%s): %s%s", self.name, detail, " (recovered)" if previous else "")
        else:
            log.warning(
                "load metrics (%s) %s: %s; least_load falls back to weighted round robin",
                self.name,
                state,
                detail,
            )
