"""modelway's HTTP/1.1 server against hostile or unusual clients, over raw sockets: chunked
trailers, bodies that never finish, oversized request heads, Upgrade requests, clients that
half-close, and request lines or framing the server does not support."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.rawhttp import Conn, assert_chat_answer, assert_keeps_serving, chat_body
from support.upstream import Upstream

KEY = "sk-test-good"


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "auth": {"keys": [{"name": "tester", "key": KEY, "debug": True}]},
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "m1", "deployments": [{"provider": "a"}]}],
    }
    with Gateway(config) as gw:
        yield gw


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
