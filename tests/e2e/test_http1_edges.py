"""The forwarding client against upstreams that answer in unusual but legal (or broken)
ways, served by a raw socket server so every byte is ours."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import orjson
import pytest
from support.gateway import Gateway
from support.http import post_json, request
from support.upstream import Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
Script = Callable[[socket.socket], None]


class RawUpstream:
    """Accepts connections and answers each request by the script its model names."""

    def __init__(self, scripts: dict[str, Script]) -> None:
        self.scripts = scripts
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length"))
            while len(body) < length:
                body += conn.recv(65536)
            self.scripts[orjson.loads(body)["model"]](conn)

    def close(self) -> None:
        self.sock.close()


def close_delimited(conn: socket.socket) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"answer": "until close"}')


def garbage(conn: socket.socket) -> None:
    conn.sendall(b"this is not HTTP at all\r\n\r\n")


BIG = b'{"blob": "' + b"x" * (5 * 1024 * 1024) + b'"}'


def big_body(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BIG) + BIG)


def big_stream(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    event = b"data: " + orjson.dumps({"choices": [{"delta": {"content": "y" * 4000}}]}) + b"\n\n"
    for _ in range(1000):  # ~4 MB
        conn.sendall(b"%x\r\n%s\r\n" % (len(event), event))
    done = b"data: [DONE]\n\n"
    conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))


def two_answers(conn: socket.socket) -> None:
    # A complete answer, then bytes of a second one nobody asked for.
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\nhi"
        b"HTTP/1.1 500 Oops\r\nX-Evil: yes\r\nContent-Length: 30\r\n\r\nabc"
    )


def early_hints(conn: socket.socket) -> None:
    conn.sendall(
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"ok\": true}"
    )


def cut_short(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"part")


@pytest.fixture(scope="module")
def raw() -> Iterator[RawUpstream]:
    server = RawUpstream(
        {
            "close": close_delimited,
            "garbage": garbage,
            "big": big_body,
            "big-stream": big_stream,
            "two-answers": two_answers,
            "early-hints": early_hints,
            "cut": cut_short,
        }
    )
    yield server
    server.close()


@pytest.fixture(scope="module")
def gateway(raw: RawUpstream, upstream_a: Upstream) -> Iterator[Gateway]:
    config = {
        "providers": [
            {"name": "raw", "kind": "openai-compatible", "base_url": f"http://127.0.0.1:{raw.port}/v1"},
            {"name": "good", "kind": "openai-compatible", "base_url": f"{upstream_a.url}/v1"},
        ],
        "models": [
            *({"name": name, "deployments": [{"provider": "raw"}]} for name in raw.scripts),
            {
                "name": "cut-then-good",
                "deployments": [{"provider": "raw", "model": "cut", "priority": 1}, {"provider": "good"}],
            },
        ],
        "routing": {"retries": 1},
    }
    with Gateway(config) as gw:
        yield gw


def test_body_delimited_by_connection_close(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "close", **CHAT})
    assert reply.status == 200
    assert reply.json() == {"answer": "until close"}


def test_an_answer_that_is_not_http_is_a_502(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "garbage", **CHAT})
    assert reply.status == 502
    message = reply.json()["error"]["message"]
    assert "raw" in message and "connect_error" in message


def test_a_large_body_is_relayed_whole(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "big", **CHAT})
    assert reply.status == 200
    assert reply.body == BIG


def test_a_large_stream_is_relayed_whole(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "big-stream", "stream": True, **CHAT})
    assert reply.status == 200
    events = [e for e in reply.body.split(b"\n\n") if e]
    assert len(events) == 1001
    assert events[-1] == b"data: [DONE]"
    assert all(len(orjson.loads(e[6:])["choices"][0]["delta"]["content"]) == 4000 for e in events[:-1])


def test_bytes_beyond_one_answer_neither_corrupt_it_nor_the_next_request(gateway: Gateway) -> None:
    for _ in range(3):
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "two-answers", **CHAT})
        assert reply.status == 200
        assert reply.body == b"hi"
        assert "x-evil" not in reply.headers


def test_an_informational_head_is_skipped(gateway: Gateway) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "early-hints", **CHAT})
    assert reply.status == 200
    assert reply.json() == {"ok": True}
    assert "link" not in reply.headers


def test_an_answer_cut_before_its_first_byte_reached_the_client_is_retried(
    gateway: Gateway, upstream_a: Upstream
) -> None:
    reply = post_json(gateway.url, "/v1/chat/completions", {"model": "cut-then-good", **CHAT})
    assert reply.status == 200
    assert reply.headers["x-modelway-attempts"] == "2"
    assert reply.headers["x-modelway-provider"] == "good"


def test_dot_segments_never_leave_the_base_url(gateway: Gateway, upstream_a: Upstream) -> None:
    for path in ("/v1/../admin/keys", "/v1/./chat/completions", "/v1/chat/%2e%2e/x"):
        reply = request(gateway.url, "POST", path, b'{"model": "cut-then-good"}', {"Content-Type": "application/json"})
        assert reply.status == 400, path
        assert "segment" in reply.json()["error"]["message"]
    assert upstream_a.received == []


class ClosesIdleConnections:
    """An upstream that answers the first request on each connection (keep-alive) and
    closes the connection on the next one without answering it: what an upstream does when
    its idle timeout fires just as the gateway reuses the connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0  # requests received, answered or not
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket, data: bytes) -> bytes | None:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        while len(body) < length:
            body += conn.recv(65536)
        self.requests += 1
        return body[length:]

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            rest = self._read_request(conn, b"")
            if rest is None:
                return
            answer = b'{"answer": "fresh"}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(answer), answer))
            self._read_request(conn, rest)  # the second request on this connection: no answer, just the close

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def closes_idle() -> Iterator[ClosesIdleConnections]:
    server = ClosesIdleConnections()
    yield server
    server.close()


def stale_gateway(upstream: ClosesIdleConnections) -> Gateway:
    return Gateway({
        "providers": [{"name": "stale", "kind": "openai-compatible", "base_url": f"http://127.0.0.1:{upstream.port}/v1"}],
        "models": [{"name": "m", "deployments": [{"provider": "stale"}]}],
        "routing": {"retries": 2},
    })


def test_a_request_resent_after_a_stale_keep_alive_connection_counts_as_an_attempt(
    closes_idle: ClosesIdleConnections,
) -> None:
    with stale_gateway(closes_idle) as gateway:
        first = post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT})
        assert first.status == 200 and first.headers["x-modelway-attempts"] == "1"
        second = post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT})  # reuses the idle connection
        assert second.status == 200
        assert second.json() == {"answer": "fresh"}
        assert second.headers["x-modelway-attempts"] == "2"  # the try on the stale connection, then the resend
        assert closes_idle.requests == 3


def test_resends_after_stale_connections_spend_the_retry_budget(closes_idle: ClosesIdleConnections) -> None:
    # Every request after the first meets a stale connection. The budget allows 3 retries in
    # 10 s to a model with this little traffic (docs/failover.md): the 4th resend is refused,
    # and that request fails on its one attempt.
    with stale_gateway(closes_idle) as gateway:
        replies = [post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT}) for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 200, 502]
    assert [r.headers["x-modelway-attempts"] for r in replies] == ["1", "2", "2", "2", "1"]
    assert "connect_error" in replies[-1].json()["error"]["message"]
