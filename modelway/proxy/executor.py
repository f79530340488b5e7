"""Answers that router plugins make themselves (`RouteDecision(kind="executor")`), and the
in-process way back into the gateway that executors use (`req.gateway`).

An executor's `Response` is sent whole; a `StreamResponse` is relayed event by event as
SSE, each as soon as the plugin yields it. A failure before anything was sent is a 502
(or the plugin's own GatewayError); a stream that breaks later ends with an SSE error
event. Both are logged with the router's id and counted as that router's errors.

Re-entry: `InProcessGateway.execute` runs a request through `pipeline.handle` with a
scope of its own (no socket). The scope carries a `Reentry` under a key that only
in-process calls can set: the routers to skip (the issuer, plus any skipped already, so a
chain of executors ends) and the caller's client key, which still applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from modelway.errors import AllAttemptsFailed, GatewayError
from modelway.plugins import GatewayClient, ReadOnlyMap, Response, RouteRequest, StreamResponse
from modelway.providers.base import RESPONSE_SKIP
from modelway.proxy.responses import Send, send_bytes, send_error, sse_error_event

if TYPE_CHECKING:
    from modelway.proxy.auth import ClientIdentity
    from modelway.proxy.context import RequestContext
    from modelway.routers.chain import LoadedRouter

log = logging.getLogger("modelway.routers")

REENTRY = "modelway.reentry"  # ASGI scope key; HTTP clients cannot set scope keys
ROUTER_HEADER = b"x-modelway-router"
# Set by the gateway on executor answers: a plugin's own (e.g. copied from a re-entered answer) are dropped.
GATEWAY_OWNED = frozenset({ROUTER_HEADER, b"x-modelway-route"})
JSON_TYPE = b"application/json"
SSE_TYPE = b"text/event-stream"
END = object()


@dataclass(frozen=True, slots=True)
class Reentry:
    skip: frozenset[str]
    client: ClientIdentity | None


@dataclass(slots=True)
class ExecutorCall:
    """A decision that a plugin answers: `entry`'s `execute`."""

    entry: LoadedRouter
    request: RouteRequest

    async def run(self, ctx: RequestContext, send: Send) -> None:
        executor = self.entry.executor
        assert executor is not None  # decide.accept checked it
        headers = [(ROUTER_HEADER, self.entry.id.encode()), *ctx.extra_response_headers]
        events: AsyncIterator[Mapping[str, Any]] | None = None
        try:
            answer = await executor.execute(self.request)
            if isinstance(answer, StreamResponse):
                events = aiter(answer.events)
                first = await anext(events, END)
                head = plugin_headers(answer.headers, SSE_TYPE)
            elif isinstance(answer, Response):
                body = answer.content()
                head = plugin_headers(answer.headers, JSON_TYPE)
            else:
                raise TypeError(f"execute() returned {type(answer).__name__}, not a Response or StreamResponse")
        except GatewayError as exc:
            await send_error(send, exc, ctx.anthropic, headers)
            return
        except Exception as exc:
            self.failed(ctx, exc)
            error = AllAttemptsFailed(f"router {self.entry.id!r} could not answer this request", code="executor_failed")
            await send_error(send, error, ctx.anthropic, headers)
            return
        if events is None:
            await send_bytes(send, answer.status, body, [*head, *headers])
            return
        start = {"type": "http.response.start", "status": answer.status, "headers": [*head, *headers]}
        await self.relay_events(ctx, start, events, first, send)

    async def relay_events(
        self, ctx: RequestContext, start: dict[str, Any], events: AsyncIterator[Mapping[str, Any]], first: Any,
        send: Send,
    ) -> None:
        event = first
        try:
            await send(start)
            while event is not END:
                await send({"type": "http.response.body", "body": sse_event(event, ctx.anthropic), "more_body": True})
                event = await anext(events, END)
        except Exception as exc:
            self.failed(ctx, exc)
            error = AllAttemptsFailed(f"router {self.entry.id!r} stream broke off", code="executor_failed")
            tail = sse_error_event(error, ctx.anthropic)
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()  # also on client disconnect: the plugin's generator cleans up
        tail = b"" if ctx.anthropic else b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def failed(self, ctx: RequestContext, exc: Exception) -> None:
        ctx.runtime.routers.errors[self.entry.id] += 1
        log.warning("router %r executor failed: %s: %s", self.entry.id, type(exc).__name__, str(exc)[:200])


def sse_event(event: Any, anthropic: bool) -> bytes:
    if not isinstance(event, Mapping):
        raise TypeError(f"stream events must be dicts, not {type(event).__name__}")
    data = orjson.dumps(event if isinstance(event, dict) else dict(event))
    kind = event.get("type") if anthropic else None
    if isinstance(kind, str):
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


def plugin_headers(headers: Mapping[str, str] | None, content_type: bytes) -> list[tuple[bytes, bytes]]:
    """A plugin's response headers, minus hop-by-hop ones, the gateway's own and any that
    would split the head."""
    out: list[tuple[bytes, bytes]] = []
    typed = False
    for key, value in (headers or {}).items():
        name, text = str(key).lower(), str(value)
        if not name.isascii() or any(c in name + text for c in "\r\n\0"):
            continue
        if name.encode() in RESPONSE_SKIP or name.encode() in GATEWAY_OWNED:
            continue
        typed = typed or name == "content-type"
        out.append((name.encode(), text.encode("latin-1", "replace")))
    if not typed:
        out.insert(0, (b"content-type", content_type))
    return out


class InProcessGateway(GatewayClient):
    """`req.gateway` on the RouteRequests modelway builds: see `GatewayClient.execute`."""

    __slots__ = ("_ctx", "_headers", "_issuer", "_skip")

    def __init__(self, ctx: RequestContext, issuer: str, skip: frozenset[str], headers: ReadOnlyMap) -> None:
        self._ctx = ctx
        self._issuer = issuer
        self._skip = skip
        self._headers = headers  # the original request's, without its credentials

    async def execute(
        self,
        request: RouteRequest | Mapping[str, Any],
        *,
        path: str | None = None,
        skip_router: str | Iterable[str] | None = None,
    ) -> Response:
        from modelway.proxy import pipeline  # pipeline imports this module (through decide)

        ctx = self._ctx
        if isinstance(request, RouteRequest):
            body: Mapping[str, Any] = request.body
            headers, query = request.headers, request.query
            path = path or request.path
        else:
            body, headers, query = request, self._headers, ReadOnlyMap(ctx.query)
            path = path or ctx.path
        named = {skip_router} if isinstance(skip_router, str) else set(skip_router or ())
        raw = orjson.dumps(body if isinstance(body, dict) else dict(body))
        path = path if path.startswith("/") else "/" + path
        scope: dict[str, Any] = {
            **{k: ctx.scope[k] for k in ("asgi", "http_version", "scheme", "server", "client") if k in ctx.scope},
            "type": "http",
            "method": "POST",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(list(query.items())).encode(),
            "headers": [
                *((k.encode("latin-1", "replace"), v.encode("latin-1", "replace")) for k, v in headers.items()
                  if k not in ("content-type", "content-length", "transfer-encoding")),
                (b"content-type", JSON_TYPE),
                (b"content-length", str(len(raw)).encode()),
            ],
            REENTRY: Reentry(self._skip | {self._issuer} | named, ctx.client),
        }
        reply = Collected(raw)
        await pipeline.handle(ctx.runtime, scope, reply.receive, reply.send)
        return reply.response()


class Collected:
    """The ASGI side of an in-process call: hands over the body once, keeps what is sent."""

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body
        self._never = asyncio.Event()
        self.status = 500
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []

    async def receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._never.wait()  # an in-process caller never disconnects; it is cancelled instead
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            self.chunks.append(message.get("body", b""))

    def response(self) -> Response:
        body = b"".join(self.chunks)
        parsed: Any = None
        if "json" in self.headers.get("content-type", ""):
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
        return Response(status=self.status, json=parsed, body=body, headers=self.headers)
