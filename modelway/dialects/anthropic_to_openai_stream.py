"""An OpenAI chat.completion.chunk stream, as an Anthropic Messages event stream.

    message_start                       on the first upstream event (or a ping before it)
    content_block_start/delta/stop      one block at a time, index 0, 1, 2, …: thinking
                                        (reasoning_content), text, tool_use (input_json_delta
                                        pieces that concatenate to the arguments JSON)
    message_delta, message_stop         at [DONE] or the end of the upstream: stop_reason from
                                        the blocks made, usage from the last usage chunk

Parallel tool calls are keyed by their upstream `index`; one whose name and arguments come in
one chunk keeps its arguments. Each upstream data line is parsed once; frames are built as
bytes and returned by the `feed` call that completed them.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelway.dialects import anthropic
from modelway.dialects.anthropic_to_openai_answer import finish_stop, message_id, usage_of
from modelway.dialects.sse import frame
from modelway.dialects.stream import SSETranslator
from modelway.dialects.tool_ids import tool_id

START = b"event: content_block_start\ndata: "
DELTA = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"'
TEXT = b'text_delta","text":'
THINKING = b'thinking_delta","thinking":'
JSON = b'input_json_delta","partial_json":'
STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
MESSAGE_STOP = frame(b"message_stop", b'{"type":"message_stop"}')
EMPTY_BLOCKS = {
    "text": {"type": "text", "text": ""},
    "thinking": {"type": "thinking", "thinking": "", "signature": ""},
}


class StreamTranslator(SSETranslator):
    __slots__ = ("_finish", "_id", "_index", "_model", "_open", "_started", "_stash", "_tools", "_usage")

    def __init__(self, model: str | None = None) -> None:
        super().__init__()
        self._model = model
        self._id = ""
        self._started = False
        self._index = -1  # the last block started
        self._open: str | None = None  # kind of the block open now: text, thinking, tool_use
        self._tools: dict[int, int] = {}  # upstream tool call index → block index
        self._stash: dict[int, tuple[str, list[str]]] = {}  # calls whose name has not come yet
        self._finish: dict[str, Any] = {}
        self._usage: dict[str, int] | None = None

    def _error_frame(self, message: str, status: int) -> bytes:
        return anthropic.error_frame(status, message)

    def ping(self) -> bytes:
        if self.done:
            return b""
        if not self._started:
            out: list[bytes] = []
            self._start({}, out)
            return b"".join(out) + anthropic.PING
        return anthropic.PING

    def _event(self, data: bytes, out: list[bytes]) -> None:
        if data == b"[DONE]":
            self._end(out)
            return
        chunk = orjson.loads(data)  # a JSONDecodeError is a ValueError: the stream fails
        if not isinstance(chunk, dict):
            raise ValueError("an event that is not a JSON object")
        error = chunk.get("error")
        if error is not None:
            message = error.get("message") if isinstance(error, dict) else error
            out.append(self.fail(f"upstream error: {message}"))
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage_of(usage)
        if not self._started:
            self._start(chunk, out)
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._choice(choice, out)
                    break

    def _start(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        self._started = True
        self._id = message_id(chunk.get("id"))
        upstream_model = chunk.get("model")
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model or (upstream_model if isinstance(upstream_model, str) else ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._usage or usage_of(None),
        }
        out.append(frame(b"message_start", orjson.dumps({"type": "message_start", "message": message})))

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning and isinstance(reasoning, str):
                self._text("thinking", THINKING, reasoning, out)
            content = delta.get("content") or delta.get("refusal")
            if content and isinstance(content, str):
                self._text("text", TEXT, content, out)
            calls = delta.get("tool_calls")
            if calls and isinstance(calls, list):
                for call in calls:
                    if isinstance(call, dict):
                        self._tool(call, out)
        if choice.get("finish_reason"):
            self._close(out)
            self._finish = choice

    def _begin(self, kind: str, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        self._index += 1
        self._open = kind
        out.append(START + orjson.dumps({"type": "content_block_start", "index": self._index,
                                         "content_block": block}) + b"\n\n")
        return self._index

    def _close(self, out: list[bytes]) -> None:
        if self._open is not None:
            out.append(STOP % self._index)
            self._open = None

    def _text(self, kind: str, head: bytes, text: str, out: list[bytes]) -> None:
        if self._open != kind:
            self._begin(kind, EMPTY_BLOCKS[kind], out)
        out.append(DELTA % self._index + head + orjson.dumps(text) + b"}}\n\n")

    def _tool(self, call: dict[str, Any], out: list[bytes]) -> None:
        n = call.get("index", 0)
        n = n if isinstance(n, int) else 0
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        arguments = function.get("arguments")
        arguments = arguments if isinstance(arguments, str) else ""
        block = self._tools.get(n)
        if block is not None:
            if arguments:
                out.append(DELTA % block + JSON + orjson.dumps(arguments) + b"}}\n\n")
            return
        raw_id = call.get("id")
        stashed_id, pieces = self._stash.pop(n, ("", []))
        raw_id = raw_id if isinstance(raw_id, str) and raw_id else stashed_id
        if arguments:
            pieces.append(arguments)
        name = function.get("name")
        if not isinstance(name, str) or not name:
            self._stash[n] = (raw_id, pieces)  # arguments before the name: wait for it
            return
        ident = tool_id(raw_id) if raw_id else f"toolu_{self._id[4:]}_{n}"
        block = self._begin("tool_use", {"type": "tool_use", "id": ident, "name": name, "input": {}}, out)
        self._tools[n] = block
        if pieces:
            out.append(DELTA % block + JSON + orjson.dumps("".join(pieces)) + b"}}\n\n")

    def _end(self, out: list[bytes]) -> None:
        if not self._started:
            self._start({}, out)
        self._close(out)
        stop_reason, stop_sequence = finish_stop(self._finish, bool(self._tools))
        usage = self._usage or usage_of(None)
        delta = {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                 "usage": usage}
        out.append(frame(b"message_delta", orjson.dumps(delta)))
        out.append(MESSAGE_STOP)
        self.done = True
        if self._usage is not None:
            self.usage = (usage["input_tokens"] + usage["cache_read_input_tokens"], usage["output_tokens"])
