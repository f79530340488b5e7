"""The gateway end to end: the real server, real upstream servers of our own, the
official openai SDK for the happy paths and plain HTTP for everything malformed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from support.gateway import Gateway, free_port
from support.http import post_json, request
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def config_for(a: Upstream, b: Upstream, dead_port: int) -> dict[str, Any]:
    return {
        "server": {"max_body_bytes": 4096},
        "providers": [
            {
                "name": "vllm-a",
                "kind": "vllm",
                "base_url": f"{a.url}/v1",
                "auth": {"header": {"Authorization": "Bearer token-a"}},
                "headers": {"x-static": "from-config"},
                "timeout_ms": 1500,
            },
            {
                "name": "gpustack-b",
                "kind": "gpustack",
                "base_url": f"{b.url}/v1-openai",
                "auth": {"header": {"Authorization": "Bearer token-b"}},
                "discover": True,
            },
            {
                "name": "dead",
                "kind": "openai-compatible",
                "base_url": f"http://127.0.0.1:{dead_port}/v1",
                "connect_timeout_ms": 500,
                "discover": True,
            },
            {
                "name": "query-auth",
                "kind": "openai-compatible",
                "base_url": f"{a.url}/v1",
                "auth": {"query": {"api_key": "query-secret"}},
            },
            {
                "name": "fixed-endpoint",
                "kind": "openai-compatible",
                "endpoint": f"{b.url}/custom/generate?fixed=1",
            },
        ],
        "models": [
            {
                "name": "chat-a",
                "deployments": [{"provider": "vllm-a", "model": "real-a", "options": {"max_tokens": 7}}],
            },
            {"name": "chat-b", "deployments": [{"provider": "gpustack-b", "model": "real-b"}]},
            {"name": "keep-name", "deployments": [{"provider": "vllm-a"}]},
            {"name": "broken", "deployments": [{"provider": "dead", "model": "x"}]},
            {"name": "by-query", "deployments": [{"provider": "query-auth", "model": "q"}]},
            {"name": "by-endpoint", "deployments": [{"provider": "fixed-endpoint", "model": "e"}]},
            {
                "name": "split",
                "deployments": [
                    {"provider": "vllm-a", "model": "split-a", "weight": 3},
                    {"provider": "gpustack-b", "model": "split-b", "weight": 1},
                ],
            },
        ],
        "model_mapping": {"rules": {"gpt-4o": "chat-b", "gpt-4-*": "chat-a", "gpt-*": "keep-name", "*": ""}},
    }


@pytest.fixture(scope="module")
def dead_port() -> int:
    return free_port()  # nothing listens there


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, upstream_b: Upstream, dead_port: int) -> Iterator[Gateway]:
    with Gateway(config_for(upstream_a, upstream_b, dead_port)) as gw:
        yield gw


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="client-secret", max_retries=0)


def test_chat_rewrites_model_injects_auth_and_merges_options(
    client: openai.OpenAI, upstream_a: Upstream
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="chat-a", **CHAT)  # type: ignore[arg-type]
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello from upstream-a"
    assert completion.model == "real-a"
    assert raw.headers["x-modelway-provider"] == "vllm-a"
    assert raw.headers["x-modelway-model"] == "real-a"
    assert raw.headers["x-modelway-attempts"] == "1"
    (seen,) = upstream_a.received
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "real-a"
    assert seen.body["max_tokens"] == 7
    assert seen.body["messages"] == CHAT["messages"]
    assert seen.headers["Authorization"] == "Bearer token-a"
    assert seen.headers["x-static"] == "from-config"


def test_client_credentials_and_hop_by_hop_headers_are_not_forwarded(
    gateway: Gateway, upstream_a: Upstream
) -> None:
    reply = post_json(
        gateway.url,
        "/v1/chat/completions",
        {"model": "chat-a", **CHAT},
        {"Authorization": "Bearer client-secret", "x-api-key": "client-key", "Connection": "keep-alive",
         "x-trace-id": "trace-1"},
    )
    assert reply.status == 200
    (seen,) = upstream_a.received
    assert seen.headers["Authorization"] == "Bearer token-a"
    assert "x-api-key" not in {k.lower() for k in seen.headers}
    assert "client-secret" not in str(seen.headers)
    assert seen.headers["x-trace-id"] == "trace-1"


def test_stream_relays_every_chunk_as_it_arrives(client: openai.OpenAI, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(chunks=4, chunk_gap_s=0.4))
    started = time.monotonic()
    arrivals = []
    pieces = []
    with client.chat.completions.with_streaming_response.create(model="chat-a", stream=True, **CHAT) as raw:  # type: ignore[call-overload]
        assert raw.headers["x-modelway-provider"] == "vllm-a"
        for chunk in raw.parse():
            arrivals.append(time.monotonic() - started)
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "c0 c1 c2 c3 "
    # The first chunk reached the client long before the upstream finished (~1.2 s in).
    assert arrivals[0] < 0.6
    assert arrivals[-1] > 1.1
    assert upstream_a.received[0].body["stream"] is True


def test_embeddings_through_the_sdk(client: openai.OpenAI, upstream_b: Upstream) -> None:
    result = client.embeddings.create(model="chat-b", input="hello")
    assert result.data[0].embedding == [0.1, 0.2, 0.3]
    (seen,) = upstream_b.received
    assert seen.path == "/v1-openai/embeddings"
    assert seen.body["model"] == "real-b"
    assert seen.headers["Authorization"] == "Bearer token-b"


def test_models_lists_public_and_discovered_and_skips_failing_provider(
    client: openai.OpenAI, upstream_b: Upstream, gateway: Gateway
) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:7] == ["chat-a", "chat-b", "keep-name", "broken", "by-query", "by-endpoint", "split"]
    assert "b-model-1" in ids and "shared-model" in ids
    assert len(ids) == len(set(ids))
    # gpustack's models live at /v1-openai/models, asked with the provider's own token
    models_calls = [r for r in upstream_b.received if r.method == "GET"]
    assert models_calls[0].path == "/v1-openai/models"
    assert models_calls[0].headers["Authorization"] == "Bearer token-b"
    plain = request(gateway.url, "GET", "/models")
    assert plain.status == 200
    assert [m["id"] for m in plain.json()["data"]] == ids


def test_discovered_model_is_routed_by_its_own_name(client: openai.OpenAI, upstream_b: Upstream) -> None:
    raw = client.chat.completions.with_raw_response.create(model="b-model-1", **CHAT)  # type: ignore[arg-type]
    assert raw.headers["x-modelway-provider"] == "gpustack-b"
    posts = [r for r in upstream_b.received if r.method == "POST"]
    assert posts[0].body["model"] == "b-model-1"


@pytest.mark.parametrize(
    ("asked", "provider", "upstream_model"),
    [
        ("gpt-4o", "gpustack-b", "real-b"),  # exact rule
        ("gpt-4-turbo", "vllm-a", "real-a"),  # longest prefix wins over "gpt-*"
        ("gpt-3.5", "vllm-a", "keep-name"),  # "gpt-*" → keep-name, whose deployment sends the mapped name
        ("chat-b", "gpustack-b", "real-b"),  # "*": "" keeps the name
    ],
)
def test_model_mapping_rules(gateway: Gateway, asked: str, provider: str, upstream_model: str) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": asked, **CHAT})
    assert reply.status == 200, reply.body
    assert reply.headers["x-modelway-provider"] == provider
    assert reply.json()["model"] == upstream_model


def test_mapping_applies_only_on_configured_paths(gateway: Gateway, upstream_b: Upstream) -> None:
    # /v1/other/thing is not a mapping path: "gpt-4o" is looked up as it is, and is unknown.
    reply = post_json(gateway.url, "/v1/other/thing", {"model": "gpt-4o"})
    assert reply.status == 404
    assert "gpt-4o" in reply.error_message
    routed = post_json(gateway.url, "/v1/other/thing", {"model": "chat-b"})
    assert routed.status == 200
    assert upstream_b.received[-1].path == "/v1-openai/other/thing"


def test_paths_without_v1_and_other_endpoints(gateway: Gateway, upstream_a: Upstream) -> None:
    assert post_json(gateway.url, "/chat/completions", {"model": "chat-a", **CHAT}).status == 200
    assert upstream_a.received[-1].path == "/v1/chat/completions"
    for path in ("/v1/completions", "/v1/rerank", "/v1/some/new/api"):
        reply = post_json(gateway.url, path, {"model": "chat-a", "input": "x"})
        assert reply.status == 200, (path, reply.body)
        assert upstream_a.received[-1].path == "/v1" + path.removeprefix("/v1")
    # A kind vllm provider takes /v1/responses as chat/completions (responses_api: translate by default).
    for path in ("/v1/responses", "/responses"):
        reply = post_json(gateway.url, path, {"model": "chat-a", "input": "x"})
        assert reply.status == 200, (path, reply.body)
        assert reply.json()["object"] == "response"
        assert upstream_a.received[-1].path == "/v1/chat/completions"


def test_auth_query_and_endpoint_override(gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream) -> None:
    assert post_json(gateway.url, "/v1/chat/completions?trace=1", {"model": "by-query", **CHAT}).status == 200
    seen = upstream_a.received[-1]
    assert seen.query == {"api_key": "query-secret"}  # the client's own query is not forwarded
    assert post_json(gateway.url, "/v1/chat/completions?fixed=2", {"model": "by-endpoint", **CHAT}).status == 200
    seen = upstream_b.received[-1]
    assert seen.path == "/custom/generate"
    assert seen.query == {"fixed": "1"}


def test_weighted_round_robin_spreads_3_to_1(gateway: Gateway) -> None:
    providers = [
        post_json(gateway.url, "/v1/chat/completions", {"model": "split", **CHAT}).headers["x-modelway-provider"]
        for _ in range(40)
    ]
    assert providers.count("vllm-a") == 30
    assert providers.count("gpustack-b") == 10
    # smooth: never more than three in a row on the heavier one
    assert "vllm-a" * 4 not in "".join("vllm-a" if p == "vllm-a" else "|" for p in providers)


def test_connection_refused_is_502_with_attempts(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "broken", **CHAT})
    assert reply.status == 502
    assert reply.headers["x-modelway-attempts"] == "1"
    error = reply.json()["error"]
    assert error["type"] == "upstream_error"
    assert "dead/x" in error["message"] and "connect_error" in error["message"]


def test_upstream_timeout_is_504(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(delay_before_headers_s=3))
    started = time.monotonic()
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "chat-a", **CHAT})
    elapsed = time.monotonic() - started
    assert reply.status == 504
    assert 1.3 < elapsed < 2.5  # timeout_ms 1500
    assert reply.json()["error"]["code"] == "upstream_timeout"


def test_upstream_errors_pass_through_unchanged(gateway: Gateway, upstream_a: Upstream) -> None:
    body = {"error": {"message": "context too long", "type": "invalid_request_error", "code": "ctx"}}
    upstream_a.reset(Behaviour(status=400, error_body=body))
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "chat-a", **CHAT})
    assert reply.status == 400
    assert reply.json() == body
    assert len(upstream_a.received) == 1
    upstream_a.reset(Behaviour(status=503))
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "chat-a", **CHAT})
    assert reply.status == 503
    assert reply.json()["error"]["message"] == "upstream-a says 503"


def test_client_disconnect_cancels_the_upstream_request(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(chunks=50, chunk_gap_s=0.2))
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        body = b'{"model": "chat-a", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        assert b"200 OK" in sock.recv(65536)
    deadline = time.monotonic() + 3
    while upstream_a.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert upstream_a.cancelled == 1  # the upstream saw its client go away within seconds, not 10 s


def test_non_stream_disconnect_cancels_too(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(delay_before_headers_s=1.2))
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        body = b'{"model": "chat-a", "messages": [{"role": "user", "content": "hi"}]}'
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        time.sleep(0.3)
    time.sleep(0.5)
    assert upstream_a.cancelled == 1


def test_health_and_ready(gateway: Gateway) -> None:
    assert request(gateway.url, "GET", "/health").json() == {"status": "ok"}
    ready = request(gateway.url, "GET", "/ready")
    assert ready.status == 200 and ready.json()["status"] == "ready"
    assert request(gateway.url, "POST", "/health").status == 405
    nope = request(gateway.url, "GET", "/nope")  # every other path is routed by POST
    assert nope.status == 405 and nope.headers["allow"] == "POST"
