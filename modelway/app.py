"""The ASGI application: a thin dispatcher over plain ASGI callables, no framework on the
hot path. `create_app(runtime)` builds it; nothing is built at import time."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelway.asgi import Receive, Send
from modelway.config import load_config
from modelway.deployment import usable
from modelway.errors import GatewayError, MethodNotAllowed, clip
from modelway.exposition import build_registry
from modelway.proxy import pipeline
from modelway.proxy.body import BodyDeadline
from modelway.proxy.dialect import dialect_of
from modelway.proxy.responses import send_bytes, send_error, send_json
from modelway.runtime import Runtime, RuntimeRef

log = logging.getLogger("modelway")

GC_THRESHOLD = 50_000
ALLOW_POST = {"Allow": "POST"}
ALLOW_GET = {"Allow": "GET, HEAD"}

Handler = Callable[[Runtime, dict[str, Any], Send], Awaitable[None]]


async def health(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    await send_json(send, 200, {"status": "ok"})


async def ready(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    configured = sum(len(route.deployments) for route in runtime.models.values())
    healthy = runtime.table.healthy_deployments()
    if healthy or (not configured and runtime.discovery.enabled):
        await send_json(send, 200, {"status": "ready", "models": len(runtime.models), "healthy_deployments": healthy})
    elif not configured:
        await send_json(send, 503, {"status": "not ready", "reason": "no deployment is configured"})
    else:
        unhealthy = sorted({d.provider.name for r in runtime.models.values() for d in r.deployments if not usable(d)})
        reason = f"no healthy deployment (unavailable providers: {', '.join(unhealthy)})"
        await send_json(send, 503, {"status": "not ready", "reason": reason})


async def list_models(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    if runtime.client_keys.enabled:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = runtime.client_keys.identify(headers.get("authorization"), headers.get("x-api-key"))
    else:
        client = None
    created = runtime.created
    data: list[dict[str, Any]] = [
        {"id": name, "object": "model", "created": created, "owned_by": "modelway"} for name in runtime.models
    ]
    seen = set(runtime.models)
    for entry in await runtime.discovery.entries():
        if entry["id"] not in seen:
            seen.add(entry["id"])
            data.append(entry)
    if client is not None:
        data = [m for m in data if client.may_use(m["id"])]
    await send_json(send, 200, {"object": "list", "data": data})


async def metrics(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    registry = build_registry(runtime.metrics, lambda: runtime)
    body = generate_latest(registry)
    await send_bytes(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])


GET_ROUTES: dict[str, Handler] = {
    "/metrics": metrics,
    "/health": health,
    "/ready": ready,
    "/v1/models": list_models,
    "/models": list_models,
}


class Gateway:
    def __init__(self, ref: RuntimeRef) -> None:
        self.ref = ref

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        runtime = self.ref.current
        method = scope["method"]
        path = scope["path"]
        if method == "POST" and path not in GET_ROUTES:
            await pipeline.handle(runtime, scope, receive, send)
            return
        try:
            handler = GET_ROUTES.get(path)
            if handler is None:  # any other path is routed by POST (SPEC section 3)
                raise MethodNotAllowed(f"{clip(path)} accepts POST, not {method}", headers=ALLOW_POST)
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{path} accepts GET and HEAD, not {method}", headers=ALLOW_GET)
            await handler(runtime, scope, send)
        except GatewayError as exc:
            await send_error(send, exc, dialect_of(path))

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.ref.current.start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.ref.current.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def tune_gc() -> None:
    """Keep the cyclic GC off the hot path: everything built at startup is frozen out of
    its scans, and young collections run every GC_THRESHOLD allocations instead of 700,
    since a request allocates many short-lived objects and few cycles."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, gen1, gen2)


def create_app(runtime: Runtime) -> Gateway:
    return Gateway(RuntimeRef(runtime))


def app_from_env() -> Gateway | BodyDeadline:
    """uvicorn's factory: each worker process builds its own app from MODELWAY_CONFIG."""
    runtime = Runtime(load_config(os.environ.get("MODELWAY_CONFIG") or None))
    app = create_app(runtime)
    if os.environ.get("MODELWAY_HTTP") == "uvicorn":  # its protocol waits for a body for ever
        return BodyDeadline(app, runtime.config.server.body_timeout_s)
    return app
