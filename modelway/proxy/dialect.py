"""The API a client speaks, by the path it calls: OpenAI's (chat/completions, completions,
embeddings, ...) or Anthropic's Messages API (/v1/messages). It decides the shape of the
errors modelway answers with, of SSE error events and of a plugin's stream events; the
translation between a client's dialect and a provider's will key on it too."""

from __future__ import annotations

from typing import Literal

Dialect = Literal["openai", "anthropic"]
OPENAI: Dialect = "openai"
ANTHROPIC: Dialect = "anthropic"


def dialect_of(path: str) -> Dialect:
    return ANTHROPIC if path.endswith("/messages") or "/messages/" in path else OPENAI
