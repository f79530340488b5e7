"""The client speaks OpenAI chat/completions, the provider is kind anthropic: the request
as a Messages request, the answer, the stream and the errors back
(`dialects.openai_to_anthropic`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from modelway.dialects import openai_to_anthropic
from modelway.proxy.usage import wants_stream_usage
from modelway.translation.base import Translation

if TYPE_CHECKING:
    from modelway.dialects.stream import StreamTranslation


class ChatToMessages(Translation):
    name = "openai→anthropic"
    path = "messages"
    __slots__ = ()

    def translate(self) -> dict[str, Any]:
        return openai_to_anthropic.request(
            self.request.payload, stream=self.request.stream, max_output_tokens=self.deployment.max_output_tokens
        )

    def answer(self, body: bytes) -> bytes:
        return orjson.dumps(openai_to_anthropic.answer(orjson.loads(body), model=self.shown))

    def error(self, status: int, body: bytes) -> bytes:
        return openai_to_anthropic.error(status, body)

    def stream(self) -> StreamTranslation:
        return openai_to_anthropic.StreamTranslator(
            self.shown, include_usage=wants_stream_usage(self.request.payload)
        )
