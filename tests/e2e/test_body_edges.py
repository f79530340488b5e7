"""Request bodies at the edges (SPEC section 5): JSON nested deeper than 200 levels is a 400;
numbers reach the provider exactly as the client wrote them, whatever modelway changes in
the body; and a failure nobody planned for is a counted, JSON-shaped 500, never a dropped
connection."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.providers import plugin_env
from support.upstream import Behaviour, Upstream

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            {"name": "a", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"},
            {"name": "buggy", "kind": "support.providers:Buggy", "base_url": "http://127.0.0.1:9"},
            {"name": "buggy-stream", "kind": "support.providers:BuggyStream", "base_url": "http://127.0.0.1:9"},
        ],
        "models": [
            {"name": "same", "deployments": [{"provider": "a"}]},
            {"name": "renamed", "deployments": [{"provider": "a", "model": "upstream-name"}]},
            {"name": "optioned", "deployments": [{"provider": "a", "options": {"max_tokens": 7, "top_k": 3}}]},
            {"name": "buggy", "deployments": [{"provider": "buggy"}]},
            {"name": "buggy-stream", "deployments": [{"provider": "buggy-stream"}]},
        ],
    }
    with Gateway(config, env=plugin_env()) as gw:
        yield gw


def nested(depth: int) -> bytes:
    """A chat body whose deepest value sits `depth` levels down (the body itself is level 1)."""
    inner = "[" * (depth - 1) + "]" * (depth - 1)
    return ('{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "deep": ' + inner + "}").encode()


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("model", ["same", "renamed"])
@pytest.mark.parametrize("depth", [201, 255, 600, 1024])
def test_json_nested_deeper_than_200_levels_is_400(
    gateway: Gateway, upstream_a: Upstream, model: str, depth: int
) -> None:
    body = nested(depth).replace(b"%s", model.encode())
    reply = request(gateway.url, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert reply.status == 400, reply.body[:300]
    assert "200" in reply.error_message and "nested" in reply.error_message
    assert upstream_a.received == []


@pytest.mark.parametrize("model", ["same", "renamed"])
def test_json_nested_200_levels_is_fine(gateway: Gateway, upstream_a: Upstream, model: str) -> None:
    body = nested(200).replace(b"%s", model.encode())
    reply = request(gateway.url, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert reply.status == 200, reply.body[:300]
    assert len(re.findall(r"\[", str(upstream_a.received[0].body["deep"]))) == 199


def test_a_bug_is_a_counted_json_500(gateway: Gateway) -> None:
    before = metric(gateway, "modelway_requests_total", model="buggy", status="500")
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "buggy", "messages": MESSAGES})
    assert reply.status == 500
    error = reply.json()["error"]
    assert error["type"] == "api_error" and error["code"] == "internal_error"
    assert "RuntimeError" in error["message"]
    assert "deliberate" not in error["message"]  # what an exception says stays in the log
    assert metric(gateway, "modelway_requests_total", model="buggy", status="500") == before + 1
    assert "a deliberate bug in a provider" in gateway.logs()
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "same", "messages": MESSAGES}).status == 200


def test_a_bug_on_the_messages_path_is_anthropic_shaped(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/messages", {"model": "buggy", "max_tokens": 5, "messages": MESSAGES})
    assert reply.status == 500
    assert reply.json()["type"] == "error"
    assert reply.json()["error"]["type"] == "api_error"


def test_a_bug_in_the_middle_of_a_stream_ends_it_with_an_error_event_and_is_counted(gateway: Gateway) -> None:
    before = metric(gateway, "modelway_requests_total", model="buggy-stream", status="500")
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "buggy-stream", "messages": MESSAGES,
                                                              "stream": True})
    assert reply.status == 200
    events = [line for line in reply.body.decode().split("\n\n") if line]
    assert events[0].startswith("data: ") and "one" in events[0]
    assert '"internal_error"' in events[-1] and "RuntimeError" in events[-1]
    assert metric(gateway, "modelway_requests_total", model="buggy-stream", status="500") == before + 1
    assert "a deliberate bug in a stream" in gateway.logs()


# Integers above 64 bits, and numbers written in ways a re-encoder would not write them back.
NUMBERS = (b'"seed": 123456789012345678901234567890, "n": -0, "t": 0.70, "x": 1.0E2, "big": -98765432109876543210,'
           b' "tiny": 1e-400, "f": 0.1000000000000000055511151231257827, "u": 18446744073709551616')


def test_numbers_reach_the_provider_as_written_when_the_model_is_renamed(
    gateway: Gateway, upstream_a: Upstream
) -> None:
    # "model" also in a string and in a nested object, which stay as they are.
    body = (b'{ "messages" : [{"role": "user", "content": "say \\"model\\": 1"}],\n  "model":"renamed", '
            + NUMBERS + b', "meta": {"model": "renamed", "k": [1]} }')
    reply = request(gateway.url, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert reply.status == 200, reply.body
    sent = upstream_a.received[0].raw_body
    assert sent == body.replace(b'"model":"renamed"', b'"model":"upstream-name"')


def test_options_are_merged_without_touching_the_rest(gateway: Gateway, upstream_a: Upstream) -> None:
    body = b'{"model": "optioned", "messages": [{"role": "user", "content": "hi"}], "top_k": 99, ' + NUMBERS + b"}"
    reply = request(gateway.url, "POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    assert reply.status == 200, reply.body
    sent = upstream_a.received[0].raw_body
    assert sent == b'{"max_tokens":7,' + body[1:].replace(b'"top_k": 99', b'"top_k": 3')


def test_an_answer_is_relayed_unchanged_but_its_model_with_response_model_requested(upstream_a: Upstream) -> None:
    config = {
        "server": {"response_model": "requested"},
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "asked", "deployments": [{"provider": "a", "model": "upstream-name"}]}],
    }
    upstream_a.reset(Behaviour(answer_fields={"seed": 123456789012345678901234567890}))
    with Gateway(config) as gw:
        reply = post_json(gw.url, "/v1/chat/completions", {"model": "asked", "messages": MESSAGES})
    assert reply.status == 200
    assert b'"seed": 123456789012345678901234567890' in reply.body
    assert reply.json()["model"] == "asked"
