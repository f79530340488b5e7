"""One proxied request, top to bottom. Each stage returns the value the next one reads, and
none changes what an earlier one made:

    parse     (incoming.py)  scope, body → Incoming: path, dialect, parsed body, headers, client
    map       (resolve.py)   Incoming → the requested public model
    admit     (admission.py) forward auth, the key's rpm/tpm (only when configured) → Incoming, Ticket
    resolve   (resolve.py)   authorize → router plugins (decide.py) → model table → Resolved:
                             a route or a plugin's ExecutorCall, the public model, answer headers
    attempt   (attempts.py)  retries, fallbacks, hedging over exchanges (exchange.py) → Answer
    relay     (relay.py)     Answer → the client, and the metrics

A plugin's executor answers instead of attempt and relay (executor.py); it gets the way back
into the gateway, this module's `handle` bound to the runtime, as a parameter. `handle` is
the only code that holds the Runtime: each stage gets the few parts of it it needs.

Request-side stages may end the request with a GatewayError; once relay starts the status
is sent and only the body remains. The work is cancelled the moment the client
disconnects, so the upstream request is abandoned at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from modelway.errors import BadRequest, GatewayError, clip
from modelway.http1.cycle import DISCONNECT_EXTENSION
from modelway.proxy.attempts import attempt
from modelway.proxy.body import ClientGone
from modelway.proxy.dialect import Dialect, dialect_of
from modelway.proxy.executor import ExecutorCall
from modelway.proxy.incoming import REENTRY, parse
from modelway.proxy.relay import CLIENT_CLOSED, relay
from modelway.proxy.resolve import NO_HEADERS, requested_model, resolve
from modelway.proxy.responses import send_error
from modelway.proxy.translated import relay_translated
from modelway.proxy.unexpected import answer_unexpected

if TYPE_CHECKING:
    from modelway.asgi import Receive, Scope, Send
    from modelway.proxy.admission import Ticket
    from modelway.proxy.incoming import Incoming
    from modelway.proxy.settings import ProxySettings
    from modelway.routes import ModelRoute
    from modelway.runtime import Runtime

# Without the server's disconnect extension (an executor's in-process call, or another
# ASGI server), disconnects are noticed at once after this; earlier, within it.
WATCH_AFTER_S = 0.02


async def handle(runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    settings = runtime.proxy
    try:
        request = await parse(
            scope, receive, max_body_bytes=runtime.max_body_bytes, client_keys=runtime.client_keys,
            model_key=settings.model_key,
        )
    except ClientGone:
        return
    except GatewayError as exc:
        await refuse(settings, send, exc, dialect_of(scope["path"]), "", path=scope["path"])
        return
    except Exception as exc:
        await answer_unexpected(settings, "", exc, send, dialect_of(scope["path"]))
        log_refusal(settings, scope["path"], None, "", 500, "internal_error")
        return
    model = ""
    ticket: Ticket | None = None
    try:
        model = requested_model(request, runtime.mapper, runtime.table.default_model)
        gate = runtime.gate
        if gate is not None and REENTRY not in scope:  # an executor's call was admitted as its caller
            request, ticket = await gate.admit(request, model)
        routers = runtime.routers
        app = partial(handle, runtime) if routers.routers else None  # executors' way back in
        resolved = await resolve(request, model, runtime.table, routers, app)
    except GatewayError as exc:
        if ticket is not None:
            ticket.refund()
        await refuse(settings, send, exc, request.dialect, model, request=request)
        return
    except Exception as exc:
        await answer_unexpected(settings, model, exc, send, request.dialect)
        log_refusal(settings, request.path, request, model, 500, "internal_error")
        return
    target = resolved.target
    if request.stream and not isinstance(target, ExecutorCall) and target.config.passthrough_url is not None:
        error = BadRequest(
            f"model {clip(resolved.model)!r} passes its answers through a service that needs the whole answer: "
            "send this request with stream false", param="stream", code="stream_not_supported")
        if ticket is not None:
            ticket.refund()
        await refuse(settings, send, error, request.dialect, resolved.model, resolved.headers, request=request)
        return
    if isinstance(target, ExecutorCall):
        if settings.access is None:
            work = target.run(request, resolved.headers, send)
        else:
            work = logged_executor(settings, request, resolved.model, target, resolved.headers, send)
    else:
        work = proxy(settings, request, resolved.model, target, resolved.headers, send, ticket)
    await run_until_disconnect(work, scope, receive)


async def proxy(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    route: ModelRoute,
    headers: Sequence[tuple[bytes, bytes]],
    send: Send,
    ticket: Ticket | None = None,
) -> None:
    try:
        answer = await attempt(settings, request, model, route)
    except GatewayError as exc:
        if ticket is not None:
            ticket.refund()
        await refuse(settings, send, exc, request.dialect, model, headers, request=request)
        return
    except Exception as exc:
        await answer_unexpected(settings, model, exc, send, request.dialect, headers)
        log_refusal(settings, request.path, request, model, 500, "internal_error")
        return
    if answer.translation is None:
        await relay(settings, request, model, headers, answer, send, ticket)
    else:
        await relay_translated(settings, request, model, headers, answer, send, ticket)


async def refuse(
    settings: ProxySettings,
    send: Send,
    error: GatewayError,
    dialect: Dialect,
    model: str,
    headers: Sequence[tuple[bytes, bytes]] = NO_HEADERS,
    *,
    request: Incoming | None = None,
    path: str = "",
) -> None:
    """An answer modelway gives itself: counted, logged, then sent in the client's dialect."""
    settings.metrics.rejected(settings.metric_model(model), error.status)
    attempts = error.headers.get("x-modelway-attempts")
    log_refusal(settings, request.path if request is not None else path, request, model, error.status,
                error.code or type(error).__name__, int(attempts) if attempts else 0)
    await send_error(send, error, dialect, headers)


async def logged_executor(
    settings: ProxySettings,
    request: Incoming,
    model: str,
    call: ExecutorCall,
    headers: Sequence[tuple[bytes, bytes]],
    send: Send,
) -> None:
    """A router plugin's own answer, in the access log too (provider "router:<id>")."""
    started = time.monotonic()
    status = 0

    async def watched(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await call.run(request, headers, watched)
    finally:
        assert settings.access is not None
        settings.access.write({
            "method": "POST",
            "path": request.path,
            "status": status or CLIENT_CLOSED,
            "client": request.client.name if request.client is not None else None,
            "original_model": request.original_model,
            "model": settings.metric_model(model) or None,
            "provider": f"router:{call.entry.id}",
            "upstream_model": None,
            "attempts": 0,
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
            "ttft_ms": None,
            "input_tokens": None,
            "output_tokens": None,
            "cost_usd": None,
            "error": None if 0 < status < 400 else ("client_closed" if not status else f"executor_{status}"),
            "dialect": request.dialect,
        })


def log_refusal(
    settings: ProxySettings,
    path: str,
    request: Incoming | None,
    model: str,
    status: int,
    error: str,
    attempts: int = 0,
) -> None:
    if settings.tracing is not None:
        settings.tracing.refused(status, error)
    access = settings.access
    if access is None:
        return
    access.write({
        "method": "POST",
        "path": path,
        "status": status,
        "client": request.client.name if request is not None and request.client is not None else None,
        "original_model": request.original_model if request is not None else None,
        "model": settings.metric_model(model) or None,
        "provider": None,
        "upstream_model": None,
        "attempts": attempts,
        "duration_ms": None,
        "ttft_ms": None,
        "input_tokens": None,
        "output_tokens": None,
        "cost_usd": None,
        "error": error,
        "dialect": request.dialect if request is not None else None,
    })


class DisconnectWatch:
    """Cancels the request's task the moment the client disconnects.

    A watcher task waits on `receive()`, which uvicorn answers with http.disconnect when the
    client goes away (or once our response is complete: by then `finished` is set and the
    watcher is cancelled before it runs, as nothing awaits after the last send). Most
    answers are done within WATCH_AFTER_S, so the watcher is only started after that:
    short requests never pay for a task, and long ones are still cancelled at once.
    """

    __slots__ = ("disconnected", "finished", "loop", "receive", "task", "timer", "watcher")

    def __init__(self, task: asyncio.Task[Any], receive: Receive) -> None:
        self.task = task
        self.receive = receive
        self.finished = False
        self.disconnected = False
        self.loop = asyncio.get_running_loop()
        self.watcher: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(WATCH_AFTER_S, self.start)

    def start(self) -> None:
        self.timer = None
        if not self.finished:
            self.watcher = self.loop.create_task(self.watch())

    async def watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if not self.finished:
                    self.disconnected = True
                    self.task.cancel()
                return

    def stop(self) -> None:
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()


class DisconnectSignal(Protocol):
    """The `modelway.disconnect` ASGI extension of modelway's own server (http1/cycle.py)."""

    disconnected: bool

    def cancel_on_disconnect(self) -> None: ...


async def run_until_disconnect(work: Coroutine[Any, Any, None], scope: Scope, receive: Receive) -> None:
    """Run `work` in this task, cancelling it as soon as the client disconnects: by the
    server itself where it offers the extension, else by a DisconnectWatch."""
    extensions = scope.get("extensions")
    signal: DisconnectSignal | None = extensions.get(DISCONNECT_EXTENSION) if extensions else None
    watch: DisconnectWatch | None = None
    left: DisconnectSignal | DisconnectWatch  # which of the two tells whether the client left
    if signal is not None:
        signal.cancel_on_disconnect()
        left = signal
    else:
        task = asyncio.current_task()
        assert task is not None
        left = watch = DisconnectWatch(task, receive)
    try:
        await work
    except asyncio.CancelledError:
        if not left.disconnected:
            raise
        current = asyncio.current_task()
        assert current is not None
        current.uncancel()  # the client left: nothing to answer, nothing to propagate
    finally:
        if watch is not None:
            watch.stop()
