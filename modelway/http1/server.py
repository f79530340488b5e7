"""modelway's HTTP/1.1 server protocol, plugged into uvicorn in place of its own
(`uvicorn.run(http=ServerProtocol)`). uvicorn still does everything around it: sockets,
workers, signals, lifespan, graceful shutdown and the Date header it refreshes each second.

It parses with httptools like uvicorn's httptools protocol and runs each request as an
ASGI cycle (`cycle.py`). It is leaner where a gateway pays for every microsecond: no
Event or timer per request (one timer per connection, re-armed lazily: `timers.py`), one
write per sized answer, and request targets split without a URL parser when they are plain
paths. It supports what modelway's server uses: keep-alive, pipelining, chunked request
bodies, `Expect: 100-continue`, HEAD, HTTP/1.0, flow control both ways, the keep-alive
timeout and clients that half-close; not WebSockets or h2c (an Upgrade request is answered
as a plain request, its body read by `upgrade.py`), not uvicorn's `limit_concurrency`,
`root_path` or access log.

What a client may send is bounded (`limits.py`, SPEC section 2): a request head while it
arrives (414, 431), the time a body takes to arrive (408). Chunked trailers are dropped,
and request lines, Host fields and transfer codings it does not serve are refused (400,
501, 505); each refusal is a JSON error, and the connection is closed after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, NoReturn
from urllib.parse import unquote

import httptools
import orjson

from modelway.http1.cycle import DISCONNECT_EXTENSION, STATUS_LINES, RequestCycle
from modelway.http1.limits import DEFAULT_LIMITS, Limits
from modelway.http1.timers import ConnectionTimer
from modelway.http1.upgrade import UpgradeBody, body_framing

log = logging.getLogger("modelway.http")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}
CHECKED_FIELDS = frozenset((b"host", b"expect", b"transfer-encoding"))  # looked at while parsing
DRAIN_HOOK = "begin_drain"  # an app offering this method is told when uvicorn begins a graceful shutdown


class Refused(Exception):
    """Raised in a parser callback to stop parsing a request the server has refused."""


class Discard:
    """The parser of a connection that was refused: the bytes that follow are not read."""

    def feed_data(self, data: bytes) -> None:
        pass


DISCARD: Any = Discard()


class ServerProtocol(ConnectionTimer, asyncio.Protocol):
    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: Any = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop: asyncio.AbstractEventLoop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.keepalive_s: float = config.timeout_keep_alive
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_url_bytes = limits.max_url_bytes
        self.body_timeout_s = limits.body_timeout_s
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
        self.timer: asyncio.TimerHandle | None = None  # the connection's one timer (idle, late body)
        self.timer_at = 0.0  # ... when it fires
        self.rejection: tuple[int, str, str] | None = None  # status, code, message: once the stream broke
        self.refused_head = False  # ... and the refused request is a HEAD: its answer has no content
        self.events = 0  # heads, body pieces and ends of requests parsed: progress between reads
        self.peer_check = 0.0  # once the client sent its EOF: how often to check it is still there
        self.probed = False  # ... and whether it was sent a 100 Continue to find out
        self.stalled = 0  # bytes of the reads since the last event
        self.client_eof = False  # the client half-closed (or closed)
        self.linger_until = 0.0  # closing: the client's bytes are read and dropped until then (timers.py)
        # per-request parsing state
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.head_done = False  # on_headers_complete was called: on_header now gets chunked trailers
        self.has_host = False
        self.head_room = self.max_header_bytes  # bytes the head (and trailers) may still take

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
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.resume_writing()
        # The parser holds our callbacks and a cycle holds us: drop both, so that a closed
        # connection is freed by reference counting, not left to the cyclic GC.
        self.running = self.cycle = None
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        events = self.events
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.no_upgrade(data[exc.args[0] :])
        except httptools.HttpParserError as exc:
            self.reject(400, "bad_http", f"invalid HTTP request: {exc}")  # unless a callback refused it already
        if self.events == events:
            if self.linger_until:
                return  # closing: what the client still sends is dropped
            # Nothing but head bytes in this read (or a chunked body's framing and trailers).
            # httptools keeps an unfinished header line to itself, growing it read after read,
            # so on_header counts it only once whole: a 64 MB header is stopped here instead.
            stalled = self.stalled + len(data)
            self.stalled = stalled
            if stalled > self.max_header_bytes:
                self.reject(*self.head_too_large())
        elif self.stalled:
            self.stalled = 0
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.deadline:
            # A body still to come after the read its head ended in (most arrive with it).
            cycle.deadline = self.loop.time() + self.body_timeout_s
            self.arm(cycle.deadline)

    def no_upgrade(self, rest: bytes) -> None:
        """A request asked to switch protocols. There is none to switch to: it is answered as
        plain HTTP/1.1, with its body, and the connection closed after it (`upgrade.py`)."""
        cycle = self.cycle
        if cycle is None:
            return
        cycle.keep_alive = False
        framing = body_framing(self.headers)
        if framing is None:
            # No body: what follows is dropped. The parser skips the rest of this read but
            # parses the next one afresh: a request found there waits behind this one and is
            # dropped by the close, anything else is rejected after its answer (which the
            # close skips).
            return
        cycle.more_body = True  # httptools ended the request at its head: it has not
        reader = UpgradeBody(self, framing)
        self.parser = reader.parser
        if rest:
            self.data_received(rest)

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
        # From now on /ready answers 503 to whatever still reaches it during the drain. The
        # app is told directly: a flag in the app state would cost a copy of it per request.
        begin_drain = getattr(self.app, DRAIN_HOOK, None)
        if begin_drain is not None:
            begin_drain()
        if self.running is None:
            self.close(linger=False)  # idle
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
        self.head_done = False
        self.has_host = False
        self.head_room = self.max_header_bytes

    # Size limits are checked as the head arrives, piece by piece, and refused at once.
    def on_url(self, piece: bytes) -> None:
        url = self.url + piece
        self.url = url
        self.head_room -= len(piece)
        if len(url) > self.max_url_bytes:
            self.refuse(414, "url_too_long", f"the request target is longer than {self.max_url_bytes} bytes")
        if self.head_room < 0:
            self.refuse(*self.head_too_large())

    def on_header(self, name: bytes, value: bytes) -> None:
        room = self.head_room - len(name) - len(value) - 4  # name: value CRLF
        self.head_room = room
        if self.head_done:
            # A chunked trailer (httptools reports them like headers, after the body): never
            # a header. The app already holds the headers, which a front proxy may have
            # checked; a trailer must not replace Authorization or add x-modelway-debug.
            if room < 0:
                self.refuse(*self.head_too_large())
            return
        if len(self.headers) >= self.max_headers:
            message = f"the request has more than server.max_headers ({self.max_headers}) headers"
            self.refuse(431, "too_many_headers", message)
        if room < 0:
            self.refuse(*self.head_too_large())
        name = name.lower()
        if name in CHECKED_FIELDS:
            self.check_field(name, value)
        self.headers.append((name, value))

    def check_field(self, name: bytes, value: bytes) -> None:
        if name == b"host":
            if self.has_host:  # which one names the target? (RFC 9112, 3.2)
                self.refuse(400, "duplicate_host", "the request has more than one Host header")
            self.has_host = True
        elif name == b"expect":
            if value.lower() == b"100-continue":
                self.expect_continue = True
        elif value.strip().lower() != b"chunked":
            # llhttp takes "gzip, chunked" as chunked and would hand the app the body still
            # gzipped; no coding but chunked is supported (RFC 9112, 6.1: 501).
            self.refuse(
                501,
                "unsupported_transfer_encoding",
                f"Transfer-Encoding {value[:100].decode('latin-1')!r} is not supported: only 'chunked' alone is",
            )

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.events += 1
        parser = self.parser
        version = parser.get_http_version()
        if version == "1.1":
            if not self.has_host:
                self.refuse(400, "missing_host", "an HTTP/1.1 request must have a Host header")
            cycle_args = (version, parser.should_keep_alive(), self.expect_continue)
        elif version == "1.0":  # no keep-alive; no interim answers either (RFC 9110, 10.1.1)
            cycle_args = (version, False, False)
        else:
            self.refuse_version(version)
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
        cycle = RequestCycle(self, method, *cycle_args)
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
        self.events += 1
        cycle = self.cycle
        if cycle is not None:
            cycle.add_body(body)

    def on_message_complete(self) -> None:
        self.events += 1
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
            self.write_error(*self.rejection)
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

    # Transport helpers for the cycles
    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing() and not self.linger_until:
            transport.write(data)

    def close(self, linger: bool = True) -> None:
        """Close after the answers written; `linger` (timers.py) unless no answer can be lost:
        nothing was written since the last answer was read, or the client has gone or half-closed."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.linger_until:
            return
        if linger and not self.client_eof and transport.can_write_eof():  # (TLS has no half-close)
            self.linger()
        else:
            transport.close()

    def stop_parsing(self) -> None:
        self.parser = DISCARD  # whatever the client sends from now on is not parsed

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing() or bool(self.linger_until)

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

    def head_too_large(self) -> tuple[int, str, str]:
        if self.head_done:
            what = "the chunked body's trailers (or chunk extensions) exceed"
        else:
            what = "the request line and headers exceed"
        return 431, "headers_too_large", f"{what} server.max_header_bytes ({self.max_header_bytes} bytes)"

    def refuse_version(self, version: str) -> None:
        if version == "2.0":  # a version the server does not speak (RFC 9112, 2.3: 505)
            self.refuse(
                505,
                "http_version_not_supported",
                "HTTP/2.0 is not served on this port: send HTTP/1.1 (an h2c Upgrade request is answered in HTTP/1.1)",
            )
        # httptools reports a request line without a version (HTTP/0.9's) as 0.9: it is not
        # an HTTP/1.1 request line (RFC 9112, 3), and its client could not read the answer.
        self.refuse(400, "bad_http", f"HTTP/{version} requests are not served: send HTTP/1.1")

    def refuse(self, status: int, code: str, message: str) -> NoReturn:
        """From a parser callback: answer `status`, close, and stop the parser."""
        self.reject(status, code, message)
        raise Refused(message)

    def reject(self, status: int, code: str, message: str) -> None:
        """Answer a request that could not be parsed or is refused, then close: the byte
        stream can no longer be trusted to hold request boundaries. Requests parsed whole
        before it are answered first, in order, so that the error is not taken for their
        answer."""
        if self.rejection is not None:
            return  # said already
        self.rejection = (status, code, message)
        # `url` is set once the refused request's line was read (on_message_begin resets it)
        self.refused_head = bool(self.url) and self.parser.get_method() == b"HEAD"
        self.parser = DISCARD  # whatever the client sends from now on is not parsed
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
            self.write_error(status, code, message)
        self.close()

    def write_error(self, status: int, code: str, message: str) -> None:
        body = orjson.dumps(
            {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        )
        head = b"%bcontent-type: application/json\r\nconnection: close\r\n" % STATUS_LINES[status]
        # the answer to a HEAD has the length its content would have, and no content (RFC 9110 9.3.2)
        self.write(b"%bcontent-length: %d\r\n\r\n%b" % (head, len(body), b"" if self.refused_head else body))


def address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
