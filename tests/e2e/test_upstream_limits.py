"""What the gateway holds for one provider is bounded: open connections (max_connections,
idle ones included, waiting at the cap for at most connect_timeout_ms), a non-stream answer
(max_response_bytes), a response head, and an SSE line it has to parse."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.gateway import Gateway
from support.http import Reply, post_json
from support.upstream import Behaviour, Upstream

CHAT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def crowd() -> Iterator[Upstream]:
    server = Upstream("crowd").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow() -> Iterator[Upstream]:
    server = Upstream("slow").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(crowd: Upstream, slow: Upstream) -> None:
    crowd.reset()
    slow.reset()


@pytest.fixture(scope="module")
def hanging_port() -> Iterator[int]:
    """A port whose connects hang: its listen backlog is full and nothing accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


def provider(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "vllm", "base_url": f"{url}/v1", "timeout_ms": 10000, **extra}


def model(name: str, *deployments: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "deployments": list(deployments)}


@pytest.fixture(scope="module")
def gateway(crowd: Upstream, slow: Upstream, upstream_a: Upstream, upstream_b: Upstream,
            hanging_port: int) -> Iterator[Gateway]:
    config = {
        "server": {"response_model": "requested"},
        "providers": [
            provider("capped", crowd.url, max_connections=5, connect_timeout_ms=5000),
            provider("one", slow.url, max_connections=1, connect_timeout_ms=5000),
            provider("quick", slow.url, max_connections=1, connect_timeout_ms=300),
            provider("backup", upstream_b.url),
            provider("hang", f"http://127.0.0.1:{hanging_port}", max_connections=1, connect_timeout_ms=1000),
            provider("big", upstream_a.url, max_response_bytes=4 * MIB),
        ],
        "models": [
            model("capped", {"provider": "capped"}),
            model("one", {"provider": "one"}),
            model("quick", {"provider": "quick", "priority": 1}, {"provider": "backup", "priority": 0}),
            model("hang", {"provider": "hang"}),
            model("big", {"provider": "big"}),
        ],
    }
    with Gateway(config) as gw:
        yield gw


def chat(gateway: Gateway, name: str, **extra: Any) -> Reply:
    return post_json(gateway.url, "/v1/chat/completions", {"model": name, **CHAT, **extra})


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def leave_early(gateway: Gateway, name: str, after_s: float) -> None:
    """Send a request and hang up before its answer: the gateway cancels its work."""
    body = orjson.dumps({"model": name, **CHAT})
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        time.sleep(after_s)


def peak_rss_mib(gateway: Gateway) -> float:
    assert gateway.process is not None
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_open_connections_stay_within_max_connections(gateway: Gateway, crowd: Upstream) -> None:
    crowd.reset(Behaviour(delay_before_headers_s=0.2))
    with ThreadPoolExecutor(50) as threads:
        replies = list(threads.map(lambda _: chat(gateway, "capped"), range(50)))
    assert [r.status for r in replies] == [200] * 50
    assert {r.headers["x-modelway-attempts"] for r in replies} == {"1"}
    assert len(crowd.received) == 50
    assert crowd.peak_connections == 5  # 50 at once, through 5 connections
    assert len({r.peer for r in crowd.received}) == 5  # reused, not reopened


def test_a_request_leaving_while_it_waits_for_a_slot_takes_none_with_it(gateway: Gateway, slow: Upstream) -> None:
    slow.reset(Behaviour(delay_before_headers_s=1.0))
    holder = threading.Thread(target=chat, args=(gateway, "one"))
    holder.start()
    wait_for(lambda: len(slow.received) == 1)
    slow.behaviour = Behaviour()  # the requests after the holder are answered at once
    # These wait for the one slot; two of them leave while waiting.
    leavers = [threading.Thread(target=leave_early, args=(gateway, "one", 0.3)) for _ in range(2)]
    stayer: list[Reply] = []
    for t in leavers:
        t.start()
    time.sleep(0.1)
    staying = threading.Thread(target=lambda: stayer.append(chat(gateway, "one")))
    staying.start()
    for t in leavers:
        t.join()
    assert len(slow.received) == 1  # nobody got past the cap meanwhile
    holder.join()
    staying.join()
    assert stayer[0].status == 200  # the holder's connection went to the one still waiting
    for _ in range(3):  # and the slot is whole: no wait, no second connection
        started = time.monotonic()
        assert chat(gateway, "one").status == 200
        assert time.monotonic() - started < 0.5
    assert len(slow.received) == 5
    assert slow.peak_connections == 1


def test_a_request_leaving_mid_connect_gives_its_slot_back(gateway: Gateway) -> None:
    # The one slot is reserved while the connect hangs; the client leaves and the slot must
    # come back. The next request then makes its own connect (and times out on it, a 504)
    # instead of waiting for a slot nobody holds (which would be a connect_error, a 502).
    leave_early(gateway, "hang", 0.3)
    started = time.monotonic()
    reply = chat(gateway, "hang")
    assert reply.status == 504, reply.body
    assert "hang/hang -> timeout" in reply.error_message  # its own connect, not a wait (connect_error)
    assert reply.headers["x-modelway-attempts"] == "1"
    assert 0.9 <= time.monotonic() - started < 1.5


def test_a_wait_for_a_slot_is_bounded_by_connect_timeout(
    gateway: Gateway, slow: Upstream, upstream_b: Upstream
) -> None:
    for n in range(1, 4):  # three times: the cooldown threshold
        slow.reset(Behaviour(delay_before_headers_s=0.8))
        holder = threading.Thread(target=chat, args=(gateway, "quick"))
        holder.start()
        wait_for(lambda: len(slow.received) == 1)
        started = time.monotonic()
        reply = chat(gateway, "quick")
        elapsed = time.monotonic() - started
        holder.join()
        # The wait (connect_timeout_ms 300) failed as a connect_error attempt; the retry went to the backup.
        assert reply.status == 200
        assert reply.headers["x-modelway-attempts"] == "2"
        assert reply.headers["x-modelway-provider"] == "backup"
        assert 0.3 <= elapsed < 0.75
        assert len(slow.received) == 1 and len(upstream_b.received) == n
    # A full pool is the gateway's own limit, not the upstream failing: no cooldown followed.
    slow.reset()
    reply = chat(gateway, "quick")
    assert reply.headers["x-modelway-provider"] == "quick"
    assert reply.headers["x-modelway-attempts"] == "1"


def test_an_oversized_answer_is_refused_without_buffering_it(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(body_bytes=256 * MIB))
    before = peak_rss_mib(gateway)
    reply = chat(gateway, "big")
    assert reply.status == 502
    assert "response_too_large" in reply.error_message
    assert reply.headers["x-modelway-attempts"] == "1"
    assert peak_rss_mib(gateway) - before < 48  # read up to 4 MiB, not 256
    upstream_a.reset()
    assert chat(gateway, "big").status == 200  # a normal answer still goes through


def test_an_sse_line_without_end_breaks_the_stream(gateway: Gateway, upstream_a: Upstream) -> None:
    # With response_model: requested the gateway parses the stream line by line.
    upstream_a.reset(Behaviour(line_bytes=64 * MIB))
    before = peak_rss_mib(gateway)
    started = time.monotonic()
    reply = chat(gateway, "big", stream=True)
    assert time.monotonic() - started < 5  # not the 10 s timeout: the line bound ended it
    assert reply.status == 200
    events = [e for e in reply.body.split(b"\n\n") if e]
    assert orjson.loads(events[0][6:])["model"] == "big"  # the first chunk, rewritten
    error = orjson.loads(events[-1][6:])["error"]
    assert error["code"] == "stream_broken"
    assert "SSE line over 1048576 bytes" in error["message"]
    assert b"[DONE]" not in reply.body
    assert peak_rss_mib(gateway) - before < 48


def test_an_endless_response_head_is_refused(gateway: Gateway, upstream_a: Upstream) -> None:
    upstream_a.reset(Behaviour(extra_headers={f"x-pad-{i}": "a" * 8000 for i in range(200)}))  # 1.6 MB
    reply = chat(gateway, "big")
    assert reply.status == 502
    assert "connect_error" in reply.error_message
    assert reply.headers["x-modelway-attempts"] == "1"
