"""The OpenAI Responses API (`POST /v1/responses`) over a chat/completions backend.

What the pipeline calls:

    context = answer_context(body)                     once per request
    chat = request(body, provider_kind=..., max_output_tokens=...)   per attempt → the upstream body
    answer(chat_answer, model=..., context=context)    a non-stream answer → a `response` object
    StreamTranslator(model=..., context=context)       a stream: feed(bytes) / finish() / fail(message)

Request side (fields not named here are dropped; docs/dialects-responses.md has the table):

    instructions, input                  → messages (modelway.dialects.responses_input)
    tools, additional_tools items        → function tools (modelway.dialects.responses_tools)
    tool_choice, parallel_tool_calls     → the same, when any tool is left
    max_output_tokens                    → max_tokens (max_completion_tokens for kind openai),
                                           at most the deployment's max_output_tokens
    temperature, top_p, user             → the same
    reasoning.effort                     → reasoning_effort, for the kinds in EFFORT_KINDS
    text.format json_schema / json_object → response_format; text.verbosity → verbosity (openai)
    stream                               → stream, with stream_options.include_usage (for the
                                           usage of response.completed)
    previous_response_id, conversation, background, prompt → 400: the gateway stores nothing
    store, include, reasoning (but its effort), prompt_cache_key, client_metadata, metadata,
    truncation, service_tier, ...       → dropped
"""

from __future__ import annotations

import logging
from typing import Any

from modelway.dialects.responses_input import messages
from modelway.dialects.responses_output import AnswerContext, answer, echo_of
from modelway.dialects.responses_stream import StreamTranslator
from modelway.dialects.responses_tools import collect, tool_choice
from modelway.errors import BadRequest

__all__ = ["AnswerContext", "StreamTranslator", "answer", "answer_context", "request"]

log = logging.getLogger("modelway.dialects")

# Provider kinds whose chat/completions takes `reasoning_effort`: OpenAI (o-series and gpt-5),
# DeepSeek (V4: any of minimal..max, mapped on its side; "none" is its `thinking: disabled`) and
# vLLM (read by gpt-oss and by the chat templates that use it; current versions take none..max).
# An openai-compatible or gpustack server may be anything, and a field it does not know can be a
# 400: none is sent.
EFFORT_KINDS = frozenset({"openai", "deepseek", "vllm"})
# Kinds that want a tool-calling turn's reasoning back as the assistant message's
# `reasoning_content` (DeepSeek's thinking mode answers 400 without it; vLLM's chat templates for
# interleaved-thinking models read it). OpenAI rejects unknown message fields.
REASONING_BACK_KINDS = frozenset({"deepseek", "vllm"})

STATEFUL = {
    "previous_response_id": "previous_response_id: modelway keeps no conversations; send the whole"
    " conversation in `input` (as Codex does with store: false)",
    "conversation": "conversation: modelway keeps no conversations; send the whole conversation in `input`",
    "prompt": "prompt: stored prompt templates live at OpenAI, not behind modelway; send instructions and input",
}


def answer_context(body: dict[str, Any]) -> AnswerContext:
    """What answers to this request need from it: the names of namespaced tools and the echoed settings."""
    return AnswerContext(namespaced=collect(body).namespaced, echo=echo_of(body))


def request(body: dict[str, Any], *, provider_kind: str, max_output_tokens: int | None = None) -> dict[str, Any]:
    """The chat/completions body for a Responses request to a provider of `provider_kind`.

    `max_output_tokens` is the deployment's limit: the client's is lowered to it, and it is
    sent when the client set none. Raises BadRequest (400) for what a stateless gateway
    cannot do and for malformed input, naming the field.
    """
    for key, message in STATEFUL.items():
        if body.get(key) is not None:
            raise BadRequest(message, param=key)
    if body.get("background") is True:
        raise BadRequest(
            "background: a background response is polled from stored state, which modelway does not keep",
            param="background",
        )
    dropped: list[str] = []
    chat: dict[str, Any] = {
        "model": body.get("model"),
        "messages": messages(body, with_reasoning=provider_kind in REASONING_BACK_KINDS, dropped=dropped),
    }
    tools = collect(body)
    if not chat["messages"]:
        raise BadRequest("input: there is nothing to send (no instructions and no input)", param="input")
    choice = tool_choice(body.get("tool_choice"), tools)
    if tools.chat:
        chat["tools"] = tools.chat
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    limit = output_limit(body.get("max_output_tokens"), max_output_tokens)
    if limit is not None:
        chat["max_completion_tokens" if provider_kind == "openai" else "max_tokens"] = limit
    for key in ("temperature", "top_p", "user"):
        if body.get(key) is not None:
            chat[key] = body[key]
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if isinstance(effort, str) and provider_kind in EFFORT_KINDS:
        if provider_kind == "deepseek" and effort == "none":
            chat["thinking"] = {"type": "disabled"}
        else:
            chat["reasoning_effort"] = effort
    text = body.get("text")
    if isinstance(text, dict):
        response_format = response_format_of(text.get("format"))
        if response_format is not None:
            chat["response_format"] = response_format
        if provider_kind == "openai" and isinstance(text.get("verbosity"), str):
            chat["verbosity"] = text["verbosity"]
    stream = body.get("stream")
    if stream is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    elif stream is not None:
        chat["stream"] = stream
    if tools.dropped or dropped:
        log_dropped(tools.dropped, dropped)
    return chat


def log_dropped(tools: list[str], items: list[str]) -> None:
    """One line per request for the hosted tools and input items a chat backend cannot take."""
    said = [f"{what} {', '.join(sorted(set(names)))}" for what, names in (("tools", tools), ("items", items)) if names]
    log.info("/v1/responses to a chat backend: left out what it cannot run: %s", "; ".join(said))


def output_limit(asked: Any, limit: int | None) -> int | None:
    if asked is None:
        return limit
    if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
        raise BadRequest("max_output_tokens: must be a positive integer", param="max_output_tokens")
    return asked if limit is None else min(asked, limit)


def response_format_of(text_format: Any) -> dict[str, Any] | None:
    """chat/completions response_format for a Responses text.format (None for plain text)."""
    if not isinstance(text_format, dict) or text_format.get("type") in (None, "text"):
        return None
    kind = text_format["type"]
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise BadRequest(
            f"text.format.type: {kind!r} cannot be asked of a chat backend (text, json_object or json_schema)",
            param="text.format.type",
        )
    schema = text_format.get("schema")
    if not isinstance(schema, dict):
        raise BadRequest("text.format.schema: a json_schema format needs its schema (an object)", param="text.format")
    json_schema: dict[str, Any] = {"name": text_format.get("name") or "response", "schema": schema}
    for key in ("description", "strict"):
        if text_format.get(key) is not None:
            json_schema[key] = text_format[key]
    return {"type": "json_schema", "json_schema": json_schema}
