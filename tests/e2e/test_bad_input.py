"""Malformed requests get a specific 4xx naming what is wrong — never a 500 or a hang."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.http import Reply, post_json, read_raw_response, request
from support.upstream import Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "server": {"max_body_bytes": 2048},
        "providers": [{"name": "a", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "m", "deployments": [{"provider": "a"}]}],
    }
    with Gateway(config) as gw:
        yield gw


def post_raw(gateway: Gateway, body: bytes, content_type: str | None = "application/json") -> Reply:
    headers = {"Content-Type": content_type} if content_type else {}
    return request(gateway.url, "POST", "/v1/chat/completions", body, headers)


def assert_error(reply: Reply, status: int, *words: str) -> dict[str, object]:
    assert reply.status == status, reply.body
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"], error["message"]
    return error  # type: ignore[no-any-return]


def test_non_json_content_type_is_400_saying_what_to_send(gateway: Gateway) -> None:
    assert_error(post_raw(gateway, b'{"model": "m"}', "text/plain"), 400, "Content-Type: application/json")
    assert_error(post_raw(gateway, b"model=m", "application/x-www-form-urlencoded"), 400, "Content-Type")


def test_missing_content_type_is_read_as_json(gateway: Gateway, upstream_a: Upstream) -> None:
    reply = request(gateway.url, "POST", "/v1/chat/completions", b'{"model": "m", "messages": [{"role": "user"}]}')
    assert reply.status == 200, reply.body
    assert len(upstream_a.received) == 1


def test_json_with_charset_is_accepted(gateway: Gateway) -> None:
    reply = post_raw(gateway, b'{"model": "m", "messages": [{"role": "user"}]}', "application/json; charset=utf-8")
    assert reply.status == 200


def test_empty_body(gateway: Gateway) -> None:
    assert_error(post_raw(gateway, b""), 400, "empty")


def test_invalid_json_says_where(gateway: Gateway) -> None:
    assert_error(post_raw(gateway, b'{"model": "m",'), 400, "not valid JSON", "line 1")


def test_body_must_be_an_object(gateway: Gateway) -> None:
    assert_error(post_raw(gateway, b"[1, 2]"), 400, "JSON object", "array")


@pytest.mark.parametrize(
    ("payload", "param", "words"),
    [
        ({"model": "m", "stream": "yes", **CHAT}, "stream", ["'stream'", "boolean"]),
        ({"model": "m", "stream_options": 3, **CHAT}, "stream_options", ["'stream_options'", "object"]),
        ({"model": 42, **CHAT}, "model", ["'model'", "string"]),
        ({"model": "m"}, "messages", ["'messages'", "missing"]),
        ({"model": "m", "messages": []}, "messages", ["'messages'", "empty"]),
        ({"model": "m", "messages": "hi"}, "messages", ["'messages'", "string"]),
        ({**CHAT}, "model", ["missing model"]),
    ],
)
def test_field_errors_name_the_field(gateway: Gateway, payload: dict, param: str, words: list[str]) -> None:
    error = assert_error(post_json(gateway.url, "/v1/chat/completions", payload), 400, *words)
    assert error["param"] == param


def test_unknown_model_is_404(gateway: Gateway) -> None:
    error = assert_error(post_json(gateway.url, "/v1/chat/completions", {"model": "nope", **CHAT}), 404, "'nope'")
    assert error["code"] == "model_not_found"


def test_body_over_limit_is_413_without_reading_it(gateway: Gateway, upstream_a: Upstream) -> None:
    # Declare 10 MB and send only the headers: the answer must come without the body.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n"
        )
        started = time.monotonic()
        answer = read_raw_response(sock)
        assert time.monotonic() - started < 2
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"10000000" in answer and b"2048" in answer
    assert upstream_a.received == []


def test_chunked_body_over_limit_is_413(gateway: Gateway) -> None:
    big = b'{"model": "m", "pad": "' + b"x" * 5000 + b'"}'
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n"
        )
        answer = read_raw_response(sock)
    assert answer.startswith(b"HTTP/1.1 413")


def test_bad_content_length_is_400(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        answer = read_raw_response(sock)
    assert answer.startswith(b"HTTP/1.1 400")


def test_gateway_survives_all_of_it(gateway: Gateway) -> None:
    assert request(gateway.url, "GET", "/health").status == 200
    assert "Traceback" not in gateway.logs()
