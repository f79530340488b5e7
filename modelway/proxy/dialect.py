"""The API a client speaks, by the path it calls: OpenAI's (chat/completions, completions,
embeddings, ...), Anthropic's Messages API (/v1/messages and what is under it) or OpenAI's
Responses API (/v1/responses). It decides the shape of the errors modelway answers with, of
SSE error events and of a plugin's stream events, and, with the dialect a provider speaks,
which translation an attempt goes through (modelway/translation/).

Providers speak OPENAI (chat/completions and the rest) or ANTHROPIC (kind anthropic);
RESPONSES is a client's dialect only, served natively by a provider with
`responses_api: native`."""

from __future__ import annotations

from typing import Literal

Dialect = Literal["openai", "anthropic", "responses"]
OPENAI: Dialect = "openai"
ANTHROPIC: Dialect = "anthropic"
RESPONSES: Dialect = "responses"


def dialect_of(path: str) -> Dialect:
    if path.endswith("/messages") or "/messages/" in path:
        return ANTHROPIC
    if path.endswith("/responses"):
        return RESPONSES
    return OPENAI
