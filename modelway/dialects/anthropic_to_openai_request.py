"""An Anthropic Messages request, as an OpenAI chat/completions request.

Only what a chat backend can take is carried over (docs/dialects.md has the table); the
rest (thinking, context_management, output_config, cache_control, server tools, ...) is
left behind. A shape the translation depends on and cannot read is a 400 naming where.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson

from modelway.dialects.tool_ids import tool_id
from modelway.errors import bad_field as bad

JOIN = "\n\n"  # between text blocks of one system prompt or one user turn
BILLING_HEADER = "x-anthropic-billing-header:"  # Claude Code's per-request system block (see `system_text`)
MEDIA_TYPES = {"image/jpg": "image/jpeg"}
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
EFFORTS = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
MAX_USER = 64

Message = dict[str, Any]


def request(
    body: dict[str, Any],
    *,
    stream: bool,
    max_output_tokens: int | None = None,
    reasoning_effort: bool = False,
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
) -> dict[str, Any]:
    """The chat/completions body for `body` (a /v1/messages body). `max_output_tokens` clamps
    `max_tokens`. What the provider's kind takes: `reasoning_effort` (then
    `output_config.effort` becomes it), and the name of the output limit (OpenAI's own API
    refuses `max_tokens` for its reasoning models and wants `max_completion_tokens`)."""
    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    messages: list[Message] = []
    system = system_text(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    add_messages(body.get("messages"), messages)
    out["messages"] = messages
    max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if not is_int(max_tokens) or max_tokens < 1:
            raise bad("max_tokens", "must be a positive integer")
        out[max_tokens_field] = min(max_tokens, max_output_tokens) if max_output_tokens else max_tokens
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad("stop_sequences", "must be an array of strings")
        out["stop"] = stops
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str) and metadata["user_id"]:
        out["user"] = user_field(metadata["user_id"])
    tools = convert_tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        add_tool_choice(body.get("tool_choice"), out)
    if reasoning_effort:
        config = body.get("output_config")
        effort = config.get("effort") if isinstance(config, dict) else None
        if isinstance(effort, str) and effort in EFFORTS:
            out["reasoning_effort"] = EFFORTS[effort]
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def user_field(user_id: str) -> str:
    """OpenAI refuses a `user` over 64 characters, and Claude Code's user_id is ~150: a longer
    one is sent as its SHA-256 (64 hex digits), the same for the same user."""
    if len(user_id) <= MAX_USER:
        return user_id
    return hashlib.sha256(user_id.encode()).hexdigest()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def system_text(system: Any, path: str) -> str:
    """A system prompt, string or text blocks, as one string. Claude Code's first system
    block, `x-anthropic-billing-header: ...; cch=<changes every request>`, is metadata for
    Anthropic's billing, not instructions: it is left out, or its ever-changing value at the
    very start of the prompt would defeat every backend's prefix cache."""
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise bad(path, "must be a string or an array of text blocks")
    texts = []
    for i, block in enumerate(system):
        text = block.get("text") if isinstance(block, dict) else None
        if not isinstance(text, str):
            raise bad(f"{path}[{i}]", "must be a text block with a string `text`")
        if text and not text.startswith(BILLING_HEADER):
            texts.append(text)
    return JOIN.join(texts)


def add_messages(raw: Any, out: list[Message]) -> None:
    if not isinstance(raw, list):
        raise bad("messages", "must be an array of messages")
    for i, message in enumerate(raw):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(path, "must be an object")
        role = message.get("role")
        content = message.get("content")
        if role == "user":
            add_user_turn(content, path, out)
        elif role == "assistant":
            reply = assistant_message(content, path)
            if reply["content"] or "tool_calls" in reply:  # one of only thinking says nothing here
                out.append(reply)
        elif role == "system":
            # A chat template takes one system message, first; vLLM's refuse any other.
            text = system_text(content, f"{path}.content")
            if text:
                add_user_parts([{"type": "text", "text": text}], out)
        else:
            raise bad(f"{path}.role", f"must be 'user', 'assistant' or 'system', not {role!r}")
    for message in out:
        if message["role"] == "user" and all(part["type"] == "text" for part in message["content"]):
            message["content"] = JOIN.join(part["text"] for part in message["content"])


def add_user_parts(parts: list[dict[str, Any]], out: list[Message]) -> None:
    """User content joins the user message before it, if the last one is: chat templates
    expect turns to alternate. (User messages hold a part list until `add_messages` ends.)"""
    if not parts:
        return
    if out and out[-1]["role"] == "user":
        out[-1]["content"].extend(parts)
    else:
        out.append({"role": "user", "content": parts})


def add_user_turn(content: Any, path: str, out: list[Message]) -> None:
    if isinstance(content, str):
        add_user_parts([{"type": "text", "text": content}], out)
        return
    blocks = content_blocks(content, path)
    parts: list[dict[str, Any]] = []
    moved_images: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        at = f"{path}.content[{j}]"
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": block_text(block, at)})
        elif kind == "image":
            parts.append(image_part(block, at))
        elif kind == "document":
            parts.append(document_part(block, at))
        elif kind == "tool_result":
            # Tool messages go right after the assistant message that called them, before
            # any user text of this turn; images in a result follow them in a user message.
            out.append(tool_message(block, at, moved_images))
        # other blocks (thinking, server tool results, ...) have no chat equivalent
    add_user_parts(moved_images + parts, out)


def assistant_message(content: Any, path: str) -> Message:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content_blocks(content, path)):
        kind = block.get("type")
        at = f"{path}.content[{j}]"
        if kind == "text":
            texts.append(block_text(block, at))
        elif kind == "tool_use":
            ident, name = block.get("id"), block.get("name")
            if not isinstance(ident, str) or not isinstance(name, str):
                raise bad(at, "a tool_use block needs a string `id` and `name`")
            arguments = block.get("input", {})
            calls.append({
                "id": tool_id(ident),
                "type": "function",
                "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
            })
    text = "".join(texts)  # an assistant's blocks are one continuous answer
    message: Message = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def content_blocks(content: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        raise bad(f"{path}.content", "must be a string or an array of content blocks")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise bad(f"{path}.content[{j}]", "must be a content block (an object with a `type`)")
    return content


def block_text(block: dict[str, Any], path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise bad(f"{path}.text", "must be a string")
    return text


def tool_message(block: dict[str, Any], path: str, images: list[dict[str, Any]]) -> Message:
    ident = block.get("tool_use_id")
    if not isinstance(ident, str):
        raise bad(f"{path}.tool_use_id", "must be a string")
    content = block.get("content")
    if content is None or isinstance(content, str):
        text = content or ""
    else:
        texts = []
        for k, inner in enumerate(content_blocks(content, path)):
            kind = inner.get("type")
            at = f"{path}.content[{k}]"
            if kind == "text":
                texts.append(block_text(inner, at))
            elif kind == "image":
                images.append(image_part(inner, at))
            elif kind == "document":
                part = document_part(inner, at)
                if part["type"] == "text":
                    texts.append(part["text"])
                else:
                    images.append(part)
        text = JOIN.join(texts)
    return {"role": "tool", "tool_call_id": tool_id(ident), "content": text}


def source_of(block: dict[str, Any], path: str) -> tuple[str, dict[str, Any]]:
    source = block.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("type"), str):
        raise bad(f"{path}.source", "must be an object with a `type`")
    return source["type"], source


def string_field(source: dict[str, Any], name: str, path: str) -> str:
    value = source.get(name)
    if not isinstance(value, str) or not value:
        raise bad(f"{path}.source.{name}", "must be a non-empty string")
    return value


def data_url(source: dict[str, Any], path: str) -> str:
    media = string_field(source, "media_type", path)
    return f"data:{MEDIA_TYPES.get(media, media)};base64,{string_field(source, 'data', path)}"


def image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    kind, source = source_of(block, path)
    if kind == "base64":
        url = data_url(source, path)
    elif kind == "url":
        url = string_field(source, "url", path)
    else:
        raise bad(f"{path}.source.type", f"an image source of type {kind!r} cannot be translated "
                                         "for this provider (base64 and url can)")
    return {"type": "image_url", "image_url": {"url": url}}


def document_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    """Plain-text documents become text; a base64 PDF becomes a `file` part (OpenAI's)."""
    kind, source = source_of(block, path)
    if kind == "text":
        return {"type": "text", "text": string_field(source, "data", path)}
    if kind == "content" and isinstance(source.get("content"), list):
        texts = [b["text"] for b in source["content"] if isinstance(b, dict) and isinstance(b.get("text"), str)]
        return {"type": "text", "text": JOIN.join(texts)}
    if kind == "base64":
        title = block.get("title")
        name = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": {"filename": name, "file_data": data_url(source, path)}}
    raise bad(f"{path}.source.type", f"a document source of type {kind!r} cannot be translated "
                                     "for this provider (text, content and base64 can)")


def convert_tools(raw: Any) -> list[dict[str, Any]]:
    """Custom tools (those with an `input_schema`) become function tools; Anthropic's server
    and client tools (web_search_…, bash_…, text_editor_…) have nothing a chat backend runs."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("tools", "must be an array of tools")
    tools = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise bad(f"tools[{i}]", "must be an object")
        if tool.get("type") not in (None, "custom"):
            continue
        name, schema = tool.get("name"), tool.get("input_schema")
        if not isinstance(name, str) or not name:
            raise bad(f"tools[{i}].name", "must be a non-empty string")
        if not isinstance(schema, dict):
            raise bad(f"tools[{i}].input_schema", "must be a JSON Schema object")
        function: dict[str, Any] = {"name": name}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        function["parameters"] = schema
        tools.append({"type": "function", "function": function})
    return tools


def add_tool_choice(choice: Any, out: dict[str, Any]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind in TOOL_CHOICES:
        out["tool_choice"] = TOOL_CHOICES[kind]
    elif kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str):
            raise bad("tool_choice.name", "must be a string")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise bad("tool_choice", "must be an object of type auto, any, tool or none")
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
