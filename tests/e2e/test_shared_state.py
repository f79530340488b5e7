"""Two gateway processes sharing one real redis-server (`state.backend: redis`): a cooldown
or a disabled pool key set through one is honoured by the other within 1 s, the in-flight
counts of a killed instance are gone after their TTL, and Redis killed mid-run costs no
request, moves the error counter, and the instances reconverge once it is back."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from support.gateway import Gateway, free_port
from support.http import Reply, request
from support.redis_server import RedisServer, started_redis
from support.shared import ADMIN, ADMIN_KEY, admin_state, deployment, metric, sharing, wait_for
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
team = {"Authorization": "Bearer team-key"}
INFLIGHT_TTL_S = 2.0  # modelway.state.redis_state.INFLIGHT_TTL_S


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.stop()


def shared_config(redis_url: str, upstream_a: Upstream, upstream_b: Upstream, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "state": {"backend": "redis", "redis_url": redis_url, "key_prefix": "mw-test:", "timeout_ms": 200},
        "auth": {"admin_key": ADMIN_KEY},
        "routing": {"retries": 1, "cooldown": {"failures": 1, "window_s": 60, "cooldown_s": 30}},
        "providers": [
            {"name": "a", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"},
            {"name": "b", "kind": "vllm", "base_url": f"{upstream_b.url}/v1"},
        ],
        "models": [{"name": "m", "deployments": [{"provider": "a"}, {"provider": "b"}]}],
    }
    config.update(extra)
    return config


def chat(gateway: Gateway, model: str = "m", timeout: float = 10, headers: dict[str, str] | None = None) -> Reply:
    return request(
        gateway.url, "POST", "/v1/chat/completions",
        body=json.dumps({"model": model, **CHAT}).encode(),
        headers={"Content-Type": "application/json", **(headers or {})}, timeout=timeout,
    )


def test_a_cooldown_set_through_one_instance_is_honoured_by_the_other_within_1s(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    config = shared_config(redis_server.url, upstream_a, upstream_b)
    with Gateway(config) as one, Gateway(config) as two:
        sharing(one, two)
        upstream_a.reset(Behaviour(status=500))
        for _ in range(2):  # round robin: one of the two goes to a, fails, and is retried on b
            assert chat(one).status == 200
        assert upstream_a.received, "a was tried through instance one"
        assert deployment(admin_state(one), "a")["cooldown_s"] > 0
        started = time.monotonic()
        wait_for(lambda: deployment(admin_state(two), "a")["cooldown_s"] > 25, 1.0, what="two sees a cooling")
        assert time.monotonic() - started < 1.0
        upstream_a.received.clear()
        for _ in range(6):  # without the shared cooldown, two's round robin would send three to a
            reply = chat(two)
            assert reply.status == 200 and reply.headers["x-modelway-provider"] == "b"
        assert upstream_a.received == []


def test_an_upstream_retry_after_holds_the_deployment_on_every_instance(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    config = shared_config(redis_server.url, upstream_a, upstream_b)
    with Gateway(config) as one, Gateway(config) as two:
        sharing(one, two)
        upstream_a.reset(Behaviour(status=503, retry_after="120"))
        for _ in range(2):
            assert chat(one).status == 200
        held = wait_for(lambda: deployment(admin_state(two), "a")["cooldown_s"] or None, 1.0, what="a held on two")
        assert 100 < held <= 120  # the upstream's own time, not cooldown_s (30)


def test_a_pool_key_disabled_through_one_instance_is_skipped_by_the_other(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    keys = [{"header": {"Authorization": "Bearer k0"}}, {"header": {"Authorization": "Bearer k1"}}]
    config = shared_config(redis_server.url, upstream_a, upstream_b)
    config["providers"][0]["keys"] = keys
    config["models"] = [{"name": "m", "deployments": [{"provider": "a"}]}]
    with Gateway(config) as one, Gateway(config) as two:
        sharing(one, two)
        upstream_a.reset(Behaviour(token_status={"Bearer k0": 401}))
        for _ in range(2):  # rotation: one of them gets k0 refused, and is answered with k1
            assert chat(one).status == 200

        def key0_disabled() -> bool:
            pools = {p["provider"]: p for p in admin_state(two)["key_pools"]}
            return bool(pools["a"]["keys"][0]["disabled"])

        wait_for(key0_disabled, 1.0, what="two sees key #0 disabled")
        upstream_a.received.clear()
        for _ in range(4):
            assert chat(two).status == 200
        assert {r.headers["Authorization"] for r in upstream_a.received} == {"Bearer k1"}


def test_the_in_flight_counts_of_a_killed_instance_are_gone_after_their_ttl(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    """least_busy on instance two reads one's in-flight requests at a, and sends its own to
    b; once one is killed (no goodbye), its counts expire with their key."""
    models_one = [{"name": "busy", "strategy": "least_busy",
                   "deployments": [{"provider": "a", "priority": 1}, {"provider": "b"}]}]  # one: all to a
    models_two = [{"name": "busy", "strategy": "least_busy", "deployments": [{"provider": "a"}, {"provider": "b"}]}]
    upstream_a.reset(Behaviour(delay_before_headers_s=30))  # a holds every request it gets
    store = redis_server.client()
    one = Gateway(shared_config(redis_server.url, upstream_a, upstream_b, models=models_one)).start()
    threads: list[threading.Thread] = []
    try:
        with Gateway(shared_config(redis_server.url, upstream_a, upstream_b, models=models_two)) as two:
            sharing(one, two)
            for _ in range(3):
                thread = threading.Thread(target=lambda: _quietly(lambda: chat(one, "busy", timeout=60)), daemon=True)
                thread.start()
                threads.append(thread)
            wait_for(lambda: deployment(admin_state(two), "a")["inflight_elsewhere"] == 3, 2.0,
                     what="two sees one's 3 requests at a")
            for _ in range(4):  # a looks busy from two: least_busy sends two's requests to b
                reply = chat(two, "busy", timeout=5)
                assert reply.status == 200 and reply.headers["x-modelway-provider"] == "b"
            assert len(store.keys("mw-test:{state}:inflight:*")) == 2
            assert one.process is not None
            one.process.kill()  # SIGKILL: no goodbye, its key just stops being renewed
            killed = time.monotonic()
            wait_for(lambda: deployment(admin_state(two), "a")["inflight_elsewhere"] == 0, INFLIGHT_TTL_S + 1.5,
                     what="one's counts expire")
            assert time.monotonic() - killed > 0.5  # they went by their TTL, not at once
            assert len(store.keys("mw-test:{state}:inflight:*")) == 1  # only two's is left
            assert admin_state(two)["state_backend"]["other_instances"] == 0
    finally:
        one.stop()
        for thread in threads:
            thread.join(10)


def _quietly(call: Any) -> None:
    with contextlib.suppress(OSError):  # the gateway it waits on was killed
        call()


def test_redis_killed_mid_run_costs_no_request_and_the_instances_reconverge(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    config = shared_config(
        redis_server.url, upstream_a, upstream_b,
        auth={"admin_key": ADMIN_KEY, "keys": [{"name": "team", "key": "team-key", "rpm": 100000, "tpm": 10**7}]},
    )
    with Gateway(config) as one, Gateway(config) as two:
        sharing(one, two)
        for gateway in (one, two):
            assert chat(gateway, headers=team).status == 200
        redis_server.stop()
        slowest = 0.0
        for i in range(20):
            started = time.monotonic()
            reply = chat((one, two)[i % 2], headers=team)
            slowest = max(slowest, time.monotonic() - started)
            assert reply.status == 200, reply.body
        assert slowest < 0.6  # at most one call waited for state.timeout_ms (200 ms)
        for gateway in (one, two):
            text = request(gateway.url, "GET", "/metrics").body.decode()
            assert metric(text, "modelway_state_backend_errors_total") >= 1
            assert admin_state(gateway)["state_backend"]["up"] is False

        # Meanwhile one cools deployment a; two cannot hear of it.
        upstream_a.reset(Behaviour(status=500, failures=1))
        for _ in range(2):
            assert chat(one, headers=team).status == 200
        assert deployment(admin_state(one), "a")["cooldown_s"] > 0
        assert deployment(admin_state(two), "a")["cooldown_s"] == 0

        redis_server.start()  # empty: everything it held is gone
        for gateway in (one, two):
            wait_for(lambda gw=gateway: admin_state(gw)["state_backend"]["up"], 15, 0.1, "redis back")  # type: ignore[misc]
        # one announces what it holds once Redis is back: two learns of the cooldown it missed.
        wait_for(lambda: deployment(admin_state(two), "a")["cooldown_s"] > 0, 2.0, what="two reconverges")
        sharing(one, two)
        for gateway in (one, two):
            assert chat(gateway, headers=team).status == 200
        assert redis_server.client().keys("mw-test:{limit}:team")  # the limits live in Redis again


def test_a_reload_takes_over_the_link_and_keeps_sharing(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    """A reload with the same `state:` keeps the backend (the same instance in Redis, its
    limits); one that changes the cooldowns attaches the new health to it, still shared."""
    config = shared_config(redis_server.url, upstream_a, upstream_b, server={"watch_config": False})
    with Gateway(config) as one, Gateway(config) as two:
        sharing(one, two)
        before = admin_state(two)["state_backend"]["instance"]
        changed = {**config, "routing": {"retries": 1, "cooldown": {"failures": 1, "window_s": 60, "cooldown_s": 45}}}
        two.config_path.write_text(yaml.safe_dump(changed))
        assert request(two.url, "POST", "/admin/reload", headers=ADMIN).status == 200
        assert admin_state(two)["state_backend"]["instance"] == before  # the link and its tasks were taken over
        upstream_a.reset(Behaviour(status=500))
        for _ in range(2):
            assert chat(one).status == 200
        # Its new runtime counts one's failure with its own settings: cooled for 45 s, not one's 30.
        wait_for(lambda: deployment(admin_state(two), "a")["cooldown_s"] > 40, 1.0,
                 what="two's new runtime hears of one's failure")
        assert len(redis_server.client().keys("mw-test:{state}:inflight:*")) == 2  # no third instance


def test_a_hung_redis_slows_no_request_beyond_timeout_ms(
    redis_server: RedisServer, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    """Redis stops answering (SIGSTOP: connections stay open, nothing comes back): requests of
    a limited key wait for it at most state.timeout_ms, once, then go on with local state."""
    config = shared_config(
        redis_server.url, upstream_a, upstream_b,
        auth={"admin_key": ADMIN_KEY, "keys": [{"name": "team", "key": "team-key", "rpm": 100000}]},
    )
    with Gateway(config) as gateway:
        sharing(gateway)
        assert chat(gateway, headers=team).status == 200
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)
        try:
            times = []
            for _ in range(10):
                started = time.monotonic()
                assert chat(gateway, headers=team).status == 200
                times.append(time.monotonic() - started)
            assert max(times) < 0.5  # timeout_ms is 200
            assert sorted(times)[5] < 0.1  # most never waited at all
            wait_for(lambda: admin_state(gateway)["state_backend"]["up"] is False, 2, what="redis marked down")
        finally:
            redis_server.process.send_signal(signal.SIGCONT)
        wait_for(lambda: admin_state(gateway)["state_backend"]["up"], 15, 0.1, "redis back")


def test_redis_unreachable_from_the_start_fails_no_request(upstream_a: Upstream, upstream_b: Upstream) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    config = shared_config(
        dead, upstream_a, upstream_b,
        auth={"admin_key": ADMIN_KEY, "keys": [{"name": "team", "key": "team-key", "rpm": 2}]},
    )
    with Gateway(config) as gateway:
        # The instance's own buckets stand in: the limit still holds, per instance.
        assert [chat(gateway, headers=team).status for _ in range(3)] == [200, 200, 429]
        text = request(gateway.url, "GET", "/metrics").body.decode()
        assert metric(text, "modelway_state_backend_errors_total") >= 1
        assert gateway.logs().count("is unreachable") == 1  # one line, however many calls failed
