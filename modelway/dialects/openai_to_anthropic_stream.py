"""An Anthropic Messages event stream, as OpenAI chat.completion.chunk events.

    message_start          the first chunk: delta {role: assistant, content: ""}
    text / thinking        delta content / reasoning_content
    tool_use               delta tool_calls: the call (id, name, arguments "") when its block
                           starts, then its input_json_delta pieces as arguments, by call index
    message_delta          a chunk with the finish_reason
    message_stop           the usage chunk (choices: []) when the client asked for usage, then
                           data: [DONE]
    event: error           an OpenAI-shaped error event, and no [DONE]
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelway.dialects.openai_to_anthropic_answer import chat_usage, finish_reason
from modelway.dialects.sse import data_frame
from modelway.dialects.stream import SSETranslator

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"  # an SSE comment: OpenAI clients skip it


class StreamTranslator(SSETranslator):
    __slots__ = ("_blocks", "_created", "_finished", "_head", "_include_usage", "_model", "_prefix", "_started",
                 "_tools", "_usage")

    def __init__(self, model: str | None = None, *, include_usage: bool = False, created: int | None = None) -> None:
        super().__init__()
        self._model = model
        self._include_usage = include_usage
        self._created = created if created is not None else int(time.time())
        self._started = False
        self._finished = False  # the chunk with finish_reason went out
        self._prefix = b""  # a chunk's opening up to its choices: id, object, created, model
        self._head = b""  # … and to its delta
        self._blocks: dict[int, int] = {}  # tool_use block index → tool call index
        self._tools = 0
        self._usage: dict[str, Any] = {}

    def _error_frame(self, message: str, status: int) -> bytes:
        kind = "timeout_error" if status == 504 else "upstream_error"
        error = {"message": message, "type": kind, "param": None, "code": "stream_broken"}
        return data_frame(orjson.dumps({"error": error}))

    def ping(self) -> bytes:
        return b"" if self.done else PING

    def _event(self, data: bytes, out: list[bytes]) -> None:
        event = orjson.loads(data)  # a JSONDecodeError is a ValueError: the stream fails
        if not isinstance(event, dict):
            raise ValueError("an event that is not a JSON object")
        kind = event.get("type")
        if kind == "content_block_delta":
            self._delta(event, out)
        elif kind == "content_block_start":
            self._block(event, out)
        elif kind == "message_start":
            self._start(event, out)
        elif kind == "message_delta":
            self._stop(event, out)
        elif kind == "message_stop":
            self._end(out)
        elif kind == "error":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            out.append(self.fail(f"upstream error: {message or 'unknown'}"))
        # ping, content_block_stop and unknown events carry nothing to send

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._started:
            self._begin({})
        ending = b"null" if finish is None else orjson.dumps(finish)
        return self._head + orjson.dumps(delta) + b',"logprobs":null,"finish_reason":' + ending + b"}]}\n\n"

    def _begin(self, message: dict[str, Any]) -> None:
        self._started = True
        ident = message.get("id")
        upstream_model = message.get("model")
        model = self._model or (upstream_model if isinstance(upstream_model, str) else "")
        ident = ident if isinstance(ident, str) and ident else f"chatcmpl-{time.time_ns():x}"
        self._prefix = (b'data: {"id":' + orjson.dumps(ident)
                        + b',"object":"chat.completion.chunk","created":%d,"model":' % self._created
                        + orjson.dumps(model))
        self._head = self._prefix + b',"choices":[{"index":0,"delta":'

    def _start(self, event: dict[str, Any], out: list[bytes]) -> None:
        if self._started:
            return
        message = event.get("message")
        message = message if isinstance(message, dict) else {}
        usage = message.get("usage")
        if isinstance(usage, dict):
            self._usage.update(usage)
        self._begin(message)
        out.append(self._chunk({"role": "assistant", "content": ""}))

    def _block(self, event: dict[str, Any], out: list[bytes]) -> None:
        block = event.get("content_block")
        if not isinstance(block, dict):
            return
        kind = block.get("type")
        if kind == "tool_use":
            n = self._tools
            self._tools += 1
            index = event.get("index")
            if isinstance(index, int):
                self._blocks[index] = n
            call = {"index": n, "id": str(block.get("id", "")), "type": "function",
                    "function": {"name": str(block.get("name", "")), "arguments": ""}}
            out.append(self._chunk({"tool_calls": [call]}))
            initial = block.get("input")
            if isinstance(initial, dict) and initial:  # a block that came whole
                arguments = orjson.dumps(initial).decode()
                out.append(self._chunk({"tool_calls": [{"index": n, "function": {"arguments": arguments}}]}))
        elif kind == "text" and block.get("text"):
            out.append(self._chunk({"content": block["text"]}))
        elif kind == "thinking" and block.get("thinking"):
            out.append(self._chunk({"reasoning_content": block["thinking"]}))

    def _delta(self, event: dict[str, Any], out: list[bytes]) -> None:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if text and isinstance(text, str):
                out.append(self._chunk({"content": text}))
        elif kind == "input_json_delta":
            piece = delta.get("partial_json")
            index = event.get("index")
            n = self._blocks.get(index) if isinstance(index, int) else None
            if piece and isinstance(piece, str) and n is not None:
                out.append(self._chunk({"tool_calls": [{"index": n, "function": {"arguments": piece}}]}))
        elif kind == "thinking_delta":
            text = delta.get("thinking")
            if text and isinstance(text, str):
                out.append(self._chunk({"reasoning_content": text}))
        # signature_delta and citations_delta have no chat form

    def _stop(self, event: dict[str, Any], out: list[bytes]) -> None:
        usage = event.get("usage")
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})
        delta = event.get("delta")
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if not self._finished:
            self._finished = True
            out.append(self._chunk({}, finish_reason(stop_reason)))

    def _end(self, out: list[bytes]) -> None:
        """message_stop, or the end of an upstream that never sent one."""
        if not self._finished:
            self._finished = True
            out.append(self._chunk({}, "tool_calls" if self._tools else "stop"))
        usage = chat_usage(self._usage)
        if self._include_usage:
            out.append(self._prefix + b',"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n")
        out.append(DONE)
        self.done = True
        if self._usage:
            self.usage = (usage["prompt_tokens"], usage["completion_tokens"])
