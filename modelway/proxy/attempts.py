"""The attempt loop: retries, fallbacks, credential rotation and hedging for one request.

Layers, outermost first (as httpx layers its send path):
  attempt()         keeps up to 1 + routing.retries exchanges going until one answers
  RouteChain.next() the next deployment: highest priority first, untried, then fallbacks
  exchange()        one upstream exchange, up to the first body byte

An exchange that failed on a stale keep-alive connection (the upstream closed it as it was
reused) is sent again to the same deployment with the same key on a fresh connection. That
re-send is an attempt like any other: it counts in x-modelway-attempts and against
routing.retries, and spends the retry budget; the stale failure counts against nothing
(no cooldown, no strategy outcome), since it says nothing about the deployment.

Every exchange runs as a task, so a hedge (a second exchange started when the first has
no response headers after hedge_after_ms) is just another task in the same loop: the
first to answer wins and the other is cancelled. Nothing reaches the client before this
returns, so an answer is never duplicated and every failure here is still retryable.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Coroutine, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from modelway.errors import (
    AllAttemptsFailed,
    GatewayError,
    GatewayTimeout,
    NoHealthyDeployment,
    UpstreamError,
    UpstreamStaleConnection,
)
from modelway.failover.chain import RouteChain, Tried
from modelway.proxy.exchange import Answer, AttemptRecord, exchange
from modelway.strategies.base import NO_LOAD
from modelway.strategies.holding import HOLD_MAX_S, RECHECK_S
from modelway.strategies.prefix import prefix_of

if TYPE_CHECKING:
    from modelway.config.schema import HashOn
    from modelway.deployment import Deployment
    from modelway.proxy.incoming import Incoming
    from modelway.proxy.settings import LoadSource, ProxySettings
    from modelway.routes import ModelRoute
    from modelway.strategies.holding import Holding
    from modelway.strategies.prefix import Prefix

__all__ = ["Answer", "RequestView", "attempt"]


class RequestView:
    """What a strategy sees of one request at one pick (strategies/base.py `View`): built per
    pick, read-only; the load snapshot is read only when a strategy asks for it."""

    __slots__ = ("_request", "_source", "now")

    def __init__(self, request: Incoming, source: LoadSource | None, now: float) -> None:
        self._request = request
        self._source = source
        self.now = now

    @property
    def stream(self) -> bool:
        return self._request.stream

    @property
    def load(self) -> Mapping[str, float]:
        source = self._source
        return source.snapshot() if source is not None else NO_LOAD

    def hash_key(self, hash_on: HashOn) -> str | None:
        return self._request.hash_key(hash_on)

    def inflight(self, deployment: Deployment) -> int:
        return deployment.stats.fleet()

    def prefix(self) -> Prefix | None:
        return prefix_of(self._request.raw_body)


class AttemptLoop:
    def __init__(self, settings: ProxySettings, request: Incoming, model: str, route: ModelRoute) -> None:
        self.settings = settings
        self.request = request
        self.model = model  # the public model: metric label, and the name sent where a deployment has none
        self.route = route
        self.failover = settings.failover
        self.chain = RouteChain(route)
        self.max_attempts = settings.max_attempts
        hedge_ms = route.config.hedge_after_ms
        self.hedge_s: float | None = hedge_ms / 1000 if hedge_ms else None
        self.tried: Tried = {}
        self.rekey: set[int] = set()  # deployments whose failure was their key's
        self.history: list[AttemptRecord] = []
        self.pending: dict[asyncio.Future[Answer], AttemptRecord] = {}
        self.failed_answer: Answer | None = None  # a retryable status answer, kept for pass-through
        self.last_settled: AttemptRecord | None = None  # with hedging, not always the last launched
        self.stop = False  # a failure that must not be retried
        self.stale: AttemptRecord | None = None  # failed on a stale connection: to re-send on a fresh one
        self.held_since: float | None = None  # when it began waiting at the gateway for a slot (late binding)

    def pick(self, hedge: bool = False, probe: bool = False) -> AttemptRecord | None:
        now = time.monotonic()
        if probe:
            picked = self.chain.probe(now)
        else:
            picked = self.chain.next(RequestView(self.request, self.settings.load, now), self.tried, self.rekey)
        if picked is None:
            return None
        route, deployment = picked
        used = self.tried.setdefault(deployment.index, set())
        credential = deployment.provider.credentials.pick(now, used)
        if credential is None:  # raced: the last usable key went away since the filter ran
            return None
        used.add(credential.index)
        self.rekey.discard(deployment.index)
        record = AttemptRecord(route, deployment, credential, hedge=hedge, since=self.held_since)
        self.held_since = None  # a held request's wait counts in its first attempt's times only
        self.history.append(record)
        return record

    def launch(self, record: AttemptRecord) -> None:
        self.pending[asyncio.ensure_future(exchange(self.request, self.model, record, self.settings))] = record

    def can_retry(self) -> bool:
        """Another attempt is allowed: attempts left, a candidate left, and budget left."""
        return (
            not self.stop
            and len(self.history) < self.max_attempts
            and self.chain.has_next(self.tried, self.rekey, time.monotonic())
            and self.route.budget.try_retry()
        )

    def next_attempt(self) -> AttemptRecord | None:
        """The attempt after a failed one, or None when no more is allowed: a re-send on a
        fresh connection after a stale one, else the next candidate."""
        stale, self.stale = self.stale, None
        if stale is None:
            return self.pick() if self.can_retry() else None
        if self.stop or len(self.history) >= self.max_attempts or not self.route.budget.try_retry():
            return None
        record = AttemptRecord(stale.route, stale.deployment, stale.credential, hedge=stale.hedge, fresh=True)
        self.history.append(record)
        return record

    def run(self) -> Coroutine[Any, Any, Answer]:
        self.route.budget.request()
        if self.route.gate is not None:
            return self.run_when_admitted()
        return self.run_in_turn() if self.hedge_s is None else self.run_hedged()

    async def run_when_admitted(self) -> Answer:
        await self.wait_for_slot()
        return await (self.run_in_turn() if self.hedge_s is None else self.run_hedged())

    async def wait_for_slot(self) -> None:
        """Late binding (strategies/holding.py): while the deployment the route's strategy
        would choose has no free slot, wait at the gateway — until a request of the route
        ends or RECHECK_S passes, at most HOLD_MAX_S — and let it choose again."""
        route = self.route
        gate = route.gate
        if gate is None:
            return
        strategy = cast("Holding", route.strategy)  # a route has a gate only if its strategy holds
        since: float | None = None  # when it began waiting: its place in the fleet's line
        while True:
            now = time.monotonic()
            found = self.chain.candidates(now, self.tried, self.rekey)
            if found is None or found[0] is not route:  # nothing usable, or a fallback's turn: as without
                return
            view = RequestView(self.request, self.settings.load, now)
            candidates = found[1]
            if not strategy.may_hold(view, candidates):
                return
            proposed = strategy.propose(view, candidates)
            if strategy.admit(view, proposed):
                return
            if since is None:
                since = self.held_since = now
            left = since + HOLD_MAX_S - now
            if left <= 0:  # held long enough: it goes where it would go, line or not
                return
            index = proposed.index
            strategy.held[index] = strategy.held.get(index, 0) + 1
            try:
                await gate.wait(since, min(RECHECK_S, left))
            finally:
                strategy.held[index] -= 1

    async def run_hedged(self) -> Answer:
        """Exchanges as tasks, so that a hedge can race the first one."""
        picked = self.pick()
        if picked is None:
            return await self.run_probe()
        self.launch(picked)
        try:
            while self.pending:
                hedge_due = self.hedge_s is not None and len(self.pending) == 1
                done, _ = await asyncio.wait(
                    self.pending, timeout=self.hedge_s if hedge_due else None, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    self.maybe_hedge()
                    continue
                for task in done:
                    record = self.pending.pop(task)
                    exc = task.exception()
                    if exc is not None and not isinstance(exc, UpstreamError):
                        self.abandon()
                        raise exc
                    answer = self.settle(record, exc or task.result())
                    if answer is not None:
                        return self.won(answer, done)
                if not self.pending and (picked := self.next_attempt()) is not None:
                    self.launch(picked)
        finally:
            for task in self.pending:
                task.cancel()
        return self.lost()

    async def run_in_turn(self) -> Answer:
        """Without hedging, one exchange at a time, awaited in this task: no task per attempt."""
        record = self.pick()
        if record is None:
            return await self.run_probe()
        while True:
            try:
                answer = self.settle(record, await exchange(self.request, self.model, record, self.settings))
            except UpstreamError as exc:
                answer = self.settle(record, exc)
            except GatewayError:  # the request itself is refused (a body a translation cannot read)
                self.abandon()
                raise
            if answer is not None:
                return self.won(answer, ())
            if (record := self.next_attempt()) is None:
                return self.lost()

    async def run_probe(self) -> Answer:
        """Nothing is usable. If cooldowns are what keeps every deployment out, this request
        probes the one that recovers first, alone: one attempt (re-sent only after a stale
        keep-alive connection), no retry, no hedge. An answer that is not a failure ends
        its cooldown; requests arriving meanwhile get the 503 of `unavailable()`."""
        record = self.pick(probe=True)
        if record is None:
            raise self.unavailable()
        health = record.deployment.health
        health.probing = True
        try:
            while True:
                result: Answer | UpstreamError
                try:
                    result = await exchange(self.request, self.model, record, self.settings)
                except UpstreamError as exc:
                    result = exc
                answer = self.settle(record, result)
                # The one retry a probe gets: its re-send after a stale keep-alive connection.
                if answer is not None or self.stale is None or (resent := self.next_attempt()) is None:
                    break
                record = resent
        finally:
            health.probing = False
        if answer is None:
            return self.lost()
        self.failover.recovered(record.deployment)
        return self.won(answer, ())

    def maybe_hedge(self) -> None:
        self.hedge_s = None  # one hedge per request
        (record,) = self.pending.values()
        if record.headers_at is None and self.can_retry() and (picked := self.pick(hedge=True)) is not None:
            self.launch(picked)

    def settle(self, record: AttemptRecord, result: Answer | UpstreamError) -> Answer | None:
        """The answer if this exchange won; None when it failed (and was recorded)."""
        deployment = record.deployment
        metrics = self.settings.metrics
        self.last_settled = record
        if isinstance(result, UpstreamError):
            record.error = result.kind
            metrics.attempt(self.model, deployment.provider.name, result.kind)
            if isinstance(result, UpstreamStaleConnection):
                record.stale = True
                self.stale = record
                return None
            if not result.local:
                self.failover.error(deployment, result.kind)
            if result.kind not in self.failover.retry_on:
                self.stop = True
            return None
        answer = result
        status = answer.upstream.status
        record.status = status
        metrics.attempt(self.model, deployment.provider.name, "ok" if status < 400 else str(status))
        if self.failover.status(deployment, record.credential, status, answer.upstream.headers):
            self.rekey.add(deployment.index)
        elif status not in self.failover.retry_on:
            return answer  # a success, or a client error passed through unchanged
        if self.failed_answer is not None:
            self.failed_answer.finish(ok=False, error=str(self.failed_answer.upstream.status))
        self.failed_answer = answer
        return None

    def won(self, answer: Answer, done: Iterable[asyncio.Future[Answer]]) -> Answer:
        for task in done:  # a hedge that answered in the same instant loses quietly
            if not task.cancelled() and task.exception() is None and task.result() is not answer:
                task.result().finish(ok=True, observe=False)
        if self.failed_answer is not None:
            self.failed_answer.finish(ok=False, error=str(self.failed_answer.upstream.status))
        answer.attempts = len(self.history)
        return answer

    def abandon(self) -> None:
        """The request ends in an error of its own: the answer kept for pass-through is released."""
        failed = self.failed_answer
        if failed is not None:
            failed.finish(ok=False, error=str(failed.upstream.status))

    def lost(self) -> Answer:
        failed = self.failed_answer
        if failed is not None and len(self.history) == 1:
            return failed  # the only attempt's own answer, passed through unchanged
        if failed is not None:
            failed.finish(ok=False, error=str(failed.upstream.status))
        raise self.exhausted()

    def unavailable(self) -> Exception:
        headers = {"x-modelway-attempts": "0"}
        if self.chain.probing():
            # Its answer is due soon and, if good, ends the cooldown: come back then, not
            # when the cooldown would have run out.
            headers["Retry-After"] = "1"
            return NoHealthyDeployment(
                f"every deployment of model {self.route.name!r} is cooling down and a probe request is"
                " testing one; retry in 1 s",
                headers=headers,
            )
        wait = self.chain.soonest_recovery(time.monotonic())
        if wait is not None:
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return NoHealthyDeployment(
                f"every deployment of model {self.route.name!r} is cooling down; retry in {headers['Retry-After']} s",
                headers=headers,
            )
        return NoHealthyDeployment(f"model {self.route.name!r} has no healthy deployment right now", headers=headers)

    def exhausted(self) -> Exception:
        history = self.history
        n = len(history)
        headers = {"x-modelway-attempts": str(n)}
        summary = "; ".join(f"#{i} {record.describe()}" for i, record in enumerate(history, 1))
        attempts = f"{n} attempt{'s' * (n > 1)}"
        last = self.last_settled or history[-1]
        if last.error == "timeout":  # SPEC: 504 when the last attempt (to end) timed out
            return GatewayTimeout(f"upstream timed out ({attempts}: {summary})", headers=headers)
        return AllAttemptsFailed(f"every attempt failed ({attempts}: {summary})", headers=headers)


def attempt(settings: ProxySettings, request: Incoming, model: str, route: ModelRoute) -> Coroutine[Any, Any, Answer]:
    """The answer to `request` from `route` (or its fallbacks), as the public model `model`;
    a GatewayError (502, 503, 504) when no attempt answered."""
    return AttemptLoop(settings, request, model, route).run()  # the loop's own coroutine: no extra frame per request
