"""Responses `instructions` and `input` → chat/completions `messages`.

    instructions, system and developer messages  → system messages (adjacent ones joined)
    user messages (input_text, input_image, ...)  → user messages
    assistant messages (output_text, refusal)     → assistant messages
    function_call / custom_tool_call items        → tool_calls of an assistant message (a run of
                                                    calls is one message, after its text if any)
    function_call_output / custom_tool_call_output → tool messages; images in an output, which a
                                                    tool message cannot carry, follow the run of
                                                    tool messages as one user message
    reasoning items with reasoning_text           → `reasoning_content` of the next assistant
                                                    message, for backends that want it back
    additional_tools items                        → nothing here (their tools are read with the tools)
    item_reference items                          → 400: the gateway stores no items
    other items (web_search_call, local_shell_call, compaction, ...) → left out, named in the log

A text-only content array becomes one string (parts joined with newlines): some backends take
nothing else, and chat templates join text parts the same way.
"""

from __future__ import annotations

from typing import Any

import orjson

from modelway.dialects.responses_tools import chat_name
from modelway.errors import BadRequest

TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})


def content_parts(content: Any, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The texts and the other (image, file, audio) chat parts of a Responses content array."""
    if not isinstance(content, list):
        raise BadRequest(f"{where}: must be a string or an array of content parts", param=where)
    texts: list[str] = []
    media: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS or kind == "refusal":
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise BadRequest(f"{at}: a {kind} part needs its text as a string", param=at)
            texts.append(text)
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise BadRequest(
                    f"{at}: an input_image needs an image_url (an https or data: URL); file_id needs"
                    " OpenAI's file store, which a chat backend does not have",
                    param=at,
                )
            image: dict[str, Any] = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            media.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            data = part.get("file_data")
            if not isinstance(data, str) or not data:
                raise BadRequest(
                    f"{at}: an input_file needs its file_data inline; file_id and file_url need OpenAI's file store",
                    param=at,
                )
            file = {"file_data": data}
            if isinstance(part.get("filename"), str):
                file["filename"] = part["filename"]
            media.append({"type": "file", "file": file})
        elif kind == "input_audio":
            audio = part.get("input_audio")
            if not isinstance(audio, dict):
                raise BadRequest(f"{at}: an input_audio part needs its input_audio object (data, format)", param=at)
            media.append({"type": "input_audio", "input_audio": audio})
        else:
            raise BadRequest(f"{at}.type: unknown content part type {kind!r}", param=f"{at}.type")
    return texts, media


def text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    texts, media = content_parts(content, where)
    if media:
        raise BadRequest(f"{where}: only user messages and tool outputs can carry images or files", param=where)
    return "\n".join(texts)


class Conversation:
    """Chat messages, built one Responses item at a time."""

    __slots__ = ("media", "messages", "reasoning", "with_reasoning")

    def __init__(self, *, with_reasoning: bool) -> None:
        self.messages: list[dict[str, Any]] = []
        self.with_reasoning = with_reasoning
        self.reasoning: str | None = None
        self.media: list[dict[str, Any]] = []

    def _flush_media(self) -> None:
        if self.media:
            self.messages.append({"role": "user", "content": self.media})
            self.media = []

    def _append(self, message: dict[str, Any]) -> None:
        self._flush_media()
        if message["role"] == "assistant" and self.reasoning is not None:
            message["reasoning_content"] = self.reasoning
        self.reasoning = None  # reasoning goes with the assistant turn right after it, or nowhere
        self.messages.append(message)

    def _last(self, role: str) -> dict[str, Any] | None:
        if self.media or not self.messages or self.messages[-1]["role"] != role:
            return None
        return self.messages[-1]

    def system(self, text: str) -> None:
        last = self._last("system")
        if last is not None:
            last["content"] = f"{last['content']}\n\n{text}"
        else:
            self._append({"role": "system", "content": text})

    def user(self, content: str | list[dict[str, Any]]) -> None:
        self._append({"role": "user", "content": content})

    def assistant(self, text: str) -> None:
        last = self._last("assistant")
        if last is not None and "tool_calls" not in last and isinstance(last["content"], str):
            last["content"] = f"{last['content']}\n\n{text}"
        else:
            self._append({"role": "assistant", "content": text})

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        last = self._last("assistant")
        if last is not None:
            last.setdefault("tool_calls", []).append(call)
            if self.reasoning is not None:
                last.setdefault("reasoning_content", self.reasoning)
                self.reasoning = None
        else:
            self._append({"role": "assistant", "content": None, "tool_calls": [call]})

    def tool_output(self, call_id: str, output: Any, where: str) -> None:
        """A tool message, appended right after the calls and outputs before it; images and files
        wait in `media` for the first message that is not a tool's."""
        if isinstance(output, str):
            text = output
        else:
            texts, media = content_parts(output, where)
            text = "\n".join(texts)
            self.media.extend(media)
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": text})

    def remember_reasoning(self, item: dict[str, Any]) -> None:
        if not self.with_reasoning:
            return
        content = item.get("content")
        if isinstance(content, list):
            texts = [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
            if texts:
                self.reasoning = "".join(texts)

    def close(self) -> list[dict[str, Any]]:
        self._flush_media()
        return self.messages


def required_string(item: dict[str, Any], key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{where}.{key}: must be a non-empty string", param=f"{where}.{key}")
    return value


def messages(body: dict[str, Any], *, with_reasoning: bool, dropped: list[str]) -> list[dict[str, Any]]:
    """The chat messages of a Responses request; item types left out are appended to `dropped`."""
    conversation = Conversation(with_reasoning=with_reasoning)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        if instructions:
            conversation.system(instructions)
    elif instructions is not None:
        raise BadRequest("instructions: must be a string", param="instructions")
    items = body.get("input")
    if isinstance(items, str):
        conversation.user(items)
    elif isinstance(items, list):
        for i, item in enumerate(items):
            add_item(conversation, item, f"input[{i}]", dropped)
    elif items is not None:
        raise BadRequest("input: must be a string or an array of input items", param="input")
    return conversation.close()


def add_item(conversation: Conversation, item: Any, where: str, dropped: list[str]) -> None:
    if not isinstance(item, dict):
        raise BadRequest(f"{where}: an input item must be an object", param=where)
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        if role not in MESSAGE_ROLES:
            raise BadRequest(f"{where}.role: must be one of user, assistant, system, developer", param=f"{where}.role")
        content = item.get("content")
        if role == "user":
            if isinstance(content, str):
                conversation.user(content)
            else:
                texts, media = content_parts(content, f"{where}.content")
                if media:
                    conversation.user([*({"type": "text", "text": t} for t in texts), *media])
                else:
                    conversation.user("\n".join(texts))
        elif role == "assistant":
            conversation.assistant(text_of(content, f"{where}.content"))
        else:
            conversation.system(text_of(content, f"{where}.content"))
    elif kind == "function_call":
        name = required_string(item, "name", where)
        namespace = item.get("namespace")
        if isinstance(namespace, str) and namespace:
            name = chat_name(namespace, name)
        arguments = item.get("arguments", "{}")
        if not isinstance(arguments, str):
            raise BadRequest(f"{where}.arguments: must be a string (of JSON)", param=f"{where}.arguments")
        conversation.tool_call(required_string(item, "call_id", where), name, arguments)
    elif kind == "custom_tool_call":
        text = item.get("input", "")
        arguments = orjson.dumps({"input": text if isinstance(text, str) else ""}).decode()
        conversation.tool_call(required_string(item, "call_id", where), required_string(item, "name", where), arguments)
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output", "")
        conversation.tool_output(required_string(item, "call_id", where), output, f"{where}.output")
    elif kind == "reasoning":
        conversation.remember_reasoning(item)
    elif kind == "additional_tools":
        return
    elif kind == "item_reference":
        raise BadRequest(
            f"{where}: item_reference needs stored items, and modelway keeps no conversations;"
            " send the items themselves",
            param=where,
        )
    else:
        dropped.append(str(kind))
