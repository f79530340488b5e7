"""State changes are logged, one line each: a deployment's cooldown entered (with why) and
its end, by time or by a probe."""

from __future__ import annotations

import time

from support.gateway import Gateway
from support.http import post_json
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def wait_for(gateway: Gateway, text: str, timeout_s: float = 5) -> str:
    deadline = time.monotonic() + timeout_s
    while text not in (logs := gateway.logs()):
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{logs[-2000:]}"
        time.sleep(0.05)
    return logs


def test_cooldown_entered_and_ended_are_logged(upstream_a: Upstream) -> None:
    config = {
        "providers": [{"name": "up", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"}],
        "models": [{"name": "m", "deployments": [{"provider": "up", "model": "real"}]}],
        "routing": {"retries": 0, "cooldown": {"failures": 1, "window_s": 10, "cooldown_s": 1}},
    }
    with Gateway(config) as gateway:
        upstream_a.reset(Behaviour(status=500))
        assert post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}).status == 500
        logs = wait_for(gateway, "cooling down for 1.0 s: repeated failures (last: HTTP 500)")
        assert "deployment up/real (model m)" in logs
        wait_for(gateway, "deployment up/real (model m) cooldown ended")
        upstream_a.reset(Behaviour(status=503, retry_after="1"))
        assert post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}).status == 503
        wait_for(gateway, "HTTP 503 with Retry-After")
