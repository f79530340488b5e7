"""Running the router chain for one request (SPEC section 6), between model mapping and
the normal resolution (proxy/resolve.py).

Routers run in descending priority, ties by ascending id, each within its timeout. A
router that declines (None) passes the request on; one that raises, times out, or decides
something malformed, unknown or unavailable is logged with its id and the reason, counted
in `RouterChain.errors`, and passes it on too. The first valid decision wins:

    model       → that public model's route; its strategy picks
    deployment  → a one-deployment route on that provider, running target_model
    executor    → an ExecutorCall: a plugin answers (modelway.proxy.executor)

No decision: the caller resolves the model as usual. With `x-modelway-debug: 1` (and, where
client keys are configured, a key with `debug: true`), each router's verdict and time and
the final route go into the `x-modelway-route` response header (`RouteTrace`).

Nothing here writes into the request: what the chain concluded comes back as a `Routed`.
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
from typing import TYPE_CHECKING, Any, Final

import orjson

from modelway.deployment import usable
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
from modelway.proxy.executor import ExecutorCall, InProcessGateway
from modelway.routes import ModelRoute

if TYPE_CHECKING:
    from modelway.asgi import App
    from modelway.proxy.incoming import Incoming
    from modelway.routers.chain import LoadedRouter, RouterChain
    from modelway.routes import ModelTable

log = logging.getLogger("modelway.routers")

ROUTE_HEADER = b"x-modelway-route"
HIDDEN_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization"})  # never shown to routers
REASON_MAX = 200


class RequestFacts:
    """What the RouteRequests of one request share, each made once and only when read."""

    __slots__ = ("_available", "_prompt_tokens", "app", "client", "headers", "model", "query", "request", "table")

    def __init__(self, request: Incoming, model: str, table: ModelTable, app: App) -> None:
        self.request = request
        self.model = model  # the requested model, after mapping
        self.table = table
        self.app = app  # the gateway, for executors' in-process calls
        self.headers = ReadOnlyMap({k: v for k, v in request.headers().items() if k not in HIDDEN_HEADERS})
        self.query = ReadOnlyMap(request.query())
        name = request.client.name if request.client is not None else None
        self.client = Client(key=name, consumer=name)
        self._available: Available | None = None
        self._prompt_tokens: int | None = None

    @property
    def skip(self) -> frozenset[str]:
        """Routers a re-entered request must not run."""
        return self.request.skip

    def body_copy(self) -> dict[str, Any]:
        copied: dict[str, Any] = orjson.loads(self.request.raw_body)  # a deep copy, faster than copy.deepcopy
        return copied

    def available(self) -> Available:
        if self._available is None:
            self._available = available_now(self.table)
        return self._available

    def prompt_tokens(self) -> int:
        if self._prompt_tokens is None:
            self._prompt_tokens = estimate_prompt_tokens(self.request.payload)
        return self._prompt_tokens

    def route_request(self, router_id: str) -> RouteRequest:
        """A fresh RouteRequest for one router; its `gateway` re-enters skipping that router."""
        request = self.request
        return RouteRequest.from_source(
            self,
            source_format=request.dialect,
            path=request.path,
            requested_model=self.model,
            original_model=request.original_model,
            stream=request.stream,
            headers=self.headers,
            query=self.query,
            client=self.client,
            gateway=InProcessGateway(request, router_id, self.headers, self.app),
        )


def available_now(table: ModelTable) -> Available:
    """Providers and public models with at least one usable deployment right now.

    Usability is `deployment.usable`, the same test the attempt loop applies. A provider no
    deployment uses (one configured only for routers) is counted available: nothing has
    shown it unhealthy.
    """
    used: set[str] = set()
    healthy: set[str] = set()
    models: dict[str, ModelInfo] = {}
    for name, route in table.models.items():
        live = [d for d in route.deployments if usable(d)]
        used.update(d.provider.name for d in route.deployments)
        if not live:
            continue
        providers = frozenset(d.provider.name for d in live)
        healthy |= providers
        contexts = [d.max_context for d in live]
        max_context = None if None in contexts else max(c for c in contexts if c is not None)
        models[name] = ModelInfo(name, providers, max_context)
    for route in table.router_routes.values():
        for d in route.deployments:
            used.add(d.provider.name)
            if usable(d):
                healthy.add(d.provider.name)
    idle = set(table.providers) - used
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


def wants_debug(request: Incoming) -> bool:
    if request.raw_headers.get(b"x-modelway-debug") != b"1":
        return False
    return request.client is None or request.client.key.debug


def route_summary(route: ModelRoute) -> dict[str, Any]:
    return {"route": route.name, "candidates": [d.name for d in route.deployments if usable(d)]}


@dataclass(slots=True)
class Routed:
    """What the chain concluded: a target (None: resolve as usual), the public model it
    serves (a `model` decision's, else the one asked for), and the debug trace."""

    target: Final[ModelRoute | ExecutorCall | None]
    model: Final[str]
    trace: Final[RouteTrace | None]


async def run_routers(
    request: Incoming, model: str, table: ModelTable, chain: RouterChain, app: App, trace: RouteTrace | None
) -> Routed:
    """Ask the routers in turn; `app` is the gateway itself, for executors' in-process calls."""
    facts = RequestFacts(request, model, table, app)
    for entry in chain.routers:
        if entry.id in request.skip:
            if trace is not None:
                trace.verdict(entry.id, "skipped", None, reason="it issued this re-entered request")
            continue
        started = time.perf_counter()
        decision, failure = await ask(entry, facts.route_request(entry.id))
        if failure is None and decision is not None:
            target, served, failure = await accept(facts, chain, entry, decision)
            if target is not None:
                if trace is not None:
                    reason = clip(decision.reason) or None
                    trace.verdict(
                        entry.id, decision.kind, started, target=decision.target,
                        target_model=decision.target_model, reason=reason,
                    )
                    trace.decision = describe(served, entry.id, decision, target)
                return Routed(target, served, trace)
        if failure is not None:
            chain.errors[entry.id] += 1
            log.warning("router %r skipped: %s", entry.id, failure)
        if trace is not None:
            trace.verdict(entry.id, "decline" if failure is None else "error", started, reason=failure)
    return Routed(None, model, trace)


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
    facts: RequestFacts, chain: RouterChain, entry: LoadedRouter, decision: RouteDecision
) -> tuple[ModelRoute | ExecutorCall | None, str, str | None]:
    """Turn a well-formed decision into a target and the public model it serves, or say
    why it cannot be one."""
    table, client, model = facts.table, facts.request.client, facts.model
    target = decision.target
    if decision.kind == "model":
        assert target is not None
        route = await table.find(target)
        if route is None:
            return None, model, clip(f"decided unknown model {target!r}")
        if client is not None and not client.may_use(target):
            return None, model, clip(f"decided model {target!r}, which key {client.name!r} may not use")
        if not any(usable(d) for d in route.deployments):
            return None, model, clip(f"decided model {target!r}, which has no available deployment")
        return route, target, None  # the public model now served, as if mapped to it
    if decision.kind == "deployment":
        assert target is not None
        if target not in table.providers:
            return None, model, clip(f"decided unknown provider {target!r}")
        if target not in facts.available().providers:
            return None, model, clip(f"decided provider {target!r}, which has no available deployment")
        route = table.deployment_route(target, decision.target_model)
        if not any(usable(d) for d in route.deployments):
            return None, model, clip(f"decided provider {target!r}, which is unavailable")
        return route, model, None
    executor_id = target or entry.id
    executing = chain.by_id.get(executor_id)
    if executing is None:
        return None, model, clip(f"decided unknown executor router {executor_id!r}")
    if executor_id in facts.skip:
        return None, model, clip(f"decided executor {executor_id!r}, which issued this re-entered request")
    if executing.executor is None:
        return None, model, clip(f"decided executor {executor_id!r}, which does not implement Executor.execute")
    return ExecutorCall(executing, facts.route_request(executor_id), chain.errors), model, None


def describe(
    model: str, router_id: str, decision: RouteDecision, target: ModelRoute | ExecutorCall
) -> dict[str, Any]:
    out: dict[str, Any] = {"by": router_id, "kind": decision.kind, "model": model}
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
