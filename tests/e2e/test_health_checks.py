"""Active health checks over real sockets: a failing provider leaves routing and /ready
reflects it; recovery brings it back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [{"name": "probed", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "probed", "deployments": [{"provider": "probed", "model": "pr"}]}],
        "routing": {"health_check": {"interval_s": 0.2}},
    }
    with Gateway(config) as gw:
        yield gw


def chat(gateway: Gateway) -> int:
    return post_json(gateway.url, "/v1/chat/completions", {"model": "probed", **CHAT}).status


def wait_for(predicate: object, timeout: float = 3) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_failing_probe_takes_the_provider_out_and_recovery_brings_it_back(
    gateway: Gateway, upstream_a: Upstream
) -> None:
    assert wait_for(lambda: any(r.path == "/v1/models" for r in upstream_a.received))
    assert request(gateway.url, "GET", "/ready").status == 200
    upstream_a.reset(Behaviour(status=500))  # its models endpoint fails too
    assert wait_for(lambda: request(gateway.url, "GET", "/ready").status == 503)
    ready = request(gateway.url, "GET", "/ready").json()
    assert "probed" in ready["reason"]
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "probed", **CHAT})
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "no_healthy_deployment"
    assert not [r for r in upstream_a.received if r.method == "POST"]  # not even tried
    upstream_a.reset()
    assert wait_for(lambda: chat(gateway) == 200)
    assert request(gateway.url, "GET", "/ready").status == 200
