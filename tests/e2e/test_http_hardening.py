"""modelway's HTTP/1.1 server against hostile or unusual clients, over raw sockets: chunked
trailers, bodies that never finish, oversized request heads, Upgrade requests, clients that
half-close, and request lines or framing the server does not support."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.rawhttp import Conn, assert_chat_answer, chat_body
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
