"""Late binding end to end: the real gateway in front of two test engines that run at most
two requests at once and queue the rest, showing vLLM's live gauges. Once the gateway has
seen them queue (its first burst), `expected_delay` holds what they cannot start at the
gateway and sends each where a slot frees: the engines never queue again, every request
is answered, and a client that leaves while held costs the engines nothing. /metrics
shows the held ones (`modelway_held_requests`)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Behaviour, Upstream, running_engines

SLOTS = 2
WORK_S = 0.6  # each request holds an engine slot this long
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def engines() -> Iterator[list[Upstream]]:
    with running_engines(SLOTS, "engine-a", "engine-b") as started:
        yield started


def config(engines: list[Upstream], strategy: str) -> dict[str, Any]:
    return {
        "providers": [
            {"name": e.name, "kind": "openai-compatible", "base_url": f"{e.url}/v1", "metrics_url": f"{e.url}/metrics"}
            for e in engines
        ],
        "models": [
            {"name": "chat", "strategy": strategy, "deployments": [{"provider": e.name, "model": "m"} for e in engines]}
        ],
        "metrics": {"source": "prometheus", "refresh_ms": 50},
    }


def burst(gateway: Gateway, count: int, gap_s: float = 0.0) -> list[int]:
    def ask(number: int) -> int:
        time.sleep(number * gap_s)
        return post_json(gateway.url, "/v1/chat/completions", CHAT).status

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(ask, range(count)))


def learn(gateway: Gateway, engines: list[Upstream]) -> None:
    """Requests spread over a second: the first ones queue at the engines (nothing is known
    yet), the later ones are chosen with metrics that show it."""
    reset(engines)
    assert burst(gateway, 12, gap_s=0.08) == [200] * 12
    assert max(e.peak_waiting for e in engines) > 0
    time.sleep(0.2)


def held(gateway: Gateway) -> float:
    """`modelway_held_requests{model="chat"}` as /metrics shows it."""
    reply = request(gateway.url, "GET", "/metrics")
    assert reply.status == 200
    (value,) = (
        float(line.rsplit(" ", 1)[1])
        for line in reply.body.decode().splitlines()
        if line.startswith('modelway_held_requests{model="chat"}')
    )
    return value


def posts(engines: list[Upstream]) -> int:
    """Requests that reached an engine, in its line or not."""
    return sum(e.arrived for e in engines)


def reset(engines: list[Upstream]) -> None:
    for engine in engines:
        engine.reset(Behaviour(delay_before_headers_s=WORK_S))


def test_saturated_engines_stop_queueing_once_the_gateway_holds_for_them(engines: list[Upstream]) -> None:
    with Gateway(config(engines, "expected_delay")) as gateway:
        learn(gateway, engines)

        reset(engines)
        started = time.monotonic()
        assert burst(gateway, 8) == [200] * 8
        took = time.monotonic() - started
        assert [e.peak_waiting for e in engines] == [0, 0]  # the line was at the gateway
        assert posts(engines) == 8
        # 8 requests through 4 slots: two rounds of WORK_S, a slot taken as soon as it frees
        assert took < 4 * WORK_S, took


def test_a_client_that_leaves_while_held_never_reaches_an_engine(engines: list[Upstream]) -> None:
    with Gateway(config(engines, "prefix_affinity")) as gateway:
        learn(gateway, engines)

        reset(engines)
        body = orjson.dumps(CHAT)
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        with ThreadPoolExecutor(4) as pool:
            answered = pool.map(lambda _: post_json(gateway.url, "/v1/chat/completions", CHAT).status, range(4))
            time.sleep(0.15)  # the 4 slots are taken: these are held
            leaving = []
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", gateway.port))
                sock.sendall(head.encode() + body)
                leaving.append(sock)
            time.sleep(0.15)
            assert held(gateway) == 3
            for sock in leaving:
                sock.close()
            assert list(answered) == [200] * 4
        assert held(gateway) == 0
        time.sleep(WORK_S)
        assert posts(engines) == 4
        assert [e.peak_waiting for e in engines] == [0, 0]
        # and the gateway counts nothing held any more: the next burst goes straight through
        reset(engines)
        assert burst(gateway, 4) == [200] * 4
        assert posts(engines) == 4
