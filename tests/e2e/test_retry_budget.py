"""The retry budget against a fleet that fails every request: a burst must not turn into
1 + retries attempts per request."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.gateway import Gateway
from support.http import post_json
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
BURST = 80


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, upstream_b: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            {"name": "a", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"},
            {"name": "b", "kind": "vllm", "base_url": f"{upstream_b.url}/v1"},
        ],
        "models": [
            {
                "name": "dead-fleet",
                "deployments": [{"provider": "a", "model": "x"}, {"provider": "b", "model": "y"}],
            }
        ],
        # No cooldown here, so every request reaches the fleet and only the budget limits retries.
        "routing": {"retries": 2, "cooldown": {"failures": 100000, "window_s": 1, "cooldown_s": 0}},
    }
    with Gateway(config) as gw:
        yield gw


def test_attempts_per_request_stay_under_1_2_when_everything_fails(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(Behaviour(status=503))
    upstream_b.reset(Behaviour(status=503))

    def one(_: int) -> int:
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "dead-fleet", **CHAT})
        assert reply.status in (502, 503)
        return int(reply.headers["x-modelway-attempts"])

    with ThreadPoolExecutor(8) as pool:
        attempts = sum(pool.map(one, range(BURST)))
    upstream_hits = len(upstream_a.received) + len(upstream_b.received)
    assert upstream_hits == attempts
    assert attempts / BURST <= 1.2, attempts
    assert attempts > BURST  # some retries were still allowed
