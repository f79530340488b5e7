"""A tiny HTTP/1.1 client over a raw socket, for the server-side tests: every byte sent is
ours (malformed, pipelined, trickled, half-closed) and every byte answered is checked."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any

from support.gateway import Gateway
from support.http import request

TIMEOUT = 5  # per socket operation: nothing here may hang


@dataclass
class Answer:
    status_line: bytes
    headers: list[tuple[str, str]]  # names lowercased, in wire order
    body: bytes  # decoded when chunked
    raw: bytes  # exactly the bytes this answer took on the wire

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ")[1])

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class Conn:
    """One client connection, buffering what the server sent beyond the answer being read,
    so pipelined answers are read one after the other."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"server closed the connection; unread: {self.buf[:200]!r}")
        self.buf += chunk

    def take_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        data, _, self.buf = self.buf.partition(marker)
        return data + marker

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_answer(self, method: str = "POST") -> Answer:
        """The next answer on the wire: a 1xx head alone, or a final answer with its body."""
        head = self.take_until(b"\r\n\r\n")
        status_line, *lines = head[:-4].split(b"\r\n")
        headers = []
        for line in lines:
            name, sep, value = line.partition(b":")
            assert sep, f"header line without a colon: {line!r}"
            headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        answer = Answer(status_line, headers, b"", head)
        if 100 <= answer.status < 200 or method == "HEAD" or answer.status in (204, 304):
            return answer
        if (answer.header("transfer-encoding") or "").lower() == "chunked":
            parts, raw = [], [head]
            while True:
                size_line = self.take_until(b"\r\n")
                raw.append(size_line)
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while (trailer := self.take_until(b"\r\n")) != b"\r\n":
                        raw.append(trailer)
                    raw.append(trailer)
                    break
                data = self._take(size + 2)
                assert data.endswith(b"\r\n"), f"chunk not followed by CRLF: {data[-10:]!r}"
                parts.append(data[:-2])
                raw.append(data)
            answer.body, answer.raw = b"".join(parts), b"".join(raw)
        elif (length := answer.header("content-length")) is not None:
            answer.body = self._take(int(length))
            answer.raw = head + answer.body
        else:  # delimited by the server closing the connection
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            answer.body, self.buf = self.buf, b""
            answer.raw = head + answer.body
        return answer

    def closed_by_server(self, within: float) -> bool:
        """True once the server closes (EOF), False if it is still open after `within` s.
        Bytes arriving instead of EOF are a failure."""
        assert self.buf == b"", f"unread bytes: {self.buf[:200]!r}"
        self.sock.settimeout(within)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)
        assert data == b"", f"expected EOF, got {data[:200]!r}"
        return True


def chat_body(model: str = "m1", content: str = "hi", **extra: Any) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}], **extra}).encode()


def post(body: bytes, extra_headers: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return (
        b"POST /v1/chat/completions " + version + b"\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra_headers + b"\r\n" + body
    )


def get(path: str, method: str = "GET", extra_headers: bytes = b"") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: gw\r\n".encode() + extra_headers + b"\r\n"


def assert_chat_answer(answer: Answer, model: str) -> None:
    assert answer.status_line == b"HTTP/1.1 200 OK", answer.raw[:300]
    assert answer.header("content-length") == str(len(answer.body))
    payload = answer.json()
    assert payload["model"] == model
    assert payload["choices"][0]["message"]["content"] == "hello from upstream-a"


def assert_keeps_serving(gateway: Gateway) -> None:
    reply = request(gateway.url, "GET", "/health", timeout=TIMEOUT)
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}
