"""Reading and checking the request body: size limit, time limit, content type, JSON, the
fields modelway itself reads. Each failure is a 400/408/413 that says what is wrong and where."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from modelway.asgi import App, Receive
from modelway.errors import BadRequest, PayloadTooLarge, RequestTimeout

MAX_DEPTH = 200  # levels of nested arrays and objects in a request body (SPEC section 5)


async def read_body(receive: Receive, content_length: str | None, limit: int) -> bytes:
    """The whole body, refusing more than `limit` bytes without reading them."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise BadRequest(f"Content-Length header is not a number: {content_length[:40]!r}") from None
        if declared > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class BodyDeadline:
    """Bounds the arrival of request bodies where the server does not: under uvicorn's own
    protocol (MODELWAY_HTTP=uvicorn), a body that never finishes would hold its connection
    and its task for ever. modelway's protocol answers 408 itself, and runs without this.

    Each request's receive() gives up `timeout_s` after the request reached the app, until
    its last body message: read_body's wait then raises RequestTimeout, a 408 sent with
    `connection: close` so that the server closes the connection after it."""

    def __init__(self, app: App, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Any) -> None:
        if scope["type"] == "http":
            receive = BoundedReceive(receive, asyncio.get_running_loop().time() + self.timeout_s, self.timeout_s)
        await self.app(scope, receive, send)


class BoundedReceive:
    __slots__ = ("deadline", "receive", "timeout_s")

    def __init__(self, receive: Receive, deadline: float, timeout_s: float) -> None:
        self.receive = receive
        self.deadline: float | None = deadline
        self.timeout_s = timeout_s

    async def __call__(self) -> dict[str, Any]:
        if self.deadline is None:  # the body is read: waiting for a disconnect is not bounded
            return await self.receive()
        try:
            async with asyncio.timeout_at(self.deadline):
                message = await self.receive()
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within server.body_timeout_s ({self.timeout_s:g} s)",
                headers={"connection": "close"},
            ) from None
        if not message.get("more_body"):
            self.deadline = None
        return message


def check_content_type(content_type: str | None) -> None:
    if content_type is None or content_type == "application/json":
        return  # no Content-Type: read as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise BadRequest(
        f"unsupported Content-Type {media!r}: send the body as JSON with Content-Type: application/json",
        code="invalid_content_type",
    )


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if not body.strip():  # checked only now: stripping copies the body
            raise BadRequest("request body is empty: send a JSON object", code="invalid_json") from None
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise BadRequest(
            f"request body must be a JSON object, not {json_type(payload)}", code="invalid_json"
        )
    # Deeper than MAX_DEPTH needs more than MAX_DEPTH opening brackets: counted in C, and
    # walked only when there are that many (then the body is a big one anyway).
    if len(body) > 2 * MAX_DEPTH and body.count(b"[") + body.count(b"{") > MAX_DEPTH and deeper_than(payload):
        raise BadRequest(
            f"request body is JSON nested deeper than {MAX_DEPTH} levels of arrays and objects"
            f" (the limit is {MAX_DEPTH})",
            code="invalid_json",
        )
    return payload


def deeper_than(payload: dict[str, Any], limit: int = MAX_DEPTH) -> bool:
    """Whether arrays and objects nest more than `limit` levels (the body itself is level 1)."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:  # orjson builds exactly these
                stack.append((child, depth + 1))
    return False


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def read_model(payload: dict[str, Any], key_path: tuple[str, ...]) -> str | None:
    """The model named at `model_mapping.key` (a dotted path), type-checked."""
    node: Any = payload
    for part in key_path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    where = ".".join(key_path)
    if node is None:
        return None
    if not isinstance(node, str):
        raise BadRequest(f"'{where}' must be a string, not {json_type(node)}", param=where)
    if not node:
        raise BadRequest(f"'{where}' must not be empty", param=where)
    if not node.isprintable():  # it is echoed in response headers: no CR, LF or other controls
        raise BadRequest(f"'{where}' must not contain control characters (got {node[:100]!r})", param=where)
    return node


def check_fields(payload: dict[str, Any], path: str) -> bool:
    """Type-check the fields modelway reads; returns the stream flag."""
    stream = payload.get("stream", False)
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise BadRequest(f"'stream' must be a boolean (true or false), not {json_type(stream)}", param="stream")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest(f"'stream_options' must be an object, not {json_type(options)}", param="stream_options")
    if path.endswith("/chat/completions"):
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            if messages is None:
                got = "missing"
            elif isinstance(messages, list):
                got = "an empty array"
            else:
                got = json_type(messages)
            raise BadRequest(f"'messages' must be a non-empty array (got {got})", param="messages")
    return stream
