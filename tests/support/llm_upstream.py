"""Test upstreams that hold a conversation: an OpenAI chat/completions one and an Anthropic
Messages one, each answering with a tool call when it is offered tools on a user's turn,
with the tool's result once it gets one, and with plain text otherwise. Streams send the
tool call's arguments split over several chunks. Failures on demand come from `Behaviour`
as for `Upstream` (status, break_after, chunk_gap_s, delay_before_headers_s)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from support.upstream import Behaviour, Upstream

ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'
PIECES = 4  # a tool call's arguments come in this many chunks


def pieces(text: str, n: int = PIECES) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


class Conversation:
    """What the upstream answers: ("tool", name) or ("text", text)."""

    def __init__(self, kind: str, value: str) -> None:
        self.kind = kind
        self.value = value


class ChatUpstream(Upstream):
    """OpenAI chat/completions with tools."""

    def reply(self, body: dict[str, Any]) -> Conversation:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        tools = body.get("tools") or []
        if last.get("role") == "tool":
            return Conversation("text", f"the tool said: {last.get('content')}")
        if tools and last.get("role") == "user" and body.get("tool_choice") != "none":
            return Conversation("tool", tools[0]["function"]["name"])
        return Conversation("text", f"hello from {self.name}")

    async def _answer(self, request: web.Request, body: Any, behaviour: Behaviour) -> web.StreamResponse:
        if not request.path.endswith("/chat/completions") or not isinstance(body, dict):
            return await super()._answer(request, body, behaviour)
        reply = self.reply(body)
        model = body.get("model")
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
                 "prompt_tokens_details": {"cached_tokens": 2}}
        if body.get("stream") is True:
            include_usage = (body.get("stream_options") or {}).get("include_usage") is True
            return await self._chat_stream(request, model, reply, usage if include_usage else None, behaviour)
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if reply.kind == "tool":
            message["tool_calls"] = [{"id": "call_1", "type": "function",
                                      "function": {"name": reply.value, "arguments": ARGUMENTS}}]
        else:
            message["content"] = reply.value
        return web.json_response({
            "id": "chatcmpl-llm",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.kind == "tool" else "stop"}],
            "usage": usage,
        })

    async def _chat_stream(
        self, request: web.Request, model: Any, reply: Conversation, usage: dict[str, Any] | None,
        behaviour: Behaviour,
    ) -> web.StreamResponse:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {"id": "chatcmpl-llm", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + orjson.dumps(payload) + b"\n\n"

        frames = [chunk({"role": "assistant", "content": ""})]
        if reply.kind == "tool":
            frames.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                 "function": {"name": reply.value, "arguments": ""}}]}))
            frames += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                       for piece in pieces(ARGUMENTS)]
            frames.append(chunk({}, "tool_calls"))
        else:
            frames += [chunk({"content": piece}) for piece in pieces(reply.value, 3)]
            frames.append(chunk({}, "stop"))
        if usage is not None:
            payload = {"id": "chatcmpl-llm", "object": "chat.completion.chunk", "created": 1, "model": model,
                       "choices": [], "usage": usage}
            frames.append(b"data: " + orjson.dumps(payload) + b"\n\n")
        frames.append(b"data: [DONE]\n\n")
        return await write_frames(request, frames, behaviour)


class AnthropicUpstream(Upstream):
    """The Anthropic Messages API: JSON answers, SSE events, count_tokens, Anthropic-shaped errors."""

    def _error_payload(self, status: int) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "overloaded_error" if status == 529 else "api_error",
                                           "message": f"{self.name} says {status}"}}

    def reply(self, body: dict[str, Any]) -> Conversation:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        content = last.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    result = block.get("content")
                    if isinstance(result, list):
                        result = "".join(b.get("text", "") for b in result if isinstance(b, dict))
                    return Conversation("text", f"the tool said: {result}")
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        if tools and last.get("role") == "user" and choice.get("type") != "none":
            return Conversation("tool", tools[0]["name"])
        return Conversation("text", f"hello from {self.name}")

    async def _answer(self, request: web.Request, body: Any, behaviour: Behaviour) -> web.StreamResponse:
        if request.path.endswith("/messages/count_tokens"):
            return web.json_response({"input_tokens": 42})
        if not request.path.endswith("/messages") or not isinstance(body, dict):
            return web.json_response({"type": "error", "error": {"type": "not_found_error",
                                                                 "message": "no such path"}}, status=404)
        reply = self.reply(body)
        model = body.get("model")
        usage = {"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3,
                 "output_tokens": 6}
        tool = {"type": "tool_use", "id": "toolu_01", "name": reply.value, "input": orjson.loads(ARGUMENTS)}
        if body.get("stream") is True:
            return await self._events(request, model, reply, usage, behaviour)
        return web.json_response({
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [tool] if reply.kind == "tool" else [{"type": "text", "text": reply.value}],
            "stop_reason": "tool_use" if reply.kind == "tool" else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }, headers={"request-id": "req_01", **behaviour.extra_headers})

    async def _events(
        self, request: web.Request, model: Any, reply: Conversation, usage: dict[str, Any], behaviour: Behaviour
    ) -> web.StreamResponse:
        return await write_frames(request, self.frames(model, reply, usage), behaviour, {"request-id": "req_01"})

    def expected_stream(self, model: str) -> bytes:
        """The bytes of a streamed text answer (to check a native relay byte for byte)."""
        usage = {"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3,
                 "output_tokens": 6}
        return b"".join(self.frames(model, Conversation("text", f"hello from {self.name}"), usage))

    def frames(self, model: Any, reply: Conversation, usage: dict[str, Any]) -> list[bytes]:
        def event(kind: str, payload: dict[str, Any]) -> bytes:
            return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **payload}) + b"\n\n"

        start_usage = {**usage, "output_tokens": 1}
        frames = [
            event("message_start", {"message": {"id": "msg_01", "type": "message", "role": "assistant",
                                                "model": model, "content": [], "stop_reason": None,
                                                "stop_sequence": None, "usage": start_usage}}),
            event("ping", {}),
        ]
        if reply.kind == "tool":
            block = {"type": "tool_use", "id": "toolu_01", "name": reply.value, "input": {}}
            frames.append(event("content_block_start", {"index": 0, "content_block": block}))
            frames += [event("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                                           "partial_json": piece}})
                       for piece in pieces(ARGUMENTS)]
        else:
            frames.append(event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}))
            frames += [event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
                       for piece in pieces(reply.value, 3)]
        frames.append(event("content_block_stop", {"index": 0}))
        frames.append(event("message_delta", {
            "delta": {"stop_reason": "tool_use" if reply.kind == "tool" else "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }))
        frames.append(event("message_stop", {}))
        return frames


async def write_frames(
    request: web.Request, frames: list[bytes], behaviour: Behaviour, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """The frames, one write each, honouring chunk_gap_s and break_after (the connection
    aborted after that many frames)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **(headers or {}),
                                           **behaviour.extra_headers})
    await response.prepare(request)
    for i, frame in enumerate(frames):
        if behaviour.break_after is not None and i == behaviour.break_after:
            assert request.transport is not None
            request.transport.abort()
            return response
        if behaviour.chunk_gap_s and i:
            await asyncio.sleep(behaviour.chunk_gap_s)
        await response.write(frame)
    await response.write_eof()
    return response
