"""RuleRouter and ContextWindowRouter end to end: the real server, upstreams of our own
recording which upstream model each request reached."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.gateway import Gateway
from support.http import Reply, post_json
from support.upstream import Upstream


def config_for(a: Upstream, b: Upstream) -> dict[str, Any]:
    def model(name: str, provider: str, max_context: int | None = None) -> dict[str, Any]:
        deployment: dict[str, Any] = {"provider": provider, "model": f"{name}-real"}
        if max_context is not None:
            deployment["max_context"] = max_context
        return {"name": name, "deployments": [deployment]}

    rules = [
        {"name": "premium", "when": {"header": {"X-Tier": "premium"}}, "model": "premium"},
        {"name": "curl", "when": {"header_regex": {"user-agent": "^curl/"}}, "model": "big"},
        {"name": "eu", "when": {"query": {"region": "eu"}}, "deployment": {"provider": "vllm-b", "model": "eu-real"}},
        {"name": "gold", "when": {"body": {"metadata.tier": "gold"}}, "model": "premium"},
        {"name": "first-user", "when": {"body": {"messages.0.content": "route me"}}, "model": "mid"},
        {"name": "tools", "when": {"body_exists": ["tools"]}, "model": "tools"},
        {"name": "stream", "when": {"stream": True, "model": "nolimit"}, "deployment": {"provider": "vllm-b"}},
        {"name": "huge", "when": {"prompt_tokens_above": 5000, "model": "nolimit"}, "model": "big"},
        {"name": "legacy", "when": {"model": ["legacy-*", "old-?"]}, "model": "mid"},
    ]
    return {
        "providers": [
            {"name": "vllm-a", "kind": "vllm", "base_url": f"{a.url}/v1"},
            {"name": "vllm-b", "kind": "vllm", "base_url": f"{b.url}/v1"},
        ],
        "models": [
            model("small", "vllm-a", 100),
            model("mid", "vllm-a", 1000),
            model("big", "vllm-b", 10000),
            model("nolimit", "vllm-a"),
            model("premium", "vllm-b"),
            model("tools", "vllm-b"),
        ],
        "routing": {
            "routers": [
                {"id": "rules", "use": "modelway.routers.rules:RuleRouter", "priority": 10, "config": {"rules": rules}},
                {"id": "context", "use": "modelway.routers.context:ContextWindowRouter"},
            ]
        },
    }


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, upstream_b: Upstream) -> Iterator[Gateway]:
    with Gateway(config_for(upstream_a, upstream_b)) as gw:
        yield gw


def send(gateway: Gateway, model: str, content: str = "hi", path: str = "/v1/chat/completions",
         headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    reply = post_json(gateway.url, path, body, {"x-modelway-debug": "1", **(headers or {})})
    assert reply.status == 200, reply.body
    return reply


def served(reply: Reply) -> str:
    return reply.headers["x-modelway-model"]


def decided_by(reply: Reply) -> tuple[str, str]:
    """The router that decided, and its reason."""
    route = json.loads(reply.headers["x-modelway-route"])
    by = route["decision"]["by"]
    return by, next((v.get("reason", "") for v in route["routers"] if v["id"] == by), "")


@pytest.mark.parametrize(
    ("headers", "path", "extra", "expected", "rule"),
    [
        ({"x-tier": "premium"}, "/v1/chat/completions", {}, "premium-real", "premium"),
        ({"User-Agent": "curl/8.5"}, "/v1/chat/completions", {}, "big-real", "curl"),
        ({}, "/v1/chat/completions?region=eu", {}, "eu-real", "eu"),
        ({}, "/v1/chat/completions", {"metadata": {"tier": "gold"}}, "premium-real", "gold"),
        ({}, "/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools-real",
         "tools"),
        # First match wins: premium comes before gold.
        ({"x-tier": "premium"}, "/v1/chat/completions?region=eu", {"metadata": {"tier": "gold"}}, "premium-real",
         "premium"),
    ],
)
def test_rule_conditions(gateway: Gateway, headers: dict[str, str], path: str, extra: dict[str, Any],
                         expected: str, rule: str) -> None:
    reply = send(gateway, "small", path=path, headers=headers, **extra)
    assert served(reply) == expected
    assert decided_by(reply) == ("rules", f"rule {rule}")


def test_rule_conditions_that_do_not_hold(gateway: Gateway) -> None:
    for reply in (
        send(gateway, "small", headers={"x-tier": "Premium"}),  # values compare exactly
        send(gateway, "small", headers={"user-agent": "python/3 curl/8"}),  # anchored regex
        send(gateway, "small", path="/v1/chat/completions?region=us"),
        send(gateway, "small", metadata={"tier": "silver"}),
        send(gateway, "small", tools=None),  # null does not exist
    ):
        assert served(reply) == "small-real"
        assert json.loads(reply.headers["x-modelway-route"])["decision"]["by"] == "resolution"


def test_rule_body_path_into_a_list(gateway: Gateway) -> None:
    assert served(send(gateway, "small", content="route me")) == "mid-real"


def test_rule_stream_flag_and_deployment_without_model(gateway: Gateway, upstream_b: Upstream) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions",
                      {"model": "nolimit", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "vllm-b"
    assert upstream_b.received[0].body["model"] == "nolimit"  # no model in the action: the requested name
    assert served(send(gateway, "nolimit")) == "nolimit-real"  # not streaming: no match


def test_rule_prompt_tokens_above(gateway: Gateway) -> None:
    assert served(send(gateway, "nolimit", content="x" * 24000)) == "big-real"  # ~6000 tokens
    assert served(send(gateway, "nolimit", content="x" * 16000)) == "nolimit-real"  # ~4000 tokens


def test_rule_model_glob_routes_a_name_that_is_not_a_public_model(gateway: Gateway) -> None:
    assert served(send(gateway, "legacy-davinci")) == "mid-real"
    assert served(send(gateway, "old-1")) == "mid-real"
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "old-12", "messages": [{"role": "user",
                                                                                            "content": "hi"}]})
    assert reply.status == 404


def test_context_window_picks_the_smallest_model_that_fits(gateway: Gateway) -> None:
    assert served(send(gateway, "small", content="short")) == "small-real"
    reply = send(gateway, "small", content="x" * 1600)  # ~400 tokens: over small (100), within mid (1000)
    assert served(reply) == "mid-real"
    by, reason = decided_by(reply)
    assert by == "context"
    assert reason == "~405 tokens exceed small's context of 100; mid has 1000"
    assert served(send(gateway, "small", content="x" * 12000)) == "big-real"  # ~3000 tokens
    assert served(send(gateway, "mid", content="x" * 12000)) == "big-real"


def test_context_window_counts_max_tokens(gateway: Gateway) -> None:
    assert served(send(gateway, "small", content="short", max_tokens=500)) == "mid-real"
    assert served(send(gateway, "small", content="short", max_tokens=50)) == "small-real"


def test_context_window_declines_when_nothing_fits_or_the_window_is_unknown(gateway: Gateway) -> None:
    reply = send(gateway, "small", content="x" * 60000)  # ~15000 tokens: more than big's 10000
    assert served(reply) == "small-real"
    assert served(send(gateway, "nolimit", content="x" * 12000)) == "nolimit-real"
