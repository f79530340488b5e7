"""A strict reader of HTTP/1.x answers over a raw socket, for the property tests: every
byte the server sends must belong to a well-formed answer (status line, field lines,
framing), and nothing may take longer than a deadline. Unlike `rawhttp.Conn`, which reads
what a test expects, this one judges what it gets: `WireViolation` for malformed bytes,
`Hang` when the deadline passes with neither an answer nor a close."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
MAX_HEAD = 256 * 1024  # more than any answer of ours has: beyond it the head is malformed


class WireViolation(AssertionError):
    """The server sent bytes that are not a well-formed HTTP/1.x answer."""


class Hang(AssertionError):
    """Neither an answer nor a close within the deadline."""


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]  # names lowercased, in wire order
    body: bytes
    close_delimited: bool = False
    raw_head: bytes = b""

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def header(self, name: str) -> str | None:
        values = self.values(name)
        return values[-1] if values else None

    @property
    def closes(self) -> bool:
        """The server said this answer is the connection's last."""
        connection = ",".join(self.values("connection")).lower()
        return self.close_delimited or "close" in [t.strip() for t in connection.split(",")]

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers!r}, {self.body[:300]!r})"


@dataclass
class Wire:
    """One client connection: bytes in, answers out, each read before `deadline`."""

    port: int
    buf: bytes = b""
    eof: bool = False
    reset: bool = False  # the server's close came as a reset
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send all of `data`; False when the server closed before taking it all (an answer
        it sent before closing may still be waiting to be read)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        except TimeoutError:  # the server stopped reading: what it answered is read next
            return False
        return True

    def _fill(self, deadline: float) -> bool:
        """Read more; False at EOF. Raises Hang past the deadline."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise Hang(f"no answer and no close within the deadline; unread: {self.buf[:300]!r}")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise Hang(f"no answer and no close within the deadline; unread: {self.buf[:300]!r}") from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _take_until(self, marker: bytes, deadline: float, limit: int, what: str) -> bytes:
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise WireViolation(f"{what} longer than {limit} bytes: {self.buf[:300]!r}")
            if not self._fill(deadline):
                raise WireViolation(f"the connection closed inside {what}: {self.buf[:300]!r}")
        data, _, self.buf = self.buf.partition(marker)
        return data

    def take(self, n: int, deadline: float) -> bytes:
        """`n` bytes the test knows to follow (what a server sent beyond an answer's framing)."""
        return self._take(n, deadline, "bytes expected")

    def _take(self, n: int, deadline: float, what: str) -> bytes:
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise WireViolation(f"the connection closed inside {what} ({len(self.buf)} of {n} bytes)")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def closed(self, within: float) -> bool:
        """True if the server closes (with nothing more sent) within `within` s."""
        try:
            while self._fill(time.monotonic() + within):
                pass
        except Hang:
            return False
        if self.buf:
            raise WireViolation(f"bytes after the last answer: {self.buf[:300]!r}")
        return True

    def read(self, method: str, deadline: float) -> Reply | None:
        """The next final answer (interim 1xx answers are checked and skipped), or None if
        the server closed before sending a byte of one."""
        while True:
            if not self.buf and not self._fill(deadline):
                return None
            reply = self._read_one(method, deadline)
            if reply.status >= 200:
                return reply
            if reply.status == 101:
                raise WireViolation("101 Switching Protocols: the server serves no other protocol")

    def _read_one(self, method: str, deadline: float) -> Reply:
        head = self._take_until(b"\r\n\r\n", deadline, MAX_HEAD, "an answer's head")
        status_line, *lines = head.split(b"\r\n")
        match = STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise WireViolation(f"malformed status line: {status_line[:200]!r}")
        status = int(match.group(1))
        headers: list[tuple[str, str]] = []
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep or TOKEN.fullmatch(name) is None:
                raise WireViolation(f"malformed header line: {line[:200]!r} in {head[:500]!r}")
            value = value.strip(b" \t")
            if FIELD_VALUE.fullmatch(value) is None:
                raise WireViolation(f"control characters in header {name!r}: {value[:200]!r}")
            headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        reply = Reply(status, headers, b"", raw_head=head)
        lengths = reply.values("content-length")
        codings = reply.values("transfer-encoding")
        if len(set(lengths)) > 1:
            raise WireViolation(f"conflicting Content-Length values: {lengths}")
        if lengths and codings:
            raise WireViolation("both Content-Length and Transfer-Encoding")
        if lengths and not lengths[0].isdigit():
            raise WireViolation(f"Content-Length is not a number: {lengths[0]!r}")
        if status < 200 or status in (204, 304):
            if codings or (lengths and lengths[0] != "0" and status < 200):
                raise WireViolation(f"a {status} answer with a body framing: {headers}")
            return reply
        if method == "HEAD":
            return reply
        if codings:
            if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
                raise WireViolation(f"Transfer-Encoding other than chunked: {codings}")
            reply.body = self._read_chunks(deadline)
        elif lengths:
            reply.body = self._take(int(lengths[0]), deadline, "an answer's body")
        else:
            reply.close_delimited = True
            while self._fill(deadline):
                pass
            reply.body, self.buf = self.buf, b""
        return reply

    def _read_chunks(self, deadline: float) -> bytes:
        parts = []
        while True:
            size_line = self._take_until(b"\r\n", deadline, 1024, "a chunk size line")
            size_text = size_line.split(b";")[0].strip()
            if not size_text or re.fullmatch(rb"[0-9a-fA-F]+", size_text) is None:
                raise WireViolation(f"malformed chunk size line: {size_line[:100]!r}")
            size = int(size_text, 16)
            if size == 0:
                while self._take_until(b"\r\n", deadline, 8192, "a trailer line"):
                    pass
                return b"".join(parts)
            data = self._take(size + 2, deadline, "a chunk")
            if not data.endswith(b"\r\n"):
                raise WireViolation(f"a chunk not followed by CRLF: {data[-10:]!r}")
            parts.append(data[:-2])
