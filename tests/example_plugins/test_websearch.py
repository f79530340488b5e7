"""The web-search executor example (examples/websearch): the real server, two stub search
backends of our own and a test upstream that records what the model was asked."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from support.gateway import Gateway
from support.http import post_json
from support.upstream import Behaviour, Upstream

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "websearch"
sys.path.insert(0, str(EXAMPLE))

from stub_search import StubSearch  # noqa: E402

PENALTY_S = 0.6
ASK = {"model": "chat", "messages": [{"role": "user", "content": "what is modelway"}]}


@pytest.fixture(scope="module")
def alpha() -> Iterator[StubSearch]:
    stub = StubSearch("alpha").start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def beta() -> Iterator[StubSearch]:
    stub = StubSearch("beta").start()
    yield stub
    stub.stop()


@pytest.fixture(autouse=True)
def _reset(alpha: StubSearch, beta: StubSearch) -> None:
    for stub in (alpha, beta):
        stub.failing = False
        stub.queries.clear()


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, alpha: StubSearch, beta: StubSearch) -> Iterator[Gateway]:
    config: dict[str, Any] = {
        "providers": [{"name": "vllm-a", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "chat", "deployments": [{"provider": "vllm-a", "model": "real-chat"}]}],
        "routing": {
            "routers": [
                {
                    "id": "websearch",
                    "use": "websearch:WebSearchRouter",
                    "config": {
                        "backends": [{"name": "alpha", "url": alpha.url}, {"name": "beta", "url": beta.url}],
                        "penalty_s": PENALTY_S,
                        "timeout_ms": 2000,
                    },
                }
            ]
        },
    }
    path = os.pathsep.join(filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")]))
    with Gateway(config, env={"PYTHONPATH": path}) as gw:
        yield gw


def system_prompt(upstream: Upstream) -> str:
    (seen,) = upstream.received
    first = seen.body["messages"][0]
    assert first["role"] == "system"
    assert "web_search_options" not in seen.body
    assert seen.body["model"] == "real-chat"
    return str(first["content"])


def test_requests_without_web_search_are_not_touched(gateway: Gateway, upstream_a: Upstream, alpha: StubSearch) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", ASK)
    assert reply.status == 200
    assert "x-websearch-backend" not in reply.headers
    assert upstream_a.received[0].body["messages"] == ASK["messages"]
    assert alpha.queries == []


def test_search_results_reach_the_model(gateway: Gateway, upstream_a: Upstream, alpha: StubSearch,
                                        beta: StubSearch) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(web_search_options={}, **ASK)  # type: ignore[call-overload]
    assert raw.parse().choices[0].message.content == "hello from upstream-a"
    assert raw.headers["x-websearch-backend"] == "alpha"
    assert raw.headers["x-modelway-router"] == "websearch"
    prompt = system_prompt(upstream_a)
    assert "[1] alpha result 1 for 'what is modelway' (https://alpha.example/1)" in prompt
    assert "[3] alpha result 3" in prompt
    assert alpha.queries == ["what is modelway"] and beta.queries == []


def test_fallback_to_the_other_backend_and_penalty(gateway: Gateway, upstream_a: Upstream, alpha: StubSearch,
                                                   beta: StubSearch) -> None:
    alpha.failing = True
    reply = post_json(gateway.url, "/v1/chat/completions", {**ASK, "web_search_options": {}})
    assert reply.status == 200
    assert reply.headers["x-websearch-backend"] == "beta"
    assert "beta result 1" in system_prompt(upstream_a)
    assert len(alpha.queries) == 1 and len(beta.queries) == 1

    # Penalised: beta is asked first now, alpha not at all, even though alpha is back.
    alpha.failing = False
    upstream_a.reset()
    reply = post_json(gateway.url, "/v1/chat/completions", {**ASK, "web_search_options": {}})
    assert reply.headers["x-websearch-backend"] == "beta"
    assert len(alpha.queries) == 1 and len(beta.queries) == 2

    # The penalty over, alpha comes first again.
    time.sleep(PENALTY_S + 0.1)
    reply = post_json(gateway.url, "/v1/chat/completions", {**ASK, "web_search_options": {}})
    assert reply.headers["x-websearch-backend"] == "alpha"
    assert len(alpha.queries) == 2 and len(beta.queries) == 2


def test_every_backend_down_still_answers(gateway: Gateway, upstream_a: Upstream, alpha: StubSearch,
                                          beta: StubSearch) -> None:
    alpha.failing = beta.failing = True
    reply = post_json(gateway.url, "/v1/chat/completions", {**ASK, "web_search_options": {}})
    assert reply.status == 200
    assert reply.headers["x-websearch-backend"] == "none"
    assert "returned nothing (search unavailable)" in system_prompt(upstream_a)
    time.sleep(PENALTY_S + 0.1)  # let both penalties end for the next tests


def test_streamed_answer(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(chunks=3))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    with client.chat.completions.with_streaming_response.create(  # type: ignore[call-overload]
        stream=True, web_search_options={}, **ASK
    ) as raw:
        assert raw.headers["content-type"] == "text/event-stream"
        assert raw.headers["x-websearch-backend"] == "alpha"
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    assert text == "c0 c1 c2 "
    assert upstream_a.received[0].body["stream"] is True
    assert "alpha result 1" in system_prompt(upstream_a)


def test_upstream_errors_pass_through(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(status=400))
    reply = post_json(gateway.url, "/v1/chat/completions", {**ASK, "web_search_options": {}})
    assert reply.status == 400
    assert reply.json()["error"]["message"] == "upstream-a says 400"
