"""The access log: one JSON line per request on stdout with SPEC section 7's fields, for
answers, refusals and failures alike; tokens and cost from the answer's usage; no secret."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Behaviour, Upstream

FIELDS = {"ts", "method", "path", "status", "client", "original_model", "model", "provider", "upstream_model",
          "attempts", "duration_ms", "ttft_ms", "input_tokens", "output_tokens", "cost_usd", "error"}
KEY = "sk-access-canary-3b9f"
PROVIDER_TOKEN = "provider-canary-77aa"
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "auth": {"keys": [{"name": "team-a", "key": KEY}]},
        "providers": [
            {"name": "up", "kind": "vllm", "base_url": f"{upstream_a.url}/v1",
             "auth": {"header": {"Authorization": f"Bearer {PROVIDER_TOKEN}"}}},
        ],
        "models": [{"name": "chat", "deployments": [{"provider": "up", "model": "real-chat",
                                                     "input_cost_per_mtok": 2.0, "output_cost_per_mtok": 4.0}]}],
        "model_mapping": {"rules": {"gpt-4o": "chat"}},
        "routing": {"retries": 0},
    }
    with Gateway(config) as gw:
        yield gw


def all_access_lines(gateway: Gateway) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{") and '"method"' in line]


def new_access_lines(gateway: Gateway, since: int, count: int) -> list[dict[str, Any]]:
    """The `count` access-log lines after the first `since`, waiting for the batched write."""
    deadline = time.monotonic() + 5
    while True:
        lines = all_access_lines(gateway)[since:]
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) == count, lines
            return lines
        time.sleep(0.05)


def test_answers_refusals_and_failures_each_get_one_line(gateway: Gateway, upstream_a: Upstream) -> None:
    since = len(all_access_lines(gateway))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    client.chat.completions.create(model="gpt-4o", **CHAT)  # type: ignore[call-overload]
    for _ in client.chat.completions.create(model="chat", stream=True, stream_options={"include_usage": True},
                                            **CHAT):  # type: ignore[call-overload]
        pass
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "nope", **CHAT},
                     headers={"Authorization": f"Bearer {KEY}"}).status == 404
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "chat", **CHAT},
                     headers={"Authorization": "Bearer wrong"}).status == 401
    upstream_a.reset(Behaviour(status=502))
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "chat", **CHAT},
                     headers={"Authorization": f"Bearer {KEY}"}).status == 502

    answer, stream, unknown, unauthorized, failed = new_access_lines(gateway, since, 5)
    for line in (answer, stream, unknown, unauthorized, failed):
        assert line.keys() >= FIELDS
        assert line["method"] == "POST" and line["path"] == "/v1/chat/completions"
        assert line["ts"].endswith("Z")
    assert answer["status"] == 200 and answer["error"] is None
    assert (answer["client"], answer["original_model"], answer["model"]) == ("team-a", "gpt-4o", "chat")
    assert (answer["provider"], answer["upstream_model"], answer["attempts"]) == ("up", "real-chat", 1)
    assert answer["input_tokens"] > 0 and answer["output_tokens"] > 0
    expected = (answer["input_tokens"] * 2.0 + answer["output_tokens"] * 4.0) / 1e6
    assert answer["cost_usd"] == pytest.approx(expected)
    assert answer["duration_ms"] > 0
    assert stream["status"] == 200 and stream["ttft_ms"] is not None and stream["output_tokens"] > 0
    assert (unknown["status"], unknown["error"], unknown["provider"]) == (404, "model_not_found", None)
    assert unknown["model"] is None  # a made-up name is not a public model
    assert (unauthorized["status"], unauthorized["client"]) == (401, None)
    assert (failed["status"], failed["error"], failed["attempts"]) == (502, "upstream_502", 1)

    logs = gateway.logs()
    assert KEY not in logs and PROVIDER_TOKEN not in logs


def test_a_secret_typed_into_a_model_name_is_redacted(gateway: Gateway) -> None:
    since = len(all_access_lines(gateway))
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": f"x-{PROVIDER_TOKEN}", **CHAT},
                      headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status == 404
    (line,) = new_access_lines(gateway, since, 1)
    assert line["original_model"] == "x-[redacted]"
    assert PROVIDER_TOKEN not in gateway.logs()


def test_streams_are_counted_without_the_client_asking_for_usage(gateway: Gateway, upstream_a: Upstream) -> None:
    since = len(all_access_lines(gateway))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0)
    chunks = list(client.chat.completions.create(model="chat", stream=True, **CHAT))  # type: ignore[call-overload]
    assert chunks and all(chunk.choices for chunk in chunks)  # no usage-only chunk leaked to this client
    assert all(chunk.usage is None for chunk in chunks)
    (asked,) = [r for r in upstream_a.received if r.method == "POST"]
    assert asked.body["stream_options"] == {"include_usage": True}  # the gateway asked for it
    (line,) = new_access_lines(gateway, since, 1)
    assert line["input_tokens"] == 7 and line["output_tokens"] == 5
    assert line["cost_usd"] == pytest.approx((7 * 2.0 + 5 * 4.0) / 1e6)
    metrics = request(gateway.url, "GET", "/metrics").body.decode()
    assert 'modelway_tokens_total{direction="output",model="chat",provider="up"}' in metrics
    assert 'modelway_cost_usd_total{model="chat",provider="up"}' in metrics

    # a client that asks gets the usage chunk, and its own stream_options are kept
    upstream_a.reset()
    asked_chunks = list(client.chat.completions.create(  # type: ignore[call-overload]
        model="chat", stream=True, stream_options={"include_usage": True}, **CHAT))
    assert asked_chunks[-1].choices == [] and asked_chunks[-1].usage is not None
    assert asked_chunks[-1].usage.completion_tokens == 5
