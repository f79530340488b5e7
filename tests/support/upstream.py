"""A test upstream of our own: an aiohttp server speaking the OpenAI wire format
(JSON and SSE), with failures on demand — error statuses, slowness, dropped connections
and streams that break. It runs in a thread with its own event loop and records every
request it receives."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from support.threaded import ThreadedServer


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    peer: tuple[str, int] | None = None  # the client's address: tells connections apart
    raw_path: str = ""  # the request target as it came, percent-encoding and query included
    raw_body: bytes = b""  # the body's bytes as they came
    at: float = field(default_factory=time.monotonic)  # when it was read (in engine mode: when it got a slot)


@dataclass
class Behaviour:
    status: int = 200
    failures: int | None = None  # answer `status` to this many requests only, then 200
    delay_before_headers_s: float = 0.0
    drop: bool = False  # close the connection without answering
    chunks: int = 5  # stream chunks before finish
    chunk_gap_s: float = 0.0
    break_after: int | None = None  # stream: abort the connection after this many chunks
    retry_after: str | None = None
    error_body: dict[str, Any] | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    token_status: dict[str, int] = field(default_factory=dict)  # Authorization value → status
    header_status: dict[str, int] = field(default_factory=dict)  # header name present → status
    answer_fields: dict[str, Any] = field(default_factory=dict)  # added to a chat completion
    body_bytes: int = 0  # non-stream: a JSON answer of this many bytes, sent a MiB at a time
    line_bytes: int = 0  # stream: after the first chunk, a `data:` line this long that never ends
    raw_stream: list[bytes] | None = None  # stream: these bytes as they are, one write each, then the end


class Upstream(ThreadedServer):
    def __init__(
        self,
        name: str = "upstream",
        models: list[str] | None = None,
        keepalive_s: float = 75.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.ssl_context = ssl_context
        self.keepalive_s = keepalive_s
        self.models = models or []
        self.behaviour = Behaviour()
        self.received: list[Received] = []
        self.cancelled = 0  # requests whose client went away before the answer ended
        self.metrics_text: str | None = None  # served at GET /metrics when set (Prometheus text)
        self.open_now = 0  # connections open at this moment
        self.peak_connections = 0  # the most ever open at once (since the last reset)
        # Engine mode (set `slots`): at most `slots` POSTs run at once, the rest wait in
        # line, as a vLLM engine's max-num-seqs; GET /metrics shows vLLM's gauges, live.
        self.slots: int | None = None
        self.running_now = 0
        self.waiting_now = 0
        self.peak_waiting = 0  # the longest line (since the last reset)
        self.arrived = 0  # POSTs that reached it, in line or not (since the last reset)
        self._line: asyncio.Semaphore | None = None
        super().__init__()

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def open_connections(self) -> int:
        server = self._runner.server if self._runner else None
        return len(server.connections) if server is not None else 0

    def reset(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.received.clear()
        self.cancelled = 0
        self.peak_connections = self.open_now
        self.peak_waiting = self.waiting_now
        self.arrived = 0

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/{tail:.*}", self._get)
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, keepalive_timeout=self.keepalive_s
        )
        await self._runner.setup()
        self._count_connections(self._runner.server)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _count_connections(self, server: Any) -> None:
        """Count connections as they open and close (aiohttp's own list drops a closed one
        only once its handler task ends)."""
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: Any) -> None:
            self.open_now += 1
            self.peak_connections = max(self.peak_connections, self.open_now)
            made(handler, transport)

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self.open_now -= 1
            lost(handler, exc)

        server.connection_made, server.connection_lost = connection_made, connection_lost

    def _record(self, request: web.Request, body: Any, raw: bytes = b"") -> None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.received.append(
            Received(request.method, request.path, dict(request.query), dict(request.headers), body, peer,
                     request.raw_path, raw)
        )

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self._record(request, None)
        behaviour = self.behaviour
        if request.path == "/metrics" and self.slots is not None:
            return web.Response(text=engine_metrics(self.waiting_now, self.running_now), content_type="text/plain")
        if request.path == "/metrics" and self.metrics_text is not None:
            return web.Response(text=self.metrics_text, content_type="text/plain")
        if request.path.endswith("/models"):
            if behaviour.status != 200:
                return web.json_response({"error": {"message": "down"}}, status=behaviour.status)
            data = [{"id": m, "object": "model", "created": 1, "owned_by": self.name} for m in self.models]
            return web.json_response({"object": "list", "data": data})
        return web.json_response({"error": {"message": "not found"}}, status=404)

    async def _post(self, request: web.Request) -> web.StreamResponse:
        if self.slots is None:
            return await self._handle_post(request)
        if self._line is None:
            self._line = asyncio.Semaphore(self.slots)
        self.arrived += 1
        if self._line.locked():  # every slot taken: it waits in line
            self.waiting_now += 1
            self.peak_waiting = max(self.peak_waiting, self.waiting_now)
            try:
                await self._line.acquire()
            finally:
                self.waiting_now -= 1
        else:
            await self._line.acquire()
        self.running_now += 1
        try:
            return await self._handle_post(request)
        finally:
            self.running_now -= 1
            self._line.release()

    async def _handle_post(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw
        self._record(request, body, raw)
        behaviour = self.behaviour
        try:
            if behaviour.delay_before_headers_s:
                await asyncio.sleep(behaviour.delay_before_headers_s)
            if behaviour.drop:
                assert request.transport is not None
                request.transport.abort()
                return web.Response()
            status = behaviour.token_status.get(request.headers.get("Authorization", ""), behaviour.status)
            for name, code in behaviour.header_status.items():
                if name in request.headers:
                    status = code
            if behaviour.failures is not None:
                status = status if len(self.received) <= behaviour.failures else 200
            if status != 200:
                headers = dict(behaviour.extra_headers)
                if behaviour.retry_after:
                    headers["Retry-After"] = behaviour.retry_after
                error = behaviour.error_body or self._error_payload(status)
                return web.json_response(error, status=status, headers=headers)
            return await self._answer(request, body, behaviour)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise

    def _error_payload(self, status: int) -> dict[str, Any]:
        return {"error": {"message": f"{self.name} says {status}", "type": "upstream", "code": None}}

    async def _answer(self, request: web.Request, body: Any, behaviour: Behaviour) -> web.StreamResponse:
        """A successful answer (subclasses speak other formats: tests/support/llm_upstream.py)."""
        model = body.get("model") if isinstance(body, dict) else None
        if request.path.endswith("/embeddings"):
            return web.json_response(
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                    "model": model,
                    "usage": {"prompt_tokens": 2, "total_tokens": 2},
                },
                headers=behaviour.extra_headers,
            )
        if isinstance(body, dict) and body.get("stream") is True:
            options = body.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(request, model, behaviour, usage)
        if behaviour.body_bytes:
            return await self._big(request, behaviour.body_bytes)
        return web.json_response(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"hello from {self.name}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
                **behaviour.answer_fields,
            },
            headers={"x-upstream": self.name, **behaviour.extra_headers},
        )

    async def _big(self, request: web.Request, size: int) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = size
        await response.prepare(request)
        mib = b"a" * (1024 * 1024)
        sent = 0
        while sent < size:
            piece = mib[: size - sent]
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response

    async def _stream(
        self, request: web.Request, model: Any, behaviour: Behaviour, usage: bool = False
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "x-upstream": self.name})
        await response.prepare(request)
        if behaviour.raw_stream is not None:
            for piece in behaviour.raw_stream:
                await response.write(piece)
            await response.write_eof()
            return response
        for i in range(behaviour.chunks):
            if behaviour.break_after is not None and i == behaviour.break_after:
                assert request.transport is not None
                request.transport.abort()
                return response
            if behaviour.chunk_gap_s and i:
                await asyncio.sleep(behaviour.chunk_gap_s)
            chunk = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": f"c{i} "}, "finish_reason": None}],
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            if behaviour.line_bytes and i == 0:
                await response.write(b'data: {"choices": [{"delta": {"content": "')
                piece = b"a" * 65536
                for _ in range(0, behaviour.line_bytes, len(piece)):
                    await response.write(piece)
                await asyncio.sleep(3600)  # the line never ends
        done = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        await response.write(b"data: " + orjson.dumps(done) + b"\n\n")
        if usage:  # as OpenAI does with stream_options.include_usage: a last chunk with no choices
            tokens = {"prompt_tokens": 7, "completion_tokens": behaviour.chunks, "total_tokens": 7 + behaviour.chunks}
            final = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1, "model": model,
                     "choices": [], "usage": tokens}
            await response.write(b"data: " + orjson.dumps(final) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def engine_metrics(waiting: int, running: int, kv: float = 0.5) -> str:
    """vLLM's load gauges, in its Prometheus text format."""
    return (
        "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}.0\n'
        "# TYPE vllm:num_requests_running gauge\n"
        f'vllm:num_requests_running{{engine="0",model_name="m"}} {running}.0\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f'vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} {kv}\n'
    )


@contextmanager
def running_engines(slots: int, *names: str) -> Iterator[list[Upstream]]:
    """Test engines, started: each runs at most `slots` requests at once and queues the
    rest, showing vLLM's gauges live (engine mode)."""
    started = [Upstream(name).start() for name in names]
    for engine in started:
        engine.slots = slots
    try:
        yield started
    finally:
        for engine in started:
            engine.stop()
