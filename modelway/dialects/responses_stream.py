"""A chat/completions stream → the Responses API's stream of `response.*` events.

    response.created, response.in_progress                 at the first upstream bytes
    per item, in output order:
      response.output_item.added                           before any delta of the item
      response.content_part.added                          (message and reasoning items)
      response.output_text.delta ... .done                 content
      response.refusal.delta ... .done                     refusal
      response.reasoning_text.delta ... .done              reasoning_content / reasoning
      response.function_call_arguments.delta ... .done     each tool call, by its chat index
      response.content_part.done, response.output_item.done (carrying the complete item)
    response.completed (response.incomplete for finish_reason length / content_filter), with usage
    response.failed                                        an upstream error event, a malformed
                                                           event, a stream that ends unfinished,
                                                           or the pipeline's `fail(message)`

A text or reasoning item is done when the other kind or a tool call starts; tool calls stay
open until the answer ends, so that backends interleaving parallel calls are read right.
Each payload carries its `type` and a `sequence_number` from 0, framed as OpenAI frames them
(`event: <type>` then `data: <json>`). The work per upstream chunk is one orjson parse per data
line and one orjson dump per event; texts are joined once, when their part is done.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from modelway.dialects.responses_output import (
    INCOMPLETE,
    AnswerContext,
    envelope,
    function_call_item,
    item_id,
    message_item,
    new_token,
    reasoning_item,
    text_part,
    usage_of,
)
from modelway.dialects.responses_sse import DataLines, SSELineTooLong

# part kind → (delta event, done event, the done event's field for the whole text)
PART_EVENTS = {
    "output_text": ("response.output_text.delta", "response.output_text.done", "text"),
    "refusal": ("response.refusal.delta", "response.refusal.done", "refusal"),
    "reasoning_text": ("response.reasoning_text.delta", "response.reasoning_text.done", "text"),
}
FRAME_HEADS: dict[str, bytes] = {}
PING = b": ping\n\n"


def frame_head(kind: str) -> bytes:
    head = FRAME_HEADS.get(kind)
    if head is None:
        head = FRAME_HEADS[kind] = b"event: " + kind.encode() + b"\ndata: "
    return head


class TextItem:
    """The open message or reasoning item, and its open content part."""

    __slots__ = ("ident", "index", "kind", "part", "parts", "pieces")

    def __init__(self, kind: str, ident: str, index: int) -> None:
        self.kind = kind
        self.ident = ident
        self.index = index
        self.parts: list[dict[str, Any]] = []
        self.part: str | None = None
        self.pieces: list[str] = []


class Call:
    __slots__ = ("call_id", "ident", "index", "name", "pieces")

    def __init__(self, ident: str, index: int, call_id: str, name: str) -> None:
        self.ident = ident
        self.index = index
        self.call_id = call_id
        self.name = name
        self.pieces: list[str] = []


class StreamTranslator:
    """Feed it the upstream's bytes as they come; send what each call returns."""

    __slots__ = (
        "_base",
        "_calls",
        "_context",
        "_failure_message",
        "_finish_reason",
        "_lines",
        "_out",
        "_output",
        "_seq",
        "_started",
        "_text",
        "_token",
        "_usage",
        "failed",
        "finished",
    )

    def __init__(self, *, model: str, context: AnswerContext | None = None, token: str | None = None) -> None:
        self._context = context or AnswerContext()
        self._token = token or new_token()
        self._base = envelope(self._token, int(time.time()), model, self._context)
        self._lines = DataLines()
        self._out: list[bytes] = []
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any]] = []
        self._text: TextItem | None = None
        self._calls: dict[int, Call] = {}
        self._finish_reason: str | None = None
        self._usage: Any = None
        self._failure_message: str | None = None
        self.finished = False  # the last event (completed, incomplete or failed) is out
        self.failed = False  # ... and it was response.failed

    # -- what the pipeline calls

    def feed(self, chunk: bytes) -> bytes:
        if self.finished:
            return b""
        self._start()
        try:
            lines = self._lines.feed(chunk)
        except SSELineTooLong as exc:
            self._fail(str(exc))
            return self._flush()
        for data in lines:
            self._line(data)
            if self.finished:
                break
        return self._flush()

    def finish(self) -> bytes:
        """The upstream stream ended: the last events (response.failed if it ended unfinished)."""
        if self.finished:
            return b""
        self._start()
        for data in self._lines.close():
            self._line(data)
        if not self.finished:
            if self._finish_reason is not None:
                self._complete()
            else:
                self._fail("the upstream stream ended before its answer was complete")
        return self._flush()

    def fail(self, message: str, status: int = 502) -> bytes:
        """The upstream broke (or timed out) mid-stream: a response.failed event saying `message`.
        (`status` is there for the StreamTranslation protocol: response.failed has no place for it.)"""
        if self.finished:
            return b""
        self._start()
        self._fail(message)
        return self._flush()

    def ping(self) -> bytes:
        """A keep-alive for a client waiting on a silent upstream: an SSE comment, which
        clients skip (a response.* event would need a sequence number of its own)."""
        return b"" if self.finished else PING

    @property
    def failure(self) -> str | None:
        """Why the stream ended in response.failed (None while it has not)."""
        if not self.failed:
            return None
        error = self._failure_message
        return error if error is not None else "the stream failed"

    @property
    def usage(self) -> tuple[int, int] | None:
        """(prompt tokens, completion tokens) once the upstream told them."""
        usage = self._usage
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return (prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0)

    # -- events

    def _emit(self, kind: str, fields: dict[str, Any]) -> None:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        self._out.append(frame_head(kind) + orjson.dumps(payload) + b"\n\n")

    def _flush(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _response(self, status: str) -> dict[str, Any]:
        return {**self._base, "status": status, "output": self._output, "usage": usage_of(self._usage)}

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        snapshot = {**self._base, "status": "in_progress", "output": [], "usage": None}
        self._emit("response.created", {"response": snapshot})
        self._emit("response.in_progress", {"response": snapshot})

    def _line(self, data: bytes) -> None:
        if data == b"[DONE]":
            self._complete()
            return
        if not data:
            return
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._fail("the upstream sent a stream event that is not JSON")
            return
        if not isinstance(chunk, dict):
            self._fail("the upstream sent a stream event that is not a JSON object")
            return
        if chunk.get("error") is not None or chunk.get("object") == "error":
            self._fail(error_message(chunk))
            return
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                self._text_delta("reasoning", "reasoning_text", reasoning)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text_delta("message", "output_text", content)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._text_delta("message", "refusal", refusal)
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for position, call in enumerate(calls):
                    if isinstance(call, dict):
                        self._call_delta(call, position)
        finish = choice.get("finish_reason")
        if isinstance(finish, str):
            self._finish_reason = finish

    # -- message and reasoning items

    def _text_delta(self, kind: str, part: str, text: str) -> None:
        item = self._text
        if item is None or item.kind != kind:
            if item is not None:
                self._close_text("completed")
            index = len(self._output)
            ident = item_id("rs" if kind == "reasoning" else "msg", self._token, index)
            if kind == "reasoning":
                added = reasoning_item(ident, [], "in_progress")
            else:
                added = message_item(ident, [], "in_progress")
            self._output.append(added)
            self._emit("response.output_item.added", {"output_index": index, "item": added})
            item = self._text = TextItem(kind, ident, index)
        if item.part != part:
            if item.part is not None:
                self._close_part(item)
            item.part = part
            self._emit("response.content_part.added", self._part_fields(item, {"part": text_part(part, "")}))
        item.pieces.append(text)
        fields = self._part_fields(item, {"delta": text})
        if part == "output_text":
            fields["logprobs"] = []
        self._emit(PART_EVENTS[part][0], fields)

    def _part_fields(self, item: TextItem, extra: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item.ident, "output_index": item.index, "content_index": len(item.parts), **extra}

    def _close_part(self, item: TextItem) -> None:
        kind = item.part
        assert kind is not None
        text = "".join(item.pieces)
        _, done, field = PART_EVENTS[kind]
        fields = self._part_fields(item, {field: text})
        if kind == "output_text":
            fields["logprobs"] = []
        self._emit(done, fields)
        part = text_part(kind, text)
        self._emit("response.content_part.done", self._part_fields(item, {"part": part}))
        item.parts.append(part)
        item.part = None
        item.pieces = []

    def _close_text(self, status: str) -> None:
        item = self._text
        assert item is not None
        if item.part is not None:
            self._close_part(item)
        if item.kind == "reasoning":
            done = reasoning_item(item.ident, item.parts, "completed")
        else:
            done = message_item(item.ident, item.parts, status)
        self._output[item.index] = done
        self._emit("response.output_item.done", {"output_index": item.index, "item": done})
        self._text = None

    # -- function calls

    def _call_delta(self, call: dict[str, Any], position: int) -> None:
        index = call.get("index")
        if not isinstance(index, int):
            index = position
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        name = function.get("name")
        current = self._calls.get(index)
        if current is None:
            if self._text is not None:
                self._close_text("completed")
            at = len(self._output)
            call_id = call.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = f"call_{self._token}{at:04x}"
            current = Call(item_id("fc", self._token, at), at, call_id, name if isinstance(name, str) else "")
            self._calls[index] = current
            added = function_call_item(current.ident, call_id, current.name, "", "in_progress", self._context)
            self._output.append(added)
            self._emit("response.output_item.added", {"output_index": at, "item": added})
        elif not current.name and isinstance(name, str):
            current.name = name
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            current.pieces.append(arguments)
            self._emit(
                "response.function_call_arguments.delta",
                {"item_id": current.ident, "output_index": current.index, "delta": arguments},
            )

    def _close_calls(self) -> None:
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            arguments = "".join(call.pieces)
            self._emit(
                "response.function_call_arguments.done",
                {"item_id": call.ident, "output_index": call.index, "arguments": arguments},
            )
            done = function_call_item(call.ident, call.call_id, call.name, arguments, "completed", self._context)
            self._output[call.index] = done
            self._emit("response.output_item.done", {"output_index": call.index, "item": done})
        self._calls.clear()

    # -- the end

    def _complete(self) -> None:
        incomplete = INCOMPLETE.get(self._finish_reason or "")
        status = "incomplete" if incomplete else "completed"
        if self._text is not None:
            self._close_text(status)
        self._close_calls()
        response = self._response(status)
        if incomplete:
            response["incomplete_details"] = {"reason": incomplete}
            self._emit("response.incomplete", {"response": response})
        else:
            self._emit("response.completed", {"response": response})
        self.finished = True

    def _fail(self, message: str) -> None:
        self._failure_message = message
        response = self._response("failed")
        response["error"] = {"code": "server_error", "message": message}
        self._emit("response.failed", {"response": response})
        self.finished = True
        self.failed = True


def failed_frame(message: str, model: str = "") -> bytes:
    """A lone response.failed event: the end of a native Responses stream that broke after
    bytes reached the client (its sequence numbers are the upstream's: none is given)."""
    response = {**envelope(new_token(), int(time.time()), model, AnswerContext()), "status": "failed",
                "output": [], "usage": None, "error": {"code": "server_error", "message": message}}
    return frame_head("response.failed") + orjson.dumps({"type": "response.failed", "response": response}) + b"\n\n"


def error_message(chunk: dict[str, Any]) -> str:
    """The message of an error event in an upstream stream (`{"error": {...}}` or vLLM's flat one)."""
    error = chunk.get("error")
    found = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
    if not isinstance(found, str):
        found = chunk.get("message")
    return f"the upstream reported an error: {found}" if isinstance(found, str) else "the upstream reported an error"
