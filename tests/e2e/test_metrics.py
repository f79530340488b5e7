"""GET /metrics: Prometheus text with the names of SPEC section 7, counted from real traffic."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "routing": {"routers": [{"id": "flaky", "use": "support.routers:ScriptedRouter"}]},
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
    tests = str(Path(__file__).parent.parent)  # the gateway imports support.routers from there
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    with Gateway(config, env) as gw:
        yield gw


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in metrics")


def scrape(gateway: Gateway) -> str:
    reply = request(gateway.url, "GET", "/metrics")
    assert reply.status == 200
    return reply.body.decode()


def test_metrics_count_requests_attempts_tokens_and_cost(gateway: Gateway, upstream_a: Upstream) -> None:
    for _ in range(3):
        assert post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}).status == 200
    upstream_a.reset(Behaviour(status=503))
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}).status == 503
    upstream_a.reset()
    flaky = {"x-script-flaky": "raise"}  # the router fails; the request goes on as if it had declined
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}, flaky).status == 200
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "nope", **CHAT}).status == 404
    upstream_a.reset(Behaviour(chunks=2))
    stream = {"model": "m", "stream": True, "stream_options": {"include_usage": True}, **CHAT}
    assert post_json(gateway.url, "/v1/chat/completions", stream).status == 200

    reply = request(gateway.url, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert sample(text, "modelway_requests_total", model="m", provider="a", status="200") == 5
    assert sample(text, "modelway_requests_total", model="m", provider="a", status="503") == 1
    # Unknown model names are the client's to choose: they share one label, never a series each.
    assert sample(text, "modelway_requests_total", model="", provider="", status="404") == 1
    assert 'model="nope"' not in text
    assert sample(text, "modelway_attempts_total", model="m", provider="a", outcome="ok") == 5
    assert sample(text, "modelway_attempts_total", model="m", provider="a", outcome="503") == 1
    assert sample(text, "modelway_request_duration_seconds_count", model="m", provider="a") == 6
    assert sample(text, "modelway_ttft_seconds_count", model="m", provider="a") == 1
    # The test upstream reports 3 prompt + 3 completion tokens per non-stream answer (4 of them),
    # and 7 prompt + 1 per chunk (2) in the usage chunk of the stream.
    assert sample(text, "modelway_tokens_total", model="m", provider="a", direction="input") == 12 + 7
    assert sample(text, "modelway_tokens_total", model="m", provider="a", direction="output") == 12 + 2
    assert abs(sample(text, "modelway_cost_usd_total", model="m", provider="a") - (19 * 1 + 14 * 2) / 1e6) < 1e-12
    assert sample(text, "modelway_inflight", provider="a") == 0
    assert sample(text, "modelway_deployment_healthy", model="m", provider="a") == 1
    assert sample(text, "modelway_router_errors_total", router="flaky") == 1
    # Exposed under their SPEC names, though this release has nothing to count there (no
    # Redis state backend, no config reload): their presence is checked, not their value.
    sample(text, "modelway_state_backend_errors_total")
    sample(text, "modelway_config_reloads_total", result="ok")
    sample(text, "modelway_config_reloads_total", result="error")
    assert "sk-metrics-secret" not in text


def test_inflight_counts_a_request_while_it_runs(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(delay_before_headers_s=1.5))
    thread = threading.Thread(
        target=post_json, args=(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 5
    while sample(scrape(gateway), "modelway_inflight", provider="a") != 1:
        assert time.monotonic() < deadline, "the running request never showed in modelway_inflight"
        time.sleep(0.05)
    thread.join(5)
    assert not thread.is_alive()
    assert sample(scrape(gateway), "modelway_inflight", provider="a") == 0
