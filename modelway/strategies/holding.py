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

Several instances (the redis state backend) make one line, not one each: every instance
publishes, with its in-flight counts, how many requests of each model it holds and how
long the oldest has waited (`FleetLine`). When a request ends, the slot it frees goes to
the fleet's oldest held request: this instance's own, or another instance's, which is then
told at once (`SlotGate.give`) instead of seeing the slot at its next recheck — by when
newer requests, held here or anywhere, would have taken it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(slots=True)
class Holder:
    """Another instance's held requests of one model, as it last published them."""

    since: float  # when its oldest began waiting, on this instance's clock
    instance: str
    count: int  # less the freed slots given to it since


class FleetLine:
    """The other instances' held requests of one model (empty with nothing shared)."""

    __slots__ = ("holders",)

    def __init__(self, holders: list[Holder] | None = None) -> None:
        self.holders = holders or []  # oldest first

    def claimant(self, own_oldest: float | None) -> str | None:
        """The instance a slot freed here goes to: the one holding the fleet's oldest request,
        when that is not this one (None: this instance's own oldest is, or nobody holds)."""
        for holder in self.holders:
            if holder.count > 0:
                if own_oldest is not None and own_oldest <= holder.since:
                    return None
                holder.count -= 1  # its next published count says whether it holds more
                return holder.instance
        return None


Give = Callable[[str, "Deployment"], None]  # tell instance `str` that a slot of the deployment is its


class SlotGate:
    """Where a route's held requests wait (the request path's side; the simulator keeps its
    own queue): oldest ticket (when it began waiting) first, woken WAKE_PER_END at a time
    when a request of the route ends, each also after its own timeout. With a shared state
    backend, a slot freed here goes to another instance's older request instead (`give`)."""

    __slots__ = ("_serials", "fleet", "give", "held", "waiters")

    def __init__(self) -> None:
        # a heap by ticket (then serial: a ticket can have a left-behind waiter); done ones dropped lazily
        self.waiters: list[tuple[float, int, asyncio.Future[None]]] = []
        self.held = 0  # requests waiting now
        self._serials = itertools.count()
        self.fleet = FleetLine()  # the others' held requests, set by the state backend
        self.give: Give | None = None  # set by a state backend that can pass a slot on

    def oldest(self) -> float | None:
        """When the longest-waiting request held here began waiting (None: none is)."""
        waiters = self.waiters
        while waiters and waiters[0][2].done():
            heapq.heappop(waiters)
        return waiters[0][0] if waiters else None

    def freed(self, deployment: Deployment) -> None:
        """A request of the route ended at `deployment`: its slot goes to the fleet's oldest
        held request, here or at another instance."""
        give = self.give
        if give is not None and self.fleet.holders:
            claimant = self.fleet.claimant(self.oldest())
            if claimant is not None:
                give(claimant, deployment)
                return
        self.wake()

    async def wait(self, ticket: float, timeout_s: float) -> None:
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
        """A slot of the route is free: the oldest held ones look again."""
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
