"""modelway's HTTP/1.1 server against hostile or unusual clients, over raw sockets: chunked
trailers, bodies that never finish, oversized request heads, Upgrade requests, clients that
half-close, and request lines or framing the server does not support."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.gateway import Gateway
from support.rawhttp import Answer, Conn, assert_chat_answer, assert_keeps_serving, chat_body
from support.upstream import Behaviour, Upstream

KEY = "sk-test-good"
BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    with Gateway(config_for(upstream_a)) as gw:
        yield gw


def config_for(upstream: Upstream) -> dict[str, Any]:
    return {
        "server": {"body_timeout_s": BODY_TIMEOUT},
        "auth": {"keys": [{"name": "tester", "key": KEY, "debug": True}]},
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream.url}/v1"}],
        "models": [{"name": "m1", "deployments": [{"provider": "a"}]}],
    }


def head(
    method: bytes = b"POST",
    target: bytes = b"/v1/chat/completions",
    fields: bytes = b"",
    version: bytes = b"HTTP/1.1",
    key: str = KEY,
) -> bytes:
    """A request head with Host and the client key, then `fields` (each ending in CRLF)."""
    return (
        method + b" " + target + b" " + version + b"\r\nHost: gw\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n" + fields + b"\r\n"
    )


def sized(body: bytes, fields: bytes = b"", **kwargs: bytes) -> bytes:
    return head(fields=b"Content-Length: %d\r\n" % len(body) + fields, **kwargs) + body


def chunked(body: bytes, trailers: bytes = b"", fields: bytes = b"", key: str = KEY) -> bytes:
    return (
        head(fields=b"Transfer-Encoding: chunked\r\n" + fields, key=key)
        + b"%x\r\n%b\r\n0\r\n" % (len(body), body)
        + trailers
        + b"\r\n"
    )


# --- (b) chunked trailers ----------------------------------------------------------------------


def test_chunked_trailers_never_become_headers(gateway: Gateway, upstream_a: Upstream) -> None:
    # A front proxy checked the head; the trailers must not replace what it checked.
    with Conn(gateway.port) as conn:
        conn.send(chunked(chat_body(), b"Authorization: Bearer " + KEY.encode() + b"\r\n", key="sk-wrong"))
        answer = conn.read_answer()
        assert answer.status == 401, answer.raw
    assert upstream_a.received == []
    # ... nor add to it: no debug header switched on, nothing smuggled upstream.
    trailers = b"Authorization: Bearer sk-wrong\r\nx-modelway-debug: 1\r\nX-Smuggled: yes\r\n"
    with Conn(gateway.port) as conn:
        conn.send(chunked(chat_body(), trailers))
        answer = conn.read_answer()
        assert_chat_answer(answer, "m1")
        assert answer.header("x-modelway-route") is None
    assert len(upstream_a.received) == 1
    assert "x-smuggled" not in upstream_a.received[0].headers
    assert "X-Smuggled" not in upstream_a.received[0].headers


# --- (e) bodies that never finish --------------------------------------------------------------


def assert_late(conn: Conn, started: float) -> None:
    answer = conn.read_answer()
    waited = time.monotonic() - started
    assert answer.status == 408, answer.raw
    assert (answer.header("connection") or "").lower() == "close"
    message = answer.json()["error"]["message"]
    assert "server.body_timeout_s (1 s)" in message, message
    assert BODY_TIMEOUT - 0.1 < waited < BODY_TIMEOUT + 2, waited
    assert conn.closed_by_server(within=2)


@pytest.mark.parametrize(
    "request_start",
    [
        sized(chat_body())[:-10],  # a Content-Length body short of its end
        head(fields=b"Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n",  # no last chunk
    ],
    ids=["sized", "chunked"],
)
def test_a_body_that_never_finishes_is_a_408_and_closed(
    gateway: Gateway, upstream_a: Upstream, request_start: bytes
) -> None:
    # 20 such connections at once, without a client key: none is held open.
    conns = [Conn(gateway.port) for _ in range(20)]
    try:
        started = time.monotonic()
        for conn in conns:
            conn.send(request_start.replace(KEY.encode(), b"not-a-key"))
        for conn in conns:
            assert_late(conn, started)
    finally:
        for conn in conns:
            conn.sock.close()
    assert upstream_a.received == []
    assert_keeps_serving(gateway)


def test_expect_100_continue_and_no_body_is_a_408(gateway: Gateway) -> None:
    with Conn(gateway.port) as conn:
        started = time.monotonic()
        conn.send(head(fields=b"Content-Length: 100\r\nExpect: 100-continue\r\n"))
        assert conn.read_answer().status == 100
        assert_late(conn, started)


def test_a_body_slower_than_its_head_but_in_time_is_served(gateway: Gateway) -> None:
    request = sized(chat_body())
    with Conn(gateway.port) as conn:
        conn.send(request[:-10])
        time.sleep(BODY_TIMEOUT / 2)
        conn.send(request[-10:])
        assert_chat_answer(conn.read_answer(), "m1")


def test_a_body_the_server_holds_back_is_not_late(gateway: Gateway, upstream_a: Upstream) -> None:
    # The second request waits behind the first, which takes longer than the body timeout:
    # the server does not read its body meanwhile, so the client is not late with it.
    upstream_a.reset(Behaviour(delay_before_headers_s=BODY_TIMEOUT * 2))
    second = sized(chat_body())
    with Conn(gateway.port) as conn:
        conn.send(sized(chat_body()) + second[:-10])
        time.sleep(BODY_TIMEOUT * 1.5)
        conn.send(second[-10:])
        assert_chat_answer(conn.read_answer(), "m1")
        assert_chat_answer(conn.read_answer(), "m1")


def test_under_uvicorns_protocol_the_app_bounds_the_body(upstream_a: Upstream) -> None:
    gateway = Gateway(config_for(upstream_a), env={"MODELWAY_HTTP": "uvicorn"})
    with gateway, Conn(gateway.port) as conn:
        started = time.monotonic()
        conn.send(sized(chat_body())[:-10])
        assert_late(conn, started)
    assert upstream_a.received == []


# --- (j) request lines, Host and Transfer-Encoding -----------------------------------------------


def assert_refused(gateway: Gateway, request: bytes, status: int, words: str) -> None:
    with Conn(gateway.port) as conn:
        conn.send(request)
        answer = conn.read_answer("GET")
        assert answer.status == status, answer.raw
        assert (answer.header("connection") or "").lower() == "close"
        assert answer.header("content-type") == "application/json"
        error = answer.json()["error"]
        assert words in error["message"], error
        assert error["type"] == "invalid_request_error"
        assert conn.closed_by_server(within=5)
    assert_keeps_serving(gateway)


@pytest.mark.parametrize(
    ("request_line", "status", "words"),
    [
        (b"GET /health\r\n\r\n", 400, "HTTP/0.9"),  # HTTP/0.9: a request line without a version
        (b"GET /health HTTP/0.9\r\nHost: gw\r\n\r\n", 400, "HTTP/0.9"),
        (b"GET /health HTTP/2.0\r\nHost: gw\r\n\r\n", 505, "HTTP/2.0"),
    ],
    ids=["no-version", "0.9", "2.0"],
)
def test_http_versions_other_than_1x_are_refused(
    gateway: Gateway, request_line: bytes, status: int, words: str
) -> None:
    assert_refused(gateway, request_line, status, words)


def test_a_missing_or_duplicated_host_is_a_400(gateway: Gateway, upstream_a: Upstream) -> None:
    assert_refused(gateway, b"GET /health HTTP/1.1\r\n\r\n", 400, "Host")
    body = chat_body()
    request = sized(body).replace(b"Host: gw\r\n", b"Host: gw\r\nHost: evil.example\r\n")
    assert_refused(gateway, request, 400, "more than one Host")
    assert upstream_a.received == []
    # HTTP/1.0 has no Host requirement
    with Conn(gateway.port) as conn:
        conn.send(b"GET /health HTTP/1.0\r\n\r\n")
        assert conn.read_answer("GET").json() == {"status": "ok"}


@pytest.mark.parametrize(
    "coding",
    [b"Transfer-Encoding: gzip, chunked\r\n", b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"],
    ids=["one-field", "two-fields"],
)
def test_a_transfer_coding_other_than_chunked_is_a_501(gateway: Gateway, upstream_a: Upstream, coding: bytes) -> None:
    body = chat_body()
    request = head(fields=coding) + b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    assert_refused(gateway, request, 501, "gzip")
    assert upstream_a.received == []


# --- (f) bounds on the request head ----------------------------------------------------------------


def send_refused(conn: Conn, data: bytes) -> Answer:
    """Send `data`, which the server refuses before its end: it stops reading and closes, so
    sending may fail; its answer is read all the same, then the close."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.send(data)
    answer = conn.read_answer("GET")
    assert (answer.header("connection") or "").lower() == "close"
    with contextlib.suppress(ConnectionResetError):  # closed with bytes of ours unread: a reset
        assert conn.sock.recv(65536) == b""
    return answer


def assert_limit(answer: Answer, status: int, words: str) -> None:
    assert answer.status == status, answer.raw[:300]
    assert answer.header("content-type") == "application/json"
    message = answer.json()["error"]["message"]
    assert words in message, message


def test_a_url_over_8192_bytes_is_a_414(gateway: Gateway, upstream_a: Upstream) -> None:
    with Conn(gateway.port) as conn:
        answer = send_refused(conn, sized(chat_body(), target=b"/v1/chat/completions?q=" + b"a" * 1024 * 1024))
    assert_limit(answer, 414, "8192 bytes")
    assert upstream_a.received == []
    with Conn(gateway.port) as conn:  # at the limit, in 17 pieces: served
        request = head(b"GET", b"/health?q=" + b"a" * (8192 - 10))
        for i in range(0, len(request), 512):
            conn.send(request[i : i + 512])
            time.sleep(0.01)
        assert conn.read_answer("GET").json() == {"status": "ok"}


def test_more_than_max_headers_is_a_431(gateway: Gateway, upstream_a: Upstream) -> None:
    def fields(n: int) -> bytes:
        return b"".join(b"X-Filler-%d: v\r\n" % i for i in range(n))

    with Conn(gateway.port) as conn:  # 50,000 headers, 5 MB
        answer = send_refused(conn, sized(chat_body(), fields(50_000)))
    assert_limit(answer, 431, "server.max_headers (100)")
    with Conn(gateway.port) as conn:  # Host, Authorization, Content-Length and 98: 101
        answer = send_refused(conn, sized(chat_body(), fields(98)))
    assert_limit(answer, 431, "server.max_headers (100)")
    with Conn(gateway.port) as conn:  # 100: served
        conn.send(sized(chat_body(), fields(97)))
        assert_chat_answer(conn.read_answer(), "m1")
    assert len(upstream_a.received) == 1


@pytest.mark.parametrize("size", [100_000, 16 * 1024 * 1024], ids=["100KB", "16MB"])
def test_a_head_over_max_header_bytes_is_a_431_and_never_forwarded(
    gateway: Gateway, upstream_a: Upstream, size: int
) -> None:
    started = time.monotonic()
    with Conn(gateway.port) as conn:
        answer = send_refused(conn, sized(chat_body(), b"X-Big: " + b"v" * size + b"\r\n"))
    assert_limit(answer, 431, "server.max_header_bytes (65536 bytes)")
    assert time.monotonic() - started < 2
    assert upstream_a.received == []
    with Conn(gateway.port) as conn:  # a long header under the limit: served
        conn.send(head(b"GET", b"/health", b"X-Big: " + b"v" * 60_000 + b"\r\n"))
        assert conn.read_answer("GET").json() == {"status": "ok"}


def test_a_huge_header_does_not_hold_up_other_clients(gateway: Gateway) -> None:
    # 64 MB in one header line, sent while another client asks for /health: httptools would
    # grow the line read after read, holding the event loop; it is refused early instead.
    big = head(b"GET", b"/health", b"X-Big: ") + b"v" * (64 * 1024 * 1024)
    result: list[Answer] = []
    with Conn(gateway.port) as hog, Conn(gateway.port) as other:
        sender = threading.Thread(target=lambda: result.append(send_refused(hog, big)))
        sender.start()
        worst = 0.0
        for _ in range(20):
            started = time.monotonic()
            other.send(head(b"GET", b"/health"))
            assert other.read_answer("GET").status == 200
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.01)
        sender.join(10)
    assert result and result[0].status == 431
    assert worst < 0.5, worst


def test_trailers_over_max_header_bytes_are_a_431(gateway: Gateway, upstream_a: Upstream) -> None:
    with Conn(gateway.port) as conn:
        answer = send_refused(conn, chunked(chat_body(), b"X-Big: " + b"v" * 1024 * 1024 + b"\r\n"))
    assert_limit(answer, 431, "trailers")
    assert upstream_a.received == []


def test_configured_head_limits_hold_in_every_worker(upstream_a: Upstream) -> None:
    config = {
        "server": {"max_header_bytes": 2048, "max_headers": 10},
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "m1", "deployments": [{"provider": "a"}]}],
    }
    with Gateway(config, workers=2) as gw:
        for _ in range(6):  # a new connection each: the kernel spreads them over the workers
            with Conn(gw.port) as conn:
                answer = send_refused(conn, head(b"GET", b"/health", b"X-Big: " + b"v" * 3000 + b"\r\n"))
            assert_limit(answer, 431, "server.max_header_bytes (2048 bytes)")
            with Conn(gw.port) as conn:
                fields = b"".join(b"X-%d: v\r\n" % i for i in range(9))  # and Host, Authorization: 11
                answer = send_refused(conn, head(b"GET", b"/health", fields))
            assert_limit(answer, 431, "server.max_headers (10)")
            with Conn(gw.port) as conn:
                conn.send(head(b"GET", b"/health", b"X-Big: " + b"v" * 1500 + b"\r\n"))
                assert conn.read_answer("GET").json() == {"status": "ok"}


# --- (h) Upgrade requests -----------------------------------------------------------------------

H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
WEBSOCKET = b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"


@pytest.mark.parametrize("upgrade", [H2C, WEBSOCKET], ids=["h2c", "websocket"])
@pytest.mark.parametrize("framing", ["sized", "chunked", "sized-later"])
def test_a_post_asking_to_upgrade_is_answered_in_http11_with_its_body(
    gateway: Gateway, upstream_a: Upstream, upgrade: bytes, framing: str
) -> None:
    body = chat_body(content="upgrade me")
    with Conn(gateway.port) as conn:
        if framing == "chunked":
            conn.send(chunked(body, fields=upgrade))
        elif framing == "sized":
            conn.send(sized(body, upgrade))  # what `curl --http2 -d ...` sends
        else:  # the body in a read of its own
            request = sized(body, upgrade)
            conn.send(request[: -len(body)])
            time.sleep(0.1)
            conn.send(body)
        answer = conn.read_answer()
        assert_chat_answer(answer, "m1")
        assert answer.header("upgrade") is None  # no switch: HTTP/1.1 it stays
        assert conn.closed_by_server(within=5)
    assert upstream_a.received[0].body["messages"][0]["content"] == "upgrade me"


# --- (i) clients that half-close -------------------------------------------------------------------


def final_answer(conn: Conn, method: str = "POST") -> Answer:
    """The next final answer, past any 1xx (a half-closed client may be sent a 100 Continue)."""
    while True:
        answer = conn.read_answer(method)
        if answer.status >= 200:
            return answer


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_a_client_that_half_closes_after_its_request_gets_its_answer(gateway: Gateway, version: bytes) -> None:
    with Conn(gateway.port) as conn:
        conn.send(sized(chat_body(), version=version))
        conn.sock.shutdown(socket.SHUT_WR)
        assert_chat_answer(final_answer(conn), "m1")
        assert conn.closed_by_server(within=5)


def test_a_slow_answer_still_reaches_a_half_closed_client(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(delay_before_headers_s=0.6))  # long enough for the server to wonder
    with Conn(gateway.port) as conn:
        conn.send(sized(chat_body()) + head(b"GET", b"/health"))  # and a second one, pipelined
        conn.sock.shutdown(socket.SHUT_WR)
        assert_chat_answer(final_answer(conn), "m1")
        assert final_answer(conn, "GET").json() == {"status": "ok"}
        assert conn.closed_by_server(within=5)


def test_a_half_close_before_the_body_ends_closes_without_an_answer(gateway: Gateway, upstream_a: Upstream) -> None:
    with Conn(gateway.port) as conn:
        conn.send(sized(chat_body())[:-10])
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.closed_by_server(within=5)
    assert upstream_a.received == []


def test_a_client_that_closes_while_its_request_runs_still_cancels_it(gateway: Gateway, upstream_a: Upstream) -> None:
    # A close and a half-close look the same to the server (a FIN): the one that closed must
    # still be found gone at once, not when its answer is written.
    upstream_a.reset(Behaviour(delay_before_headers_s=3))
    with Conn(gateway.port) as conn:
        conn.send(sized(chat_body()))
        deadline = time.monotonic() + 5
        while not upstream_a.received and time.monotonic() < deadline:
            time.sleep(0.02)
    left = time.monotonic()
    while upstream_a.cancelled == 0 and time.monotonic() - left < 2:
        time.sleep(0.02)
    assert upstream_a.cancelled == 1
    assert time.monotonic() - left < 1
