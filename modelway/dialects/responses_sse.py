"""The `data:` payloads of an upstream's SSE stream, read as its bytes arrive.

Bytes arrive split anywhere; `feed` returns the payloads of the complete `data:` lines in
them and keeps the unfinished last line for the next call, so each byte is copied a bounded
number of times whatever the splits. Each data line is one payload: chat/completions streams
never spread one event's JSON over several lines, so no blank-line framing is needed (and a
server that leaves the blank lines out is read right too). Comments (`: keep-alive`) and
`event:`, `id:` and `retry:` lines are skipped; a line may end in CRLF.

The unfinished line is bounded (MAX_LINE): a peer cannot make the gateway buffer without end.
"""

from __future__ import annotations

MAX_LINE = 16 * 1024 * 1024


class SSELineTooLong(ValueError):
    """An upstream SSE line grew past MAX_LINE bytes without ending."""


class DataLines:
    __slots__ = ("_partial",)

    def __init__(self) -> None:
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._partial += chunk
            if len(self._partial) > MAX_LINE:
                raise SSELineTooLong(f"an upstream SSE line is longer than {MAX_LINE} bytes")
            return []
        if self._partial:
            self._partial += chunk[:cut]
            complete = bytes(self._partial)
        else:
            complete = chunk[:cut]
        self._partial = bytearray(chunk[cut + 1 :])
        return payloads(complete)

    def close(self) -> list[bytes]:
        """The payload of a last line the stream ended without a newline after."""
        rest, self._partial = bytes(self._partial), bytearray()
        return payloads(rest) if rest else []


def payloads(lines: bytes) -> list[bytes]:
    out = []
    for line in lines.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[6:] if line[5:6] == b" " else line[5:]
        out.append(payload[:-1] if payload.endswith(b"\r") else payload)
    return out
