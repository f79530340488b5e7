"""A keep-alive pool of HTTP/1.1 connections to one upstream origin.

Idle connections are reused newest first (the least likely to have been closed by the
server), kept for at most keepalive_timeout and never more than idle_limit of them. A
request that fails on a reused connection before any response byte arrived raises
UpstreamStaleConnection: the server most likely closed the idle socket as we wrote. The
attempt loop sends it again with `fresh=True` (a new connection), as an attempt of its own.

At most max_connections are open at once, idle ones included (None: no cap). A slot is
reserved before the connect is awaited, as aiohttp's connector does, so a request
cancelled mid-connect gives it back instead of leaking it. At the cap a request waits, up
to connect_timeout, first in first served. A freed slot, or a connection released for
reuse, is handed to the first waiter directly, so a newcomer cannot take it in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from dataclasses import dataclass

from modelway.errors import UpstreamConnectError, UpstreamPoolFull, UpstreamStaleConnection, UpstreamTimeout
from modelway.http1.connection import Connection, Response


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == default else f"{host}:{self.port}").encode("idna")


class HostPool:
    def __init__(
        self,
        name: str,
        origin: Origin,
        *,
        idle_limit: int,
        keepalive: bool,
        keepalive_timeout_s: float,
        connect_timeout_s: float,
        ssl_verify: bool,
        max_connections: int | None = None,
        max_response_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.name = name
        self.origin = origin
        self.host_header = origin.host_header
        self.idle_limit = idle_limit if keepalive else 0
        self.keepalive_timeout_s = keepalive_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._ssl: ssl.SSLContext | None = None
        if origin.scheme == "https":
            context = ssl.create_default_context()
            if not ssl_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl = context
        self._idle: deque[tuple[Connection, float]] = deque()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.max_connections = max_connections
        self.max_response_bytes = max_response_bytes  # a non-stream answer is read whole: this bounds it
        self.slots = 0  # connections open or being opened, idle ones included
        # Requests waiting for a slot; each is woken with a connection to reuse, or None: a slot of its own.
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()

    async def _connect(self) -> Connection:
        """A new connection, within max_connections (or, after a wait at the cap, one that
        another request released for reuse)."""
        cap = self.max_connections
        while True:
            if cap is None or self.slots < cap:
                self.slots += 1  # reserved before the connect is awaited
                break
            handed = await self._wait_for_slot()
            if handed is None:
                break  # woken with a slot of its own: self.slots already counts it
            if handed.open and handed.reusable:
                return handed
            # Closed since it was handed over. If it still holds its slot, that slot is ours;
            # if it gave it back already, wait again.
            owned = handed.holds_slot
            handed.holds_slot = False
            handed.abort()
            if owned:
                break
        loop = asyncio.get_running_loop()
        origin = self.origin
        connection_made = False
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Connection(self),
                    origin.host,
                    origin.port,
                    ssl=self._ssl,
                    server_hostname=origin.host if self._ssl else None,
                ),
                self.connect_timeout_s,
            )
            connection_made = True
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name}: no connection within {self.connect_timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"{self.name}: TLS handshake failed ({exc.reason})") from None
        except OSError as exc:
            raise UpstreamConnectError(f"{self.name}: cannot connect ({exc.strerror or type(exc).__name__})") from None
        finally:
            if not connection_made:  # failed or cancelled: the reserved slot goes back
                self.free_slot()
        if not connection.open:  # closed by the upstream before this task resumed
            self.free_slot()
            raise UpstreamConnectError(f"{self.name}: connection closed as soon as it opened")
        connection.holds_slot = True  # from here the connection gives it back when it closes
        return connection

    async def _wait_for_slot(self) -> Connection | None:
        """Wait at the cap, up to connect_timeout, to be handed a slot (None) or a connection."""
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                handed = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Woken in the same instant as cancelled or timed out: pass the turn on.
                handed = waiter.result()
                if handed is None:
                    self.free_slot()
                else:
                    self.release(handed, reuse=True)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise UpstreamPoolFull(
                    f"{self.name}: no connection free within {self.connect_timeout_s:g} s "
                    f"(max_connections {self.max_connections} open)"
                ) from None
            raise
        return handed

    def _next_waiter(self) -> asyncio.Future[Connection | None] | None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def free_slot(self) -> None:
        """A connection closed (or a connect failed): its slot goes to the first waiter, if any."""
        waiter = self._next_waiter() if self._waiters else None
        if waiter is not None:
            waiter.set_result(None)
        else:
            self.slots -= 1

    def _expire(self, now: float) -> None:
        """Close idle connections older than keepalive_timeout (the oldest sit on the left)."""
        idle = self._idle
        horizon = now - self.keepalive_timeout_s
        while idle and idle[0][1] <= horizon:
            idle.popleft()[0].abort()

    def _take_idle(self) -> Connection | None:
        idle = self._idle
        now = time.monotonic()
        self._expire(now)
        horizon = now - self.keepalive_timeout_s
        while idle:
            connection, released_at = idle.pop()
            if connection.open and connection.reusable and released_at > horizon:
                return connection
            connection.abort()
        return None

    async def request(self, payload: bytes, timeout_s: float, idle: bool, fresh: bool = False) -> Response:
        """Send one request (on a new connection when `fresh`) and wait for the response headers."""
        loop = self._loop
        if loop is None:  # bound on first use: asyncio.get_running_loop() costs a getpid() on 3.11
            loop = self._loop = asyncio.get_running_loop()
        connection = None if fresh else self._take_idle()
        reused = connection is not None
        if connection is None:
            connection = await self._connect()
        response = Response(connection, loop, timeout_s, idle)
        connection.send(payload, response)
        try:
            await response.wait_headers()
        except UpstreamConnectError as exc:
            response.close()
            if reused and not response.started:
                raise UpstreamStaleConnection(f"{exc.message} (a reused keep-alive connection)") from None
            raise
        except BaseException:
            response.close()
            connection.abort()
            raise
        return response

    def release(self, connection: Connection, reuse: bool) -> None:
        connection.response = None
        if self._waiters and reuse and not self._closed and connection.open and connection.reusable:
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.set_result(connection)  # straight to the first in line: its slot too
                return
        if (
            reuse
            and not self._closed
            and connection.open
            and connection.reusable
            and len(self._idle) < self.idle_limit
        ):
            now = time.monotonic()
            self._expire(now)
            self._idle.append((connection, now))
        else:
            connection.abort()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            connection, _ = self._idle.pop()
            connection.abort()


__all__ = ["HostPool", "Origin"]
