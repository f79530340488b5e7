"""A keep-alive pool of HTTP/1.1 connections to one upstream origin.

Idle connections are reused newest first (the least likely to have been closed by the
server), kept for at most keepalive_timeout and never more than idle_limit of them. A
request that fails on a reused connection before any response byte arrived raises
UpstreamStaleConnection: the server most likely closed the idle socket as we wrote. The
attempt loop sends it again with `fresh=True` (a new connection), as an attempt of its own.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass

from modelway.errors import UpstreamConnectError, UpstreamStaleConnection, UpstreamTimeout
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

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
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
        except TimeoutError:
            raise UpstreamTimeout(f"{self.name}: no connection within {self.connect_timeout_s:g} s") from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"{self.name}: TLS handshake failed ({exc.reason})") from None
        except OSError as exc:
            raise UpstreamConnectError(f"{self.name}: cannot connect ({exc.strerror or type(exc).__name__})") from None
        return connection

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
