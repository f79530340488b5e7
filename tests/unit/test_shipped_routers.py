"""RuleRouter and ContextWindowRouter on hand-built RouteRequests."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from modelway.plugins import Available, ModelInfo, RouteDecision, RouteRequest
from modelway.routers.context import ContextWindowRouter
from modelway.routers.rules import RuleRouter, body_value, same

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def decide(config: dict[str, Any], **request: Any) -> RouteDecision | None:
    router = RuleRouter(config)
    return await router.route(RouteRequest(**{"body": CHAT, **request}))


async def test_no_rules_always_declines() -> None:
    assert await decide({}) is None
    assert await decide({"rules": []}) is None


async def test_a_rule_without_conditions_always_matches() -> None:
    assert await decide({"rules": [{"name": "all", "model": "x"}]}) == RouteDecision.to_model("x", "rule all")


async def test_header_names_ignore_case_and_query_regex() -> None:
    config = {"rules": [{"when": {"header": {"X-Team": "blue"}, "query_regex": {"v": r"^\d+$"}}, "model": "x"}]}
    assert await decide(config, headers={"x-team": "blue"}, query={"v": "12"}) is not None
    assert await decide(config, headers={"x-team": "blue"}, query={"v": "1a"}) is None
    assert await decide(config, query={"v": "12"}) is None


async def test_body_values_compare_as_json() -> None:
    assert same(True, True) and not same(True, 1) and not same(1, True) and same(1, 1.0)
    body = {"a": {"b": [1, {"c": None}]}}
    assert body_value(body, ("a", "b", "-1", "c")) is None
    assert body_value(body, ("a", "b", "2")) is not None  # MISSING
    config = {"rules": [{"when": {"body": {"metadata.flag": True}}, "model": "x"}]}
    assert await decide(config, body={**CHAT, "metadata": {"flag": 1}}) is None
    assert await decide(config, body={**CHAT, "metadata": {"flag": True}}) is not None


async def test_rules_see_stream_and_model_globs() -> None:
    config = {"rules": [{"when": {"stream": True, "model": "gpt-4*"}, "deployment": {"provider": "p"}}]}
    assert await decide(config, body={**CHAT, "model": "gpt-4o", "stream": True}) == RouteDecision.to_deployment(
        "p", None, "rule #0"
    )
    assert await decide(config, body={**CHAT, "model": "gpt-4o"}) is None
    assert await decide(config, body={**CHAT, "model": "gpt-3.5", "stream": True}) is None


def available(**contexts: int | None) -> Available:
    return Available(
        frozenset({"p"}), MappingProxyType({name: ModelInfo(name, frozenset({"p"}), c) for name, c in contexts.items()})
    )


async def route_context(config: dict[str, Any], model: str, chars: int, **extra: Any) -> str | None:
    body = {"model": model, "messages": [{"role": "user", "content": "x" * chars}], **extra}
    req = RouteRequest(body=body, available=available(small=100, mid=1000, big=10000, open=None, tiny=10))
    decision = await ContextWindowRouter(config).route(req)
    return decision.target if decision is not None else None


async def test_context_window_router() -> None:
    assert await route_context({}, "small", 100) is None
    assert await route_context({}, "small", 1000) == "mid"
    assert await route_context({}, "small", 10000) == "big"
    assert await route_context({}, "small", 100000) is None  # nothing fits
    assert await route_context({}, "open", 100000) is None  # unknown window
    assert await route_context({}, "absent", 100000) is None  # not available
    assert await route_context({}, "small", 100, max_completion_tokens=200) == "mid"
    assert await route_context({"reserve_output": False}, "small", 100, max_tokens=200) is None
    assert await route_context({"candidates": ["big"]}, "small", 1000) == "big"
    assert await route_context({"models": ["mid"]}, "small", 1000) is None
