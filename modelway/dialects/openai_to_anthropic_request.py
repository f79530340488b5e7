"""An OpenAI chat/completions request, as an Anthropic Messages request.

System and developer messages become `system`; consecutive tool messages one user turn of
tool_result blocks (first in that turn, as Anthropic requires); consecutive turns of one
role are joined. `max_tokens` is required by Anthropic: the client's (or its
`max_completion_tokens`), else the default. docs/dialects.md has the table.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelway.dialects.tool_ids import tool_id
from modelway.errors import bad_field as bad

DEFAULT_MAX_TOKENS = 4096
JOIN = "\n\n"
TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}

Block = dict[str, Any]
Turn = dict[str, Any]


def request(
    body: dict[str, Any],
    *,
    stream: bool,
    max_output_tokens: int | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> dict[str, Any]:
    """The /v1/messages body for `body` (a chat/completions body). `max_output_tokens` clamps
    the output limit; `default_max_tokens` is used when the client sets none."""
    out: dict[str, Any] = {}
    if "model" in body:
        out["model"] = body["model"]
    system, turns = convert_messages(body.get("messages"))
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    limit = body.get(name)
    if limit is None:
        limit = default_max_tokens
    elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise bad(name, "must be a positive integer")
    out["max_tokens"] = min(limit, max_output_tokens) if max_output_tokens else limit
    if system:
        out["system"] = system
    out["messages"] = turns
    n = body.get("n")
    if n is not None and n != 1:
        raise bad("n", "only 1 choice can be asked of an anthropic provider")
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(temperature, 1)  # OpenAI's range is 0-2, Anthropic's 0-1
    if body.get("top_p") is not None and "temperature" not in out:
        out["top_p"] = body["top_p"]  # Claude 4.1 and later refuse both; temperature is the one kept
    stops = stop_sequences(body.get("stop"))
    if stops:
        out["stop_sequences"] = stops
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    tools = convert_tools(body.get("tools"))
    if tools:
        out["tools"] = tools
        choice = tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            out["tool_choice"] = choice
    if stream:
        out["stream"] = True
    return out


def stop_sequences(stop: Any) -> list[str]:
    """`stop` as a list; whitespace-only strings (OpenAI clients like "\\n") are left out, as
    Anthropic refuses them."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad("stop", "must be a string or an array of strings")
    return [s for s in stops if s.strip()]


def convert_messages(raw: Any) -> tuple[str, list[Turn]]:
    if not isinstance(raw, list):
        raise bad("messages", "must be an array of messages")
    system: list[str] = []
    turns: list[Turn] = []
    for i, message in enumerate(raw):
        path = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(path, "must be an object")
        role = message.get("role")
        if role in ("system", "developer"):
            text = plain_text(message.get("content"), f"{path}.content")
            if text:
                system.append(text)
        elif role == "user":
            add_turn(turns, "user", user_blocks(message.get("content"), path))
        elif role == "assistant":
            add_turn(turns, "assistant", assistant_blocks(message, path))
        elif role == "tool":
            add_turn(turns, "user", [tool_result(message, path)])
        else:
            raise bad(f"{path}.role", f"must be system, developer, user, assistant or tool, not {role!r}")
    for turn in turns:
        blocks = turn["content"]
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            turn["content"] = blocks[0]["text"]
    return JOIN.join(system), turns


def add_turn(turns: list[Turn], role: str, blocks: list[Block]) -> None:
    """A turn of the same role as the last one joins it; a tool_result goes after the
    tool_results already there and before anything else (Anthropic wants them first)."""
    if not blocks:
        return
    if not turns or turns[-1]["role"] != role:
        turns.append({"role": role, "content": blocks})
        return
    content = turns[-1]["content"]
    for block in blocks:
        if block["type"] == "tool_result":
            at = 0
            while at < len(content) and content[at]["type"] == "tool_result":
                at += 1
            content.insert(at, block)
        else:
            content.append(block)


def plain_text(content: Any, path: str) -> str:
    """String content, or text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad(path, "must be a string or an array of content parts")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise bad(f"{path}[{j}]", "must be a text part here")
        text = part.get("text", part.get("refusal"))
        if not isinstance(text, str):
            raise bad(f"{path}[{j}].text", "must be a string")
        texts.append(text)
    return JOIN.join(texts)


def user_blocks(content: Any, path: str) -> list[Block]:
    path = f"{path}.content"
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise bad(path, "must be a string or an array of content parts")
    blocks: list[Block] = []
    for j, part in enumerate(content):
        at = f"{path}[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad(at, "must be a content part (an object with a `type`)")
        kind = part["type"]
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(f"{at}.text", "must be a string")
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(image_block(part, at))
        elif kind == "file":
            blocks.append(file_block(part, at))
        else:
            raise bad(f"{at}.type", f"a {kind!r} part cannot be sent to an anthropic provider "
                                    "(text, image_url and file can)")
    return blocks


def parse_data_url(url: str, path: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a `data:<type>;base64,<data>` URL, None for another URL."""
    if not url.startswith("data:"):
        return None
    head, comma, data = url[5:].partition(",")
    media, _, encoding = head.partition(";")
    if not comma or encoding != "base64" or not media:
        raise bad(path, "a data: URL must be data:<media type>;base64,<data>")
    return ("image/jpeg" if media == "image/jpg" else media), data


def image_block(part: dict[str, Any], path: str) -> Block:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise bad(f"{path}.image_url.url", "must be a non-empty string")
    parsed = parse_data_url(url, f"{path}.image_url.url")
    if parsed is None:
        return {"type": "image", "source": {"type": "url", "url": url}}
    media, data = parsed
    return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}


def file_block(part: dict[str, Any], path: str) -> Block:
    file = part.get("file")
    data_url = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data_url, str):
        raise bad(f"{path}.file.file_data", "a file must be sent inline as file_data (file_id cannot be "
                                            "sent to an anthropic provider)")
    parsed = parse_data_url(data_url, f"{path}.file.file_data")
    if parsed is None:
        raise bad(f"{path}.file.file_data", "must be a data: URL")
    media, data = parsed
    block: Block = {"type": "document", "source": {"type": "base64", "media_type": media, "data": data}}
    if isinstance(file, dict) and isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def assistant_blocks(message: dict[str, Any], path: str) -> list[Block]:
    blocks: list[Block] = []
    text = plain_text(message.get("content"), f"{path}.content")
    if text:
        blocks.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    if calls is None:
        return blocks
    if not isinstance(calls, list):
        raise bad(f"{path}.tool_calls", "must be an array")
    for j, call in enumerate(calls):
        at = f"{path}.tool_calls[{j}]"
        if not isinstance(call, dict):
            raise bad(at, "must be an object")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad(at, "must be a function call with a `function.name`")
        ident = call.get("id")
        if not isinstance(ident, str) or not ident:
            raise bad(f"{at}.id", "must be a non-empty string")
        blocks.append({"type": "tool_use", "id": tool_id(ident), "name": function["name"],
                       "input": arguments_object(function.get("arguments"), f"{at}.function.arguments")})
    return blocks


def arguments_object(arguments: Any, path: str) -> dict[str, Any]:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) else None
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise bad(path, "must be a JSON object (Anthropic's tool input is one)")
    return parsed


def tool_result(message: dict[str, Any], path: str) -> Block:
    ident = message.get("tool_call_id")
    if not isinstance(ident, str) or not ident:
        raise bad(f"{path}.tool_call_id", "must be a non-empty string")
    block: Block = {"type": "tool_result", "tool_use_id": tool_id(ident)}
    text = plain_text(message.get("content"), f"{path}.content")
    if text:
        block["content"] = text
    return block


def convert_tools(raw: Any) -> list[dict[str, Any]]:
    """Function tools; OpenAI's custom (grammar) tools have no Anthropic form and are left out."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise bad("tools", "must be an array of tools")
    tools = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict):
            raise bad(f"tools[{i}]", "must be an object")
        if tool.get("type", "function") != "function":
            continue
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise bad(f"tools[{i}].function.name", "must be a non-empty string")
        schema = function.get("parameters")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        elif not isinstance(schema, dict):
            raise bad(f"tools[{i}].function.parameters", "must be a JSON Schema object")
        converted: dict[str, Any] = {"name": function["name"]}
        if isinstance(function.get("description"), str):
            converted["description"] = function["description"]
        converted["input_schema"] = schema
        tools.append(converted)
    return tools


def tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None:
        return {"type": "auto"}
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise bad("tool_choice", "must be auto, required, none or a named function")
        return dict(TOOL_CHOICES[choice])
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return {"type": "auto"}
    raise bad("tool_choice", "must be auto, required, none or a named function")
