"""Cooldowns never take a model out of service by themselves (SPEC 5): while every
deployment of a model is cooling, one request at a time goes through as a probe, and its
success ends the cooldown. Driven by the real openai SDK with its default retries, which
re-send a passed-through 500 and so trip a lone deployment's cooldown on their own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from support.gateway import Gateway
from support.upstream import Behaviour, Upstream

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def lone() -> Iterator[Upstream]:
    server = Upstream("lone").start()
    yield server
    server.stop()


@pytest.fixture
def gateway(lone: Upstream) -> Iterator[Gateway]:
    """A fresh gateway per test: each starts with no cooldown. Routing defaults throughout
    (cooldown 3 failures in 60 s → 30 s, 2 retries)."""
    lone.reset()
    config = {
        "providers": [{"name": "lone", "kind": "vllm", "base_url": f"{lone.url}/v1", "timeout_ms": 5000}],
        "models": [{"name": "solo", "deployments": [{"provider": "lone", "model": "solo-1"}]}],
    }
    with Gateway(config) as gw:
        yield gw


def sdk(gateway: Gateway, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", **options)


def trip(gateway: Gateway, lone: Upstream) -> None:
    """One SDK call against a deployment answering 500: the SDK's own two retries make three
    upstream hits, the cooldown threshold."""
    with pytest.raises(openai.InternalServerError):
        sdk(gateway).chat.completions.create(model="solo", **CHAT)
    assert len(lone.received) == 3


def test_the_next_call_after_the_upstream_recovers_succeeds_at_once(gateway: Gateway, lone: Upstream) -> None:
    lone.reset(Behaviour(status=500, failures=3))
    trip(gateway, lone)
    # The upstream is healthy again; the deployment is cooling for 30 s.
    started = time.monotonic()
    reply = sdk(gateway).chat.completions.with_raw_response.create(model="solo", **CHAT)
    assert time.monotonic() - started < 1.0
    assert reply.http_response.status_code == 200
    assert reply.headers["x-modelway-attempts"] == "1"
    assert len(lone.received) == 4  # the probe, and nothing else
    # Its success ended the cooldown: the model is served as before, not probe by probe.
    client = sdk(gateway, max_retries=0)
    for _ in range(5):
        assert client.chat.completions.create(model="solo", **CHAT).choices[0].message.content == "hello from lone"
    assert len(lone.received) == 9


def test_failed_probes_pass_the_upstream_answer_through_until_it_recovers(gateway: Gateway, lone: Upstream) -> None:
    lone.reset(Behaviour(status=500, failures=5))
    trip(gateway, lone)
    # Hits 4 and 5 are probes that fail (each the upstream's own 500, which the SDK
    # retries); hit 6 is a probe that succeeds. Never a 503 from a cooldown.
    seen: list[tuple[int, str | None]] = []

    def record(response: Any) -> None:
        seen.append((response.status_code, response.headers.get("x-modelway-attempts")))

    client = sdk(gateway, http_client=httpx2.Client(event_hooks={"response": [record]}))
    answer = client.chat.completions.create(model="solo", **CHAT)
    assert answer.choices[0].message.content == "hello from lone"
    assert seen == [(500, "1"), (500, "1"), (200, "1")]
    assert len(lone.received) == 6


def test_concurrent_calls_during_a_probe_get_503_with_retry_after(gateway: Gateway, lone: Upstream) -> None:
    lone.reset(Behaviour(status=500, failures=3))
    trip(gateway, lone)
    lone.behaviour.delay_before_headers_s = 1.0  # healthy, but slow: the probe stays in flight a while
    probe: dict[str, Any] = {}

    def send_probe() -> None:
        probe["reply"] = sdk(gateway, max_retries=0).chat.completions.with_raw_response.create(model="solo", **CHAT)

    thread = threading.Thread(target=send_probe)
    thread.start()
    deadline = time.monotonic() + 5
    while len(lone.received) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(lone.received) == 4  # the probe reached the upstream

    refused: list[openai.APIStatusError] = []

    def send_other() -> None:
        try:
            sdk(gateway, max_retries=0).chat.completions.create(model="solo", **CHAT)
        except openai.APIStatusError as exc:
            refused.append(exc)

    others = [threading.Thread(target=send_other) for _ in range(4)]
    for t in others:
        t.start()
    for t in others:
        t.join(5)
    thread.join(5)
    assert len(refused) == 4
    for exc in refused:
        assert exc.status_code == 503
        assert exc.response.headers["retry-after"] == "1"  # the probe's answer is due soon
        assert exc.response.headers["x-modelway-attempts"] == "0"
        assert "probe" in exc.message
    assert probe["reply"].http_response.status_code == 200
    assert len(lone.received) == 4  # the others never reached the upstream
    # The SDK with its default retries honours Retry-After: 1 and gets through once the probe succeeded.
    lone.behaviour.delay_before_headers_s = 0.0
    assert sdk(gateway).chat.completions.create(model="solo", **CHAT).choices[0].message.content == "hello from lone"
