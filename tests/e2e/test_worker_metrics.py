"""--workers N: a scrape of /metrics reports the whole server, whichever worker answers it."""

from __future__ import annotations

import re
import time

from support.gateway import Gateway
from support.http import post_json, request

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def requests_total(text: str) -> float:
    return sum(float(v) for v in re.findall(r'^modelway_requests_total\{[^}]*status="200"\} (\S+)$', text, re.M))


def test_every_workers_scrape_counts_every_request() -> None:
    config = {
        "providers": [{"name": "sim", "kind": "simulated", "simulate": {"latency_ms": 1}}],
        "models": [{"name": "m", "deployments": [{"provider": "sim"}]}],
    }
    with Gateway(config, workers=2) as gateway:
        for _ in range(40):  # a new connection each: the kernel spreads them over both workers
            reply = post_json(gateway.url, "/v1/chat/completions", CHAT)
            assert reply.status == 200
        time.sleep(1.2)  # other workers' figures are at most 0.5 s old
        for _ in range(12):
            text = request(gateway.url, "GET", "/metrics").body.decode()
            assert requests_total(text) == 40, text[:2000]
            assert 'modelway_request_duration_seconds_count{model="m",provider="sim"} 40.0' in text
