"""Token usage read from answers, for the tokens and cost metrics.

A non-stream answer is searched for `"usage"` (and parsed only when it is there). A
stream is read only when the client asked for usage (`stream_options.include_usage`):
otherwise chunks are copied without being looked at.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MARK = b'"usage"'
MAX_TAIL = 64 * 1024


def usage_of(payload: Any) -> tuple[int, int] | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
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
    """Finds the usage event of an SSE stream across chunk boundaries, and counts its events
    (`events`: about one token each, the estimate of a stream that reports no usage)."""

    __slots__ = ("_tail", "events", "found")

    def __init__(self) -> None:
        self._tail = b""
        self.found: tuple[int, int] | None = None
        self.events = 0

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:][-MAX_TAIL:]
        self.events += data.count(b"data:", 0, cut)
        if MARK not in data[:cut]:
            return
        for line in data[:cut].split(b"\n"):
            if MARK in line and line.startswith(b"data:"):
                try:
                    found = usage_of(orjson.loads(line[5:]))
                except orjson.JSONDecodeError:
                    continue
                if found is not None:
                    self.found = found


def wants_stream_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
