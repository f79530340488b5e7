"""Facts of the Anthropic Messages dialect that every translation to or from it shares:
error types by status (SPEC section 5), error bodies and frames, the ping frame."""

from __future__ import annotations

from typing import Any

import orjson

from modelway.dialects.sse import frame

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
    529: "overloaded_error",
}

PING = frame(b"ping", b'{"type":"ping"}')


def error_type(status: int) -> str:
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_frame(status: int, message: str) -> bytes:
    """The last frame of a stream that broke: `event: error`, and no message_stop after it."""
    return frame(b"error", orjson.dumps(error_body(status, message)))
