"""GET /metrics: Prometheus text with the names of SPEC section 7, counted from real traffic."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            {"name": "a", "kind": "vllm", "base_url": f"{upstream_a.url}/v1",
             "auth": {"header": {"Authorization": "Bearer sk-metrics-secret"}}},
        ],
        "models": [
            {
                "name": "m",
                "deployments": [
                    {"provider": "a", "model": "real", "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}
                ],
            }
        ],
    }
    with Gateway(config) as gw:
        yield gw


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


def test_metrics_count_requests_attempts_tokens_and_cost(gateway: Gateway, upstream_a: Upstream) -> None:
    for _ in range(3):
        assert post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}).status == 200
    upstream_a.reset(Behaviour(status=503))
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}).status == 503
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "nope", **CHAT}).status == 404
    upstream_a.reset(Behaviour(chunks=2))
    stream = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, **CHAT}
    assert post_json(gateway.url, "/v1/chat/completions", stream).status == 200

    reply = request(gateway.url, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert sample(text, "modelway_requests_total", model="m", provider="a", status="200") == 4
    assert sample(text, "modelway_requests_total", model="m", provider="a", status="503") == 1
    # Unknown model names are the client's to choose: they share one label, never a series each.
    assert sample(text, "modelway_requests_total", model="", provider="", status="404") == 1
    assert 'model="nope"' not in text
    assert sample(text, "modelway_attempts_total", model="m", provider="a", outcome="ok") == 4
    assert sample(text, "modelway_attempts_total", model="m", provider="a", outcome="503") == 1
    assert sample(text, "modelway_request_duration_seconds_count", model="m", provider="a") == 5
    assert sample(text, "modelway_ttft_seconds_count", model="m", provider="a") == 1
    # The test upstream reports 3 prompt + 3 completion tokens per non-stream answer.
    assert sample(text, "modelway_tokens_total", model="m", provider="a", direction="input") == 9
    assert sample(text, "modelway_tokens_total", model="m", provider="a", direction="output") == 9
    assert abs(sample(text, "modelway_cost_usd_total", model="m", provider="a") - (9 * 1 + 9 * 2) / 1e6) < 1e-12
    assert sample(text, "modelway_inflight", provider="a") == 0
    assert sample(text, "modelway_deployment_healthy", model="m", provider="a") == 1
    assert "modelway_router_errors_total" in text or "modelway_router_errors" in text
    assert sample(text, "modelway_state_backend_errors_total") == 0
    assert sample(text, "modelway_config_reloads_total", result="ok") == 0
    assert "sk-metrics-secret" not in text
