"""Failover against real failing servers: priorities, retries, cooldowns, Retry-After,
broken streams, stalls, resets, credential pools, hedging and active health checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest
from support.gateway import Gateway, free_port
from support.http import post_json
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
COOLDOWN_S = 1.5


@pytest.fixture(scope="module")
def upstream_c() -> Iterator[Upstream]:
    server = Upstream("upstream-c").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_c(upstream_c: Upstream) -> None:
    upstream_c.reset()


def provider(name: str, server: Upstream | None, **extra: Any) -> dict[str, Any]:
    url = server.url if server else f"http://127.0.0.1:{free_port()}"
    return {"name": name, "kind": "vllm", "base_url": f"{url}/v1", "connect_timeout_ms": 500, **extra}


def model(name: str, *deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "deployments": list(deployments), **extra}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, upstream_b: Upstream, upstream_c: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            provider("a", upstream_a, timeout_ms=1000),
            provider("b", upstream_b, timeout_ms=1000),
            provider("c", upstream_c, timeout_ms=5000),
            provider("closed", None),
            provider(
                "pool",
                upstream_c,
                keys=[{"header": {"Authorization": f"Bearer k{i}"}} for i in range(3)],
            ),
        ],
        "models": [
            model(
                "prio",
                {"provider": "closed", "model": "primary", "priority": 1},
                {"provider": "a", "model": "backup", "priority": 0},
            ),
            model("cool", {"provider": "a", "model": "cool-a"}, {"provider": "b", "model": "cool-b"}),
            model("quota", {"provider": "a", "model": "q-a"}, {"provider": "b", "model": "q-b"}),
            model("cool-again", {"provider": "a", "model": "ca-a"}, {"provider": "b", "model": "ca-b"}),
            model("retry-after", {"provider": "a", "model": "ra-a"}, {"provider": "b", "model": "ra-b"}),
            model("all-cool", {"provider": "a", "model": "x"}),
            model("summary", {"provider": "a", "model": "s-a"}, {"provider": "b", "model": "s-b"}),
            model("four-oh-oh", {"provider": "a", "model": "f-a"}, {"provider": "b", "model": "f-b"}),
            model("stream", {"provider": "a", "model": "st-a"}, {"provider": "b", "model": "st-b"}),
            model("stall", {"provider": "a", "model": "stall-a"}),
            model("reset", {"provider": "a", "model": "r-a"}, {"provider": "b", "model": "r-b"}),
            model("fallback-src", {"provider": "closed", "model": "nope"}, fallbacks=["fallback-dst"]),
            model("fallback-dst", {"provider": "b", "model": "fb-b"}),
            model("pooled", {"provider": "pool", "model": "p"}),
            model(
                "hedged",
                {"provider": "c", "model": "slow", "weight": 1000},
                {"provider": "b", "model": "fast", "weight": 1},
                hedge_after_ms=200,
            ),
            model(
                "hedged-timeout",
                {"provider": "a", "model": "ht-slow", "weight": 1000},
                {"provider": "b", "model": "ht-fast", "weight": 1},
                hedge_after_ms=200,
            ),
            model(
                "hash",
                {"provider": "a", "model": "h-a"},
                {"provider": "b", "model": "h-b"},
                {"provider": "c", "model": "h-c"},
                strategy="consistent_hash",
                hash_on={"header": "x-session-id"},
            ),
        ],
        "routing": {
            "retries": 2,
            "cooldown": {"failures": 2, "window_s": 30, "cooldown_s": COOLDOWN_S},
        },
    }
    with Gateway(config) as gw:
        yield gw


def chat(gateway: Gateway, name: str, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    return post_json(gateway.url, "/v1/chat/completions", {"model": name, **CHAT, **extra}, headers)


def test_priority_fallback_over_a_closed_port(gateway: Gateway, upstream_a: Upstream) -> None:
    reply = chat(gateway, "prio")
    assert reply.status == 200
    assert reply.headers["x-modelway-attempts"] == "2"
    assert reply.json()["model"] == "backup"
    reply = chat(gateway, "prio")  # second connect error: the primary now cools down
    assert reply.headers["x-modelway-attempts"] == "2"
    reply = chat(gateway, "prio")
    assert reply.headers["x-modelway-attempts"] == "1"  # straight to the backup while it cools


def test_fallback_models_after_every_deployment_failed(gateway: Gateway, upstream_b: Upstream) -> None:
    reply = chat(gateway, "fallback-src")
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "b"
    assert upstream_b.received[0].body["model"] == "fb-b"


def fail_twice(gateway: Gateway, name: str, failing: Upstream) -> None:
    """Send requests until the failing upstream has been hit twice (the cooldown threshold)."""
    for _ in range(8):
        reply = chat(gateway, name)
        assert reply.status == 200 and reply.headers["x-modelway-provider"] == "b"  # retried on b
        if len(failing.received) == 2:
            return
    raise AssertionError("the failing deployment was not picked twice")


def test_cooldown_entry_and_expiry(gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream) -> None:
    upstream_a.reset(Behaviour(status=500))
    fail_twice(gateway, "cool", upstream_a)
    hits_on_a = len(upstream_a.received)
    for _ in range(6):  # a is cooling: not even tried
        assert chat(gateway, "cool").headers["x-modelway-attempts"] == "1"
    assert len(upstream_a.received) == hits_on_a
    upstream_a.reset()
    time.sleep(COOLDOWN_S + 0.2)
    providers = [chat(gateway, "cool").headers["x-modelway-provider"] for _ in range(30)]
    assert "a" in providers  # back in rotation after the cooldown


def test_slow_start_ramps_a_recovered_deployment_up(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(status=503))
    fail_twice(gateway, "cool-again", upstream_a)
    upstream_a.reset()
    time.sleep(COOLDOWN_S + 0.1)
    providers = [chat(gateway, "cool-again").headers["x-modelway-provider"] for _ in range(20)]
    # Equal weights would give 10 each; right after recovery 'a' gets a small share.
    assert 1 <= providers.count("a") <= 6


def test_retry_after_cools_for_that_long(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(status=429, retry_after="2"))
    first = chat(gateway, "retry-after")
    assert first.status == 200
    # Whichever went first, 'a' answered 429 once at most and is now skipped for 2 s.
    upstream_a.reset()
    providers = {chat(gateway, "retry-after").headers["x-modelway-provider"] for _ in range(6)}
    if first.headers["x-modelway-attempts"] == "2":
        assert providers == {"b"}
        time.sleep(2.2)
        providers = {chat(gateway, "retry-after").headers["x-modelway-provider"] for _ in range(20)}
        assert "a" in providers  # back (slowly ramping up) once Retry-After passed


def test_all_deployments_cooling_is_503_with_retry_after(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(status=503, retry_after="7"))
    reply = chat(gateway, "all-cool")
    assert reply.status == 503  # the only attempt's own answer, passed through
    assert reply.json()["error"]["message"] == "upstream-a says 503"
    started = time.monotonic()
    reply = chat(gateway, "all-cool")
    assert time.monotonic() - started < 0.5
    assert reply.status == 503
    assert reply.json()["error"]["code"] == "no_healthy_deployment"
    assert 6 <= int(reply.headers["retry-after"]) <= 7
    assert reply.headers["x-modelway-attempts"] == "0"
    assert len(upstream_a.received) == 1


def test_502_summarises_every_attempt(gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream) -> None:
    upstream_a.reset(Behaviour(status=502))
    upstream_b.reset(Behaviour(status=500))
    reply = chat(gateway, "summary")
    assert reply.status == 502
    assert reply.headers["x-modelway-attempts"] == "2"
    message = reply.json()["error"]["message"]
    assert "a/s-a -> 502" in message and "b/s-b -> 500" in message
    assert "Bearer" not in message


def test_client_errors_pass_through_with_one_upstream_hit(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(Behaviour(status=400))
    upstream_b.reset(Behaviour(status=400))
    reply = chat(gateway, "four-oh-oh")
    assert reply.status == 400
    assert reply.headers["x-modelway-attempts"] == "1"
    assert len(upstream_a.received) + len(upstream_b.received) == 1


def test_stream_broken_after_three_chunks_ends_with_an_error_event(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(Behaviour(chunks=10, break_after=3))
    upstream_b.reset(Behaviour(chunks=10, break_after=3))
    reply = chat(gateway, "stream", stream=True)
    assert reply.status == 200
    events = [line for line in reply.body.split(b"\n\n") if line]
    assert len(events) == 4
    contents = [orjson.loads(e[6:])["choices"][0]["delta"]["content"] for e in events[:3]]
    assert contents == ["c0 ", "c1 ", "c2 "]
    error = orjson.loads(events[3][6:])["error"]
    assert error["code"] == "stream_broken"
    assert b"[DONE]" not in reply.body
    assert len(upstream_a.received) + len(upstream_b.received) == 1  # never retried


def test_stream_failing_before_its_first_byte_is_retried(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(Behaviour(status=503))
    upstream_b.reset(Behaviour(status=503))
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0)
    upstream_b.reset(Behaviour(chunks=3))
    for _ in range(2):
        chunks = list(client.chat.completions.create(model="stream", stream=True, **CHAT))  # type: ignore[call-overload]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "c0 c1 c2 "


def test_stall_before_headers_times_out_on_time(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(delay_before_headers_s=5))
    started = time.monotonic()
    reply = chat(gateway, "stall")
    elapsed = time.monotonic() - started
    assert reply.status == 504
    assert 0.9 <= elapsed <= 1.1 + 0.15  # timeout_ms 1000, ±10% (plus request overhead)


def test_reset_before_headers_is_retried_elsewhere(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(Behaviour(drop=True))
    upstream_b.reset(Behaviour(drop=True))
    reply = chat(gateway, "reset")
    assert reply.status == 502
    assert "connect_error" in reply.json()["error"]["message"]
    upstream_b.reset()
    reply = chat(gateway, "reset")
    assert reply.status == 200 and reply.headers["x-modelway-provider"] == "b"


def test_credential_pool_rotates_and_disables_a_rejected_key(gateway: Gateway, upstream_c: Upstream) -> None:
    upstream_c.reset(Behaviour(token_status={"Bearer k1": 401}))
    statuses = [chat(gateway, "pooled").status for _ in range(9)]
    assert statuses == [200] * 9
    used = [r.headers["Authorization"] for r in upstream_c.received]
    assert used.count("Bearer k1") == 1  # rejected once, then never used again
    assert used.count("Bearer k0") + used.count("Bearer k2") == 9
    assert abs(used.count("Bearer k0") - used.count("Bearer k2")) <= 1  # the other two take turns
    assert "Bearer k1" not in gateway.logs()
    assert "key #1 disabled after HTTP 401" in gateway.logs()


def test_key_answering_429_cools_down(gateway: Gateway, upstream_c: Upstream) -> None:
    upstream_c.reset(Behaviour(token_status={"Bearer k0": 429}))
    for _ in range(4):
        assert chat(gateway, "pooled").status == 200
    used = [r.headers["Authorization"] for r in upstream_c.received]
    assert used.count("Bearer k0") <= 1
    assert "Bearer k1" not in used  # still disabled from the test before


def test_hedging_keeps_the_first_answer_and_cancels_the_other(
    gateway: Gateway, upstream_b: Upstream, upstream_c: Upstream
) -> None:
    upstream_c.reset(Behaviour(delay_before_headers_s=2))
    started = time.monotonic()
    reply = chat(gateway, "hedged")
    elapsed = time.monotonic() - started
    assert reply.status == 200
    assert reply.headers["x-modelway-provider"] == "b"
    assert reply.headers["x-modelway-attempts"] == "2"
    assert 0.2 <= elapsed < 1.0
    assert reply.json()["choices"][0]["message"]["content"] == "hello from upstream-b"
    deadline = time.monotonic() + 2
    while upstream_c.cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream_c.cancelled == 1  # the slow one was abandoned at once
    assert len(upstream_b.received) == 1


def test_hedged_stream_is_never_duplicated(gateway: Gateway, upstream_b: Upstream, upstream_c: Upstream) -> None:
    upstream_c.reset(Behaviour(delay_before_headers_s=0.5, chunks=3))
    upstream_b.reset(Behaviour(delay_before_headers_s=0.5, chunks=3))
    reply = chat(gateway, "hedged", stream=True)
    body = reply.body
    assert body.count(b"[DONE]") == 1
    assert body.count(b'"c0 "') == 1
    assert reply.headers["x-modelway-attempts"] == "2"


def test_no_hedge_when_the_first_answers_in_time(gateway: Gateway, upstream_b: Upstream, upstream_c: Upstream) -> None:
    reply = chat(gateway, "hedged")
    assert reply.status == 200 and reply.headers["x-modelway-attempts"] == "1"
    assert len(upstream_b.received) + len(upstream_c.received) == 1


def test_hedged_request_whose_last_attempt_to_end_timed_out_is_a_504(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    """The hedge (launched last) fails first with a 503; the first attempt then times out.
    The last attempt to end timed out, so the answer is a 504, not a 502."""
    upstream_a.reset(Behaviour(delay_before_headers_s=3))
    upstream_b.reset(Behaviour(status=503))
    started = time.monotonic()
    reply = chat(gateway, "hedged-timeout")
    elapsed = time.monotonic() - started
    assert reply.status == 504, reply.body
    assert reply.headers["x-modelway-attempts"] == "2"
    assert 0.9 <= elapsed < 2.0  # provider a's timeout_ms is 1000
    assert "timed out" in reply.error_message


def test_consistent_hash_sticks_per_session(gateway: Gateway) -> None:
    seen: dict[str, set[str]] = {}
    for session in range(12):
        for _ in range(3):
            reply = chat(gateway, "hash", {"x-session-id": f"user-{session}"})
            seen.setdefault(f"user-{session}", set()).add(reply.headers["x-modelway-provider"])
    assert all(len(providers) == 1 for providers in seen.values())
    assert len(set().union(*seen.values())) >= 2  # sessions spread over deployments


def test_deployment_near_its_rate_limit_is_deprioritised(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(
        Behaviour(extra_headers={"x-ratelimit-limit-requests": "100", "x-ratelimit-remaining-requests": "1",
                                 "x-ratelimit-reset-requests": "2s"})
    )
    providers = [chat(gateway, "quota").headers["x-modelway-provider"] for _ in range(10)]
    assert providers.count("a") == 1  # once to learn it is nearly out, then b until the reset
    time.sleep(2.1)
    upstream_a.reset()
    providers = [chat(gateway, "quota").headers["x-modelway-provider"] for _ in range(10)]
    assert providers.count("a") >= 4
