"""Fault injection through test servers of our own, for the faults test_failover.py,
test_proxy.py, test_retry_budget.py and test_tls.py do not already drive: a stall and
broken framing mid-stream, malformed SSE, a lone deployment's 429 with Retry-After, a 5xx
storm with the default cooldowns, an unresolvable provider host, and a reset before
headers on a fresh and on a reused connection.

In each: no answer is lost or duplicated, and `x-modelway-attempts` equals the upstream
hits the test servers counted (a refused or unresolvable connection is an attempt no
server can count, so those are added by hand)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from support.gateway import Gateway
from support.http import Reply, post_json
from support.upstream import Behaviour, Upstream

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
TIMEOUT_S = 1.0
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class RawUpstream:
    """A TCP server of our own answering every request with the same bytes, then closing:
    for what an HTTP server library will not send (broken chunked framing)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                conn.sendall(self.answer)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture(scope="module")
def broken_framing() -> Iterator[RawUpstream]:
    first = b'data: {"choices": [{"index": 0, "delta": {"content": "one"}}]}\n\n'
    server = RawUpstream(SSE_HEAD + chunk(first) + b"zz-not-a-chunk-size\r\n")
    yield server
    server.close()


def provider(name: str, base: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "vllm", "base_url": f"{base}/v1", "timeout_ms": int(TIMEOUT_S * 1000),
            "connect_timeout_ms": 1000, **extra}


def model(name: str, *providers: str) -> dict[str, Any]:
    return {"name": name, "deployments": [{"provider": p, "model": f"{name}-{p}"} for p in providers]}


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, upstream_b: Upstream, broken_framing: RawUpstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            provider("a", upstream_a.url),
            provider("b", upstream_b.url),
            provider("a-fresh", upstream_a.url, keepalive=False),
            provider("b-fresh", upstream_b.url, keepalive=False),
            provider("nowhere", "http://nowhere.invalid"),
            provider("raw", f"http://127.0.0.1:{broken_framing.port}"),
        ],
        "models": [
            model("lone-a", "a"),
            model("storm", "a", "b"),
            model("reset-fresh", "a-fresh", "b-fresh"),
            model("unresolvable", "nowhere"),
            {"name": "unresolvable-first", "deployments": [
                {"provider": "nowhere", "priority": 1}, {"provider": "b", "priority": 0}]},
            model("framing", "raw"),
        ],
        # routing: the defaults (2 retries, cooldown 3 failures in 60 s → 30 s)
    }
    with Gateway(config) as gw:
        yield gw


def chat(gateway: Gateway, name: str, **extra: Any) -> Reply:
    return post_json(gateway.url, "/v1/chat/completions", {"model": name, **CHAT, **extra})


def attempts(reply: Reply) -> int:
    return int(reply.headers["x-modelway-attempts"])


def events(reply: Reply) -> list[bytes]:
    return [e for e in reply.body.split(b"\n\n") if e]


def test_a_stall_mid_stream_ends_it_with_an_error_event_on_time(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(chunks=3, chunk_gap_s=5))  # one chunk, then nothing for 5 s
    started = time.monotonic()
    reply = chat(gateway, "lone-a", stream=True)
    elapsed = time.monotonic() - started
    assert reply.status == 200
    assert 0.9 * TIMEOUT_S <= elapsed <= 1.1 * TIMEOUT_S + 0.15  # timeout_ms bounds the gap, ±10%
    first, error = events(reply)
    assert orjson.loads(first[6:])["choices"][0]["delta"]["content"] == "c0 "
    assert orjson.loads(error[6:])["error"]["code"] == "stream_broken"
    assert b"[DONE]" not in reply.body
    assert attempts(reply) == len(upstream_a.received) == 1  # bytes were relayed: never retried


def test_broken_chunked_framing_mid_stream_ends_it_with_an_error_event(
    gateway: Gateway, broken_framing: RawUpstream
) -> None:
    reply = chat(gateway, "framing", stream=True)
    assert reply.status == 200
    first, error = events(reply)
    assert orjson.loads(first[6:])["choices"][0]["delta"]["content"] == "one"
    failure = orjson.loads(error[6:])["error"]
    assert failure["code"] == "stream_broken" and "invalid HTTP response" in failure["message"]
    assert attempts(reply) == broken_framing.requests == 1


def test_malformed_sse_is_relayed_byte_for_byte(gateway: Gateway, upstream_a: Upstream) -> None:
    raw = [
        b'data: {"choices": [{"delta": {"content": "ok"}}]}\n\n',
        b"data: {not json at all\n\n",
        b"no field name here\n\n",
        b'data: {"usage": {"prompt_tokens": "many"}}\r\n\r\n',
        b"event: odd\ndata: split across",
        b" two writes\n\n: a comment\n\ndata: [DONE]\n\n",
    ]
    upstream_a.reset(Behaviour(raw_stream=raw))
    # include_usage makes the gateway read the stream for its usage event, malformed ones included.
    reply = chat(gateway, "lone-a", stream=True, stream_options={"include_usage": True})
    assert reply.status == 200
    assert reply.body == b"".join(raw)  # relayed unchanged: nothing lost, nothing added
    assert attempts(reply) == len(upstream_a.received) == 1


def test_a_lone_deployments_429_with_retry_after_is_passed_through_and_held(
    gateway: Gateway, upstream_a: Upstream
) -> None:
    upstream_a.reset(Behaviour(status=429, retry_after="2"))
    reply = chat(gateway, "lone-a")
    assert reply.status == 429  # the only attempt's own answer
    assert reply.headers["retry-after"] == "2"
    assert reply.json()["error"]["message"] == "upstream-a says 429"
    assert attempts(reply) == len(upstream_a.received) == 1
    upstream_a.reset()  # healthy again, but it asked for 2 s
    held = chat(gateway, "lone-a")
    assert held.status == 503 and held.json()["error"]["code"] == "no_healthy_deployment"
    assert 1 <= int(held.headers["retry-after"]) <= 2
    assert attempts(held) == 0 and upstream_a.received == []  # not even a probe before the time it named
    time.sleep(2.1)
    reply = chat(gateway, "lone-a")
    assert reply.status == 200
    assert attempts(reply) == len(upstream_a.received) == 1


def test_a_5xx_storm_with_the_default_cooldowns_stays_under_1_2_attempts_per_request(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(Behaviour(status=500))
    upstream_b.reset(Behaviour(status=500))
    burst = 60
    with ThreadPoolExecutor(8) as threads:
        replies = list(threads.map(lambda _: chat(gateway, "storm"), range(burst)))
    # Each request got exactly one answer: the upstream's 500 (one attempt), a 502 (several),
    # or a 503 while every deployment cools and a probe is out (none).
    assert all(r.status in (500, 502, 503) for r in replies)
    assert all(r.json()["error"] for r in replies)
    for reply in replies:
        n = attempts(reply)
        assert (reply.status, n > 1) in ((500, False), (502, True), (503, False))
        assert (n == 0) == (reply.status == 503)
    total = sum(attempts(r) for r in replies)
    assert total == len(upstream_a.received) + len(upstream_b.received)
    assert total / burst <= 1.2, total


def test_an_unresolvable_provider_host_is_an_attempt_that_fails_over(gateway: Gateway, upstream_b: Upstream) -> None:
    reply = chat(gateway, "unresolvable")
    assert reply.status == 502
    assert attempts(reply) == 1  # a lookup no server could count
    assert "nowhere/unresolvable-nowhere -> connect_error" in reply.error_message
    reply = chat(gateway, "unresolvable-first")
    assert reply.status == 200 and reply.headers["x-modelway-provider"] == "b"
    assert attempts(reply) == 1 + len(upstream_b.received) == 2


def test_a_reset_before_headers_on_fresh_connections(
    gateway: Gateway, upstream_a: Upstream, upstream_b: Upstream
) -> None:
    upstream_a.reset(Behaviour(drop=True))
    upstream_b.reset(Behaviour(drop=True))
    reply = chat(gateway, "reset-fresh")
    assert reply.status == 502
    assert "connect_error" in reply.error_message
    assert attempts(reply) == len(upstream_a.received) + len(upstream_b.received) == 2


def test_a_reset_before_headers_on_a_reused_connection(gateway: Gateway, upstream_a: Upstream) -> None:
    assert chat(gateway, "lone-a").status == 200  # leaves a kept-alive connection
    upstream_a.reset(Behaviour(drop=True))
    reply = chat(gateway, "lone-a")
    assert reply.status == 502
    # SPEC 5: the re-send on a fresh connection after the reused one closed is an attempt too
    assert attempts(reply) == len(upstream_a.received) == 2
