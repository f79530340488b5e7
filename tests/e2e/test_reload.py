"""Hot reload: by a write of the config file (server.watch_config) and by POST /admin/reload.
A new mapping is applied within 3 s of the write; an invalid edit keeps the old config
serving, logs its errors with their YAML paths and counts in /metrics; a stream in flight
across a reload completes intact; a provider whose settings did not change keeps its
connection pool (the upstream sees the same connection) and its deployments their cooldowns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Behaviour, Upstream

ADMIN = {"Authorization": "Bearer admin-key-for-reload"}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def config_for(a: Upstream, b: Upstream, target: str, b_timeout_ms: int = 5000) -> dict[str, Any]:
    return {
        "auth": {"admin_key": "admin-key-for-reload"},
        "providers": [
            {"name": "pa", "kind": "vllm", "base_url": f"{a.url}/v1"},
            {"name": "pb", "kind": "vllm", "base_url": f"{b.url}/v1", "timeout_ms": b_timeout_ms},
        ],
        "models": [
            {"name": "model-a", "deployments": [{"provider": "pa", "model": "real-a"}]},
            {"name": "model-b", "deployments": [{"provider": "pb", "model": "real-b"}]},
        ],
        "model_mapping": {"rules": {"alias": target}},
        "routing": {"retries": 0, "cooldown": {"failures": 1, "window_s": 60, "cooldown_s": 60}},
    }


@pytest.fixture()
def served(upstream_a: Upstream, upstream_b: Upstream) -> Iterator[tuple[Gateway, Path]]:
    gateway = Gateway(config_for(upstream_a, upstream_b, "model-a")).start()
    path = Path(gateway._dir.name) / "config.yaml"
    try:
        yield gateway, path
    finally:
        gateway.stop()


def provider_of(gateway: Gateway, model: str) -> str:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": model, **CHAT})
    assert reply.status == 200, reply.body
    return reply.headers["x-modelway-provider"]


def write(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config))


def test_a_file_write_is_applied_within_3_s(served: tuple[Gateway, Path], upstream_a: Upstream,
                                            upstream_b: Upstream) -> None:
    gateway, path = served
    assert provider_of(gateway, "alias") == "pa"
    written = time.monotonic()
    write(path, config_for(upstream_a, upstream_b, "model-b"))
    while provider_of(gateway, "alias") != "pb":
        assert time.monotonic() - written < 3, "the new mapping was not applied within 3 s"
        time.sleep(0.05)
    assert 'modelway_config_reloads_total{result="ok"} 1.0' in request(gateway.url, "GET", "/metrics").body.decode()


def test_an_invalid_edit_keeps_the_old_config_serving(served: tuple[Gateway, Path], upstream_a: Upstream,
                                                      upstream_b: Upstream) -> None:
    gateway, path = served
    broken = config_for(upstream_a, upstream_b, "model-b")
    broken["models"][1]["deployments"][0]["provider"] = "no-such-provider"
    write(path, broken)
    deadline = time.monotonic() + 5
    metrics = ""
    while 'modelway_config_reloads_total{result="error"} 1.0' not in metrics:
        assert time.monotonic() < deadline, "the invalid edit was not noticed"
        time.sleep(0.1)
        metrics = request(gateway.url, "GET", "/metrics").body.decode()
    assert provider_of(gateway, "alias") == "pa"  # the old mapping still serves
    logs = gateway.logs()
    assert "models[1].deployments[0].provider" in logs and "the old config keeps serving" in logs
    # the admin API says the same, with every error and its path
    reply = request(gateway.url, "POST", "/admin/reload", headers=ADMIN)
    assert reply.status == 400
    errors = reply.json()["error"]["errors"]
    assert errors[0]["path"] == "models[1].deployments[0].provider"


def test_a_stream_in_flight_across_a_reload_completes(served: tuple[Gateway, Path], upstream_a: Upstream,
                                                      upstream_b: Upstream) -> None:
    gateway, path = served
    upstream_a.reset(Behaviour(chunks=20, chunk_gap_s=0.1))  # a 2 s stream
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    pieces: list[str] = []

    def read() -> None:
        for chunk in client.chat.completions.create(model="model-a", stream=True, **CHAT):  # type: ignore[call-overload]
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.3)
    # model-a's provider changes: the stream goes on on the old runtime's pool
    changed = config_for(upstream_a, upstream_b, "model-b")
    changed["providers"][0]["timeout_ms"] = 7000
    write(path, changed)
    reader.join(10)
    assert not reader.is_alive()
    assert len(pieces) >= 20
    assert provider_of(gateway, "alias") == "pb"


def test_unchanged_providers_keep_their_pool_and_cooldowns(served: tuple[Gateway, Path], upstream_a: Upstream,
                                                           upstream_b: Upstream) -> None:
    gateway, _ = served
    provider_of(gateway, "model-a")
    first_peer = upstream_a.received[-1].peer
    upstream_b.reset(Behaviour(status=500))
    assert post_json(gateway.url, "/v1/chat/completions", {"model": "model-b", **CHAT}).status == 500
    reply = request(gateway.url, "POST", "/admin/reload", headers=ADMIN)  # same file: nothing changed
    assert reply.status == 200, reply.body
    assert reply.json()["changes"]["providers"]["kept"] == ["pa", "pb"]
    time.sleep(0.6)  # the old runtime has retired by now
    provider_of(gateway, "model-a")
    assert upstream_a.received[-1].peer == first_peer  # the same keep-alive connection
    state = request(gateway.url, "GET", "/admin/state", headers=ADMIN).json()
    (b,) = [d for d in state["deployments"] if d["provider"] == "pb"]
    assert b["cooldown_s"] > 50  # its cooldown survived the reload (one failure cools it for 60 s)


def test_admin_api_needs_the_key_and_redacts_the_config(served: tuple[Gateway, Path]) -> None:
    gateway, _ = served
    for method, path in (("GET", "/admin/state"), ("GET", "/admin/config"), ("POST", "/admin/reload")):
        assert request(gateway.url, method, path).status == 401
        assert request(gateway.url, method, path, headers={"Authorization": "Bearer wrong"}).status == 401
    config = request(gateway.url, "GET", "/admin/config", headers=ADMIN)
    assert config.status == 200
    assert "admin-key-for-reload" not in config.body.decode()
    assert config.json()["auth"]["admin_key"] == "[redacted]"
    state = request(gateway.url, "GET", "/admin/state", headers=ADMIN).json()
    assert {p["name"] for p in state["providers"]} == {"pa", "pb"}
    assert [k["index"] for pool in state["key_pools"] for k in pool["keys"]] == [0, 0]
    assert request(gateway.url, "GET", "/admin/reload", headers=ADMIN).status == 405
