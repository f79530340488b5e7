"""The gateway's HTTP/1.1 server side, black box: keep-alive, pipelining, closing, HTTP/1.0,
chunked and 100-continue request bodies, malformed input, streaming, HEAD, size limits,
disconnects, idle timeouts, big heads and requests trickled in byte by byte.

Everything is driven over raw sockets and runs once per server protocol (`MODELWAY_HTTP`):
modelway's own, and uvicorn's httptools protocol, the fallback. Where the two answer
differently (HTTP/1.0 framing, a HEAD's length, a 413's unread body) each test pins what
that protocol does, so a change in either shows here."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.rawhttp import TIMEOUT, Conn, assert_chat_answer, assert_keeps_serving, chat_body, get, post
from support.upstream import Behaviour, Upstream

MODELS = ("m1", "m2", "m3")
MODELWAY, UVICORN = "modelway", "uvicorn"  # the values of MODELWAY_HTTP


@pytest.fixture(scope="module", params=[MODELWAY, UVICORN])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, protocol: str) -> Iterator[Gateway]:
    config = {
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": name, "deployments": [{"provider": "a"}]} for name in MODELS],
    }
    with Gateway(config, env={"MODELWAY_HTTP": protocol}) as gw:
        yield gw


@pytest.fixture(scope="module")
def small_gateway(upstream_a: Upstream, protocol: str) -> Iterator[Gateway]:
    config = {
        "server": {"max_body_bytes": 1000},
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "m1", "deployments": [{"provider": "a"}]}],
    }
    with Gateway(config, env={"MODELWAY_HTTP": protocol}) as gw:
        yield gw


def test_keep_alive_serves_three_requests_on_one_socket(gateway: Gateway, upstream_a: Upstream) -> None:
    with Conn(gateway.port) as conn:
        local = conn.sock.getsockname()
        for model in MODELS:
            conn.send(post(chat_body(model)))
            answer = conn.read_answer()
            assert_chat_answer(answer, model)
            assert (answer.header("connection") or "").lower() != "close"
            assert conn.buf == b""  # exactly Content-Length bytes, nothing after
        assert conn.sock.getsockname() == local
        assert not conn.closed_by_server(within=0.2)
    assert [r.body["model"] for r in upstream_a.received] == list(MODELS)


def test_pipelined_requests_are_answered_in_order(gateway: Gateway, upstream_a: Upstream) -> None:
    # Three requests — two chats for different models around a GET — in one write.
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m2")) + get("/health") + post(chat_body("m3")))
        assert_chat_answer(conn.read_answer(), "m2")
        health = conn.read_answer("GET")
        assert health.status == 200 and health.json() == {"status": "ok"}
        assert_chat_answer(conn.read_answer(), "m3")
        assert conn.buf == b""
        assert not conn.closed_by_server(within=0.2)
    assert [r.body["model"] for r in upstream_a.received] == ["m2", "m3"]


def test_connection_close_from_the_client_closes_after_the_answer(gateway: Gateway) -> None:
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body(), b"Connection: close\r\n"))
        answer = conn.read_answer()
        assert_chat_answer(answer, "m1")
        assert (answer.header("connection") or "").lower() == "close"
        assert conn.closed_by_server(within=TIMEOUT)


def test_http10_without_keep_alive_gets_a_length_and_a_close(gateway: Gateway) -> None:
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body(), version=b"HTTP/1.0"))
        answer = conn.read_answer()
        # Both answer an HTTP/1.0 request with an HTTP/1.1 status line, which RFC 9110
        # section 6.2 allows (the server's own version, the client reads it as 1.0).
        assert answer.status_line == b"HTTP/1.1 200 OK"
        assert answer.header("transfer-encoding") is None  # an HTTP/1.0 client cannot read chunks
        assert answer.header("content-length") == str(len(answer.body))
        assert answer.header("connection") == "close"
        assert answer.json()["model"] == "m1"
        assert conn.closed_by_server(within=TIMEOUT)


def test_chunked_request_body_is_reassembled(gateway: Gateway, upstream_a: Upstream) -> None:
    body = chat_body("m2", "chunked " * 20)
    pieces = [body[:7], body[7:40], body[40:41], body[41:]]
    with Conn(gateway.port) as conn:
        conn.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            time.sleep(0.02)
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        time.sleep(0.02)
        conn.send(b"0\r\n\r\n")
        assert_chat_answer(conn.read_answer(), "m2")
    assert len(upstream_a.received) == 1
    assert upstream_a.received[0].body == json.loads(body)


def test_expect_100_continue_is_answered_before_the_body(gateway: Gateway, upstream_a: Upstream) -> None:
    body = chat_body("m3")
    with Conn(gateway.port) as conn:
        conn.send(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        interim = conn.read_answer()  # times out (fails) if the server waits for the body
        assert interim.status_line == b"HTTP/1.1 100 Continue"
        assert conn.buf == b""  # nothing but the interim head before the body is sent
        conn.send(body)
        assert_chat_answer(conn.read_answer(), "m3")
    assert upstream_a.received[0].body == json.loads(body)


def test_http10_stream_is_readable_and_closed(gateway: Gateway, protocol: str) -> None:
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m2", stream=True), version=b"HTTP/1.0"))
        answer = conn.read_answer()
        assert answer.status == 200
        assert answer.header("content-length") is None
        if protocol == MODELWAY:
            # An HTTP/1.0 client cannot decode chunks (RFC 9112 section 6.1): the body ends
            # where the connection closes.
            assert answer.header("transfer-encoding") is None
            assert answer.header("connection") == "close"
            assert answer.raw.endswith(b"data: [DONE]\n\n")
        else:
            # QUIRK (uvicorn): an HTTP/1.0 client is sent `transfer-encoding: chunked`.
            assert answer.header("transfer-encoding") == "chunked"
            assert answer.raw.endswith(b"0\r\n\r\n")
        assert answer.body.endswith(b"data: [DONE]\n\n")
        assert answer.body.count(b"data: ") == 7
        assert conn.buf == b"" and conn.closed_by_server(within=TIMEOUT)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",  # a TLS hello
        b"this is not http at all\r\n\r\n",
        b"GET /health HTTP/1.1 extra\r\nHost: gw\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost gw\r\n\r\n",  # header without a colon
        # Request smuggling: a body length given two ways, or two different lengths. RFC 9112
        # section 6.1 lets a server process Content-Length + chunked by the chunks, but it MUST
        # close afterwards; rejecting (llhttp does) is the safe choice for a gateway. uvicorn's
        # h11 protocol fails this case: it answers and keeps the connection open.
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
    ids=["tls-hello", "words", "bad-request-line", "bad-header", "length-and-chunked", "two-lengths"],
)
def test_malformed_request_is_400_and_closed(gateway: Gateway, garbage: bytes) -> None:
    with Conn(gateway.port) as conn:
        conn.send(garbage)
        answer = conn.read_answer("GET")
        assert answer.status == 400, answer.raw
        assert (answer.header("connection") or "").lower() == "close"
        assert conn.closed_by_server(within=TIMEOUT)
    assert_keeps_serving(gateway)


def test_stream_is_chunked_and_the_connection_stays_usable(gateway: Gateway, upstream_a: Upstream) -> None:
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m1", stream=True)))
        answer = conn.read_answer()
        assert answer.status_line == b"HTTP/1.1 200 OK"
        assert answer.header("content-length") is None
        assert answer.header("transfer-encoding") == "chunked"
        assert (answer.header("content-type") or "").startswith("text/event-stream")
        assert answer.raw.endswith(b"0\r\n\r\n")
        events = [e for e in answer.body.split(b"\n\n") if e]
        assert len(events) == 7  # 5 chunks, the finish chunk, [DONE]
        assert events[-1] == b"data: [DONE]"
        assert all(json.loads(e[6:])["model"] == "m1" for e in events[:-1])
        conn.send(post(chat_body("m2")))
        assert_chat_answer(conn.read_answer(), "m2")


def test_head_sends_no_body_and_keeps_the_connection(gateway: Gateway) -> None:
    with Conn(gateway.port) as conn:
        conn.send(get("/health", "HEAD"))
        head = conn.read_answer("HEAD")
        assert head.status_line == b"HTTP/1.1 200 OK"
        # The length GET would have (the app sends it; RFC 9110 section 9.3.2), and never a
        # body on the wire: the GET right after must parse from the first byte.
        assert head.header("content-length") == str(len(b'{"status":"ok"}'))
        assert not conn.closed_by_server(within=0.3)  # and nothing arrived meanwhile
        conn.send(get("/health"))
        answer = conn.read_answer("GET")
        assert answer.status_line == b"HTTP/1.1 200 OK"
        assert answer.json() == {"status": "ok"}


def test_a_one_megabyte_body_sent_at_once_is_proxied(gateway: Gateway, upstream_a: Upstream) -> None:
    content = "x" * (1024 * 1024)
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m1", content)))
        assert_chat_answer(conn.read_answer(), "m1")
    assert upstream_a.received[0].body["messages"][0]["content"] == content


def test_body_over_max_body_bytes_is_a_413_json_error(small_gateway: Gateway, upstream_a: Upstream) -> None:
    body = chat_body("m1", "x" * 2000)
    with Conn(small_gateway.port) as conn:
        started = time.monotonic()
        conn.send(post(body))
        answer = conn.read_answer()
        assert time.monotonic() - started < 2
        assert answer.status_line.startswith(b"HTTP/1.1 413")
        assert answer.header("content-type") == "application/json"
        assert answer.header("content-length") == str(len(answer.body))
        message = answer.json()["error"]["message"]
        assert "1000" in message and str(len(body)) in message
        # The body the app never read is skipped, not taken for a request, and the
        # connection goes on serving.
        conn.send(get("/health"))
        follow = conn.read_answer("GET")
        assert follow.status == 200 and follow.json() == {"status": "ok"}
    assert upstream_a.received == []
    assert_keeps_serving(small_gateway)


def test_client_leaving_mid_stream_cancels_upstream_and_server_goes_on(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(chunks=50, chunk_gap_s=0.2))  # a 10 s stream
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m1", stream=True)))
        conn.take_until(b"\r\n\r\n")
        conn.take_until(b"data: ")  # the stream has started
    left = time.monotonic()
    while upstream_a.cancelled == 0 and time.monotonic() - left < 2:
        time.sleep(0.02)
    assert upstream_a.cancelled == 1
    upstream_a.reset()
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m2")))
        assert_chat_answer(conn.read_answer(), "m2")


def test_idle_keep_alive_connection_is_closed_by_the_server(gateway: Gateway) -> None:
    with Conn(gateway.port) as conn:
        conn.send(get("/health"))
        assert conn.read_answer("GET").status == 200
        started = time.monotonic()
        assert not conn.closed_by_server(within=1)  # kept alive for a while...
        assert conn.closed_by_server(within=7)  # ...but not for ever (uvicorn: 5 s)
        assert time.monotonic() - started < 8


def test_many_and_long_headers_are_served(gateway: Gateway, upstream_a: Upstream) -> None:
    extra = b"".join(f"X-Filler-{i}: value-{i}\r\n".encode() for i in range(50))
    extra += b"X-Long: " + b"v" * 4096 + b"\r\n"
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m1"), extra))
        assert_chat_answer(conn.read_answer(), "m1")
        conn.send(get("/health", extra_headers=extra))
        assert conn.read_answer("GET").json() == {"status": "ok"}
    assert len(upstream_a.received) == 1


def test_response_head_is_well_formed(gateway: Gateway) -> None:
    with Conn(gateway.port) as conn:
        for message, method in ((post(chat_body("m1")), "POST"), (get("/health"), "GET")):
            conn.send(message)
            answer = conn.read_answer(method)
            assert answer.status_line == b"HTTP/1.1 200 OK"
            head = answer.raw.split(b"\r\n\r\n", 1)[0]
            assert head.count(b"HTTP/1.") == 1  # one status line, nothing else looks like one
            assert not any(line[:1] in b" \t" for line in head.split(b"\r\n"))  # no folded lines
            assert answer.header("date")  # exactly one, not empty
            time.strptime(answer.header("date") or "", "%a, %d %b %Y %H:%M:%S GMT")
            assert answer.header("content-length") == str(len(answer.body))
            assert (answer.header("content-type") or "").startswith("application/json")
            assert answer.header("transfer-encoding") is None
            assert answer.header("server") is None  # the server header is turned off
            assert answer.raw == head + b"\r\n\r\n" + answer.body


def test_request_trickled_in_byte_by_byte(gateway: Gateway, upstream_a: Upstream) -> None:
    message = post(chat_body("m3", "slowly"))
    with Conn(gateway.port) as conn:
        for i in range(len(message)):
            conn.send(message[i : i + 1])
            time.sleep(0.001)
        assert_chat_answer(conn.read_answer(), "m3")
        # and once more in five pieces with pauses, on the same connection
        step = len(message) // 5 + 1
        for i in range(0, len(message), step):
            conn.send(message[i : i + step])
            time.sleep(0.05)
        assert_chat_answer(conn.read_answer(), "m3")
    assert [r.body["messages"][0]["content"] for r in upstream_a.received] == ["slowly", "slowly"]


def test_model_name_with_crlf_is_a_400_not_a_header(gateway: Gateway, upstream_a: Upstream) -> None:
    """The model name is echoed in x-modelway-model: one holding CR LF must not get there."""
    with Conn(gateway.port) as conn:
        conn.send(post(chat_body("m1\r\nset-cookie: evil=1")))
        answer = conn.read_answer()
    assert answer.status == 400
    assert "control characters" in answer.json()["error"]["message"]
    assert answer.header("set-cookie") is None
    assert upstream_a.received == []


def test_client_leaving_after_a_large_body_cancels_upstream(gateway: Gateway, upstream_a: Upstream) -> None:
    # More than 64 KiB of body read at once pause reading until the app takes them; the
    # server must read again after that, or it does not see the client leave while
    # upstream works, and the upstream request runs to its end for nobody.
    upstream_a.reset(Behaviour(delay_before_headers_s=5))
    message = post(chat_body("m1", "x" * 200_000))
    with Conn(gateway.port) as conn:
        conn.send(message[:-80_000])
        time.sleep(0.2)
        conn.send(message[-80_000:])  # the end of the body, most likely read at once
        deadline = time.monotonic() + TIMEOUT
        while not upstream_a.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert upstream_a.received
    left = time.monotonic()
    while upstream_a.cancelled == 0 and time.monotonic() - left < 2:
        time.sleep(0.02)
    assert upstream_a.cancelled == 1
