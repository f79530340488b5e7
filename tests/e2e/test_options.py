"""Config options that change what the client sees: response_model, default_model, client
keys, selected_provider_header."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "server": {"response_model": "requested"},
        "auth": {
            "keys": [
                {"name": "team-a", "key": "${env:TEAM_A_KEY}", "models": ["gpt-4*", "fallback"]},
                {"name": "admin", "key_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
            ]
        },
        "providers": [
            {
                "name": "vllm-a",
                "kind": "vllm",
                "base_url": f"{upstream_a.url}/v1",
                "auth": {"header": {"Authorization": "Bearer upstream-token"}},
            }
        ],
        "models": [
            {"name": "gpt-4o", "deployments": [{"provider": "vllm-a", "model": "Qwen2.5-72B"}]},
            {"name": "fallback", "deployments": [{"provider": "vllm-a", "model": "small"}]},
            {"name": "other", "deployments": [{"provider": "vllm-a", "model": "other"}]},
            {"name": "gpt-4-capped", "deployments": [{"provider": "vllm-a", "model": "capped",
                                                      "max_output_tokens": 100}]},
        ],
        "routing": {"default_model": "fallback", "selected_provider_header": "x-selected-provider"},
    }
    with Gateway(config, env={"TEAM_A_KEY": "sk-team-a"}) as gw:
        yield gw


def test_response_model_requested_non_stream(gateway: Gateway, upstream_a: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-team-a", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", **CHAT)  # type: ignore[arg-type]
    assert raw.parse().model == "gpt-4o"
    assert raw.headers["x-modelway-model"] == "Qwen2.5-72B"
    assert upstream_a.received[0].body["model"] == "Qwen2.5-72B"


def test_response_model_requested_stream(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(chunks=3))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-team-a", max_retries=0)
    chunks = list(client.chat.completions.create(model="gpt-4o", stream=True, **CHAT))  # type: ignore[call-overload]
    assert len(chunks) == 4
    assert {c.model for c in chunks} == {"gpt-4o"}


def test_missing_and_bad_keys_are_401(gateway: Gateway, upstream_a: Upstream) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "gpt-4o", **CHAT})
    assert reply.status == 401
    assert reply.json()["error"]["type"] == "authentication_error"
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "gpt-4o", **CHAT}, {"Authorization": "Bearer no"})
    assert reply.status == 401
    assert "no" not in reply.error_message.replace("not", "")
    assert upstream_a.received == []
    assert request(gateway.url, "GET", "/v1/models").status == 401


def test_x_api_key_and_sha256_keys(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "other", **CHAT}, {"x-api-key": "test"})
    assert reply.status == 200  # sha256("test") is configured, with no model restriction


def test_model_allowlist_is_403(gateway: Gateway, upstream_a: Upstream) -> None:
    headers = {"Authorization": "Bearer sk-team-a"}
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "other", **CHAT}, headers)
    assert reply.status == 403
    assert "'other'" in reply.error_message and "sk-team-a" not in reply.error_message
    assert upstream_a.received == []
    listed = request(gateway.url, "GET", "/v1/models", headers=headers).json()
    assert [m["id"] for m in listed["data"]] == ["gpt-4o", "fallback", "gpt-4-capped"]


def test_default_model_for_missing_or_unknown_model(gateway: Gateway, upstream_a: Upstream) -> None:
    headers = {"Authorization": "Bearer test"}
    reply = post_json(gateway.url, "/v1/chat/completions", CHAT, headers)
    assert reply.status == 200
    assert upstream_a.received[-1].body["model"] == "small"
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "who-knows", **CHAT}, headers)
    assert reply.status == 200
    assert reply.headers["x-modelway-model"] == "small"
    assert upstream_a.received[-1].body["model"] == "small"


def test_selected_provider_header_is_sent_upstream(gateway: Gateway, upstream_a: Upstream) -> None:
    post_json(gateway.url, "/v1/chat/completions", {"model": "other", **CHAT}, {"x-api-key": "test"})
    assert upstream_a.received[-1].headers["x-selected-provider"] == "vllm-a"


def test_max_output_tokens_clamps_the_client_on_a_native_path(gateway: Gateway, upstream_a: Upstream) -> None:
    body = (b'{"model": "gpt-4-capped", "max_tokens": 5000, "max_completion_tokens": 50,'
            b' "seed": 123456789012345678901234567890, "messages": [{"role": "user", "content": "hi"}]}')
    reply = request(gateway.url, "POST", "/v1/chat/completions", body,
                    {"Content-Type": "application/json", "Authorization": "Bearer sk-team-a"})
    assert reply.status == 200
    sent = upstream_a.received[-1]
    assert sent.body["max_tokens"] == 100 and sent.body["max_completion_tokens"] == 50  # lowered / kept
    assert b'"seed": 123456789012345678901234567890' in sent.raw_body  # the rest as the client wrote it
    upstream_a.reset()
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "gpt-4-capped", **CHAT},
                      headers={"Authorization": "Bearer sk-team-a"})
    assert reply.status == 200 and "max_tokens" not in upstream_a.received[-1].body  # none asked: none sent


def test_response_model_requested_on_a_translated_path(gateway: Gateway, upstream_a: Upstream) -> None:
    body = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    reply = post_json(gateway.url, "/v1/messages", body, headers={"x-api-key": "sk-team-a"})
    assert reply.status == 200 and reply.json()["model"] == "gpt-4o"
    assert upstream_a.received[-1].body["model"] == "Qwen2.5-72B"
    reply = post_json(gateway.url, "/v1/messages", {**body, "stream": True}, headers={"x-api-key": "sk-team-a"})
    assert b'"model":"gpt-4o"' in reply.body and b"Qwen2.5-72B" not in reply.body
