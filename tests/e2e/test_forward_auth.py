"""auth.forward_auth end to end, with an auth service of our own: a 2xx lets the request
through with the service's upstream_headers (and never the client's credential); another
status is the client's answer, with the service's body; a service down or slower than
timeout_ms answers status_on_error. Connections to the service are kept alive."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.auth_server import AuthServer, Verdict
from support.gateway import Gateway, free_port
from support.http import Reply, request
from support.upstream import Upstream

CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
MESSAGES = json.dumps({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}).encode()


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    server = AuthServer().start()
    yield server
    server.stop()


def auth_config(upstream: Upstream, url: str, **forward_auth: Any) -> dict[str, Any]:
    return {
        "auth": {"forward_auth": {"url": url, "request_headers": ["Authorization", "X-Team"],
                                  "upstream_headers": ["X-User-ID"], **forward_auth}},
        "providers": [{"name": "a", "kind": "vllm", "base_url": f"{upstream.url}/v1",
                       "auth": {"header": {"Authorization": "Bearer provider-key"}}}],
        "models": [{"name": "m", "deployments": [{"provider": "a"}]}],
    }


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, auth_server: AuthServer) -> Iterator[Gateway]:
    with Gateway(auth_config(upstream_a, auth_server.url, status_on_error=503, timeout_ms=500)) as gw:
        yield gw


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def send(gateway: Gateway, headers: dict[str, str] | None = None, path: str = "/v1/chat/completions",
         body: bytes = CHAT) -> Reply:
    return request(gateway.url, "POST", path + "?beta=true", body, {"Content-Type": "application/json",
                                                                   **(headers or {})})


def test_allowed_the_service_headers_reach_the_upstream_and_the_client_credential_does_not(
    gateway: Gateway, auth_server: AuthServer, upstream_a: Upstream
) -> None:
    auth_server.reset(Verdict(200, headers={"X-User-ID": "u-42", "X-Not-Listed": "no"}))
    reply = send(gateway, {"Authorization": "Bearer client-secret", "X-User-ID": "spoofed", "X-Team": "t1",
                           "X-Other": "kept"})
    assert reply.status == 200, reply.body
    (asked,) = auth_server.asked
    assert asked.headers["Authorization"] == "Bearer client-secret"  # listed in request_headers
    assert asked.headers["X-Team"] == "t1" and "X-Other" not in asked.headers
    assert asked.headers["X-Forwarded-Method"] == "POST"
    assert asked.headers["X-Forwarded-Uri"] == "/v1/chat/completions?beta=true"
    (received,) = upstream_a.received
    headers = lower(received.headers)
    assert headers["x-user-id"] == "u-42"  # the service's, never the client's "spoofed"
    assert "spoofed" not in json.dumps(received.headers)
    assert "x-not-listed" not in headers
    assert headers["authorization"] == "Bearer provider-key"
    assert "client-secret" not in json.dumps(received.headers)
    assert headers["x-other"] == "kept"


def test_without_the_header_in_its_answer_the_clients_own_value_is_still_dropped(
    gateway: Gateway, auth_server: AuthServer, upstream_a: Upstream
) -> None:
    auth_server.reset(Verdict(204))
    assert send(gateway, {"X-User-ID": "spoofed"}).status == 200
    assert "x-user-id" not in lower(upstream_a.received[0].headers)


def test_refused_the_client_gets_the_service_status_and_body(
    gateway: Gateway, auth_server: AuthServer, upstream_a: Upstream
) -> None:
    auth_server.reset(Verdict(403, b'{"message": "team t1 may not call this"}'))
    reply = send(gateway, {"Authorization": "Bearer client-secret"})
    assert reply.status == 403
    assert reply.body == b'{"message": "team t1 may not call this"}'
    assert reply.headers["content-type"] == "application/json"
    auth_server.reset(Verdict(401, b"who are you?", content_type="text/plain"))
    reply = send(gateway, path="/v1/messages", body=MESSAGES)
    assert (reply.status, reply.body, reply.headers["content-type"]) == (401, b"who are you?", "text/plain")
    auth_server.reset(Verdict(401))  # no body: an error of our own, in the client's dialect
    reply = send(gateway, path="/v1/messages", body=MESSAGES)
    assert reply.status == 401 and reply.json()["error"]["type"] == "authentication_error"
    assert upstream_a.received == []


def test_a_slow_service_answers_status_on_error_in_time(
    gateway: Gateway, auth_server: AuthServer, upstream_a: Upstream
) -> None:
    auth_server.reset(Verdict(200, delay_s=5))
    started = time.monotonic()
    reply = send(gateway)
    assert reply.status == 503  # status_on_error
    assert 0.45 < time.monotonic() - started < 1.5  # timeout_ms: 500
    assert reply.json()["error"]["type"] == "overloaded_error"
    assert upstream_a.received == []


def test_a_service_down_answers_status_on_error_and_is_logged_once(upstream_a: Upstream) -> None:
    down = f"http://127.0.0.1:{free_port()}/check"
    with Gateway(auth_config(upstream_a, down)) as gw:
        reply = send(gw)
        assert reply.status == 401 and reply.json()["error"]["code"] == "forward_auth"  # the default status
        reply = send(gw, path="/v1/messages", body=MESSAGES)
        assert reply.status == 401 and reply.json()["type"] == "error"
        assert "forward auth at" in gw.logs() and gw.logs().count("forward auth at") == 1  # once, not per request
    assert upstream_a.received == []


def test_connections_to_the_service_are_kept_alive(gateway: Gateway, auth_server: AuthServer) -> None:
    auth_server.reset(Verdict(200))
    for _ in range(5):
        assert send(gateway).status == 200
    assert len({asked.peer for asked in auth_server.asked}) == 1
