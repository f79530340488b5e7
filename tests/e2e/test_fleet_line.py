"""Two gateway processes sharing one real redis-server hold one line for the fleet (late
binding, strategies/holding.py): a slot freed at one instance goes to the oldest request
held anywhere — here one held at the other instance — not to the newer request held where
the slot freed, which is what each instance holding its own line did.

In front: two test engines that run at most two requests at once and queue the rest,
showing vLLM's live gauges, so each gateway learns to hold for them (as in
test_late_binding.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.gateway import Gateway
from support.http import post_json
from support.redis_server import RedisServer, started_redis
from support.shared import ADMIN_KEY, admin_state, sharing
from support.upstream import Behaviour, Upstream, running_engines

SLOTS = 2
WORK_S = 1.0  # each request holds an engine slot this long


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.stop()


@pytest.fixture()
def engines() -> Iterator[list[Upstream]]:
    with running_engines(SLOTS, "engine-a", "engine-b") as started:
        yield started


def config(redis_url: str, engines: list[Upstream]) -> dict[str, Any]:
    return {
        "state": {"backend": "redis", "redis_url": redis_url, "key_prefix": "mw-test:", "timeout_ms": 200},
        "auth": {"admin_key": ADMIN_KEY},
        "providers": [
            {"name": e.name, "kind": "openai-compatible", "base_url": f"{e.url}/v1", "metrics_url": f"{e.url}/metrics"}
            for e in engines
        ],
        "models": [
            {
                "name": "chat",
                "strategy": "expected_delay",
                "deployments": [{"provider": e.name, "model": "m"} for e in engines],
            }
        ],
        "metrics": {"source": "prometheus", "refresh_ms": 50},
    }


def ask(gateway: Gateway, tag: str, after_s: float = 0.0) -> int:
    time.sleep(after_s)
    body = {"model": "chat", "messages": [{"role": "user", "content": tag}]}
    return post_json(gateway.url, "/v1/chat/completions", body).status


def reset(engines: list[Upstream]) -> None:
    for engine in engines:
        engine.reset(Behaviour(delay_before_headers_s=WORK_S))


def started_at(engines: list[Upstream], tag: str) -> float:
    """When the request tagged `tag` got an engine slot."""
    (at,) = (
        r.at for e in engines for r in e.received if r.method == "POST" and r.body["messages"][0]["content"] == tag
    )
    return at


def test_a_slot_freed_at_one_instance_goes_to_the_older_request_held_at_the_other(
    redis_server: RedisServer, engines: list[Upstream]
) -> None:
    with Gateway(config(redis_server.url, engines)) as one, Gateway(config(redis_server.url, engines)) as two:
        sharing(one, two)
        # Both learn the engines' slots: their requests queue there while nothing is known.
        reset(engines)
        with ThreadPoolExecutor(12) as pool:
            learned = list(pool.map(lambda n: ask((one, two)[n % 2], f"learn {n}", n * 0.08), range(12)))
        assert learned == [200] * 12
        assert max(e.peak_waiting for e in engines) > 0
        time.sleep(0.3)

        reset(engines)
        with ThreadPoolExecutor(6) as pool:
            # `two` fills the four slots, one every 0.1 s: they free one at a time from WORK_S on
            filling = [pool.submit(ask, two, f"fill {n}", n * 0.1) for n in range(4)]
            older = pool.submit(ask, one, "older", 0.5)  # held at `one`
            newer = pool.submit(ask, two, "newer", 0.8)  # held at `two`, behind it in the fleet's line
            assert [f.result() for f in filling] == [200] * 4
            assert older.result() == 200 and newer.result() == 200
        # The line was at the gateways. One request may reach an engine's queue: the slot
        # passed to `one` counts as its at `two` only until `two`'s next tick, which can read
        # `one`'s count from before it sent `older` (docs/load-aware-routing.md).
        assert sum(e.peak_waiting for e in engines) <= 1
        first_free = min(started_at(engines, f"fill {n}") for n in range(4)) + WORK_S
        # The first slot to free was `two`'s, and `one` was told of it at once (3 ms here; without
        # the fleet's line, `newer` took it and `older` had a slot 0.2 s later)
        assert started_at(engines, "older") - first_free < 0.05
        assert started_at(engines, "older") < started_at(engines, "newer")
        assert admin_state(two)["state_backend"]["slots_given"] >= 1
        assert admin_state(one)["state_backend"]["slots_taken"] >= 1
