"""Per-provider keep-alive pools: connections are reused, or not, as configured."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.gateway import Gateway
from support.http import post_json
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def impatient() -> Iterator[Upstream]:
    server = Upstream("impatient", keepalive_s=0.3).start()  # closes idle connections after 0.3 s
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(upstream_a: Upstream, impatient: Upstream) -> Iterator[Gateway]:
    base = f"{upstream_a.url}/v1"
    config = {
        "providers": [
            {"name": "pooled", "kind": "vllm", "base_url": base},
            {"name": "unpooled", "kind": "vllm", "base_url": base, "keepalive": False},
            {"name": "small-pool", "kind": "vllm", "base_url": base, "keepalive_pool": 2},
            {"name": "impatient", "kind": "vllm", "base_url": f"{impatient.url}/v1"},
        ],
        "models": [
            {"name": "pooled", "deployments": [{"provider": "pooled"}]},
            {"name": "unpooled", "deployments": [{"provider": "unpooled"}]},
            {"name": "small-pool", "deployments": [{"provider": "small-pool"}]},
            {"name": "impatient", "deployments": [{"provider": "impatient"}]},
        ],
    }
    with Gateway(config) as gw:
        yield gw


def test_keepalive_reuses_one_connection(gateway: Gateway, upstream_a: Upstream) -> None:
    for _ in range(5):
        assert post_json(gateway.url, "/v1/chat/completions", {"model": "pooled", **CHAT}).status == 200
    assert len({r.peer for r in upstream_a.received}) == 1


def test_keepalive_false_opens_a_connection_per_request(gateway: Gateway, upstream_a: Upstream) -> None:
    for _ in range(5):
        assert post_json(gateway.url, "/v1/chat/completions", {"model": "unpooled", **CHAT}).status == 200
    assert len({r.peer for r in upstream_a.received}) == 5


def test_idle_connections_beyond_keepalive_pool_are_closed(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(delay_before_headers_s=0.3))
    time.sleep(0.2)
    before = upstream_a.open_connections()  # other providers' connections to the same upstream
    payload = {"model": "small-pool", **CHAT}
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: post_json(gateway.url, "/v1/chat/completions", payload), range(6)))
    assert [r.status for r in replies] == [200] * 6
    assert len({r.peer for r in upstream_a.received}) == 6  # six at once needed six connections
    deadline = time.monotonic() + 2
    while upstream_a.open_connections() > before + 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upstream_a.open_connections() == before + 2  # only keepalive_pool of them stay open


def test_connections_the_upstream_closed_while_idle_are_not_a_failure(gateway: Gateway, impatient: Upstream) -> None:
    for _ in range(3):
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "impatient", **CHAT})
        assert reply.status == 200, reply.body
        assert reply.headers["x-modelway-attempts"] == "1"
        time.sleep(0.5)  # the upstream closes the idle keep-alive connection meanwhile
    assert len(impatient.received) == 3
    assert len({r.peer for r in impatient.received}) == 3
