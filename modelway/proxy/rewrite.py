"""Writing the requested model name back into answers (`server.response_model: requested`).

Only used when configured: the default relay copies bytes and parses nothing. The name is
set in the upstream's bytes (proxy/splice.py), so the rest of the answer, numbers included,
is relayed unchanged.
"""

from __future__ import annotations

import orjson

from modelway.errors import UpstreamBrokenStream
from modelway.proxy.splice import Unspliceable, set_members

MAX_LINE_BYTES = 1024 * 1024  # an SSE line still without its end beyond this breaks the stream


def set_model(doc: bytes, payload: dict[str, object], model: str) -> bytes:
    try:
        return set_members(doc, payload, {"model": orjson.dumps(model)})
    except Unspliceable:  # not expected of a document orjson has read
        return orjson.dumps({**payload, "model": model})


def rewrite_json_model(body: bytes, model: str) -> bytes:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(payload, dict) or "model" not in payload:
        return body
    return set_model(body, payload, model)


class SSEModelRewriter:
    """Rewrites `"model"` in each `data:` event of an SSE stream, line by line.

    A chunk may end mid-line; the tail waits for the next chunk so only whole lines are
    rewritten. Everything complete in a chunk goes out with that chunk. A tail that grows
    past MAX_LINE_BYTES is an upstream fault: the stream ends as a broken one.
    """

    __slots__ = ("_model", "_pending")

    def __init__(self, model: str) -> None:
        self._model = model
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        if len(self._pending) > MAX_LINE_BYTES:
            self._pending = b""
            raise UpstreamBrokenStream(f"an SSE line over {MAX_LINE_BYTES} bytes")
        if not cut:
            return b""
        return b"\n".join(self._line(line) for line in data[:cut].split(b"\n"))

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return self._line(rest) if rest else b""

    def _line(self, line: bytes) -> bytes:
        if not line.startswith(b"data:"):
            return line
        stripped = line[5:].strip()
        if not stripped.startswith(b"{"):
            return line
        try:
            payload = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            return line
        if not isinstance(payload, dict) or "model" not in payload:
            return line
        return line[:5] + set_model(line[5:], payload, self._model)
