"""The access log: one JSON line per request on stdout (`server.access_log`, SPEC section 7).

Fields: ts, method, path, status, client (key name or null), original_model, model (public),
provider, upstream_model, attempts, duration_ms, ttft_ms, input_tokens, output_tokens,
cost_usd, error (a class, or null), and dialect (the API the client spoke, and the one the
provider was spoken to when they differ, e.g. "anthropic→openai").

This runs for every request, so it bypasses the logging module: a line is one orjson.dumps,
checked against the configured secrets (a client can type one into a model name), and
appended to a buffer written to stdout every WRITE_AFTER_S or when it fills: one write per
batch instead of per request. Each write holds whole lines and, on a pipe, at most
PIPE_BUF bytes where it can, so the lines of `--workers N` never cut into each other.
Never bodies, never headers.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from typing import TYPE_CHECKING, Any

import orjson

from modelway.logs import REDACTION

if TYPE_CHECKING:
    from modelway.deployment import Deployment

WRITE_AFTER_S = 0.05
BUFFER_LIMIT = 256 * 1024
PIPE_BUF = 4096  # POSIX: a pipe write of at most this many bytes is never interleaved


class Timestamps:
    """ISO 8601 UTC with milliseconds, made once per millisecond (requests share it under
    load) and its seconds part once per second."""

    __slots__ = ("ms", "prefix", "second", "text")

    def __init__(self) -> None:
        self.ms = self.second = -1
        self.prefix = self.text = ""

    def now(self) -> str:
        ms = int(time.time() * 1000)
        if ms == self.ms:
            return self.text
        self.ms = ms
        second = ms // 1000
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        self.text = "%s%03dZ" % (self.prefix, ms % 1000)  # noqa: UP031 (faster than an f-string here)
        return self.text


class AccessLog:
    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        try:  # only a pipe needs writes of at most PIPE_BUF for lines of several writers not to mix
            self.piece = PIPE_BUF if stat.S_ISFIFO(os.fstat(fd).st_mode) else BUFFER_LIMIT * 4
        except OSError:
            self.piece = PIPE_BUF
        self.buffer = bytearray()
        self.scheduled = False
        self.clock = Timestamps()

    def write(self, entry: dict[str, Any]) -> None:
        entry["ts"] = self.clock.now()
        line = orjson.dumps(entry)
        for secret in REDACTION.secret_bytes:
            if secret in line:
                line = line.replace(secret, b"[redacted]")
        buffer = self.buffer
        buffer += line
        buffer += b"\n"
        if len(buffer) >= BUFFER_LIMIT:
            self.flush()
        elif not self.scheduled:
            try:
                asyncio.get_running_loop().call_later(WRITE_AFTER_S, self.flush)
                self.scheduled = True
            except RuntimeError:  # no loop (a test calling in directly): write at once
                self.flush()

    def flush(self) -> None:
        self.scheduled = False
        data = bytes(self.buffer)
        self.buffer.clear()
        while data:
            cut = len(data)
            if cut > self.piece:
                end = data.rfind(b"\n", 0, self.piece)
                cut = end + 1 if end >= 0 else data.find(b"\n") + 1 or len(data)
            try:
                written = os.write(self.fd, data[:cut])
            except BlockingIOError:
                continue
            except OSError:  # stdout closed: nothing more can be logged
                return
            data = data[written:]


def cost_usd(deployment: Deployment, usage: tuple[int, int] | None) -> float | None:
    if usage is None:
        return None
    cost = (usage[0] * deployment.input_cost_per_mtok + usage[1] * deployment.output_cost_per_mtok) / 1e6
    return round(cost, 8)
