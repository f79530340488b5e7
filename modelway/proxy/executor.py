"""Answers that router plugins make themselves (`RouteDecision(kind="executor")`), and the
in-process way back into the gateway that executors use (`req.gateway`).

An executor's `Response` is sent whole; a `StreamResponse` is relayed event by event as
SSE, each as soon as the plugin yields it. A failure before anything was sent is a 502
(or the plugin's own GatewayError); a stream that breaks later ends with an SSE error
event. Both are logged with the router's id and counted as that router's errors.

Re-entry: `InProcessGateway.execute` runs a request through the gateway — the ASGI app it
was given, `pipeline.handle` bound to the runtime — with a scope of its own (no socket).
The scope carries a `Reentry` (proxy/incoming.py) under a key that only in-process calls
can set: the routers to skip (the issuer, plus any skipped already, so a chain of executors
ends) and the caller's client key, which still applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from modelway.errors import AllAttemptsFailed, GatewayError
from modelway.plugins import GatewayClient, ReadOnlyMap, Response, RouteRequest, StreamResponse
from modelway.providers.base import RESPONSE_SKIP
from modelway.proxy.dialect import OPENAI, Dialect
from modelway.proxy.incoming import REENTRY, Reentry
from modelway.proxy.responses import send_bytes, send_error, sse_error_event

if TYPE_CHECKING:
    from modelway.asgi import App, Send
    from modelway.proxy.incoming import Incoming
    from modelway.routers.chain import LoadedRouter

log = logging.getLogger("modelway.routers")

ROUTER_HEADER = b"x-modelway-router"
# Set by the gateway on executor answers: a plugin's own (e.g. copied from a re-entered answer) are dropped.
GATEWAY_OWNED = frozenset({ROUTER_HEADER, b"x-modelway-route"})
JSON_TYPE = b"application/json"
SSE_TYPE = b"text/event-stream"
END = object()
IN_PROCESS_ASGI = {"version": "3.0", "spec_version": "2.3"}


@dataclass(frozen=True, slots=True)
class ExecutorCall:
    """A decision that a plugin answers: `entry`'s `execute`. Its failures count in
    `errors`, the router chain's counter."""

    entry: LoadedRouter
    request: RouteRequest
    errors: Counter[str]

    async def run(self, request: Incoming, extra_headers: Sequence[tuple[bytes, bytes]], send: Send) -> None:
        executor = self.entry.executor
        assert executor is not None  # decide.accept checked it
        dialect = request.dialect
        headers = [(ROUTER_HEADER, self.entry.id.encode()), *extra_headers]
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
            await send_error(send, exc, dialect, headers)
            return
        except Exception as exc:
            self.failed(exc)
            error = AllAttemptsFailed(f"router {self.entry.id!r} could not answer this request", code="executor_failed")
            await send_error(send, error, dialect, headers)
            return
        if events is None:
            await send_bytes(send, answer.status, body, [*head, *headers])
            return
        start = {"type": "http.response.start", "status": answer.status, "headers": [*head, *headers]}
        await self.relay_events(dialect, start, events, first, send)

    async def relay_events(
        self, dialect: Dialect, start: dict[str, Any], events: AsyncIterator[Mapping[str, Any]], first: Any,
        send: Send,
    ) -> None:
        event = first
        try:
            await send(start)
            while event is not END:
                await send({"type": "http.response.body", "body": sse_event(event, dialect), "more_body": True})
                event = await anext(events, END)
        except Exception as exc:
            self.failed(exc)
            error = AllAttemptsFailed(f"router {self.entry.id!r} stream broke off", code="executor_failed")
            tail = sse_error_event(error, dialect)
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()  # also on client disconnect: the plugin's generator cleans up
        tail = b"data: [DONE]\n\n" if dialect == OPENAI else b""  # Anthropic and Responses streams have none
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def failed(self, exc: Exception) -> None:
        self.errors[self.entry.id] += 1
        log.warning("router %r executor failed: %s: %s", self.entry.id, type(exc).__name__, str(exc)[:200])


def sse_event(event: Any, dialect: Dialect) -> bytes:
    if not isinstance(event, Mapping):
        raise TypeError(f"stream events must be dicts, not {type(event).__name__}")
    data = orjson.dumps(event if isinstance(event, dict) else dict(event))
    kind = event.get("type") if dialect != OPENAI else None  # Anthropic's and Responses' events are named
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

    __slots__ = ("_app", "_headers", "_issuer", "_request")

    def __init__(self, request: Incoming, issuer: str, headers: ReadOnlyMap, app: App) -> None:
        self._request = request
        self._issuer = issuer
        self._headers = headers  # the original request's, without its credentials
        self._app = app  # the gateway: pipeline.handle bound to the runtime

    async def execute(
        self,
        request: RouteRequest | Mapping[str, Any],
        *,
        path: str | None = None,
        skip_router: str | Iterable[str] | None = None,
    ) -> Response:
        issuing = self._request
        if isinstance(request, RouteRequest):
            body: Mapping[str, Any] = request.body
            headers, query = request.headers, request.query
            path = path or request.path
        else:
            body, headers, query = request, self._headers, ReadOnlyMap(issuing.query())
            path = path or issuing.path
        named = {skip_router} if isinstance(skip_router, str) else set(skip_router or ())
        raw = orjson.dumps(body if isinstance(body, dict) else dict(body))
        path = path if path.startswith("/") else "/" + path
        scope: dict[str, Any] = {
            "asgi": IN_PROCESS_ASGI,
            "http_version": "1.1",
            "scheme": "http",
            "server": None,
            "client": issuing.peer,
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
            REENTRY: Reentry(issuing.skip | {self._issuer} | named, issuing.client),
        }
        reply = Collected(raw)
        await self._app(scope, reply.receive, reply.send)
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
