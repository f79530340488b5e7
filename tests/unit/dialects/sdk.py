"""Checking translator output against the real SDKs: their pydantic types, and their own
stream accumulation fed our bytes through an in-memory transport."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
from anthropic.types import RawMessageStreamEvent, message_create_params
from openai.types.chat import completion_create_params

ANTHROPIC_REQUEST = {
    True: pydantic.TypeAdapter(message_create_params.MessageCreateParamsStreaming),
    False: pydantic.TypeAdapter(message_create_params.MessageCreateParamsNonStreaming),
}
OPENAI_REQUEST = {
    True: pydantic.TypeAdapter(completion_create_params.CompletionCreateParamsStreaming),
    False: pydantic.TypeAdapter(completion_create_params.CompletionCreateParamsNonStreaming),
}
ANTHROPIC_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)


def materialize(value: Any) -> Any:
    """pydantic validates an Iterable lazily: walking it is what makes it check."""
    if isinstance(value, dict):
        return {k: materialize(v) for k, v in value.items()}
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, list | tuple | Iterator):
        return [materialize(v) for v in value]
    return value


def validate_anthropic_request(body: dict[str, Any]) -> None:
    materialize(ANTHROPIC_REQUEST[bool(body.get("stream"))].validate_python(body))


def validate_openai_request(body: dict[str, Any]) -> None:
    materialize(OPENAI_REQUEST[bool(body.get("stream"))].validate_python(body))


def transport(body: bytes, content_type: str = "text/event-stream") -> httpx2.Client:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": content_type}, content=body)

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def anthropic_client(body: bytes) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="test", base_url="http://upstream.test", max_retries=0,
                               http_client=transport(body))


def openai_client(body: bytes) -> openai.OpenAI:
    return openai.OpenAI(api_key="test", base_url="http://upstream.test/v1", max_retries=0,
                         http_client=transport(body))


def anthropic_final_message(stream_bytes: bytes) -> anthropic.types.Message:
    """What the anthropic SDK's own stream helper assembles from our SSE bytes."""
    client = anthropic_client(stream_bytes)
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


def openai_final_completion(stream_bytes: bytes) -> Any:
    """What the openai SDK's own stream helper assembles from our SSE bytes."""
    client = openai_client(stream_bytes)
    with client.chat.completions.stream(model="m", messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()
