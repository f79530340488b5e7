"""prefix_affinity's affinity table shared by two gateway processes through one real
redis-server: a conversation's next turn, sent through the other instance, reaches the
upstream its last turn went to — where that instance, on its own, would choose another;
and Redis going away costs no request through a prefix_affinity model.

The two instances weigh the deployments the other way round (one: b, two: a), so each
sends a conversation it has never seen to a different upstream: only what the other
instance recorded can take the next turn back to the first one's choice."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from support.gateway import Gateway
from support.http import Reply, request
from support.redis_server import RedisServer, started_redis
from support.shared import ADMIN, ADMIN_KEY, admin_state, deployment, metric, sharing, wait_for
from support.upstream import Upstream

FILLER = "The quick brown fox jumps over the lazy dog. " * 70  # ~3 KB: the prompt has prefix keys


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.stop()


def config(redis_url: str, upstream_a: Upstream, upstream_b: Upstream, weights: tuple[int, int]) -> dict[str, Any]:
    return {
        "state": {"backend": "redis", "redis_url": redis_url, "key_prefix": "mw-test:", "timeout_ms": 200},
        "auth": {"admin_key": ADMIN_KEY},
        "providers": [
            {"name": "a", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"},
            {"name": "b", "kind": "vllm", "base_url": f"{upstream_b.url}/v1"},
        ],
        "models": [
            {
                "name": "m",
                "strategy": "prefix_affinity",
                "deployments": [{"provider": "a", "weight": weights[0]}, {"provider": "b", "weight": weights[1]}],
            }
        ],
    }


def turn(conversation: int, number: int) -> list[dict[str, str]]:
    """The messages of a conversation's turn: each turn extends the last one's prompt."""
    messages = [{"role": "user", "content": f"conversation {conversation}: {FILLER}"}]
    for n in range(2, number + 1):
        messages += [{"role": "assistant", "content": f"answer {n - 1}"}, {"role": "user", "content": f"question {n}"}]
    return messages


def chat(gateway: Gateway, messages: list[dict[str, str]]) -> Reply:
    return request(
        gateway.url, "POST", "/v1/chat/completions",
        body=json.dumps({"model": "m", "messages": messages}).encode(),
        headers={"Content-Type": "application/json"}, timeout=10,
    )


def provider(gateway: Gateway, messages: list[dict[str, str]]) -> str:
    reply = chat(gateway, messages)
    assert reply.status == 200, reply.body
    return reply.headers["x-modelway-provider"]


def conversations(upstream: Upstream) -> list[int]:
    """The conversations of the requests `upstream` got, in order."""
    return [int(r.body["messages"][0]["content"].split(":", 1)[0].split()[1]) for r in upstream.received]


def applied(gateway: Gateway) -> int:
    return int(admin_state(gateway)["state_backend"].get("affinity_applied", 0))


def settled(gateway: Gateway) -> bool:
    """No request of the other instance is counted in flight here any more (a count
    published while a turn was in flight would push the holder out of the load bound)."""
    state = admin_state(gateway)
    return all(deployment(state, name)["inflight_elsewhere"] == 0 for name in ("a", "b"))


def test_a_conversations_next_turn_through_the_other_instance_reaches_the_same_upstream(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    with (
        Gateway(config(redis_server.url, upstream_a, upstream_b, weights=(1, 2))) as one,
        Gateway(config(redis_server.url, upstream_a, upstream_b, weights=(2, 1))) as two,
    ):
        sharing(one, two)
        first = {c: (one, two)[c % 2] for c in range(8)}  # conversations 0, 2, 4, 6 start at one
        went = {c: provider(gateway, turn(c, 1)) for c, gateway in first.items()}
        # On its own, each instance sends a new conversation where its weights say: one to b, two to a.
        assert went == {c: "b" if gateway is one else "a" for c, gateway in first.items()}
        assert conversations(upstream_b) == [0, 2, 4, 6]
        for gateway in (one, two):  # each has applied the other's 4 records, published at its next tick
            wait_for(lambda gw=gateway: applied(gw) >= 4, 2.0, what="the other's records applied")  # type: ignore[misc]
            wait_for(lambda gw=gateway: settled(gw), 2.0, what="no request in flight elsewhere")  # type: ignore[misc]
        upstream_a.received.clear()
        upstream_b.received.clear()
        for c, gateway in first.items():
            other = two if gateway is one else one
            assert provider(other, turn(c, 2)) == went[c], f"conversation {c}'s second turn"
        # Turn 2 of every conversation reached the upstream holding turn 1's prefix.
        assert conversations(upstream_b) == [0, 2, 4, 6] and conversations(upstream_a) == [1, 3, 5, 7]
        assert all(len(r.body["messages"]) == 3 for r in upstream_a.received + upstream_b.received)


def test_after_a_reload_the_new_table_knows_what_the_old_one_knew_and_is_still_shared(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    config_two = {**config(redis_server.url, upstream_a, upstream_b, weights=(2, 1)), "server": {"watch_config": False}}
    with (
        Gateway(config(redis_server.url, upstream_a, upstream_b, weights=(1, 2))) as one,
        Gateway(config_two) as two,
    ):
        sharing(one, two)

        def through(gateway: Gateway, conversation: int, number: int, records: int) -> str:
            """Turn `number` through `gateway` once the other has applied `records` records in all."""
            other = two if gateway is one else one
            went = provider(gateway, turn(conversation, number))
            wait_for(lambda: applied(other) >= records, 2.0, what="the record applied")
            wait_for(lambda: settled(other), 2.0, what="no request in flight elsewhere")
            return went

        assert through(one, 0, 1, records=1) == "b"  # two, on its own, would send it to a
        config_two["models"][0]["deployments"].reverse()  # new indexes: b is 0, a is 1
        two.config_path.write_text(yaml.safe_dump(config_two))
        assert request(two.url, "POST", "/admin/reload", headers=ADMIN).status == 200
        assert provider(two, turn(0, 2)) == "b"  # the new table took over the old one's contents
        assert through(two, 1, 1, records=2) == "a"  # its records are published...
        assert provider(one, turn(1, 2)) == "a"
        assert through(one, 2, 1, records=3) == "b"  # ...and it gets the others'
        assert provider(two, turn(2, 2)) == "b"


def test_redis_going_away_costs_no_request_through_a_prefix_affinity_model_and_sharing_resumes(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    """Records made while Redis is down wait in a bounded outbox and reach the other
    instance once it is back."""
    with (
        Gateway(config(redis_server.url, upstream_a, upstream_b, weights=(1, 2))) as one,
        Gateway(config(redis_server.url, upstream_a, upstream_b, weights=(2, 1))) as two,
    ):
        sharing(one, two)
        assert provider(one, turn(0, 1)) == "b"
        redis_server.stop()
        slowest = 0.0
        for c in range(1, 11):
            started = time.monotonic()
            # the ones through one after its first Redis failure: held for when Redis is back
            assert provider((one, two)[c % 2], turn(c, 1)) == ("b", "a")[c % 2]
            slowest = max(slowest, time.monotonic() - started)
        assert slowest < 0.5  # no request waits on Redis (its calls are the backend's own, beside them)
        for gateway in (one, two):
            wait_for(lambda gw=gateway: admin_state(gw)["state_backend"]["up"] is False, 2.0, what="redis down")  # type: ignore[misc]
            text = request(gateway.url, "GET", "/metrics").body.decode()
            assert metric(text, "modelway_state_backend_errors_total") >= 1
        assert provider(one, turn(12, 1)) == "b"  # made while Redis is known down: kept for later
        before = applied(two)  # turn 0's record, if it arrived before Redis went
        redis_server.start()
        for gateway in (one, two):
            wait_for(lambda gw=gateway: admin_state(gw)["state_backend"]["up"], 15, 0.1, "redis back")  # type: ignore[misc]
        wait_for(lambda: applied(two) > before, 3.0, what="two applies what one recorded while Redis was down")
        wait_for(lambda: settled(two), 2.0, what="no request in flight elsewhere")
        assert provider(two, turn(12, 2)) == "b"
