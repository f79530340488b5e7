"""Reading the message out of an upstream's error answer, whatever its shape: OpenAI's
`{"error": {"message"}}`, Anthropic's `{"type": "error", "error": {"message"}}`, vLLM's and
FastAPI's top-level `message` or `detail`, or plain text (an HTML page from a proxy included)."""

from __future__ import annotations

from typing import Any

import orjson

MAX_MESSAGE = 2000


def error_message(status: int, body: bytes) -> str:
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        inner = payload.get("error")
        for candidate in (inner.get("message") if isinstance(inner, dict) else inner,
                          payload.get("message"), payload.get("detail")):
            if isinstance(candidate, str) and candidate:
                return candidate[:MAX_MESSAGE]
    text = body.decode("utf-8", "replace").strip()
    return text[:MAX_MESSAGE] if text else f"upstream answered {status}"


def error_type(body: bytes) -> str | None:
    """The `type` an upstream error names, if any."""
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    inner = payload.get("error") if isinstance(payload, dict) else None
    kind = inner.get("type") if isinstance(inner, dict) else None
    return kind if isinstance(kind, str) and kind else None
