"""One proxied request, top to bottom:

    read body → check content type → parse JSON → check fields → identify client
    → map model → authorize → router plugins → resolve route → attempt (retry/fallback) → relay

A router plugin (proxy/decide.py) may pick the route, or answer itself (proxy/executor.py).

Request-side steps may end the request with a GatewayError; once relay starts the
status is sent and only the body remains. The work is cancelled the moment the client
disconnects, so the upstream request is abandoned at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from modelway.errors import BadRequest, GatewayError, NotFound, clip
from modelway.http1.cycle import DISCONNECT_EXTENSION
from modelway.proxy.attempts import Answer, attempt
from modelway.proxy.auth import authorize
from modelway.proxy.body import (
    ClientGone,
    Receive,
    check_content_type,
    check_fields,
    parse_json_object,
    read_body,
    read_model,
)
from modelway.proxy.context import RequestContext
from modelway.proxy.decide import run_routers
from modelway.proxy.executor import REENTRY, ExecutorCall
from modelway.proxy.forwarding import forwardable
from modelway.proxy.paths import forward_path, relative
from modelway.proxy.relay import relay
from modelway.proxy.responses import Send, send_error
from modelway.proxy.unexpected import answer_unexpected
from modelway.runtime import ModelRoute, Runtime

# Without the server's disconnect extension (an executor's in-process call, or another
# ASGI server), disconnects are noticed at once after this; earlier, within it.
WATCH_AFTER_S = 0.02

def is_anthropic_path(path: str) -> bool:
    return path.endswith("/messages") or "/messages/" in path


async def handle(runtime: Runtime, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    anthropic = is_anthropic_path(path)
    ctx: RequestContext | None = None
    try:
        forwarded = forward_path(path, scope.get("raw_path"))
        raw_headers: dict[bytes, bytes] = dict(scope["headers"])
        length = raw_headers.get(b"content-length")
        body = await read_body(receive, length.decode("latin-1") if length is not None else None,
                               runtime.max_body_bytes)
        content_type = raw_headers.get(b"content-type")
        check_content_type(content_type.decode("latin-1") if content_type is not None else None)
        payload = parse_json_object(body)
        ctx = RequestContext(
            runtime=runtime,
            scope=scope,
            path=path,
            upstream_path=relative(forwarded),
            payload=payload,
            raw_body=body,
            raw_headers=raw_headers,
            forward_headers=forwardable(scope["headers"], raw_headers),
            anthropic=anthropic,
        )
        ctx.stream = check_fields(payload, path)
        reentry = scope.get(REENTRY)  # an executor's in-process call: its caller's key applies
        if reentry is not None:
            ctx.client = reentry.client
        elif runtime.client_keys.enabled:
            ctx.client = runtime.client_keys.identify(ctx.header(b"authorization"), ctx.header(b"x-api-key"))
        route = await resolve_route(ctx)
    except ClientGone:
        return
    except GatewayError as exc:
        runtime.metrics.rejected(runtime.metric_model(ctx.requested_model if ctx is not None else ""), exc.status)
        await send_error(send, exc, anthropic, ctx.extra_response_headers if ctx is not None else ())
        return
    except Exception as exc:
        model, extra = (ctx.requested_model, ctx.extra_response_headers) if ctx is not None else ("", [])
        await answer_unexpected(runtime, model, exc, send, anthropic, extra)
        return
    work = route.run(ctx, send) if isinstance(route, ExecutorCall) else proxy(ctx, route, send)
    await run_until_disconnect(work, scope, receive)


async def proxy(ctx: RequestContext, route: ModelRoute, send: Send) -> None:
    try:
        answer: Answer = await attempt(ctx, route)
    except GatewayError as exc:
        ctx.runtime.metrics.rejected(ctx.runtime.metric_model(ctx.requested_model), exc.status)
        await send_error(send, exc, ctx.anthropic, ctx.extra_response_headers)
        return
    except Exception as exc:
        await answer_unexpected(ctx.runtime, ctx.requested_model, exc, send, ctx.anthropic, ctx.extra_response_headers)
        return
    await relay(ctx, answer, send)


async def resolve_route(ctx: RequestContext) -> ModelRoute | ExecutorCall:
    """Map the requested name, check the client may use it, let the routers decide, and
    otherwise find its route: public models, then discovered ones, then default_model."""
    runtime = ctx.runtime
    mapper = runtime.mapper
    default_model = runtime.config.routing.default_model
    original = read_model(ctx.payload, mapper.key_path)
    ctx.original_model = original
    if original is None:
        if default_model is None:
            where = ".".join(mapper.key_path)
            raise BadRequest(f"missing model: the request body has no '{where}'", param=where, code="missing_model")
        requested = default_model
    else:
        requested = mapper.map(original) if mapper.applies_to(ctx.path) else original
    ctx.requested_model = requested
    authorize(ctx.client, requested)
    routed = await run_routers(ctx)
    if routed.target is not None:
        return routed.target
    route = runtime.models.get(requested) or await runtime.discovered_route(requested)
    if route is None and default_model is not None:
        route = runtime.models[default_model]
    routed.note_resolution(ctx, route)
    if route is None:
        raise NotFound(f"model {clip(requested)!r} does not exist", param="model")
    return route


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


async def run_until_disconnect(work: Coroutine[Any, Any, None], scope: dict[str, Any], receive: Receive) -> None:
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
