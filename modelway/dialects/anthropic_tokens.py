"""count_tokens for a provider that cannot count: an estimate, made without a tokenizer.

What is counted is what the translated request carries: the system prompt, every message's
text, tool_use inputs and tool_result contents (as their JSON or text), and each tool's name,
description and input schema. Thinking blocks and Claude Code's billing-header system block
are not (the translation drops them).

    ASCII text         1 token per 4 characters (the usual rate of BPE tokenizers on English
                       and code)
    other characters   1 token each (CJK runs near one per character; accented Latin and
                       Cyrillic cost less, so this leans high)
    each message       4 tokens of framing
    an image or PDF    1,600 tokens (a ~1.15 megapixel image is ~1,600 for Claude)
    tools present      346 tokens (Anthropic's tool-use system prompt)

Rounded up; any non-empty prompt is at least 1. The body is read leniently: a part whose
shape is not understood is skipped, never an error.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from modelway.dialects.anthropic_to_openai_request import BILLING_HEADER

PER_MESSAGE = 4
PER_IMAGE = 1600
TOOLS_OVERHEAD = 346


def text_cost(text: str) -> float:
    if text.isascii():
        return len(text) / 4
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars / 4 + (len(text) - ascii_chars)


def json_cost(value: Any) -> float:
    try:
        encoded = orjson.dumps(value).decode()
    except TypeError:
        return 0
    return text_cost(encoded)


def content_cost(content: Any) -> float:
    if isinstance(content, str):
        return text_cost(content)
    if not isinstance(content, list):
        return 0
    cost = 0.0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            cost += text_cost(block["text"])
        elif kind == "tool_use":
            cost += text_cost(str(block.get("name", ""))) + json_cost(block.get("input", {}))
        elif kind == "tool_result":
            cost += content_cost(block.get("content"))
        elif kind in ("image", "document"):
            source = block.get("source")
            if isinstance(source, dict) and source.get("type") == "text" and isinstance(source.get("data"), str):
                cost += text_cost(source["data"])
            else:
                cost += PER_IMAGE
    return cost


def count_tokens_estimate(body: dict[str, Any]) -> int:
    system = body.get("system")
    if isinstance(system, list):  # the translation leaves Claude Code's billing header out
        system = [b for b in system if not (isinstance(b, dict) and str(b.get("text", "")).startswith(BILLING_HEADER))]
    cost = content_cost(system)
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                cost += PER_MESSAGE + content_cost(message.get("content"))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        cost += TOOLS_OVERHEAD
        for tool in tools:
            if isinstance(tool, dict):
                cost += text_cost(str(tool.get("name", ""))) + text_cost(str(tool.get("description", "")))
                cost += json_cost(tool.get("input_schema", {}))
    return max(1, math.ceil(cost)) if cost > 0 else 0
