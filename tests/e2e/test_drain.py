"""Graceful drain on SIGTERM and SIGINT: the listener closes, a stream in flight completes
intact, /ready answers 503 from the signal on, and the process exits 0 — within drain_s, by
cutting what is left when a stream outlasts it. With --workers 2 every worker drains."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
import time
from typing import Any

import pytest
from support.gateway import Gateway
from support.http import read_raw_response


def config(drain_s: int, tokens_per_s: float, output_tokens: int) -> dict[str, Any]:
    return {
        "server": {"drain_s": drain_s},
        "providers": [{"name": "slow", "kind": "simulated",
                       "simulate": {"latency_ms": 0, "tokens_per_s": tokens_per_s, "output_tokens": output_tokens}}],
        "models": [{"name": "m", "deployments": [{"provider": "slow"}]}],
    }


class Stream(threading.Thread):
    """A streamed chat completion read to its end in the background."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.started = threading.Event()
        self.lines: list[str] = []
        self.error: Exception | None = None

    def run(self) -> None:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
            answer = connection.getresponse()
            while line := answer.readline():
                if line.strip():
                    self.lines.append(line.decode().strip())
                    self.started.set()
        except Exception as exc:  # the gateway cut the stream: the test looks at what arrived
            self.error = exc
        finally:
            self.started.set()
            connection.close()


def refused(port: int, within_s: float = 2.0) -> bool:
    """New connections are refused within `within_s` (uvicorn's supervisor of --workers N
    looks at signals every 0.5 s)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_a_stream_in_flight_completes_and_the_process_exits_0(sig: signal.Signals, workers: int) -> None:
    gateway = Gateway(config(drain_s=10, tokens_per_s=20, output_tokens=30), workers=workers).start()  # ~1.5 s stream
    try:
        stream = Stream(gateway.port)
        stream.start()
        assert stream.started.wait(5)
        assert gateway.process is not None
        signalled = time.monotonic()
        gateway.process.send_signal(sig)
        assert refused(gateway.port)  # the listener is closed: new connections are refused
        stream.join(10)
        assert stream.error is None, stream.error
        assert stream.lines[-1] == "data: [DONE]"  # complete, intact
        assert gateway.process.wait(10) == 0
        assert time.monotonic() - signalled < 10
    finally:
        gateway.stop()


def test_a_stream_longer_than_drain_s_is_cut_and_the_exit_is_still_0() -> None:
    gateway = Gateway(config(drain_s=1, tokens_per_s=5, output_tokens=100)).start()  # a 20 s stream
    try:
        stream = Stream(gateway.port)
        stream.start()
        assert stream.started.wait(5)
        assert gateway.process is not None
        signalled = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        assert gateway.process.wait(10) == 0
        assert time.monotonic() - signalled < 4  # drain_s, not the stream's 20 s
        stream.join(5)
        assert "data: [DONE]" not in stream.lines
    finally:
        gateway.stop()


def test_ready_answers_503_once_the_drain_began() -> None:
    """A /ready pipelined behind a stream on a load balancer's connection is answered after
    the signal: 503, while before it the same request got 200."""
    gateway = Gateway(config(drain_s=10, tokens_per_s=20, output_tokens=20)).start()
    try:
        body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_raw_response(sock).startswith(b"HTTP/1.1 200")
            post = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            sock.sendall(post + b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
                         + b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGTERM)
            sock.settimeout(10)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert b"data: [DONE]" in received
        tail = received.split(b"data: [DONE]", 1)[1]
        assert b"HTTP/1.1 503" in tail and b"draining" in tail
        assert gateway.process.wait(10) == 0
    finally:
        gateway.stop()
