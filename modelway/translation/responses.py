"""The client speaks OpenAI Responses, the provider does not (`responses_api: translate`):
the request as chat/completions, the answer and the stream back as a `response` object and
`response.*` events (`dialects.responses_to_openai`). To a kind anthropic provider, the
chat request goes on through `dialects.openai_to_anthropic`, and its answers come back the
same two steps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from modelway.dialects import openai_to_anthropic
from modelway.dialects import responses_to_openai as responses
from modelway.translation.base import Translation

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.dialects.stream import StreamTranslation
    from modelway.proxy.incoming import Incoming


class ResponsesToChat(Translation):
    name = "responses→openai"
    path = "chat/completions"
    __slots__ = ("context",)

    def __init__(self, request: Incoming, deployment: Deployment, shown: str | None) -> None:
        super().__init__(request, deployment, shown)
        self.context = responses.answer_context(request.payload)

    def translate(self) -> dict[str, Any]:
        return responses.request(
            self.request.payload,
            provider_kind=self.deployment.provider.kind,
            max_output_tokens=self.deployment.max_output_tokens,
        )

    def answer(self, body: bytes) -> bytes:
        return orjson.dumps(responses.answer(orjson.loads(body), model=self.shown_model(), context=self.context))

    def error(self, status: int, body: bytes) -> bytes:
        return body  # a chat backend's error is OpenAI-shaped already, as Responses clients read them

    def stream(self) -> StreamTranslation:
        return responses.StreamTranslator(model=self.shown_model(), context=self.context)


class ResponsesToMessages(ResponsesToChat):
    """Responses → chat → Messages, and back the same way: two translations composed."""

    name = "responses→anthropic"
    path = "messages"
    __slots__ = ()

    def translate(self) -> dict[str, Any]:
        chat = responses.request(
            self.request.payload, provider_kind="anthropic", max_output_tokens=self.deployment.max_output_tokens
        )
        return openai_to_anthropic.request(
            chat, stream=self.request.stream, max_output_tokens=self.deployment.max_output_tokens
        )

    def answer(self, body: bytes) -> bytes:
        chat = openai_to_anthropic.answer(orjson.loads(body))
        return orjson.dumps(responses.answer(chat, model=self.shown_model(), context=self.context))

    def error(self, status: int, body: bytes) -> bytes:
        return openai_to_anthropic.error(status, body)

    def stream(self) -> StreamTranslation:
        return Composed(
            openai_to_anthropic.StreamTranslator(include_usage=True),
            responses.StreamTranslator(model=self.shown_model(), context=self.context),
        )


class Composed:
    """Two stream translations in a row: the first's frames are the second's input."""

    __slots__ = ("first", "second")

    def __init__(self, first: StreamTranslation, second: StreamTranslation) -> None:
        self.first = first
        self.second = second

    @property
    def failure(self) -> str | None:
        return self.second.failure

    @property
    def usage(self) -> tuple[int, int] | None:
        return self.second.usage

    def feed(self, chunk: bytes) -> bytes:
        middle = self.first.feed(chunk)
        return self.second.feed(middle) if middle else b""

    def finish(self) -> bytes:
        return self.second.feed(self.first.finish()) + self.second.finish()

    def fail(self, message: str, status: int = 502) -> bytes:
        return self.second.fail(message, status)

    def ping(self) -> bytes:
        return self.second.ping()
