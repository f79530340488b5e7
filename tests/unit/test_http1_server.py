"""modelway's HTTP/1.1 server protocol (http1/server.py, http1/cycle.py) under uvicorn,
in-process, with small ASGI apps of the tests' own: what the gateway's app never does but
a server must still get right (bad headers, app errors, unanswered requests), and the
parts of its own contract (early stream heads, the disconnect extension, backpressure)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from modelway.http1.cycle import DISCONNECT_EXTENSION
from modelway.http1.server import ServerProtocol

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
GET = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


@asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[int]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=ServerProtocol, lifespan="off", log_level="critical", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def exchange(port: int, request: bytes, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await asyncio.wait_for(reader.read(-1) if until_close else reader.read(65536), 5)
    writer.close()
    return data


async def answer(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def test_header_with_crlf_is_a_500_and_nothing_is_injected() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer(send, 200, [(b"x-name", b"a\r\nset-cookie: evil=1"), (b"content-length", b"2")], b"ok")

    async with serving(app) as port:
        data = await exchange(port, GET)
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"evil" not in data
    assert b"connection: close" in data


async def test_app_error_before_answering_is_a_json_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise ValueError("boom")

    async with serving(app) as port:
        data = await exchange(port, GET)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500 ")
    assert body == b'{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}'
    assert b"boom" not in data


async def test_app_that_never_answers_gets_a_500() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    async with serving(app) as port:
        data = await exchange(port, GET)
    assert data.startswith(b"HTTP/1.1 500 ")


async def test_http10_stream_is_delimited_by_the_close() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as port:
        data = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower()
    assert body == b"one two three"


async def test_stream_head_is_sent_before_the_first_chunk_is_ready() -> None:
    release = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: late\n\n"})

    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in head
        release.set()
        rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        assert b"data: late" in rest
        writer.close()


async def outcome_of_leaving(before_asking: Callable[[Any], Awaitable[Any]] | None = None) -> str:
    """A client sends a request and leaves after 0.1 s; the app (after `before_asking`, if
    given) asks for cancellation on disconnect and sleeps. What became of the app's task."""
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        signal = scope["extensions"][DISCONNECT_EXTENSION]
        if before_asking is not None:
            await before_asking(receive)
        signal.cancel_on_disconnect()
        try:
            await asyncio.sleep(30)
            outcome.set_result("slept on")
        except asyncio.CancelledError:
            outcome.set_result("cancelled, disconnected" if signal.disconnected else "cancelled")
            raise

    async with serving(app) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET)
        await asyncio.sleep(0.1)
        writer.close()
        return await asyncio.wait_for(outcome, 2)


async def test_disconnect_extension_cancels_the_task_when_the_client_leaves() -> None:
    assert await outcome_of_leaving() == "cancelled, disconnected"


async def test_a_client_that_does_not_read_holds_the_sender_back() -> None:
    chunk = b"x" * 65536
    sent = 0
    finished = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal sent
        length = (b"content-length", b"%d" % (64 * 65536))
        await send({"type": "http.response.start", "status": 200, "headers": [length]})
        for _ in range(64):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += 1
        await send({"type": "http.response.body", "body": b""})
        finished.set()

    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        transport = writer.transport
        transport.pause_reading()  # type: ignore[attr-defined]
        writer.write(GET)
        await asyncio.sleep(0.5)
        assert not finished.is_set() and sent < 64  # 4 MiB do not all fit in socket buffers
        transport.resume_reading()  # type: ignore[attr-defined]
        await asyncio.wait_for(finished.wait(), 5)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readexactly(64 * 65536), 5)
        assert body == chunk * 64
        writer.close()


async def test_pipelined_requests_wait_for_the_answer_before_them() -> None:
    order: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        order.append(f"start {path}")
        if path == "/slow":
            await asyncio.sleep(0.2)
        order.append(f"end {path}")
        await answer(send, 200, [(b"content-length", b"%d" % len(path))], path.encode())

    async with serving(app) as port:
        requests = b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\nGET /fast HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        data = await exchange(port, requests)
    assert order == ["start /slow", "end /slow", "start /fast", "end /fast"]
    assert data.index(b"/slow") < data.index(b"/fast")


async def test_a_client_gone_before_the_app_asks_for_cancellation_still_cancels_it() -> None:
    # The client leaves while the app is busy before run_until_disconnect (routers, discovery):
    # asking for cancellation afterwards must act on the disconnect that already happened.
    async def busy(receive: Any) -> None:
        await receive()
        await asyncio.sleep(0.3)

    assert await outcome_of_leaving(busy) == "cancelled, disconnected"


async def test_a_client_leaving_after_a_large_body_is_noticed() -> None:
    # Reading pauses while more than 64 KiB of body wait for the app; it must resume once
    # the app has the whole body, or the client's leaving goes unnoticed until the answer.
    body_read = asyncio.Event()
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        signal = scope["extensions"][DISCONNECT_EXTENSION]
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        assert size == 80_000
        signal.cancel_on_disconnect()
        body_read.set()
        try:
            await asyncio.sleep(30)
            outcome.set_result("slept on")
        except asyncio.CancelledError:
            outcome.set_result("cancelled, disconnected" if signal.disconnected else "cancelled")
            raise

    async with serving(app) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        # Read at once: more than 64 KiB of body are waiting for the app as the request ends.
        writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 80000\r\n\r\n" + b"x" * 80_000)
        await asyncio.wait_for(body_read.wait(), 5)
        writer.close()
        assert await asyncio.wait_for(outcome, 2) == "cancelled, disconnected"


async def test_a_send_cut_short_by_a_timeout_leaves_the_next_send_working() -> None:
    chunk = b"x" * 65536
    timeouts = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal timeouts
        length = (b"content-length", b"%d" % (64 * 65536))
        await send({"type": "http.response.start", "status": 200, "headers": [length]})
        message = {"type": "http.response.body", "body": chunk, "more_body": True}
        for _ in range(64):
            while True:
                try:
                    await asyncio.wait_for(send(message), 0.1)  # a client too slow is given up on...
                    break
                except TimeoutError:
                    timeouts += 1  # ...for now: the chunk was not sent, and is sent again
        await send({"type": "http.response.body", "body": b""})

    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        writer.transport.pause_reading()  # type: ignore[attr-defined]
        writer.write(GET)
        await asyncio.sleep(0.5)
        writer.transport.resume_reading()  # type: ignore[attr-defined]
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readexactly(64 * 65536), 5)
        writer.close()
    assert timeouts > 0
    assert body == chunk * 64


async def test_two_tasks_waiting_in_receive_are_both_woken() -> None:
    outcome: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the (empty) body
        given_up = asyncio.create_task(receive())
        await asyncio.sleep(0.05)
        first = asyncio.create_task(receive())  # e.g. a task listening for the disconnect
        second = asyncio.create_task(receive())
        await asyncio.sleep(0.05)
        given_up.cancel()  # its cancellation is not the others'
        await asyncio.sleep(0.05)
        await answer(send, 200, [(b"content-length", b"2")], b"ok")
        await asyncio.wait((first, second), timeout=2)
        outcome.set_result([task.result()["type"] if task.done() else "never woken" for task in (first, second)])
        for task in (first, second):
            task.cancel()

    async with serving(app) as port:
        data = await exchange(port, b"GET / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(outcome, 5) == ["http.disconnect", "http.disconnect"]


async def test_a_malformed_request_behind_a_valid_one_is_rejected_after_its_answer() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.2)
        await answer(send, 200, [(b"content-length", b"4")], b"slow")

    async with serving(app) as port:
        data = await exchange(port, GET + b"this is not http\r\n\r\n")
    first, _, rest = data.partition(b"slow")
    assert first.startswith(b"HTTP/1.1 200 "), data  # the answer to the valid request, first
    assert rest.startswith(b"HTTP/1.1 400 "), data  # then the rejection, and the close

async def test_a_pipelined_request_whose_body_is_broken_is_not_run() -> None:
    paths: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        await asyncio.sleep(0.2)
        await answer(send, 200, [(b"content-length", b"4")], b"slow")

    broken = b"POST /broken HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
    async with serving(app) as port:
        data = await exchange(port, GET + broken)
    assert paths == ["/"]
    first, _, rest = data.partition(b"slow")
    assert first.startswith(b"HTTP/1.1 200 "), data
    assert rest.startswith(b"HTTP/1.1 400 "), data


async def test_bytes_after_an_upgrade_request_do_not_preempt_its_answer() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.2)
        await answer(send, 200, [(b"content-length", b"2")], b"ok")

    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
        await asyncio.sleep(0.05)
        writer.write(b"\x81\x85 a websocket frame")  # what a client switching protocols sends next
        data = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(b"\r\n\r\nok"), data  # and nothing after it: no answer to the frame


async def test_a_closed_connection_is_freed_without_the_cyclic_gc() -> None:
    protocols: list[weakref.ref[Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        protocols.append(weakref.ref(scope["extensions"][DISCONNECT_EXTENSION].protocol))
        await answer(send, 200, [(b"content-length", b"2")], b"ok")

    async with serving(app) as port:
        gc.collect()
        gc.disable()
        try:
            data = await exchange(port, GET + GET.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n"))
            assert data.count(b"HTTP/1.1 200 ") == 2
            for _ in range(50):
                await asyncio.sleep(0.01)
                if protocols[0]() is None:
                    break
            assert protocols[0]() is None, gc.get_referrers(protocols[0]())
        finally:
            gc.enable()


async def test_http10_expect_100_continue_is_ignored() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        await answer(send, 200, [(b"content-length", b"%d" % len(body))], body)

    async with serving(app) as port:
        data = await exchange(port, b"POST / HTTP/1.0\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\nhi")
    assert data.startswith(b"HTTP/1.1 200 "), data  # an HTTP/1.0 client knows no interim answers
    assert data.endswith(b"\r\n\r\nhi")


async def test_an_app_error_after_its_answer_does_not_cut_the_next_one() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer(send, 200, [(b"content-length", b"4")], scope["path"][1:].encode())
        if scope["path"] == "/boom":
            raise RuntimeError("after the answer")

    async with serving(app) as port:
        requests = b"GET /boom HTTP/1.1\r\nhost: t\r\n\r\nGET /next HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n"
        data = await exchange(port, requests)
    assert data.count(b"HTTP/1.1 200 ") == 2, data
    assert data.endswith(b"next")


@pytest.mark.parametrize("headers", [[(b"content-length", b"2")], []], ids=["sized", "stream"])
async def test_app_error_after_a_head_not_yet_written_is_a_500(headers: list[tuple[bytes, bytes]]) -> None:
    # The head of a sized answer waits for its body, a stream's for the next loop turn:
    # an app failing before then has had nothing written, and gets its 500.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise ValueError("boom")

    async with serving(app) as port:
        data = await exchange(port, GET)
    assert data.startswith(b"HTTP/1.1 500 "), data


async def test_a_body_still_coming_after_an_early_answer_is_not_an_idle_connection() -> None:
    # A 413 decided from Content-Length: the client, sending its body before it reads the
    # answer (as most do), is still sending it after the keep-alive timeout. The server
    # discards it, and must not close meanwhile: that resets the connection, and the
    # client never reads its 413.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer(send, 413 if scope["method"] == "POST" else 200, [(b"content-length", b"2")], b"no")

    async with serving(app, timeout_keep_alive=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 100000\r\n\r\n")
        for _ in range(10):  # 1 s in all, at 100 KB/s
            await asyncio.sleep(0.1)
            writer.write(b"x" * 10_000)
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 413 ")
        assert await reader.readexactly(2) == b"no"
        writer.write(GET)  # and the connection serves on
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        writer.close()
