"""A chat/completions answer → a Responses `response` object.

    message.reasoning_content (or .reasoning) → a `reasoning` item with one reasoning_text part
    message.content / .refusal                → a `message` item with output_text / refusal parts
    message.tool_calls                        → `function_call` items (call_id, name, arguments;
                                                `namespace` and the bare name back for tools that
                                                were flattened out of a namespace)
    finish_reason length / content_filter     → status `incomplete` with its reason; otherwise `completed`
    usage prompt/completion/total tokens      → usage input/output/total tokens (cached and
                                                reasoning token details kept)

The response repeats the few request settings clients read back (`AnswerContext.echo`), not
the request's instructions and tools, which can be tens of kilobytes (Codex's are) and would
be sent again in each of a stream's three response snapshots.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelway.errors import UpstreamError

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(frozen=True, slots=True)
class AnswerContext:
    """What the answer side needs from the client's request: computed once per request."""

    namespaced: dict[str, tuple[str, str]] = field(default_factory=dict)
    echo: dict[str, Any] = field(default_factory=dict)


def number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def echo_of(body: dict[str, Any]) -> dict[str, Any]:
    """The request settings a response object repeats, each only when it has the right type."""
    limit = body.get("max_output_tokens")
    metadata = body.get("metadata")
    parallel = body.get("parallel_tool_calls")
    reasoning = body.get("reasoning")
    text = body.get("text")
    choice = body.get("tool_choice")
    user = body.get("user")
    return {
        "instructions": None,
        "max_output_tokens": limit if isinstance(limit, int) and not isinstance(limit, bool) else None,
        "metadata": metadata if isinstance(metadata, dict) else {},
        "parallel_tool_calls": parallel if isinstance(parallel, bool) else True,
        "previous_response_id": None,
        "reasoning": reasoning if isinstance(reasoning, dict) else None,
        "store": False,
        "temperature": number(body.get("temperature")),
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
        "tool_choice": choice if isinstance(choice, str | dict) else "auto",
        "tools": [],
        "top_p": number(body.get("top_p")),
        "truncation": "disabled",
        "user": user if isinstance(user, str) else None,
    }


def new_token() -> str:
    return os.urandom(12).hex()


def item_id(prefix: str, token: str, index: int) -> str:
    return f"{prefix}_{token}{index:04x}"


def envelope(token: str, created_at: int, model: str, context: AnswerContext) -> dict[str, Any]:
    """A response object without its status, output and usage."""
    return {
        "id": f"resp_{token}",
        "object": "response",
        "created_at": created_at,
        "model": model,
        "error": None,
        "incomplete_details": None,
        **context.echo,
    }


def usage_of(usage: Any) -> dict[str, Any] | None:
    """Responses usage from chat/completions usage (None when the upstream gave none)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    total = usage.get("total_tokens")
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    if not isinstance(cached, int):
        cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek's name for it
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning if isinstance(reasoning, int) else 0},
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


def reasoning_item(ident: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": ident, "type": "reasoning", "summary": [], "content": parts, "status": status}


def text_part(kind: str, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    if kind == "reasoning_text":
        return {"type": "reasoning_text", "text": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(ident: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {"id": ident, "type": "message", "role": "assistant", "status": status, "content": parts}


def function_call_item(
    ident: str, call_id: str, name: str, arguments: str, status: str, context: AnswerContext
) -> dict[str, Any]:
    item = {"id": ident, "type": "function_call", "status": status, "call_id": call_id, "name": name}
    split = context.namespaced.get(name)
    if split is not None:
        item["namespace"], item["name"] = split
    item["arguments"] = arguments
    return item


def arguments_of(function: dict[str, Any]) -> str:
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments).decode() if isinstance(arguments, dict) else ""


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some backends answer with text parts
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def answer(chat: Any, *, model: str, context: AnswerContext | None = None, token: str | None = None) -> dict[str, Any]:
    """The response object for a (non-stream) chat/completions answer."""
    context = context or AnswerContext()
    choices = chat.get("choices") if isinstance(chat, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("the upstream's chat/completions answer has no choices")
    message = choices[0].get("message")
    incomplete = INCOMPLETE.get(str(choices[0].get("finish_reason")))
    status = "incomplete" if incomplete else "completed"
    token = token or new_token()
    created = chat.get("created")
    response = envelope(token, created if isinstance(created, int) else int(time.time()), model, context)
    response["status"] = status
    if incomplete:
        response["incomplete_details"] = {"reason": incomplete}
    response["output"] = output_of(message if isinstance(message, dict) else {}, status, token, context)
    response["usage"] = usage_of(chat.get("usage"))
    return response


def output_of(message: dict[str, Any], status: str, token: str, context: AnswerContext) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        parts = [text_part("reasoning_text", reasoning)]
        output.append(reasoning_item(item_id("rs", token, len(output)), parts, "completed"))
    parts = []
    text = text_of(message.get("content"))
    if text:
        parts.append(text_part("output_text", text))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        parts.append(text_part("refusal", refusal))
    if parts:
        output.append(message_item(item_id("msg", token, len(output)), parts, status))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"call_{token}{len(output):04x}"
        name = function.get("name")
        ident = item_id("fc", token, len(output))
        output.append(
            function_call_item(
                ident, call_id, name if isinstance(name, str) else "", arguments_of(function), "completed", context
            )
        )
    return output
