"""How the chain asks one router (decide.ask): inline when the router never suspends, in
a task within its timeout when it does, and every way a router can fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelway.plugins import RouteDecision, Router, RouteRequest
from modelway.proxy.decide import ask
from modelway.routers.chain import LoadedRouter

DECISION = RouteDecision.to_model("m")


class Func(Router):
    def __init__(self, body: Any) -> None:
        super().__init__({})
        self.body = body

    async def route(self, req: RouteRequest) -> RouteDecision | None:
        result: RouteDecision | None = await self.body()
        return result


def entry(router: Router, timeout_s: float = 0.05) -> LoadedRouter:
    return LoadedRouter("r", 0, timeout_s, router)


async def verdict(body: Any, timeout_s: float = 0.05) -> tuple[RouteDecision | None, str | None]:
    return await ask(entry(Func(body), timeout_s), RouteRequest())


async def test_a_router_that_never_suspends_runs_inline() -> None:
    async def instant() -> RouteDecision:
        return DECISION

    before = asyncio.all_tasks()
    assert await verdict(instant) == (DECISION, None)
    assert asyncio.all_tasks() == before


async def test_a_router_that_suspends_is_resumed() -> None:
    loop = asyncio.get_running_loop()

    async def sleeps_then_waits() -> RouteDecision:
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        future: asyncio.Future[RouteDecision] = loop.create_future()
        loop.call_later(0.001, future.set_result, DECISION)
        return await future

    assert await verdict(sleeps_then_waits) == (DECISION, None)


async def test_exceptions_before_and_after_suspending() -> None:
    async def early() -> None:
        raise KeyError("x")

    async def late() -> None:
        await asyncio.sleep(0)
        raise ValueError("late")

    async def failed_future() -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(OSError("backend down"))
        await future

    assert await verdict(early) == (None, "raised KeyError: 'x'")
    assert await verdict(late) == (None, "raised ValueError: late")
    assert await verdict(failed_future) == (None, "raised OSError: backend down")


def sleeps_until_cancelled(cancelled: asyncio.Event) -> Callable[[], Awaitable[None]]:
    """A router body that sleeps for long and sets `cancelled` when it is cancelled."""

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    return slow


async def test_timeouts_cancel_the_router_without_waiting_for_it() -> None:
    cancelled = asyncio.Event()
    slow = sleeps_until_cancelled(cancelled)

    assert await verdict(slow, 0.02) == (None, "timed out after 20 ms")
    await asyncio.wait_for(cancelled.wait(), 1)

    async def stubborn() -> RouteDecision:
        for _ in range(2):
            try:
                await asyncio.sleep(0.3)
            except asyncio.CancelledError:
                continue  # ignores cancellation, and still is not waited for
        return DECISION

    started = asyncio.get_running_loop().time()
    assert await verdict(stubborn, 0.02) == (None, "timed out after 20 ms")
    assert asyncio.get_running_loop().time() - started < 0.2


async def test_garbage_and_sync_routers() -> None:
    async def garbage() -> Any:
        return {"kind": "model"}

    class Sync(Router):
        def route(self, req: RouteRequest) -> Any:  # type: ignore[override]
            return None

    assert await verdict(garbage) == (None, "returned dict instead of a RouteDecision or None")
    assert await ask(entry(Sync()), RouteRequest()) == (None, "route() must be a coroutine function (async def)")


async def test_cancelling_the_request_cancels_a_suspended_router() -> None:
    cancelled = asyncio.Event()
    slow = sleeps_until_cancelled(cancelled)

    request = asyncio.ensure_future(verdict(slow, 5))
    await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await asyncio.wait_for(cancelled.wait(), 1)
