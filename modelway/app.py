"""The ASGI application: a thin dispatcher over plain ASGI callables, no framework on the
hot path. `create_app(runtime)` builds it; nothing is built at import time."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelway import __version__
from modelway.admin import admin_config, admin_reload, admin_state
from modelway.adminauth import check_admin
from modelway.asgi import Receive, Send
from modelway.config import load_config
from modelway.config.secrets import config_secrets
from modelway.deployment import usable
from modelway.errors import GatewayError, MethodNotAllowed, NotFound, clip
from modelway.exposition import build_registry
from modelway.logs import redact_secrets, setup_logging
from modelway.proxy import pipeline
from modelway.proxy.auth import ClientIdentity
from modelway.proxy.body import BodyDeadline
from modelway.proxy.dialect import dialect_of
from modelway.proxy.responses import send_bytes, send_error, send_json
from modelway.reload import Reloader
from modelway.runtime import Runtime, RuntimeRef
from modelway.status import status
from modelway.workermetrics import DIR_ENV, SnapshotWriter, combined, others

log = logging.getLogger("modelway")

GC_THRESHOLD = 50_000
NO_STORE = (b"cache-control", b"no-store")
ALLOW_POST = {"Allow": "POST"}
ALLOW_GET = {"Allow": "GET, HEAD"}


class StatusPage:
    """The page's HTML, shipped in the package and read once."""

    def __init__(self) -> None:
        self.html: bytes | None = None

    def read(self) -> bytes:
        if self.html is None:
            self.html = resources.files("modelway").joinpath("status.html").read_bytes()
        return self.html


STATUS_PAGE = StatusPage()

Handler = Callable[[Runtime, dict[str, Any], Send], Awaitable[None]]


async def health(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    await send_json(send, 200, {"status": "ok"})


async def ready(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    if runtime.draining:
        await send_json(send, 503, {"status": "not ready", "reason": "draining: the gateway is shutting down"})
        return
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


async def root(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    """Clients such as Claude Code probe `HEAD /` before their first request."""
    await send_json(send, 200, {"name": "modelway", "version": __version__})


def model_client(runtime: Runtime, scope: dict[str, Any]) -> ClientIdentity | None:
    """The client key of a models request (401 when keys are enforced and it has none)."""
    if not runtime.client_keys.enabled:
        return None
    headers = dict(scope["headers"])
    authorization, api_key = headers.get(b"authorization"), headers.get(b"x-api-key")
    return runtime.client_keys.identify(
        authorization.decode("latin-1") if authorization is not None else None,
        api_key.decode("latin-1") if api_key is not None else None,
    )


async def model_entries(runtime: Runtime, client: ClientIdentity | None) -> list[dict[str, Any]]:
    """Every public model, then every discovered one not already listed, as OpenAI model objects."""
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
    return data


async def list_models(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    data = await model_entries(runtime, model_client(runtime, scope))
    await send_json(send, 200, {"object": "list", "data": data})


async def retrieve_model(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    """GET /v1/models/{id}: the one model object (the openai SDK's `models.retrieve`).
    Model ids may hold slashes ("Qwen/Qwen2.5-7B"), so the id is the whole rest of the path."""
    path: str = scope["path"]
    model_id = path[len(MODELS_PREFIX_V1):] if path.startswith(MODELS_PREFIX_V1) else path[len(MODELS_PREFIX):]
    for entry in await model_entries(runtime, model_client(runtime, scope)):
        if entry["id"] == model_id:
            await send_json(send, 200, entry)
            return
    raise NotFound(f"model {clip(model_id)!r} does not exist", param="model", code="model_not_found")


MODELS_PREFIX_V1 = "/v1/models/"
MODELS_PREFIX = "/models/"


async def status_page(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    check_admin(runtime.config.auth.admin_key, dict(scope["headers"]).get(b"authorization"))
    await send_bytes(send, 200, STATUS_PAGE.read(), [(b"content-type", b"text/html; charset=utf-8"), NO_STORE])


async def status_json(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    check_admin(runtime.config.auth.admin_key, dict(scope["headers"]).get(b"authorization"))
    await send_json(send, 200, status(runtime), [NO_STORE])


async def metrics(runtime: Runtime, scope: dict[str, Any], send: Send) -> None:
    shared = os.environ.get(DIR_ENV)
    if shared:  # --workers N: every worker's figures
        total, extra = combined(runtime.metrics, others(Path(shared), os.getpid()))
        registry = build_registry(total, lambda: runtime, extra)
    else:
        registry = build_registry(runtime.metrics, lambda: runtime)
    body = generate_latest(registry)
    await send_bytes(send, 200, body, [(b"content-type", CONTENT_TYPE_LATEST.encode())])


GET_ROUTES: dict[str, Handler] = {
    "/": root,
    "/metrics": metrics,
    "/ui": status_page,
    "/ui/": status_page,
    "/ui/status.json": status_json,
    "/health": health,
    "/ready": ready,
    "/v1/models": list_models,
    "/models": list_models,
}


ADMIN_ROUTES: dict[str, Handler] = {
    "/admin/state": admin_state,
    "/admin/config": admin_config,
}
RELOAD_PATH = "/admin/reload"
LOCAL_PATHS = frozenset({*GET_ROUTES, *ADMIN_ROUTES, RELOAD_PATH})  # never proxied, whatever the method


class Gateway:
    def __init__(self, ref: RuntimeRef, reloader: Reloader | None = None) -> None:
        self.ref = ref
        self.reloader = reloader or Reloader(ref, None)
        self.snapshots: SnapshotWriter | None = None

    def begin_drain(self) -> None:
        """Called by modelway's server protocol when a graceful shutdown begins (SIGTERM/SIGINT)."""
        self.ref.current.draining = True

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
        if method == "POST" and path not in LOCAL_PATHS:
            runtime.active += 1  # a runtime replaced by a reload closes once this is back to 0
            try:
                if runtime.tracing is None:
                    await pipeline.handle(runtime, scope, receive, send)
                else:
                    await runtime.tracing.request(pipeline.handle, scope, runtime, scope, receive, send)
            finally:
                runtime.active -= 1
            return
        try:
            if path == RELOAD_PATH:
                if method != "POST":
                    raise MethodNotAllowed(f"{path} accepts POST, not {method}", headers=ALLOW_POST)
                await admin_reload(runtime, scope, send, self.reloader)
                return
            handler = GET_ROUTES.get(path) or ADMIN_ROUTES.get(path)
            if handler is None and path.startswith((MODELS_PREFIX_V1, MODELS_PREFIX)) and path[-1] != "/":
                handler = retrieve_model
            if handler is None:  # any other path is routed by POST (SPEC section 3)
                raise MethodNotAllowed(f"{clip(path)} accepts POST, not {method}", headers=ALLOW_POST)
            if method not in ("GET", "HEAD"):
                raise MethodNotAllowed(f"{clip(path)} accepts GET and HEAD, not {method}", headers=ALLOW_GET)
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
                if self.ref.current.config.server.watch_config:
                    self.reloader.watch()
                shared = os.environ.get(DIR_ENV)
                if shared:
                    self.snapshots = SnapshotWriter(Path(shared), lambda: self.ref.current)
                    self.snapshots.start()
                tune_gc()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.snapshots is not None:
                    await self.snapshots.stop()
                await self.reloader.close()
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


def create_app(runtime: Runtime, config_path: str | None = None) -> Gateway:
    ref = RuntimeRef(runtime)
    return Gateway(ref, Reloader(ref, config_path))


def app_from_env() -> Gateway | BodyDeadline:
    """uvicorn's factory: each worker process builds its own app from MODELWAY_CONFIG."""
    setup_logging()  # a worker process: the main one's level and format, from the environment
    path = os.environ.get("MODELWAY_CONFIG") or None
    config = load_config(path)
    redact_secrets(config_secrets(config))
    app = create_app(Runtime(config), path)
    if os.environ.get("MODELWAY_HTTP") == "uvicorn":  # its protocol waits for a body for ever
        return BodyDeadline(app, config.server.body_timeout_s)
    return app
