"""An Anthropic Messages response as a chat.completion, and what the stream translation
shares with it: finish reasons and usage."""

from __future__ import annotations

import time
from typing import Any

import orjson

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def count(usage: dict[str, Any], name: str) -> int:
    value = usage.get(name)
    return value if isinstance(value, int) else 0


def chat_usage(usage: Any) -> dict[str, Any]:
    """Anthropic counts prompt tokens read from and written to the cache apart from
    `input_tokens`; OpenAI's `prompt_tokens` counts them all."""
    usage = usage if isinstance(usage, dict) else {}
    cached = count(usage, "cache_read_input_tokens")
    prompt = count(usage, "input_tokens") + cached + count(usage, "cache_creation_input_tokens")
    completion = count(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def answer(message: Any, *, model: str | None = None, created: int | None = None) -> dict[str, Any]:
    """The chat.completion for a Messages response, read leniently (a part missing upstream
    is missing here, never an error)."""
    message = message if isinstance(message, dict) else {}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    blocks = message.get("content")
    for block in blocks if isinstance(blocks, list) else ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            reasoning.append(block["thinking"])
        elif kind == "tool_use":
            calls.append({
                "id": str(block.get("id", "")),
                "type": "function",
                "function": {"name": str(block.get("name", "")),
                             "arguments": orjson.dumps(block.get("input", {})).decode()},
            })
    text = "".join(texts)
    reply: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if calls:
        reply["tool_calls"] = calls
    upstream_model = message.get("model")
    ident = message.get("id")
    return {
        "id": ident if isinstance(ident, str) and ident else f"chatcmpl-{time.time_ns():x}",
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model or (upstream_model if isinstance(upstream_model, str) else ""),
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": None,
            "finish_reason": finish_reason(message.get("stop_reason")),
        }],
        "usage": chat_usage(message.get("usage")),
    }
