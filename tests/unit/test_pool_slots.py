"""max_connections in the upstream pool, against a real local server: the races the
gateway-level tests cannot time (a waiter cancelled in the instant it is handed its turn)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from modelway.errors import UpstreamPoolFull
from modelway.http1.pool import HostPool, Origin

REQUEST = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"


class Server:
    """Answers each request's head at once and its body once `go` is set; counts connections."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(HEAD)
                await self.go.wait()
                writer.write(b"ok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with Server() as running:
        yield running


def pool(port: int, cap: int, connect_timeout_s: float = 5.0) -> HostPool:
    return HostPool(
        "p",
        Origin("http", "127.0.0.1", port),
        idle_limit=8,
        keepalive=True,
        keepalive_timeout_s=60,
        connect_timeout_s=connect_timeout_s,
        ssl_verify=True,
        max_connections=cap,
    )


async def exchange(hosts: HostPool) -> bytes:
    response = await hosts.request(REQUEST, 5.0, idle=False)
    try:
        return await response.read()
    finally:
        response.close()


async def until(condition: object) -> None:
    for _ in range(500):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never met")


async def test_a_waiter_cancelled_as_it_is_handed_the_connection_passes_it_on(server: Server) -> None:
    hosts = pool(server.port, cap=1)
    first = await hosts.request(REQUEST, 5.0, idle=False)
    second = asyncio.ensure_future(exchange(hosts))
    third = asyncio.ensure_future(exchange(hosts))
    await until(lambda: len(hosts._waiters) == 2)
    server.go.set()
    assert await first.read() == b"ok"
    first.close()  # hands the connection to `second`, which has not run yet...
    second.cancel()  # ...and is cancelled in that same instant
    assert await third == b"ok"  # the turn went on to the next in line
    assert second.cancelled()
    assert hosts.slots == 1 and server.connections == 1
    assert not hosts._waiters


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on(server: Server) -> None:
    hosts = pool(server.port, cap=1)
    first = await hosts.request(REQUEST, 5.0, idle=False)
    second = asyncio.ensure_future(exchange(hosts))
    third = asyncio.ensure_future(exchange(hosts))
    await until(lambda: len(hosts._waiters) == 2)
    first.close()  # closed unread: the connection is dropped and its slot handed on...
    second.cancel()  # ...to a waiter cancelled in that same instant
    server.go.set()
    assert await third == b"ok"
    assert second.cancelled()
    assert hosts.slots == 1 and server.connections == 2


async def test_a_wait_beyond_connect_timeout_is_a_connect_error_and_leaves_no_waiter(server: Server) -> None:
    hosts = pool(server.port, cap=1, connect_timeout_s=0.1)
    first = await hosts.request(REQUEST, 5.0, idle=False)
    with pytest.raises(UpstreamPoolFull, match=r"no connection free within 0\.1 s"):
        await hosts.request(REQUEST, 5.0, idle=False)
    assert not hosts._waiters
    server.go.set()
    assert await first.read() == b"ok"
    first.close()
    assert await exchange(hosts) == b"ok"  # reuses the one connection
    assert hosts.slots == 1 and server.connections == 1


async def test_without_a_cap_connections_are_still_counted(server: Server) -> None:
    hosts = HostPool("p", Origin("http", "127.0.0.1", server.port), idle_limit=0, keepalive=False,
                     keepalive_timeout_s=60, connect_timeout_s=5, ssl_verify=True)
    server.go.set()
    assert await asyncio.gather(*(exchange(hosts) for _ in range(5))) == [b"ok"] * 5
    assert hosts.slots == 0  # none kept (idle_limit 0): every slot given back
