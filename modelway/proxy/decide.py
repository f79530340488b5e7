"""Running the router chain for one request (SPEC section 6), between model mapping and
the normal resolution.

Routers run in descending priority, ties by ascending id, each within its timeout. A
router that declines (None) passes the request on; one that raises, times out, or decides
something malformed, unknown or unavailable is logged with its id and the reason, counted
in `RouterChain.errors`, and passes it on too. The first valid decision wins:

    model       → that public model's route; its strategy picks
    deployment  → a one-deployment route on that provider, running target_model
    executor    → an ExecutorCall: a plugin answers (modelway.proxy.executor)

No decision: the caller resolves the model as usual. With `x-modelway-debug: 1` (and, where
client keys are configured, a key with `debug: true`), each router's verdict and time and
the final route go into the `x-modelway-route` response header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import types
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import orjson

from modelway.plugins import (
    Available,
    Client,
    ModelInfo,
    ReadOnlyMap,
    RouteDecision,
    RouteRequest,
    decision_problem,
    estimate_prompt_tokens,
)
from modelway.proxy.attempts import usable
from modelway.proxy.executor import REENTRY, ExecutorCall, InProcessGateway
from modelway.runtime import ModelRoute, Runtime

if TYPE_CHECKING:
    from modelway.proxy.context import RequestContext
    from modelway.routers.chain import LoadedRouter

log = logging.getLogger("modelway.routers")

ROUTE_HEADER = b"x-modelway-route"
HIDDEN_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization"})  # never shown to routers
REASON_MAX = 200


class RequestFacts:
    """What the RouteRequests of one request share, each made once and only when read."""

    __slots__ = ("_available", "_prompt_tokens", "client", "ctx", "headers", "query", "skip")

    def __init__(self, ctx: RequestContext, skip: frozenset[str]) -> None:
        self.ctx = ctx
        self.skip = skip  # routers a re-entered request must not run
        self.headers = ReadOnlyMap({k: v for k, v in ctx.headers.items() if k not in HIDDEN_HEADERS})
        self.query = ReadOnlyMap(ctx.query)
        name = ctx.client.name if ctx.client is not None else None
        self.client = Client(key=name, consumer=name)
        self._available: Available | None = None
        self._prompt_tokens: int | None = None

    def body_copy(self) -> dict[str, Any]:
        copied: dict[str, Any] = orjson.loads(self.ctx.raw_body)  # a deep copy, faster than copy.deepcopy
        return copied

    def available(self) -> Available:
        if self._available is None:
            self._available = available_now(self.ctx.runtime)
        return self._available

    def prompt_tokens(self) -> int:
        if self._prompt_tokens is None:
            self._prompt_tokens = estimate_prompt_tokens(self.ctx.payload)
        return self._prompt_tokens

    def request(self, router_id: str) -> RouteRequest:
        """A fresh RouteRequest for one router; its `gateway` re-enters skipping that router."""
        ctx = self.ctx
        return RouteRequest.from_source(
            self,
            source_format="anthropic" if ctx.anthropic else "openai",
            path=ctx.path,
            requested_model=ctx.requested_model,
            original_model=ctx.original_model,
            stream=ctx.stream,
            headers=self.headers,
            query=self.query,
            client=self.client,
            gateway=InProcessGateway(ctx, router_id, self.skip, self.headers),
        )


def available_now(runtime: Runtime) -> Available:
    """Providers and public models with at least one usable deployment right now.

    Usability is `attempts.usable(deployment)`, the same test the attempt loop applies.
    A provider no deployment uses (one configured only for routers) is counted available:
    nothing has shown it unhealthy.
    """
    used: set[str] = set()
    healthy: set[str] = set()
    models: dict[str, ModelInfo] = {}
    for name, route in runtime.models.items():
        live = [d for d in route.deployments if usable(d)]
        used.update(d.provider.name for d in route.deployments)
        if not live:
            continue
        providers = frozenset(d.provider.name for d in live)
        healthy |= providers
        contexts = [d.max_context for d in live]
        max_context = None if None in contexts else max(c for c in contexts if c is not None)
        models[name] = ModelInfo(name, providers, max_context)
    for route in runtime.router_routes.values():
        for d in route.deployments:
            used.add(d.provider.name)
            if usable(d):
                healthy.add(d.provider.name)
    idle = set(runtime.providers) - used
    return Available(frozenset(healthy | idle), MappingProxyType(models))


class RouteTrace:
    """The debug account of one request's routing, sent as `x-modelway-route`."""

    __slots__ = ("decision", "routers")

    def __init__(self) -> None:
        self.routers: list[dict[str, Any]] = []
        self.decision: dict[str, Any] = {}

    def verdict(self, router_id: str, verdict: str, started: float | None, **extra: Any) -> None:
        entry: dict[str, Any] = {"id": router_id, "verdict": verdict}
        if started is not None:
            entry["ms"] = round((time.perf_counter() - started) * 1000, 3)
        entry.update((k, v) for k, v in extra.items() if v is not None)
        self.routers.append(entry)

    def header(self) -> tuple[bytes, bytes]:
        # ASCII JSON (non-ASCII escaped) is safe in a header value; it is built only on request.
        text = json.dumps({"routers": self.routers, "decision": self.decision}, separators=(",", ":"))
        return ROUTE_HEADER, text.encode("ascii")


def wants_debug(ctx: RequestContext) -> bool:
    if ctx.raw_headers.get(b"x-modelway-debug") != b"1":
        return False
    return ctx.client is None or ctx.client.key.debug


def route_summary(route: ModelRoute) -> dict[str, Any]:
    return {"route": route.name, "candidates": [d.name for d in route.deployments if usable(d)]}


@dataclass(slots=True)
class Routed:
    """What the chain concluded: a target (None: resolve as usual) and the debug trace."""

    target: ModelRoute | ExecutorCall | None = None
    trace: RouteTrace | None = None

    def note_resolution(self, ctx: RequestContext, route: ModelRoute | None) -> None:
        """Record the normal resolution's result in the debug header, when one is wanted."""
        trace = self.trace
        if trace is None:
            return
        trace.decision = {"by": "resolution", "model": ctx.requested_model}
        if route is not None:
            trace.decision.update(route_summary(route))
        ctx.extra_response_headers.append(trace.header())


NOT_ROUTED = Routed()


async def run_routers(ctx: RequestContext) -> Routed:
    chain = ctx.runtime.routers
    trace = RouteTrace() if wants_debug(ctx) else None
    if not chain:
        return Routed(None, trace) if trace is not None else NOT_ROUTED
    reentry = ctx.scope.get(REENTRY)
    facts = RequestFacts(ctx, reentry.skip if reentry is not None else frozenset())
    for entry in chain.routers:
        if entry.id in facts.skip:
            if trace is not None:
                trace.verdict(entry.id, "skipped", None, reason="it issued this re-entered request")
            continue
        started = time.perf_counter()
        decision, failure = await ask(entry, facts.request(entry.id))
        if failure is None and decision is not None:
            target, failure = await accept(ctx, facts, entry, decision)
            if target is not None:
                if trace is not None:
                    reason = clip(decision.reason) or None
                    trace.verdict(
                        entry.id, decision.kind, started, target=decision.target,
                        target_model=decision.target_model, reason=reason,
                    )
                    trace.decision = describe(ctx, entry.id, decision, target)
                    ctx.extra_response_headers.append(trace.header())
                return Routed(target, trace)
        if failure is not None:
            chain.errors[entry.id] += 1
            log.warning("router %r skipped: %s", entry.id, failure)
        if trace is not None:
            trace.verdict(entry.id, "decline" if failure is None else "error", started, reason=failure)
    return Routed(None, trace)


async def ask(entry: LoadedRouter, req: RouteRequest) -> tuple[RouteDecision | None, str | None]:
    """The router's decision, or why it has none.

    Most routers decide without awaiting anything, so the coroutine's first step runs
    inline: no task, no event-loop turn. One that suspends is finished in a task within
    what is left of its timeout; past it, the task is cancelled and not waited for, so a
    router that ignores cancellation cannot stall the request.
    """
    started = time.perf_counter()
    try:
        coro = entry.router.route(req)
    except Exception as exc:  # a plain `def route` that raised
        return None, clip(f"raised {type(exc).__name__}: {exc}")
    if not asyncio.iscoroutine(coro):
        return None, "route() must be a coroutine function (async def)"
    try:
        pending = coro.send(None)
    except StopIteration as finished:
        return checked(finished.value)
    except (Exception, asyncio.CancelledError) as exc:  # CancelledError here is the router's own: nothing awaited yet
        return None, clip(f"raised {type(exc).__name__}: {exc}")
    task = asyncio.ensure_future(resume(coro, pending))
    left = max(0.0, entry.timeout_s - (time.perf_counter() - started))
    try:
        done, _ = await asyncio.wait((task,), timeout=left)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        return None, f"timed out after {entry.timeout_s * 1000:g} ms"
    if task.cancelled():
        return None, "route() was cancelled"
    error = task.exception()
    if error is not None:
        return None, clip(f"raised {type(error).__name__}: {error}")
    return checked(task.result())


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Go on driving a coroutine that ran inline until it suspended on `pending`: hand
    `pending` to the task now driving us, then delegate the rest with `yield from`."""
    try:
        yield pending
    except BaseException as exc:  # thrown in by the task (cancellation) while `pending` was awaited
        try:
            pending = coro.throw(exc)
        except StopIteration as finished:
            return finished.value
        return (yield from resume(coro, pending))
    return (yield from coro)


def checked(decision: Any) -> tuple[RouteDecision | None, str | None]:
    if decision is None:
        return None, None
    if not isinstance(decision, RouteDecision):
        return None, clip(f"returned {type(decision).__name__} instead of a RouteDecision or None")
    problem = decision_problem(decision)
    if problem is not None:
        return None, clip(f"malformed decision: {problem}")
    return decision, None


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def accept(
    ctx: RequestContext, facts: RequestFacts, entry: LoadedRouter, decision: RouteDecision
) -> tuple[ModelRoute | ExecutorCall | None, str | None]:
    """Turn a well-formed decision into a target, or say why it cannot be one."""
    runtime = ctx.runtime
    target = decision.target
    if decision.kind == "model":
        assert target is not None
        route = runtime.models.get(target) or await runtime.discovered_route(target)
        if route is None:
            return None, clip(f"decided unknown model {target!r}")
        if ctx.client is not None and not ctx.client.may_use(target):
            return None, clip(f"decided model {target!r}, which key {ctx.client.name!r} may not use")
        if not any(usable(d) for d in route.deployments):
            return None, clip(f"decided model {target!r}, which has no available deployment")
        ctx.requested_model = target  # the public model now served, as if mapped to it
        return route, None
    if decision.kind == "deployment":
        assert target is not None
        if target not in runtime.providers:
            return None, clip(f"decided unknown provider {target!r}")
        if target not in facts.available().providers:
            return None, clip(f"decided provider {target!r}, which has no available deployment")
        route = runtime.deployment_route(target, decision.target_model)
        if not any(usable(d) for d in route.deployments):
            return None, clip(f"decided provider {target!r}, which is unavailable")
        return route, None
    executor_id = target or entry.id
    executing = runtime.routers.by_id.get(executor_id)
    if executing is None:
        return None, clip(f"decided unknown executor router {executor_id!r}")
    if executor_id in facts.skip:
        return None, clip(f"decided executor {executor_id!r}, which issued this re-entered request")
    if executing.executor is None:
        return None, clip(f"decided executor {executor_id!r}, which does not implement Executor.execute")
    return ExecutorCall(executing, facts.request(executor_id)), None


def describe(
    ctx: RequestContext, router_id: str, decision: RouteDecision, target: ModelRoute | ExecutorCall
) -> dict[str, Any]:
    out: dict[str, Any] = {"by": router_id, "kind": decision.kind, "model": ctx.requested_model}
    if decision.kind == "deployment":
        out["provider"] = decision.target
        out["target_model"] = decision.target_model
    if isinstance(target, ModelRoute):
        out.update(route_summary(target))
    else:
        out["executor"] = target.entry.id
    return out


def clip(text: str) -> str:
    text = " ".join(text.split())  # one line: it goes into logs and a header
    return text if len(text) <= REASON_MAX else text[: REASON_MAX - 3] + "..."
