"""Token usage read from answers, for the tokens and cost metrics.

A non-stream answer is searched for `"usage"` (and parsed only when it is there). An
OpenAI chat stream is read only when the client asked for usage
(`stream_options.include_usage`): otherwise chunks are copied without being looked at.
Anthropic Messages streams always carry usage (input tokens in `message_start`, output
tokens in `message_delta`), and Responses streams in `response.completed`: relayed natively,
they are read too. A translated stream's usage comes from its translator
(proxy/translated.py).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MARK = b'"usage"'
MAX_TAIL = 64 * 1024


NESTED = ("message", "response")  # Anthropic's message_start, Responses' response.completed


def usage_of(payload: Any) -> tuple[int, int] | None:
    if not isinstance(payload, dict):
        return None
    usage = payload.get("usage")
    if usage is None:
        for key in NESTED:
            inner = payload.get(key)
            if isinstance(inner, dict) and isinstance(inner.get("usage"), dict):
                usage = inner["usage"]
                break
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


PROMPT_TOKENS = re.compile(rb'"(?:prompt|input)_tokens"\s*:\s*(\d+)')
COMPLETION_TOKENS = re.compile(rb'"(?:completion|output)_tokens"\s*:\s*(\d+)')


def usage_from_body(body: bytes) -> tuple[int, int] | None:
    """Token counts of a JSON answer, read from its `usage` object without parsing the whole
    answer (usage comes last in OpenAI's and Anthropic's answers; this runs on every one)."""
    at = body.rfind(MARK)
    if at < 0:
        return None
    prompt = PROMPT_TOKENS.search(body, at)
    completion = COMPLETION_TOKENS.search(body, at)
    if prompt is None and completion is None:
        return None
    return int(prompt.group(1)) if prompt else 0, int(completion.group(1)) if completion else 0


class StreamUsage:
    """Finds the usage events of an SSE stream across chunk boundaries. A count an event
    leaves at 0 keeps the value an earlier one gave (Anthropic tells the input tokens in
    message_start and the output tokens in message_delta)."""

    __slots__ = ("_tail", "found")

    def __init__(self) -> None:
        self._tail = b""
        self.found: tuple[int, int] | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:][-MAX_TAIL:]
        if MARK not in data[:cut]:
            return
        for line in data[:cut].split(b"\n"):
            if MARK in line and line.startswith(b"data:"):
                try:
                    found = usage_of(orjson.loads(line[5:]))
                except orjson.JSONDecodeError:
                    continue
                if found is not None:
                    before = self.found
                    if before is not None:
                        found = (found[0] or before[0], found[1] or before[1])
                    self.found = found


def wants_stream_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
