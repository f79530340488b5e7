"""Late binding: a strategy that can hold a request at the gateway instead of committing it
to an engine's queue.

When every slot of the engine a request would go to is taken, sending it there commits
it to that engine's queue: it waits for one of that engine's requests to end, which the
gateway cannot foresee (it does not know how long answers will be). Held at the gateway
and chosen again each time a slot of the route frees, it goes where a slot frees first
(or is still worth waiting for, its prefix being cached there) — one queue for the
fleet instead of one per engine, which is what a clairvoyant router gets by knowing when
running requests end (docs/prefix-routing.md measures it).

The request path (proxy/attempts.py) and the simulator (simulate/engine.py) drive it the
same way, on the first attempt of a request:

    if strategy.may_hold(view, candidates):           # cheap: some candidate has no free slot
        proposed = strategy.propose(view, candidates)   # the choice, nothing recorded
        if not strategy.admit(view, proposed):          # no free slot there: hold
            strategy.held[proposed.index] += 1          # counted where it would go
            ... wait for a slot of the route to free (WAKE_PER_END oldest per end),
            or RECHECK_S, at most HOLD_MAX_S; held -= 1; again from the top
    deployment = strategy.choose(view, candidates)

Requests are taken again oldest first.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.strategies.base import View

WAKE_PER_END = 16  # held requests taken again, oldest first, when a request of the route ends
RECHECK_S = 0.1  # and each of them at least this often (other instances' counts, new metrics)
HOLD_MAX_S = 30.0  # after this a held request goes where it would go, queue or not


@runtime_checkable
class Holding(Protocol):
    held: dict[int, int]

    def may_hold(self, view: View, candidates: Sequence[Deployment]) -> bool: ...

    def propose(self, view: View, candidates: Sequence[Deployment]) -> Deployment: ...

    def admit(self, view: View, deployment: Deployment) -> bool: ...

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment: ...


class SlotGate:
    """Where a route's held requests wait (the request path's side; the simulator keeps its
    own queue): oldest ticket first, woken WAKE_PER_END at a time when a request of the
    route ends, each also after its own timeout."""

    __slots__ = ("_serials", "_tickets", "held", "waiters")

    def __init__(self) -> None:
        # a heap by ticket (then serial: a ticket can have a left-behind waiter); done ones dropped lazily
        self.waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self.held = 0  # requests waiting now
        self._tickets = itertools.count()
        self._serials = itertools.count()

    def ticket(self) -> int:
        """A held request's place in line, kept while it is held again."""
        return next(self._tickets)

    async def wait(self, ticket: int, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self.waiters, (ticket, next(self._serials), waiter))
        timer = loop.call_later(timeout_s, _wake, waiter)
        self.held += 1
        try:
            await waiter
        finally:
            self.held -= 1
            timer.cancel()
            if len(self.waiters) > 64 + 4 * self.held:  # timed-out or cancelled waiters left behind
                self.waiters = [entry for entry in self.waiters if not entry[2].done()]
                heapq.heapify(self.waiters)

    def wake(self) -> None:
        """A request of the route ended: the oldest held ones look again."""
        waiters = self.waiters
        woken = 0
        while waiters and woken < WAKE_PER_END:
            _, _, waiter = heapq.heappop(waiters)
            if not waiter.done():
                waiter.set_result(None)
                woken += 1


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
