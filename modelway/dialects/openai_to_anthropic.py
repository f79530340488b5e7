"""The client speaks OpenAI chat/completions, the provider is kind anthropic (Messages API).

    request(body, *, stream, max_output_tokens=None, default_max_tokens=4096) -> dict
    answer(message, *, model=None, created=None) -> dict     a Messages response as a chat.completion
    StreamTranslator(model=None, *, include_usage=False)     Messages SSE → chat.completion.chunk SSE
    error(status, body) -> bytes                             an upstream error, OpenAI-shaped
"""

from __future__ import annotations

import orjson

from modelway.dialects.errors import error_message, error_type
from modelway.dialects.openai_to_anthropic_answer import answer
from modelway.dialects.openai_to_anthropic_request import request
from modelway.dialects.openai_to_anthropic_stream import StreamTranslator

__all__ = ["StreamTranslator", "answer", "error", "request"]


def error(status: int, body: bytes) -> bytes:
    """An Anthropic error answer as OpenAI's error shape, keeping its message and type."""
    kind = error_type(body) or ("invalid_request_error" if 400 <= status < 500 else "api_error")
    return orjson.dumps({"error": {"message": error_message(status, body), "type": kind, "param": None,
                                   "code": None}})
