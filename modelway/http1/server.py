"""modelway's HTTP/1.1 server protocol, plugged into uvicorn in place of its own
(`uvicorn.run(http=ServerProtocol)`). uvicorn still does everything around it: sockets,
workers, signals, lifespan, graceful shutdown and the Date header it refreshes each second.

It parses with httptools like uvicorn's httptools protocol and runs each request as an
ASGI cycle (`cycle.py`). It is leaner where a gateway pays for every microsecond: no
Event or timer per request (one idle timer per connection, re-armed lazily), one write
per sized answer, and request targets split without a URL parser when they are plain
paths. It supports what modelway's server uses: keep-alive, pipelining, chunked request
bodies, `Expect: 100-continue`, HEAD, HTTP/1.0, flow control both ways, and the keep-alive
timeout; not WebSockets (an Upgrade request is answered as a plain request), not
uvicorn's `limit_concurrency`, `root_path` or access log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any
from urllib.parse import unquote

import httptools
import orjson

from modelway.http1.cycle import DISCONNECT_EXTENSION, RequestCycle

log = logging.getLogger("modelway.http")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
DRAINING = "modelway.drain"  # key in the app state of a Drain, shared by every connection and request


class Drain:
    """Set once uvicorn has begun a graceful shutdown; read by /ready through scope["state"]
    (a copy of the app state per request, which shares this object)."""

    __slots__ = ("started",)

    def __init__(self) -> None:
        self.started = False


class ServerProtocol(asyncio.Protocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop: asyncio.AbstractEventLoop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        if DRAINING not in app_state:
            app_state[DRAINING] = Drain()
        self.keepalive_s: float = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        # Answer the first of several pipelined requests even if the client closed after them.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.cycle: RequestCycle | None = None  # the request being parsed, or the last one
        self.running: RequestCycle | None = None  # the request whose app is running
        self.queued: deque[tuple[RequestCycle, dict[str, Any]]] = deque()  # pipelined requests waiting their turn
        self.read_paused = False
        self.write_paused = False
        self.writable: asyncio.Future[None] | None = None
        self.idle_since = 0.0
        self.defaults: list[tuple[bytes, bytes]] | None = None  # uvicorn's default headers
        self.defaults_head = b""  # ... encoded
        self.idle_timer: asyncio.TimerHandle | None = None
        self.rejection: str | None = None  # why the byte stream was found broken, once it was
        # per-request parsing state
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server_state.connections.add(self)
        self.server = address(transport.get_extra_info("sockname"))
        self.client = address(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        self.became_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self.running is not None:
            self.running.lost()
        self.queued.clear()
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        self.resume_writing()
        # The parser holds our callbacks and a cycle holds us: drop both, so that a closed
        # connection is freed by reference counting, not left to the cyclic GC.
        self.running = self.cycle = None
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol to switch to: the request is answered as it is, and the connection
            # closed after it. The parser skips the rest of this read but parses the next
            # one afresh: a request found there waits behind this one and is dropped by the
            # close, anything else is rejected after its answer (which the close skips).
            if self.cycle is not None:
                self.cycle.keep_alive = False
        except httptools.HttpParserError as exc:
            self.reject(f"invalid HTTP request: {exc}")

    def eof_received(self) -> bool | None:
        return None  # close our side too; an answer still being written is not lost

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        writable = self.writable
        if writable is not None:
            self.writable = None
            if not writable.done():
                writable.set_result(None)

    # uvicorn's server calls this to start a graceful shutdown
    def shutdown(self) -> None:
        # Shared by every connection (uvicorn's lifespan state, copied into each scope):
        # from now on /ready answers 503 to whatever still reaches it during the drain.
        drain = self.app_state.get(DRAINING)
        if drain is not None:
            drain.started = True
        if self.running is None:
            self.close()
        else:
            # Requests already received (the running one and any pipelined behind it) are
            # in flight: answered, and the connection closed after the last of them.
            last = self.queued[-1][0] if self.queued else self.running
            last.keep_alive = False

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        url = self.url
        if url[:1] == b"/":
            raw_path, _, query = url.partition(b"?")
            raw_path = raw_path.partition(b"#")[0]
        else:  # absolute-form or asterisk-form target
            parsed = httptools.parse_url(url)
            raw_path, query = parsed.path or b"/", parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        method = parser.get_method().decode("ascii")
        if version == "1.0":  # no keep-alive; no interim answers either (RFC 9110, 10.1.1)
            cycle = RequestCycle(self, method, version, False, False)
        else:
            cycle = RequestCycle(self, method, version, parser.should_keep_alive(), self.expect_continue)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": self.headers,
            "extensions": {DISCONNECT_EXTENSION: cycle},
        }
        if self.app_state:
            scope["state"] = self.app_state.copy()
        self.cycle = cycle
        if self.running is None:
            self.start(cycle, scope)
        else:
            self.queued.append((cycle, scope))
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is not None:
            cycle.add_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None:
            cycle.end_body()

    # Cycles
    def start(self, cycle: RequestCycle, scope: dict[str, Any]) -> None:
        self.running = cycle
        task = self.loop.create_task(cycle.run(self.app, scope))
        cycle.task = task
        tasks = self.server_state.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def answered(self, cycle: RequestCycle) -> None:
        """`cycle`'s answer is complete: close, or go on with the next request."""
        self.server_state.total_requests += 1
        self.running = None
        if not cycle.keep_alive or self.closing():
            self.close()
            return
        if self.queued:
            self.start(*self.queued.popleft())
            if not self.queued:
                self.resume_reading()
        elif self.rejection is not None:  # what followed the requests answered was broken
            self.write_400(self.rejection)
            self.close()
        else:
            self.resume_reading()
            self.became_idle()

    def default_head(self) -> bytes:
        """uvicorn's default headers (the Date it refreshes each second) as head lines,
        encoded again only when uvicorn has replaced them."""
        headers = self.server_state.default_headers
        if headers is not self.defaults:
            self.defaults = headers
            self.defaults_head = b"".join(b"%b: %b\r\n" % (name.lower(), value) for name, value in headers)
        return self.defaults_head

    # Idle connections: one timer per connection, checked against the last answer's end
    # when it fires rather than cancelled and re-created for every request.
    def became_idle(self) -> None:
        self.idle_since = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(self.idle_since + self.keepalive_s, self.check_idle)

    def check_idle(self) -> None:
        self.idle_timer = None
        if self.running is not None or self.closing():
            return  # busy: the end of its answer arms the timer again
        deadline = self.idle_since + self.keepalive_s
        if self.loop.time() >= deadline:
            self.close()
        else:
            self.idle_timer = self.loop.call_at(deadline, self.check_idle)

    # Transport helpers for the cycles
    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and self.transport is not None:
            self.read_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    async def drain(self) -> None:
        writable = self.writable
        if writable is None:
            writable = self.writable = self.loop.create_future()
        # Shielded: a sender cancelled while it waits (a timeout around send()) must not
        # cancel the future the next send() would then wait on, and raise from at once.
        await asyncio.shield(writable)

    def reject(self, message: str) -> None:
        """Answer a request that could not be parsed, then close: the byte stream can no
        longer be trusted to hold request boundaries. Requests parsed whole before it are
        answered first, in order, so that the 400 is not taken for their answer."""
        if self.rejection is not None:
            return  # the parser stays broken: said already
        self.rejection = message
        log.warning("%s", message)
        running = self.running
        if running is not None and not (running is self.cycle and running.more_body):
            # The broken bytes came after the running request: `answered` sends the 400
            # after its answer and those of the requests queued behind it, but for the last
            # one if it is the one whose body broke off.
            if self.queued and self.queued[-1][0].more_body:
                self.queued.pop()
            return
        if running is None or not running.started:
            self.write_400(message)
        self.close()

    def write_400(self, message: str) -> None:
        body = orjson.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "bad_http"}}
        )
        head = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
        self.write(b"%bcontent-length: %d\r\n\r\n%b" % (head, len(body), body))


def address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
