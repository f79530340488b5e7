"""least_load end to end: the real gateway, a real redis-server for `metrics.source: redis`
(the Higress ai-load-balancer case), and test upstreams exposing vLLM-format metrics for
`metrics.source: prometheus`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.gateway import Gateway, free_port
from support.http import Reply, post_json
from support.redis_server import RedisServer, started_redis
from support.upstream import Upstream, engine_metrics

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
REFRESH_MS = 100


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.stop()


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def ask(gateway: Gateway) -> Reply:
    reply = post_json(gateway.url, "/v1/chat/completions", CHAT)
    assert reply.status == 200, reply.body
    return reply


def provider_of(gateway: Gateway) -> str:
    return ask(gateway).headers["x-modelway-provider"]


def auto_config(minimax: Upstream, qianwen: Upstream, metrics: dict[str, Any], keys: bool) -> dict[str, Any]:
    deployments = [
        {"provider": "minmax", "model": "MiniMax-M2.1"},
        {"provider": "qianwen", "model": "qwen3-max-preview"},
    ]
    if keys:
        deployments[0]["metric_key"] = "minimax_1"
        deployments[1]["metric_key"] = "qwen_1"
    return {
        "providers": [
            {
                "name": "minmax",
                "kind": "openai-compatible",
                "base_url": f"{minimax.url}/v1",
                "metrics_url": f"{minimax.url}/metrics",
            },
            {
                "name": "qianwen",
                "kind": "openai-compatible",
                "base_url": f"{qianwen.url}/v1",
                "metrics_url": f"{qianwen.url}/metrics",
            },
        ],
        "models": [{"name": "auto", "strategy": "least_load", "deployments": deployments}],
        "metrics": {**metrics, "refresh_ms": REFRESH_MS},
    }


def test_redis_metrics_pick_the_least_loaded_and_survive_redis_going_away(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    store = redis_server.client()
    store.set("ai_metric:minimax_1", 90)
    store.set("ai_metric:qwen_1", 10)
    config = auto_config(
        upstream_a, upstream_b, {"source": "redis", "redis_url": redis_server.url}, keys=True
    )
    with Gateway(config) as gateway:
        # The canonical case: qianwen is less loaded, and gets the request with its own model name.
        for _ in range(5):
            reply = ask(gateway)
            assert reply.headers["x-modelway-provider"] == "qianwen"
            assert reply.headers["x-modelway-model"] == "qwen3-max-preview"
        assert [r.body["model"] for r in upstream_b.received] == ["qwen3-max-preview"] * 5
        assert upstream_a.received == []

        # Flip the values: traffic follows within a refresh or two.
        store.set("ai_metric:minimax_1", 5)
        assert wait_for(lambda: provider_of(gateway) == "minmax", timeout=3)
        upstream_a.reset()
        for _ in range(4):
            assert provider_of(gateway) == "minmax"
        assert [r.body["model"] for r in upstream_a.received] == ["MiniMax-M2.1"] * 4

        # Redis goes away mid-test: no request fails, and routing falls back to WRR (both serve).
        redis_server.stop()
        time.sleep(3 * REFRESH_MS / 1000)
        providers = [provider_of(gateway) for _ in range(8)]
        assert set(providers) == {"minmax", "qianwen"}
        assert wait_for(lambda: "unreachable" in gateway.logs(), timeout=3)

        # Back again, with the old ordering: least_load resumes.
        redis_server.start()
        store = redis_server.client()
        store.set("ai_metric:minimax_1", 90)
        store.set("ai_metric:qwen_1", 10)
        assert wait_for(lambda: all(provider_of(gateway) == "qianwen" for _ in range(3)), timeout=5)
        logs = gateway.logs()
    # logged once per change of state, not once per failed poll
    assert logs.count("unreachable") == 1, logs
    assert "recovered" in logs


def test_redis_without_values_is_weighted_round_robin(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    redis_server.client().flushall()
    config = auto_config(
        upstream_a, upstream_b, {"source": "redis", "redis_url": redis_server.url}, keys=True
    )
    with Gateway(config) as gateway:
        providers = [provider_of(gateway) for _ in range(6)]
        logs = gateway.logs()
    assert providers.count("minmax") == providers.count("qianwen") == 3
    assert "empty" in logs


def test_redis_down_from_the_start_never_fails_a_request(upstream_a: Upstream, upstream_b: Upstream) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    config = auto_config(upstream_a, upstream_b, {"source": "redis", "redis_url": dead}, keys=True)
    with Gateway(config) as gateway:
        providers = [provider_of(gateway) for _ in range(4)]
    assert sorted(providers) == ["minmax", "minmax", "qianwen", "qianwen"]


def test_prometheus_metrics_from_vllm_format_upstreams(upstream_a: Upstream, upstream_b: Upstream) -> None:
    upstream_a.metrics_text = engine_metrics(waiting=4, running=16, kv=0.9)
    upstream_b.metrics_text = engine_metrics(waiting=0, running=12, kv=0.7)
    try:
        config = auto_config(upstream_a, upstream_b, {"source": "prometheus"}, keys=False)
        with Gateway(config) as gateway:
            assert all(provider_of(gateway) == "qianwen" for _ in range(4))
            # No queue anywhere: fewer running wins.
            upstream_a.metrics_text = engine_metrics(waiting=0, running=3, kv=0.2)
            assert wait_for(lambda: provider_of(gateway) == "minmax", timeout=3)
            # Same queue and running: lower KV-cache use wins (older vLLM gauge name).
            upstream_a.metrics_text = engine_metrics(waiting=0, running=12, kv=0.8).replace(
                "kv_cache_usage_perc", "gpu_cache_usage_perc"
            )
            assert wait_for(lambda: all(provider_of(gateway) == "qianwen" for _ in range(3)), timeout=3)
            assert any(r.path == "/metrics" for r in upstream_b.received)
    finally:
        upstream_a.metrics_text = upstream_b.metrics_text = None
