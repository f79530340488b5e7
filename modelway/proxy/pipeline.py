"""One proxied request, top to bottom:

    read body → check content type → parse JSON → check fields → identify client
    → map model → authorize → router plugins → resolve route → attempt (retry/fallback) → relay

A router plugin (proxy/decide.py) may pick the route, or answer itself (proxy/executor.py).

Request-side steps may end the request with a GatewayError; once relay starts the
status is sent and only the body remains. A watcher cancels the work the moment the
client disconnects, so the upstream request is abandoned at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from modelway.errors import BadRequest, GatewayError, NotFound
from modelway.providers.base import HOP_BY_HOP
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
from modelway.proxy.relay import relay
from modelway.proxy.responses import Send, send_error
from modelway.runtime import ModelRoute, Runtime

# Client headers never sent upstream: hop-by-hop ones, the client's own credentials,
# and ones modelway sets itself.
NOT_FORWARDED = HOP_BY_HOP | {
    b"authorization",
    b"x-api-key",
    b"accept-encoding",
    b"content-type",
    b"expect",
}


def split_headers(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], list[tuple[bytes, bytes]]]:
    """All client headers (lower-case names, decoded), and the raw pairs fit to forward —
    kept as bytes, since they go out as bytes."""
    headers: dict[str, str] = {}
    forward: list[tuple[bytes, bytes]] = []
    for name, value in raw:
        headers[name.decode("latin-1")] = value.decode("latin-1")
        if name not in NOT_FORWARDED and not name.startswith(b"x-modelway-"):
            forward.append((name, value))
    return headers, forward


def upstream_path(path: str) -> str:
    """The path relative to a provider's base_url: "/v1/chat/completions" → "chat/completions"."""
    if path.startswith("/v1/"):
        return path[4:]
    return path.lstrip("/")


def is_anthropic_path(path: str) -> bool:
    return path.endswith("/messages") or "/messages/" in path


async def handle(runtime: Runtime, scope: dict[str, Any], receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    anthropic = is_anthropic_path(path)
    ctx: RequestContext | None = None
    try:
        headers, forward = split_headers(scope["headers"])
        body = await read_body(receive, headers.get("content-length"), runtime.max_body_bytes)
        check_content_type(headers.get("content-type"))
        payload = parse_json_object(body)
        ctx = RequestContext(
            runtime=runtime,
            scope=scope,
            path=path,
            upstream_path=upstream_path(path),
            payload=payload,
            raw_body=body,
            headers=headers,
            forward_headers=forward,
            anthropic=anthropic,
        )
        ctx.stream = check_fields(payload, path)
        reentry = scope.get(REENTRY)  # an executor's in-process call: its caller's key applies
        if reentry is not None:
            ctx.client = reentry.client
        elif runtime.client_keys.enabled:
            ctx.client = runtime.client_keys.identify(headers.get("authorization"), headers.get("x-api-key"))
        route = await resolve_route(ctx)
    except ClientGone:
        return
    except GatewayError as exc:
        runtime.metrics.rejected(ctx.requested_model if ctx is not None else "", exc.status)
        await send_error(send, exc, anthropic, ctx.extra_response_headers if ctx is not None else ())
        return
    work = route.run(ctx, send) if isinstance(route, ExecutorCall) else proxy(ctx, route, send)
    await run_until_disconnect(work, receive)


async def proxy(ctx: RequestContext, route: ModelRoute, send: Send) -> None:
    try:
        answer: Answer = await attempt(ctx, route)
    except GatewayError as exc:
        ctx.runtime.metrics.rejected(ctx.requested_model, exc.status)
        await send_error(send, exc, ctx.anthropic, ctx.extra_response_headers)
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
        raise NotFound(f"model {requested!r} does not exist", param="model")
    return route


async def run_until_disconnect(work: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run `work` in this task, cancelling it as soon as the client disconnects.

    One watcher task waits on `receive()`; uvicorn answers it with http.disconnect when the
    client goes away, or once our response is complete — by then `finished` is set, and
    the watcher is cancelled before it can run, as nothing awaits after the last send.
    """
    task = asyncio.current_task()
    assert task is not None
    state = {"finished": False, "disconnected": False}

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not state["finished"]:
                    state["disconnected"] = True
                    task.cancel()
                return

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not state["disconnected"]:
            raise
        task.uncancel()  # the client left: nothing to answer, nothing to propagate
    finally:
        state["finished"] = True
        watcher.cancel()
