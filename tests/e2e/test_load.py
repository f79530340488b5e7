"""Load through one worker, and what it leaves behind (issue 16, item 4).

- 1,000 concurrent streams (each a few seconds long, from a test upstream that paces its
  chunks) through one gateway process all complete, whole;
- a client that disconnects — while its request waits for the upstream's headers, or in
  the middle of a stream, between two chunks seconds apart — has its upstream request
  cancelled within 1 s (the test upstream counts cancellations);
- afterwards nothing is left: the gateway's open file descriptors are back to what they
  were before, the upstream has no connection open, and `modelway_inflight` is 0 (an
  exchange whose task leaked would hold it up).

The figures (peak concurrency, wall time, time to cancel, fds before/after, RSS) are
printed; `pytest -s` shows them."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.gateway import Gateway
from support.streams import max_overlap, metric, one_stream, open_fds, rss_kib, stream_request
from support.upstream import Behaviour, Upstream

STREAMS = 1000
RAMP_S = 1.0  # the streams start over this long: no accept queue overflows
CHUNKS = 8
CHUNK_GAP_S = 0.5  # each stream lasts CHUNKS * CHUNK_GAP_S: all of them overlap
SETTLE_S = 8.0  # the most the leftovers may take to go (lingering closes: 2 s; upstream keep-alive: 1 s)
BODY = json.dumps({"model": "m1", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    # Idle keep-alive connections are closed after 1 s, so that "no connection left" can be
    # seen soon after the load (the gateway keeps up to keepalive_pool of them otherwise).
    server = Upstream("load", keepalive_s=1.0).start()
    yield server
    server.stop()


def config_for(upstream: Upstream) -> dict[str, Any]:
    return {
        "providers": [{"name": "a", "kind": "openai-compatible", "base_url": f"{upstream.url}/v1"}],
        "models": [{"name": "m1", "deployments": [{"provider": "a"}]}],
        "routing": {"retries": 0},
    }


def scrape(gateway: Gateway) -> str:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def wait_for(condition: Callable[[], bool], within: float) -> float:
    """Seconds until `condition` held (polled every 10 ms); raises after `within`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.01)
    return time.monotonic() - started


def assert_nothing_left(gateway: Gateway, upstream: Upstream, fds_before: int) -> dict[str, Any]:
    assert gateway.process is not None
    pid = gateway.process.pid
    text = scrape(gateway)
    assert metric(text, "modelway_inflight") == 0, [line for line in text.splitlines() if "inflight" in line]
    took = wait_for(lambda: upstream.open_connections() == 0 and open_fds(pid) <= fds_before, SETTLE_S)
    return {"settled_s": round(took, 2), "fds": open_fds(pid), "fds_before": fds_before}


@pytest.mark.timeout(120)
def test_a_thousand_concurrent_streams_complete_and_leave_nothing(upstream: Upstream) -> None:
    upstream.reset(Behaviour(chunks=CHUNKS, chunk_gap_s=CHUNK_GAP_S))
    with Gateway(config_for(upstream)) as gateway:
        assert gateway.process is not None
        pid = gateway.process.pid
        fds_before = open_fds(pid)
        rss_before = rss_kib(pid)
        inflight_seen: list[float] = []

        async def run() -> list[Any]:
            request = stream_request(BODY)
            tasks = []
            for i in range(STREAMS):
                tasks.append(asyncio.create_task(one_stream(gateway.port, request, timeout=60)))
                if i % 50 == 49:
                    await asyncio.sleep(RAMP_S / (STREAMS / 50))
            await asyncio.sleep(CHUNK_GAP_S)  # every stream is under way: the gateway counts them
            inflight_seen.append(metric(await asyncio.to_thread(scrape, gateway), "modelway_inflight"))
            return list(await asyncio.gather(*tasks))

        started = time.monotonic()
        results = asyncio.run(run())
        seconds = time.monotonic() - started
        rss_peak = rss_kib(pid)
        failed = [r for r in results if not (r.status == 200 and r.complete and r.attempts == "1")]
        assert not failed, (len(failed), failed[:5])
        peak = max_overlap(results)
        assert peak == STREAMS, peak  # all of them open at once
        assert inflight_seen == [STREAMS], inflight_seen
        assert len(upstream.received) == STREAMS and upstream.cancelled == 0
        left = assert_nothing_left(gateway, upstream, fds_before)
        print(
            f"\n{STREAMS} concurrent streams of {CHUNKS} chunks {CHUNK_GAP_S} s apart: all complete in"
            f" {seconds:.1f} s; peak open {peak}, gateway inflight {inflight_seen[0]:.0f};"
            f" RSS {rss_before / 1024:.0f} -> {rss_peak / 1024:.0f} MiB; {left}"
        )


DISCONNECTS = 100


@pytest.mark.parametrize("protocol", ["modelway", "uvicorn"])
@pytest.mark.parametrize("when", ["before the upstream's headers", "mid-stream, between chunks 5 s apart"])
def test_a_client_disconnect_cancels_its_upstream_request_within_a_second(
    upstream: Upstream, protocol: str, when: str
) -> None:
    if when.startswith("before"):
        upstream.reset(Behaviour(delay_before_headers_s=30))
    else:
        upstream.reset(Behaviour(chunks=4, chunk_gap_s=5))
    with Gateway(config_for(upstream), env={"MODELWAY_HTTP": protocol}) as gateway:
        assert gateway.process is not None
        fds_before = open_fds(gateway.process.pid)
        socks = []
        for _ in range(DISCONNECTS):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
            sock.sendall(stream_request(BODY))
            socks.append(sock)
        wait_for(lambda: len(upstream.received) == DISCONNECTS, 10)
        if when.startswith("mid"):
            for sock in socks:  # the head and the first chunk have come: the client read them
                data = b""
                while b"data: " not in data:
                    data += sock.recv(65536)
            time.sleep(0.3)  # and then it waits, before it leaves
        for sock in socks:
            sock.close()  # a plain close: a FIN, as a client that only half-closes would send
        took = wait_for(lambda: upstream.cancelled == DISCONNECTS, 5)
        assert took < 1.0, f"{DISCONNECTS} upstream requests cancelled after {took:.2f} s"
        left = assert_nothing_left(gateway, upstream, fds_before)
        print(f"\n{protocol}, {when}: {DISCONNECTS} disconnects, all cancelled upstream within {took:.3f} s; {left}")
