"""Streaming measurements wrk cannot make.

`StreamTimer`: time to first and last body byte of SSE answers, one request at a time on
a keep-alive connection of a raw socket (so the client adds as little as possible), each
body decoded and compared with the expected bytes.

`run_slow_streams`: many concurrent slow streams through one process, each checked whole,
while that process's memory is sampled from /proc.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from benchmarks.procs import cpu_seconds, status_kib


class StreamTimer:
    """One keep-alive HTTP/1.1 connection; `post` returns (status, body, ttfb_s, ttlb_s)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        self.sock.close()

    def post(self, path: str, body: bytes) -> tuple[int, bytes, float, float]:
        request = (
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Accept: text/event-stream\r\nContent-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        )
        started = time.perf_counter()
        self.sock.sendall(request)
        raw = b""
        head_end = -1
        first_byte: float | None = None
        status, length, chunked = 0, -1, False
        while True:
            data = self.sock.recv(65536)
            now = time.perf_counter()
            if not data:
                raise ConnectionError("connection closed mid-answer")
            raw += data
            if head_end < 0:
                head_end = raw.find(b"\r\n\r\n")
                if head_end < 0:
                    continue
                status, length, chunked = parse_head(raw[:head_end])
            content = raw[head_end + 4 :]
            if content and first_byte is None:
                first_byte = now
            if chunked:
                decoded = decode_chunked(content)
                if decoded is not None:
                    return status, decoded, first_byte - started if first_byte else 0.0, now - started
            elif length >= 0 and len(content) >= length:
                return status, content[:length], (first_byte or now) - started, now - started


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length (-1 when absent) and whether the body is chunked."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = -1, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    return status, length, chunked


def decode_chunked(raw: bytes) -> bytes | None:
    """The body of a complete chunked encoding, or None while more bytes are due."""
    parts: list[bytes] = []
    pos = 0
    while True:
        eol = raw.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(raw[pos:eol].split(b";", 1)[0], 16)
        start = eol + 2
        if size == 0:
            return b"".join(parts) if raw.startswith(b"\r\n", start) else None
        if len(raw) < start + size + 2:
            return None
        parts.append(raw[start : start + size])
        pos = start + size + 2


@dataclass(frozen=True, slots=True)
class StreamsResult:
    streams: int
    ok: int  # status 200 and the body exactly as expected
    wrong: int  # answered, but not the expected bytes
    failed: int  # errors and timeouts
    seconds: float  # from the first request to the last stream's end
    idle_rss_mib: float
    peak_rss_mib: float  # VmHWM: the most the process ever had resident
    end_rss_mib: float
    cpu_s: float
    chunks_per_stream: int

    @property
    def cpu_us_per_chunk(self) -> float:
        chunks = self.ok * self.chunks_per_stream
        return self.cpu_s * 1e6 / chunks if chunks else 0.0


async def run_slow_streams(
    url: str,
    body: bytes,
    expected: bytes,
    *,
    streams: int,
    chunks_per_stream: int,
    pids: Sequence[int],
    timeout: float,
) -> StreamsResult:
    """`streams` concurrent POSTs to `url`, every answer compared with `expected`."""
    idle = sum(status_kib(pid, "VmRSS") for pid in pids)
    cpu_before = cpu_seconds(pids)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    session_timeout = aiohttp.ClientTimeout(total=timeout)
    results: list[str] = []

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                data = await response.read()
            results.append("ok" if response.status == 200 and data == expected else "wrong")
        except (aiohttp.ClientError, TimeoutError, OSError):
            results.append("failed")

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=session_timeout) as session:
        await asyncio.gather(*(one(session) for _ in range(streams)))
    seconds = time.monotonic() - started
    cpu = cpu_seconds(pids) - cpu_before
    return StreamsResult(
        streams=streams,
        ok=results.count("ok"),
        wrong=results.count("wrong"),
        failed=results.count("failed"),
        seconds=seconds,
        idle_rss_mib=idle / 1024,
        peak_rss_mib=sum(status_kib(pid, "VmHWM") for pid in pids) / 1024,
        end_rss_mib=sum(status_kib(pid, "VmRSS") for pid in pids) / 1024,
        cpu_s=cpu,
        chunks_per_stream=chunks_per_stream,
    )
