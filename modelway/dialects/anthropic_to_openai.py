"""The client speaks Anthropic Messages, the provider OpenAI chat/completions.

    request(body, *, stream, max_output_tokens=None, reasoning_effort=False,
            max_tokens_field="max_tokens") -> dict
    answer(chat, *, model=None) -> dict            a chat.completion as a Messages response
    StreamTranslator(model=None)                   chat.completion.chunk SSE → Messages SSE
    error(status, body) -> bytes                   an upstream error, Anthropic-shaped
    count_tokens_estimate(body) -> int             /v1/messages/count_tokens without a tokenizer
"""

from __future__ import annotations

import orjson

from modelway.dialects import anthropic
from modelway.dialects.anthropic_to_openai_answer import answer
from modelway.dialects.anthropic_to_openai_request import request
from modelway.dialects.anthropic_to_openai_stream import StreamTranslator
from modelway.dialects.anthropic_tokens import count_tokens_estimate
from modelway.dialects.errors import error_message

__all__ = ["StreamTranslator", "answer", "count_tokens_estimate", "error", "request"]


def error(status: int, body: bytes) -> bytes:
    """An upstream's error answer (OpenAI-shaped or not), Anthropic-shaped, its message kept."""
    return orjson.dumps(anthropic.error_body(status, error_message(status, body)))
