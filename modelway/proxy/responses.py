"""Writing answers that modelway itself makes: JSON bodies and errors, OpenAI- or
Anthropic-shaped by the client's dialect (SPEC section 5): on /v1/messages the error's type
follows its status (dialects/anthropic.py has the table); Responses clients get OpenAI's
shape, and a broken stream ends for them in `response.failed`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from modelway.asgi import Send
from modelway.dialects import anthropic
from modelway.dialects.responses_stream import failed_frame
from modelway.errors import GatewayError
from modelway.proxy.dialect import ANTHROPIC, OPENAI, RESPONSES, Dialect

Headers = Sequence[tuple[bytes, bytes]]

JSON_TYPE = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, payload: Any, headers: Headers = ()) -> None:
    await send_bytes(send, status, orjson.dumps(payload), [JSON_TYPE, *headers])


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_body(error: GatewayError, dialect: Dialect) -> dict[str, Any]:
    if dialect == ANTHROPIC:
        return anthropic.error_body(error.status, error.message)
    return {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}


async def send_error(send: Send, error: GatewayError, dialect: Dialect = OPENAI, headers: Headers = ()) -> None:
    extra = [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    if error.raw is not None:  # an answer made elsewhere (the forward auth service's), sent as it is
        body, content_type = error.raw
        await send_bytes(send, error.status, body, [(b"content-type", content_type), *headers, *extra])
        return
    await send_json(send, error.status, error_body(error, dialect), [*headers, *extra])


def sse_error_event(error: GatewayError, dialect: Dialect) -> bytes:
    """The last event of a stream that broke after bytes reached the client."""
    if dialect == RESPONSES:
        return failed_frame(error.message)
    payload = orjson.dumps(error_body(error, dialect))
    if dialect == ANTHROPIC:
        return b"event: error\ndata: " + payload + b"\n\n"
    return b"data: " + payload + b"\n\n"
