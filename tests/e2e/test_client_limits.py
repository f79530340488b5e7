"""Client keys' rpm/tpm (auth.keys[].rpm, tpm) end to end: a key at its edge gets a 429 in
its dialect's shape with the right Retry-After; another key is never affected; tpm is
pre-checked with the prompt's estimate and charged with the answer's real usage (streams
included); two gateway processes sharing a real redis-server share the limits exactly."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.gateway import Gateway
from support.http import Reply, request
from support.redis_server import RedisServer, started_redis
from support.shared import admin_state, wait_for
from support.upstream import Behaviour, Upstream

ADMIN_KEY = "admin-secret"
SHA_KEY = "a-key-given-by-its-digest"


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.stop()


def limits_config(upstream: Upstream, keys: list[dict[str, Any]], state: dict[str, Any] | None = None) -> Any:
    return {
        "state": state or {"backend": "memory"},
        "auth": {"admin_key": ADMIN_KEY, "keys": [*keys, {"name": "free", "key": "free-key"}]},
        "providers": [{"name": "a", "kind": "vllm", "base_url": f"{upstream.url}/v1"}],
        "models": [{"name": "m", "deployments": [{"provider": "a"}]}],
    }


def body_of_size(size: int, stream: bool = False, **extra: Any) -> bytes:
    """A chat request of exactly `size` bytes (its tpm estimate: size // 4 tokens)."""
    payload: dict[str, Any] = {"model": "m", **extra, "messages": [{"role": "user", "content": ""}]}
    if stream:
        payload["stream"] = True
    pad = size - len(json.dumps(payload).encode())
    assert pad >= 0
    payload["messages"][0]["content"] = "x" * pad
    body = json.dumps(payload).encode()
    assert len(body) == size
    return body


def send(gateway: Gateway, key: str, body: bytes | None = None, path: str = "/v1/chat/completions") -> Reply:
    body = body if body is not None else body_of_size(100)
    return request(gateway.url, "POST", path, body,
                   {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})


def test_a_limited_key_at_its_edge_gets_429_with_retry_after_in_its_dialect(upstream_a: Upstream) -> None:
    keys = [{"name": "team", "key": "team-key", "rpm": 3}]
    with Gateway(limits_config(upstream_a, keys)) as gateway:
        assert [send(gateway, "team-key").status for _ in range(3)] == [200, 200, 200]
        refused = send(gateway, "team-key")
        assert refused.status == 429
        assert refused.headers["retry-after"] == "20"  # rpm 3: one request back every 20 s
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert "'team'" in error["message"] and "rpm 3" in error["message"]
        anthropic = send(gateway, "team-key", json.dumps(
            {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}).encode(), "/v1/messages")
        assert anthropic.status == 429 and anthropic.headers["retry-after"] in ("19", "20")
        assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["type"] == "rate_limit_error"
        assert send(gateway, "free-key").status == 200  # another key is never affected
        assert len(upstream_a.received) == 4


def test_a_key_given_by_its_sha256_is_limited_too_and_a_refused_model_costs_nothing(upstream_a: Upstream) -> None:
    digest = hashlib.sha256(SHA_KEY.encode()).hexdigest()
    keys = [{"name": "hashed", "key_sha256": digest.upper(), "rpm": 2, "models": ["m"]}]
    with Gateway(limits_config(upstream_a, keys)) as gateway:
        assert send(gateway, "not-" + SHA_KEY).status == 401
        other = json.dumps({"model": "other", "messages": [{"role": "user", "content": "hi"}]}).encode()
        assert [send(gateway, SHA_KEY, other).status for _ in range(3)] == [403, 403, 403]
        assert [send(gateway, SHA_KEY).status for _ in range(3)] == [200, 200, 429]


def test_tpm_is_prechecked_with_the_estimate_and_charged_with_real_usage(upstream_a: Upstream) -> None:
    """tpm 60 (a token a second back). Each request is estimated at 27 tokens (108 bytes) and
    really uses 6 (the test upstream's usage): 6 requests fit (60 - 5 * 6 = 30 >= 27), the 7th
    does not (24 < 27: 3 s to wait). Charged by estimates alone, only 2 would fit."""
    keys = [{"name": "team", "key": "team-key", "tpm": 60}]
    with Gateway(limits_config(upstream_a, keys)) as gateway:
        body = body_of_size(108)
        statuses = [send(gateway, "team-key", body).status for _ in range(7)]
        assert statuses == [200] * 6 + [429]
        assert send(gateway, "team-key", body).headers["retry-after"] == "3"
        assert send(gateway, "free-key", body).status == 200


def test_a_translated_answer_is_charged_with_its_real_usage(upstream_a: Upstream) -> None:
    """As above, through the Anthropic Messages API to an OpenAI-speaking provider: the
    translated answer's usage (3 + 3) is charged, and the 429 is Anthropic-shaped."""
    keys = [{"name": "team", "key": "team-key", "tpm": 60}]
    with Gateway(limits_config(upstream_a, keys)) as gateway:
        body = body_of_size(108, max_tokens=8)
        replies = [send(gateway, "team-key", body, "/v1/messages") for _ in range(7)]
        assert [r.status for r in replies] == [200] * 6 + [429]
        assert replies[0].json()["type"] == "message"  # translated
        assert replies[-1].json()["error"]["type"] == "rate_limit_error"


def test_two_gateways_share_a_keys_rpm_exactly(redis_server: RedisServer, upstream_a: Upstream) -> None:
    state = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": "mw-limits:"}
    config = limits_config(upstream_a, [{"name": "team", "key": "team-key", "rpm": 10}], state)
    with Gateway(config) as one, Gateway(config) as two:
        replies = [send((one, two)[i % 2], "team-key") for i in range(14)]
        assert [r.status for r in replies] == [200] * 10 + [429] * 4
        assert {r.headers["retry-after"] for r in replies[10:]} == {"6"}  # rpm 10: one back every 6 s
        assert send(one, "free-key").status == 200 and send(two, "free-key").status == 200
        assert redis_server.client().keys("mw-limits:*limit*") == [b"mw-limits:{limit}:team"]


def test_two_gateways_share_tpm_charged_with_real_usage(redis_server: RedisServer, upstream_a: Upstream) -> None:
    """As the tpm test above, with the requests alternating between two gateways."""
    state = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": "mw-limits:"}
    config = limits_config(upstream_a, [{"name": "team", "key": "team-key", "tpm": 60}], state)
    with Gateway(config) as one, Gateway(config) as two:
        body = body_of_size(108)
        statuses = []
        for i in range(7):
            statuses.append(send((one, two)[i % 2], "team-key", body).status)
            # A charge is sent beside its answer and lands within ms: the next request, on the
            # other gateway, comes after it (without a pause it could overtake it, 1 run in 4).
            time.sleep(0.2)
        assert statuses == [200] * 6 + [429]


def test_streams_are_charged_with_their_usage_or_their_events(redis_server: RedisServer, upstream_a: Upstream) -> None:
    state = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": "mw-limits:"}
    config = limits_config(upstream_a, [{"name": "team", "key": "team-key", "tpm": 600}], state)
    store = redis_server.client()

    def tokens_left() -> float:
        return float(store.hget("mw-limits:{limit}:team", "t") or 0)

    with Gateway(config) as gateway:
        body = body_of_size(400, stream=True)  # estimated at 100 tokens
        # A stream that reports its usage: charged 11 + 9, whatever the estimate was.
        usage = {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}}
        upstream_a.reset(Behaviour(raw_stream=[
            b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n',
            b"data: " + json.dumps(usage).encode() + b"\n\n",
            b"data: [DONE]\n\n",
        ]))
        reply = send(gateway, "team-key", body)
        assert reply.status == 200 and b"[DONE]" in reply.body
        # The charge is sent beside the answer, not before it: it lands within ms.
        wait_for(lambda: 600 - 20 - 1 <= tokens_left() <= 600 - 20 + 1, 1.0, what="charged 20")
        store.delete("mw-limits:{limit}:team")
        # The gateway asks an OpenAI upstream for usage the client did not ask for (7 + 5 here).
        upstream_a.reset(Behaviour(chunks=5))
        reply = send(gateway, "team-key", body)
        assert reply.status == 200 and b"[DONE]" in reply.body and b'"usage"' not in reply.body
        wait_for(lambda: 600 - 12 - 1 <= tokens_left() <= 600 - 12 + 1, 1.0, what=f"charged 12, not {tokens_left()}")
        store.delete("mw-limits:{limit}:team")
        # A stream that reports none all the same: the prompt's estimate, and a token per event (4).
        upstream_a.reset(Behaviour(raw_stream=[
            b'data: {"choices": [{"index": 0, "delta": {"content": "a"}}]}\n\n',
            b'data: {"choices": [{"index": 0, "delta": {"content": "b"}}]}\n\n'
            b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n',
            b"data: [DONE]\n\n",
        ]))
        reply = send(gateway, "team-key", body)
        assert reply.status == 200 and b"[DONE]" in reply.body
        wait_for(lambda: 600 - 104 - 1 <= tokens_left() <= 600 - 104 + 1, 1.0, what=f"charged 104, not {tokens_left()}")


def test_workers_share_the_configured_backend(redis_server: RedisServer, upstream_a: Upstream) -> None:
    """`--workers 2` with the redis backend: each worker is an instance of its own, and they
    share the limits exactly (connections are spread over the workers by the kernel)."""
    state = {"backend": "redis", "redis_url": redis_server.url, "key_prefix": "mw-workers:"}
    config = limits_config(upstream_a, [{"name": "team", "key": "team-key", "rpm": 10}], state)
    with Gateway(config, workers=2) as gateway:
        for _ in range(4):  # whichever worker answers sees the other one
            wait_for(lambda: admin_state(gateway)["state_backend"]["other_instances"] == 1, 10,
                     what="the workers see each other")
        statuses = [send(gateway, "team-key").status for _ in range(14)]
        assert statuses == [200] * 10 + [429] * 4
    memory = limits_config(upstream_a, [{"name": "team", "key": "team-key", "rpm": 10}])
    with Gateway(memory, workers=2) as gateway:
        assert "each worker keeps its own cooldowns" in gateway.logs()


def test_rediss_with_a_password_in_the_url_and_the_password_never_shown(tmp_path: Path, upstream_a: Upstream) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
         "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server = started_redis(tls=tmp_path, password="pw s3cret-canary")
    try:
        assert server.url.startswith("rediss://:pw%20s3cret-canary@")
        state = {"backend": "redis", "redis_url": server.url, "key_prefix": "mw-tls:"}
        config = limits_config(upstream_a, [{"name": "team", "key": "team-key", "rpm": 2}], state)
        with Gateway(config) as gateway:
            assert [send(gateway, "team-key").status for _ in range(3)] == [200, 200, 429]
            assert server.client().keys("mw-tls:*") != []  # the buckets are in the TLS Redis
            described = admin_state(gateway)["state_backend"]
            assert described["up"] is True and described["url"].startswith("rediss://:***@127.0.0.1:")
            server.stop()
            assert send(gateway, "free-key").status == 200
            wait_for(lambda: "is unreachable" in gateway.logs(), 5, what="the outage is logged")
            assert "rediss://:***@127.0.0.1" in gateway.logs()
            assert "s3cret-canary" not in gateway.logs()
            assert "s3cret-canary" not in json.dumps(admin_state(gateway))
    finally:
        server.stop()
