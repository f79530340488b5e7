"""Many streaming requests from one asyncio loop over raw sockets, light enough that the
test process (which also runs the test upstream) is not what limits the gateway; and what
a process holds, read from /proc."""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass

CHUNKED_END = b"\r\n0\r\n\r\n"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def stream_request(body: bytes, path: bytes = b"/v1/chat/completions", extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
        % (path, extra, len(body), body)
    )


@dataclass
class StreamResult:
    status: int = 0
    complete: bool = False  # the chunked answer's last chunk arrived, after `data: [DONE]`
    attempts: str = ""
    sent_at: float = 0.0
    first_byte_at: float = 0.0
    done_at: float = 0.0
    error: str = ""


async def one_stream(port: int, request: bytes, timeout: float) -> StreamResult:
    result = StreamResult(sent_at=time.monotonic())
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            data = b""
            while not data.endswith(CHUNKED_END):
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if not data:
                    result.first_byte_at = time.monotonic()
                data += chunk
        result.done_at = time.monotonic()
        head, _, body = data.partition(b"\r\n\r\n")
        result.status = int(head.split(b" ", 2)[1]) if head else 0
        found = re.search(rb"\r\nx-modelway-attempts: (\d+)", head)
        result.attempts = found.group(1).decode() if found else ""
        result.complete = data.endswith(CHUNKED_END) and b"data: [DONE]" in body
    except (OSError, TimeoutError) as exc:
        result.error = type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    return result


def max_overlap(results: list[StreamResult]) -> int:
    """The most streams that were open at once (from their first byte to their end)."""
    events = [(r.first_byte_at, 1) for r in results if r.first_byte_at] + [
        (r.done_at, -1) for r in results if r.first_byte_at
    ]
    open_now = peak = 0
    for _, step in sorted(events):
        open_now += step
        peak = max(peak, open_now)
    return peak


def metric(text: str, name: str) -> float:
    """The sum of a metric family's samples in Prometheus text (0 when absent)."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))
