"""One request and its answer on a client connection, seen from the app as ASGI's
`receive` and `send`.

What it does differently from uvicorn's cycle, because a gateway answers thousands of
small requests a second:
- the response head is held back until the first body message and written with it, so an
  answer with a Content-Length costs one write() instead of two;
- response headers are checked for CR, LF and NUL (what could split a header or an
  answer) by counting over the joined head, not by two regex searches per header;
- nothing is allocated to wait on unless the app really has to wait (the body of a small
  request has usually arrived before the app runs);
- modelway's `modelway.disconnect` extension: the app may ask for its task to be cancelled
  the moment the client leaves, instead of keeping a task in `receive()` to find out.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Sized
from typing import Any, Protocol

log = logging.getLogger("modelway.http")

DISCONNECT_EXTENSION = "modelway.disconnect"

FRAMING = frozenset((b"content-length", b"connection", b"transfer-encoding"))

STATUS_LINES: dict[int, bytes] = {}
for _status in range(100, 600):
    try:
        _phrase = http.HTTPStatus(_status).phrase.encode()
    except ValueError:
        _phrase = b""
    STATUS_LINES[_status] = b"HTTP/1.1 %d %s\r\n" % (_status, _phrase)

DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
JOIN_LIMIT = 64 * 1024  # above this a body is written next to its head rather than copied onto it
BODY_HIGH_WATER = 64 * 1024  # request bytes buffered before reading pauses


class ClientConnection(Protocol):
    """What a cycle needs of the client connection it runs on (server.ServerProtocol)."""

    loop: asyncio.AbstractEventLoop
    read_paused: bool
    write_paused: bool

    @property
    def queued(self) -> Sized:
        """Pipelined requests waiting behind the running one."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def answered(self, cycle: RequestCycle) -> None: ...

    def default_head(self) -> bytes: ...

    def became_idle(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def closing(self) -> bool: ...

    def close(self) -> None: ...


class RequestCycle:
    __slots__ = (
        "body",
        "cancel_on_leave",
        "chunked",
        "complete",
        "deadline",
        "delivered",
        "disconnected",
        "expect_continue",
        "head",
        "head_only",
        "http_version",
        "keep_alive",
        "method",
        "more_body",
        "protocol",
        "remaining",
        "sized",
        "started",
        "task",
        "waiter",
    )

    # The cycle holds no reference to its scope, which refers to it (the extension), nor to
    # its task once done: a request's objects form no reference cycle and are freed by
    # reference counting at once, not left to the cyclic GC.
    def __init__(
        self, protocol: ClientConnection, method: str, http_version: str, keep_alive: bool, expect_continue: bool
    ) -> None:
        self.protocol = protocol
        self.method = method
        self.http_version = http_version
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: bytes | bytearray = b""
        self.more_body = True  # the request's body has not been read to its end yet
        self.deadline = 0.0  # when its body must have arrived, once it is found late (loop time)
        self.delivered = False  # the app has had the request's last body message
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancel_on_leave = False
        self.disconnected = False
        self.started = False
        self.complete = False
        self.head: bytes | None = None  # written with the first body bytes
        self.head_only = False
        self.chunked = False
        self.sized = False  # framed by Content-Length
        self.remaining = 0  # body bytes still owed under Content-Length

    # modelway.disconnect extension
    def cancel_on_disconnect(self) -> None:
        """Cancel the app's task as soon as the client goes away before the answer is
        complete; `disconnected` then tells the app why it was cancelled. A client already
        gone is acted on at once: the task is cancelled at its next await."""
        self.cancel_on_leave = True
        if self.disconnected and self.task is not None:
            self.task.cancel()

    # Fed by the protocol
    def add_body(self, data: bytes) -> None:
        if self.complete:  # answered already (e.g. 413): the rest of the body is not needed,
            self.protocol.became_idle()  # but while it comes the connection is not idle
            return
        if not self.body:
            self.body = data
        else:
            if isinstance(self.body, bytes):
                self.body = bytearray(self.body)
            self.body += data
        if len(self.body) > BODY_HIGH_WATER:
            self.protocol.pause_reading()
        self.wake()

    def end_body(self) -> None:
        self.more_body = False
        self.wake()

    def lost(self) -> None:
        if not self.complete:
            self.disconnected = True
            if self.cancel_on_leave and self.task is not None:
                self.task.cancel()
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def run(self, app: Any, scope: dict[str, Any]) -> None:
        try:
            await app(scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and self.disconnected:
                return
            log.error("exception in the ASGI application", exc_info=exc)
            await self.fail()
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.complete and not self.disconnected:
                log.error("the ASGI application returned without completing its answer")
                await self.fail()
        finally:
            self.task = None

    async def fail(self) -> None:
        """The app failed: a 500 while nothing of its answer is written yet (a held head
        is dropped), else the close that tells the client its answer is cut short; nothing
        once the answer is complete (the connection may be serving the next request)."""
        if self.complete or self.disconnected:
            return
        if self.started and self.head is None:
            self.protocol.close()
            return
        self.started = self.head_only = self.chunked = self.sized = False
        self.head = None
        await self.send_500()

    async def send_500(self) -> None:
        body = b'{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}'
        self.keep_alive = False
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})

    # ASGI
    async def receive(self) -> dict[str, Any]:
        if self.expect_continue:
            self.expect_continue = False
            if not self.protocol.closing():
                self.protocol.write(CONTINUE)
        while True:
            if self.disconnected or self.complete:
                return DISCONNECT
            if self.body or not (self.more_body or self.delivered):
                body = self.body
                self.body = b""
                if not self.more_body:
                    self.delivered = True
                    protocol = self.protocol
                    if protocol.read_paused and not protocol.queued:
                        # Paused for this body, which the app now has all of: read on, or
                        # a client leaving is not seen until the answer is written.
                        protocol.resume_reading()
                return {"type": "http.request", "body": bytes(body), "more_body": self.more_body}
            self.protocol.resume_reading()
            waiter = self.waiter
            if waiter is None or waiter.done():
                waiter = self.waiter = self.protocol.loop.create_future()
                await waiter
            else:  # another task is waiting too: share its wake-up, not its cancellation
                await asyncio.wait((waiter,))

    async def send(self, message: dict[str, Any]) -> None:
        protocol = self.protocol
        if protocol.write_paused and not self.disconnected:
            await protocol.drain()
        if self.disconnected:
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {message['type']!r}")
            self.head = self.build_head(message["status"], message.get("headers", ()))
            self.started = True  # only now: a head that could not be built still leaves room for a 500
            self.expect_continue = False
            if self.chunked:  # a stream may take its time: its head should not wait for it
                protocol.loop.call_soon(self.flush_head)
            return
        if self.complete:
            raise RuntimeError(f"ASGI message {message['type']!r} sent after the answer was complete")
        if message["type"] != "http.response.body":
            raise RuntimeError(f"expected ASGI message 'http.response.body', got {message['type']!r}")
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if self.head_only:
            body = b""
        elif self.chunked:
            if body:
                body = b"%x\r\n%b\r\n" % (len(body), body)
            if not more_body:
                body += LAST_CHUNK
        elif self.sized:
            self.remaining -= len(body)
            if self.remaining < 0:
                raise RuntimeError("response body longer than its Content-Length")
        head = self.head
        if head is not None:
            self.head = None
            if len(body) <= JOIN_LIMIT:
                protocol.write(head + body)
            else:
                protocol.write(head)
                protocol.write(body)
        elif body:
            protocol.write(body)
        if not more_body:
            if self.sized and self.remaining:
                raise RuntimeError("response body shorter than its Content-Length")
            self.complete = True
            self.wake()
            protocol.answered(self)

    def flush_head(self) -> None:
        head = self.head
        if head is not None and not self.disconnected:
            self.head = None
            self.protocol.write(head)

    def build_head(self, status: int, headers: Any) -> bytes:
        lines = [STATUS_LINES[status], self.protocol.default_head()]
        length: bytes | None = None
        close = False
        for pair in headers:
            name = pair[0]
            if name in FRAMING or name.lower() in FRAMING:
                name = name.lower()
                if name == b"content-length":
                    length = pair[1]
                elif name == b"connection":
                    close = b"close" in pair[1].lower()
                else:
                    continue  # transfer-encoding: the framing is the server's to choose, below
            lines.append(b"%b: %b\r\n" % pair)
        fields = b"".join(lines[2:])
        # Each field line ends in the one CR LF of its own; any other CR, LF or NUL would let
        # a value (a model name, an upstream header) start a header or an answer of its own.
        count = len(lines) - 2
        if fields.count(b"\n") != count or fields.count(b"\r") != count or b"\0" in fields:
            raise RuntimeError("a response header holds a CR, LF or NUL character")
        if self.method == "HEAD" or status in (204, 304) or status < 200:
            self.head_only = True
        elif length is not None:
            self.sized = True
            self.remaining = int(length)
        elif self.http_version == "1.0":
            self.keep_alive = False  # HTTP/1.0 has no chunks: the end of the body is the close
        else:
            self.chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        if close:
            self.keep_alive = False
        elif not self.keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)
