"""Token usage read from answers, for the tokens and cost metrics and the access log.

A non-stream answer is searched for `"usage"` (and parsed only when it is there). For an
OpenAI-style stream (chat or legacy completions), the gateway asks the upstream for usage
(`stream_options.include_usage: true`) whether or not the client did; when the client did
not, the usage-only chunk the upstream then adds (`"choices": []`) is taken out of what the
client receives. Chunks are searched for a usage object (`"usage": {`) in C; only a chunk
that has one is split into lines and parsed. Anthropic Messages streams always carry usage
(input tokens in `message_start`, output tokens in `message_delta`), and Responses streams in
`response.completed`: relayed natively, they are read too. A translated stream's usage comes
from its translator (proxy/translated.py).
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


USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
INJECTED_PATHS = ("/chat/completions", "/completions")


def injects_stream_usage(path: str, stream: bool, payload: dict[str, Any], provider_kind: str) -> bool:
    """Does the gateway ask this upstream for stream usage the client did not ask for?"""
    return (
        stream
        and provider_kind != "anthropic"
        and path.endswith(INJECTED_PATHS)
        and not wants_stream_usage(payload)
    )


def with_usage_requested(payload: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """The deployment's options plus `stream_options.include_usage: true` (the client's other
    stream options kept)."""
    stream_options = payload.get("stream_options")
    merged = dict(stream_options) if isinstance(stream_options, dict) else {}
    configured = options.get("stream_options")
    if isinstance(configured, dict):
        merged.update(configured)
    merged["include_usage"] = True
    return {**options, "stream_options": merged}


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
    """Finds the usage object of an SSE stream, and takes the usage-only event out of the
    chunks when `strip` (the client did not ask for it). A usage event split across two
    chunks is still read, but then reaches the client: holding bytes back would delay the
    stream, and an extra chunk with no choices is what clients asking for usage get anyway.
    A count an event leaves at 0 keeps the value an earlier one gave (Anthropic tells the
    input tokens in message_start and the output tokens in message_delta). With `count` it
    counts the events too (`events`: about one token each, a limited key's charge for a
    stream whose upstream reports no usage)."""

    __slots__ = ("_tail", "count", "events", "found", "strip")

    def __init__(self, strip: bool = False) -> None:
        self._tail = b""
        self.found: tuple[int, int] | None = None
        self.strip = strip
        self.count = False
        self.events = 0

    def feed(self, chunk: bytes) -> bytes:
        """Read `chunk`; returns it as the client should get it."""
        data = self._tail + chunk if self._tail else chunk
        cut = data.rfind(b"\n") + 1
        self._tail = data[cut:][-MAX_TAIL:]
        if self.count:
            self.events += data.count(b"data:", 0, cut)
        if USAGE_OBJECT.search(data, 0, cut) is None:
            return chunk
        stripped = False
        events = chunk.split(b"\n\n") if self.strip else ()
        for line in data[:cut].split(b"\n"):
            if line.startswith(b"data:") and USAGE_OBJECT.search(line):
                try:
                    payload = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                found = usage_of(payload)
                if found is not None:
                    before = self.found
                    if before is not None:
                        found = (found[0] or before[0], found[1] or before[1])
                    self.found = found
                    if self.strip and isinstance(payload, dict) and payload.get("choices") == []:
                        kept = [e for e in events if e.strip() != line.strip()]
                        if len(kept) < len(events):
                            events = kept
                            stripped = True
        return b"\n\n".join(events) if stripped else chunk


def wants_stream_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
