"""One keep-alive HTTP/1.1 connection to an upstream, parsed with httptools (llhttp).

The connection carries one exchange at a time. Body bytes are queued as they arrive and
handed to the relay in arrival order; reading pauses when the relay falls behind by more
than HIGH_WATER bytes, so a slow client never makes the gateway buffer a whole answer.
A non-stream answer is read whole, up to the pool's max_response_bytes; a response head,
up to MAX_HEAD_BYTES.

Failures surface as modelway's UpstreamError subclasses, never as socket or parser errors.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import httptools

from modelway.errors import (
    UpstreamBrokenStream,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamTooLarge,
)
from modelway.providers.base import PLAIN_CONNECTION, RESPONSE_SKIP, UpstreamResponse, connection_named

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
MAX_HEAD_BYTES = 1024 * 1024  # a response head (1xx heads included) longer than this is refused


class Pool(Protocol):
    """What a connection needs of the pool it belongs to (pool.HostPool)."""

    @property
    def name(self) -> str:
        """The provider's, for error messages."""

    @property
    def max_response_bytes(self) -> int:
        """The bound on a non-stream answer, which is read whole."""

    def release(self, connection: Connection, reuse: bool) -> None: ...

    def free_slot(self) -> None:
        """A connection that held one of max_connections closed."""


class Connection(asyncio.Protocol):
    """The protocol object of one upstream socket."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.open = False
        self.reusable = True
        self.informational = False  # inside a 1xx head, which precedes the real answer
        # One timeout timer per connection, kept across its exchanges: it is re-armed when it
        # fires for the deadline of the response then in flight, instead of a timer being
        # created and cancelled for every exchange.
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.holds_slot = False  # counts against the pool's max_connections until it closes

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection cannot be trusted
            self.abort()
            return
        response.last_data_at = response.loop.time()
        if not response.started:
            response.head_bytes += len(data)
            if response.head_bytes > MAX_HEAD_BYTES:
                self.reusable = False
                response.fail(UpstreamConnectError(f"{self.pool.name}: response head over {MAX_HEAD_BYTES} bytes"))
                self.abort()
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.reusable = False
            # Before the head is complete nothing reached the client, so it may be retried.
            cls = UpstreamBrokenStream if response.started else UpstreamConnectError
            response.fail(cls(f"{self.pool.name}: invalid HTTP response ({exc})"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.reusable = False
        self.disarm()
        self.give_back_slot()
        response = self.response
        if response is not None:
            response.connection_lost()

    def pause_writing(self) -> None:  # request bodies are written whole; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_message_begin(self) -> None:
        response = self.response
        if response is None or response.done:
            # A second answer to one request: the upstream is out of step with us. Stop
            # parsing here (the answer already complete stays intact) and drop the socket.
            self.reusable = False
            raise UpstreamConnectError(f"{self.pool.name}: more bytes than one answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        assert response is not None
        lowered = name.lower()
        if lowered.startswith(b"x-ratelimit-"):
            response.reports_quota = True
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            response.framed = True
        if lowered == b"content-type":
            response.content_type = value.decode("latin-1")
        if lowered not in RESPONSE_SKIP:
            response.headers.append((name, value))
        elif lowered == b"connection" and value not in PLAIN_CONNECTION:
            response.hop_by_hop += (value,)  # names headers of this hop only: dropped below

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
            self.informational = True
            response.headers.clear()
            response.hop_by_hop = ()
            response.framed = False
            response.content_type = ""
            return
        response.status = status
        if response.hop_by_hop:
            named = connection_named(response.hop_by_hop)
            response.headers = [pair for pair in response.headers if pair[0].lower() not in named]
        if not self.parser.should_keep_alive():
            self.reusable = False
        response.headers_received()

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response.feed(body)

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        response = self.response
        assert response is not None
        response.complete()

    # used by the pool and the response
    def send(self, payload: bytes, response: Response) -> None:
        assert self.transport is not None
        self.response = response
        self.transport.write(payload)

    def arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Make sure the timer fires no later than `deadline`."""
        timer = self.timer
        if timer is not None:
            if self.timer_at <= deadline:
                return
            timer.cancel()
        self.timer_at = deadline
        self.timer = loop.call_at(deadline, self.on_timer)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def on_timer(self) -> None:
        self.timer = None
        response = self.response
        if response is not None:
            response.check_deadline()

    def abort(self) -> None:
        self.reusable = False
        self.open = False
        self.disarm()
        self.give_back_slot()
        if self.transport is not None:
            self.transport.abort()

    def give_back_slot(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.pool.free_slot()

    def pause_reading(self) -> None:
        if self.transport is not None and self.open:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.open:
            self.transport.resume_reading()


class Response(UpstreamResponse):
    """An upstream answer being received on a Connection."""

    def __init__(self, connection: Connection, loop: asyncio.AbstractEventLoop, timeout_s: float, idle: bool) -> None:
        self.connection = connection
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.hop_by_hop: tuple[bytes, ...] = ()  # Connection values naming other headers
        self.content_type = ""
        self.framed = False  # Content-Length or chunked: the end is known without EOF
        self.started = False  # any response byte arrived
        self.head_bytes = 0  # received before the head was complete
        self.done = False
        self.error: UpstreamError | None = None
        self._buffer: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._streaming = False  # only a consumer of chunks() pauses the socket; read() wants it all
        self._waiter: asyncio.Future[None] | None = None
        self._released = False
        # `idle`: timeout_s bounds each gap between bytes (streams); otherwise the whole exchange.
        self.loop = loop
        self._timeout_s = timeout_s
        self._idle = idle
        self.last_data_at = self.started_at = now = loop.time()
        connection.arm(loop, now + timeout_s)

    # fed by the Connection
    def headers_received(self) -> None:
        self.started = True
        self._wake()

    def feed(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER:
            if self._streaming:
                if not self._paused:
                    self._paused = True
                    self.connection.pause_reading()
            elif self._buffered > self.connection.pool.max_response_bytes:
                self.too_large()
        self._wake()

    def too_large(self) -> None:
        """A whole answer is wanted (read()) and it outgrew the bound: drop it and the socket."""
        limit = self.connection.pool.max_response_bytes
        self._buffer.clear()
        self._buffered = 0
        self.fail(UpstreamTooLarge(f"{self.connection.pool.name}: answer over max_response_bytes ({limit})"))
        self.connection.abort()

    def complete(self) -> None:
        self.done = True
        self._wake()

    def connection_lost(self) -> None:
        if self.done:
            return
        if self.started and not self.framed and self.status:
            self.complete()  # a body delimited by the connection closing
            return
        where = "response broke off" if self.started else "connection closed before a response"
        cls = UpstreamBrokenStream if self.started else UpstreamConnectError
        self.fail(cls(f"{self.connection.pool.name}: {where}"))

    def fail(self, error: UpstreamError) -> None:
        if self.error is None and not self.done:
            self.error = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def check_deadline(self) -> None:
        """The connection's timer fired: fail if this exchange is past its deadline, else
        have the timer fire again at that deadline."""
        if self.done or self.error is not None:
            return
        loop = self.loop
        now = loop.time()
        if self._paused:  # we stopped reading (the client is slow), not the upstream
            self.connection.arm(loop, now + self._timeout_s)
            return
        # Streams: a gap between bytes; otherwise the whole exchange.
        deadline = (self.last_data_at if self._idle else self.started_at) + self._timeout_s
        if deadline - now > 0.001:
            self.connection.arm(loop, deadline)
            return
        what = "no next chunk" if self.started else "no response"
        self.fail(UpstreamTimeout(f"{self.connection.pool.name}: {what} within {self._timeout_s:g} s"))
        self.connection.abort()

    async def _wait(self) -> None:
        self._waiter = self.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    # consumed by the exchange and the relay
    async def wait_headers(self) -> None:
        while not self.started and self.error is None and not self.done:
            # _wait() inlined here and in read(): the two waits of every exchange
            waiter = self._waiter = self.loop.create_future()
            await waiter
        if self.error is not None and not self.started:
            raise self.error
        if not self.started:
            raise UpstreamConnectError(f"{self.connection.pool.name}: an answer without a head")

    async def read(self) -> bytes:
        while not self.done:
            if self.error is not None:
                raise self.error
            waiter = self._waiter = self.loop.create_future()
            await waiter
        body = b"".join(self._buffer)
        self._buffer.clear()
        self._buffered = 0
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        buffer = self._buffer
        self._streaming = True
        while True:
            if buffer:
                chunk = buffer.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < LOW_WATER:
                    self._paused = False
                    self.last_data_at = self.loop.time()  # the idle gap starts again from here
                    self.connection.resume_reading()
                yield chunk
            elif self.done:
                return
            elif self.error is not None:
                raise self.error
            else:
                await self._wait()

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        self.connection.pool.release(self.connection, reuse=self.done and self.error is None)
