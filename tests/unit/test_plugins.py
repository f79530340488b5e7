from __future__ import annotations

import pytest

from modelway.plugins import (
    Available,
    ReadOnlyMap,
    Response,
    RouteDecision,
    RouteRequest,
    estimate_prompt_tokens,
)


def test_decisions_are_checked_when_built() -> None:
    assert RouteDecision(kind="model", target="m") == RouteDecision.to_model("m")
    assert RouteDecision.to_deployment("p", "x", "why").target_model == "x"
    assert RouteDecision.to_executor().target is None
    for bad, message in [
        ({"kind": "models", "target": "m"}, "kind must be one of model, deployment, executor"),
        ({"kind": "model"}, "a 'model' decision needs a target"),
        ({"kind": "deployment", "target": ""}, "target must be a non-empty string"),
        ({"kind": "model", "target": "m", "target_model": "x"}, "target_model is only for 'deployment'"),
        ({"kind": "executor", "reason": 3}, "reason must be a string"),
    ]:
        with pytest.raises(ValueError, match=message):
            RouteDecision(**bad)


def test_read_only_map_ignores_case_and_refuses_changes() -> None:
    headers = ReadOnlyMap({"X-Tier": "gold"})
    assert headers["x-tier"] == headers["X-TIER"] == headers.get("x-Tier") == "gold"
    assert "X-tier" in headers and 3 not in headers
    assert list(headers) == ["x-tier"]
    with pytest.raises(TypeError):
        headers["x-tier"] = "silver"  # type: ignore[index]


def test_route_request_built_by_hand_copies_and_defaults() -> None:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    req = RouteRequest(body=body, headers={"A": "1"})
    req.body["messages"].append({"role": "user", "content": "more"})
    assert len(body["messages"]) == 1
    assert (req.requested_model, req.original_model, req.stream) == ("m", "m", True)
    assert req.source_format == "openai" and req.available == Available()
    assert RouteRequest(path="/v1/messages").source_format == "anthropic"
    assert RouteRequest(path="/v1/responses").source_format == "responses"
    assert req.prompt_tokens == estimate_prompt_tokens(req.body)


def test_prompt_estimate_counts_text_not_images() -> None:
    text = {"messages": [{"role": "user", "content": "x" * 400}]}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100000}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 400}, image]}]}
    without = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 400}, {"type": "image_url"}]}]}
    assert estimate_prompt_tokens(text) == 101 + 4  # (400 + len("user")) / 4, plus 4 for the message
    assert estimate_prompt_tokens(with_image) == estimate_prompt_tokens(without) < 110
    assert estimate_prompt_tokens({"prompt": "abcd", "system": "abcd"}) == 2
    assert estimate_prompt_tokens({}) == 0


def test_response_events_parse_sse() -> None:
    body = b'data: {"a": 1}\n\nevent: x\ndata: {"b": 2}\n\ndata: not json\n\ndata: [DONE]\n\n'
    assert Response(body=body).events() == [{"a": 1}, {"b": 2}]
    assert Response(json={"x": 1}).content() == b'{"x":1}'


def test_executor_sse_and_headers() -> None:
    from modelway.proxy.executor import plugin_headers, sse_event

    assert sse_event({"a": 1}, "openai") == b'data: {"a":1}\n\n'
    assert sse_event({"type": "ping"}, "anthropic") == b'event: ping\ndata: {"type":"ping"}\n\n'
    with pytest.raises(TypeError):
        sse_event("text", "openai")
    assert plugin_headers(None, b"application/json") == [(b"content-type", b"application/json")]
    assert plugin_headers(
        {"Content-Type": "text/plain", "X-A": "1", "Connection": "close", "x-bad": "a\r\nInjected: 1",
         "x-modelway-route": "{}", "x-modelway-router": "inner", "x-modelway-provider": "p"}, b"x"
    ) == [(b"content-type", b"text/plain"), (b"x-a", b"1"), (b"x-modelway-provider", b"p")]
