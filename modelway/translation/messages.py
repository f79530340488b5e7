"""The client speaks Anthropic Messages, the provider OpenAI chat: `/v1/messages` as
chat/completions (`dialects.anthropic_to_openai`), and `/v1/messages/count_tokens` answered
with the gateway's own estimate (a chat backend cannot count Anthropic tokens)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from modelway.dialects import anthropic_to_openai
from modelway.dialects.responses_to_openai import EFFORT_KINDS
from modelway.translation.base import Headers, Translation

if TYPE_CHECKING:
    from modelway.dialects.stream import StreamTranslation

ANTHROPIC_HEADER = b"anthropic-"  # anthropic-version, anthropic-beta: nothing a chat backend reads


class MessagesToChat(Translation):
    name = "anthropic→openai"
    path = "chat/completions"
    __slots__ = ()

    def translate(self) -> dict[str, Any]:
        kind = self.deployment.provider.kind
        return anthropic_to_openai.request(
            self.request.payload,
            stream=self.request.stream,
            max_output_tokens=self.deployment.max_output_tokens,
            reasoning_effort=kind in EFFORT_KINDS,
            max_tokens_field="max_completion_tokens" if kind == "openai" else "max_tokens",
        )

    def headers(self, headers: Headers) -> Headers:
        return [pair for pair in headers if not pair[0].startswith(ANTHROPIC_HEADER)]

    def answer(self, body: bytes) -> bytes:
        return orjson.dumps(anthropic_to_openai.answer(orjson.loads(body), model=self.shown))

    def error(self, status: int, body: bytes) -> bytes:
        return anthropic_to_openai.error(status, body)

    def stream(self) -> StreamTranslation:
        return anthropic_to_openai.StreamTranslator(model=self.shown)


class CountTokensEstimate(MessagesToChat):
    """`/v1/messages/count_tokens`: `{"input_tokens": N}`, estimated here
    (dialects/anthropic_tokens.py); the provider is not asked."""

    local = True
    __slots__ = ()

    def local_body(self) -> bytes:
        return orjson.dumps({"input_tokens": anthropic_to_openai.count_tokens_estimate(self.request.payload)})

    def answer(self, body: bytes) -> bytes:
        return body
