"""A chat.completion answer as an Anthropic Messages response, and what the stream
translation shares with it: usage, stop reasons, ids, tool arguments."""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from modelway.dialects.tool_ids import tool_id


def answer(chat: Any, *, model: str | None = None) -> dict[str, Any]:
    """The Messages response for a chat.completion. Read leniently: a part missing from the
    upstream's answer is missing from this one, never an error."""
    chat = chat if isinstance(chat, dict) else {}
    choices = chat.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    ident = message_id(chat.get("id"))
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):  # some servers answer with content parts
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
    text = text or message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    tools = 0
    for n, call in enumerate(calls if isinstance(calls, list) else ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        raw_id = call.get("id")
        content.append({
            "type": "tool_use",
            "id": tool_id(raw_id) if isinstance(raw_id, str) and raw_id else f"toolu_{ident[4:]}_{n}",
            "name": function["name"],
            "input": parse_arguments(function.get("arguments")),
        })
        tools += 1
    stop_reason, stop_sequence = finish_stop(choice, tools > 0)
    upstream_model = chat.get("model")
    return {
        "id": ident,
        "type": "message",
        "role": "assistant",
        "model": model or (upstream_model if isinstance(upstream_model, str) else ""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_of(chat.get("usage")),
    }


def message_id(chat_id: Any) -> str:
    if isinstance(chat_id, str) and chat_id:
        return chat_id if chat_id.startswith("msg_") else f"msg_{tool_id(chat_id)}"
    return f"msg_{secrets.token_hex(12)}"


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments JSON as the tool_use `input` object. Some models encode the
    object twice (a JSON string of JSON); arguments that are no object at all become {}."""
    if isinstance(arguments, dict):
        return arguments
    for _ in range(2):
        if not isinstance(arguments, str | bytes) or not arguments:
            break
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            break
        if isinstance(arguments, dict):
            return arguments
    return {}


def usage_of(usage: Any) -> dict[str, int]:
    """OpenAI usage as Anthropic's: prompt tokens read from cache are counted apart, as
    Anthropic does (input + cache read + cache creation = every prompt token)."""
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0}
    prompt = usage.get("prompt_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if isinstance(cached, int) and 0 < cached <= prompt else 0
    return {
        "input_tokens": prompt - cached,
        "output_tokens": completion if isinstance(completion, int) else 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def finish_stop(choice: dict[str, Any], used_tools: bool) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for a choice that finished, given whether tool_use blocks
    were made (a server whose tool parser found calls may still say "stop")."""
    finish = choice.get("finish_reason")
    if finish == "length":
        return "max_tokens", None
    if used_tools:
        return "tool_use", None
    if finish == "content_filter":
        return "refusal", None
    # vLLM's `stop_reason` and SGLang's `matched_stop` name the stop string that ended the
    # answer (an int there is the EOS token).
    matched = choice.get("stop_reason", choice.get("matched_stop"))
    if finish == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    return "end_turn", None

