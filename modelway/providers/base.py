"""What every provider kind offers the request pipeline.

A provider turns an `UpstreamRequest` into an `UpstreamResponse` — status, relayable
headers, and the body as one read or as chunks in arrival order — and lists its models
for discovery. Failures surface only as `modelway.errors.UpstreamError` subclasses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from modelway.config.schema import ProviderConfig
from modelway.providers.credentials import Credential, CredentialPool
from modelway.providers.redact import provider_secrets
from modelway.proxy.dialect import OPENAI, Dialect

# Never relayed in either direction: they describe one hop, not the message.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"host",
    }
)
# The values of Connection that name no other header (the common case, told apart cheaply).
PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"Keep-Alive", b"Close"})
# Response headers the gateway's server writes itself.
SERVER_OWNED = frozenset({b"date", b"server"})
# An upstream's cookies are for its own clients, and the gateway is one: never relayed.
COOKIES = frozenset({b"set-cookie", b"set-cookie2"})
RESPONSE_SKIP = HOP_BY_HOP | SERVER_OWNED | COOKIES


def connection_named(values: Iterable[bytes]) -> frozenset[bytes]:
    """The header names listed in Connection header values (RFC 9110 7.6.1): hop-by-hop too."""
    return frozenset(token.strip().lower() for value in values for token in value.split(b",")) - {b""}


@dataclass(slots=True)
class UpstreamRequest:
    path: str  # relative to the provider's base_url, e.g. "chat/completions"; percent-encoded
    client_path: str  # the path the client called, e.g. "/v1/chat/completions" (decoded)
    headers: Sequence[tuple[bytes, bytes]]  # client headers fit to forward (proxy/forwarding.py), raw
    body: bytes
    stream: bool
    fresh: bool = False  # send on a new connection, not a reused keep-alive one


class UpstreamResponse(ABC):
    status: int
    headers: list[tuple[bytes, bytes]]  # relayable: hop-by-hop and server-owned removed
    content_type: str
    reports_quota = False  # carries x-ratelimit-* headers worth reading

    @property
    def is_event_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    @abstractmethod
    async def read(self) -> bytes:
        """The whole body."""

    @abstractmethod
    def chunks(self) -> AsyncIterator[bytes]:
        """The body in pieces, each yielded as soon as it arrives."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (or abort it if the body was not read to the end)."""


class Provider(ABC):
    """One configured upstream. Built from config at runtime build; `start` runs inside
    the event loop and opens pools, `close` shuts them.

    `dialect` is the API it speaks (OpenAI's unless a kind says otherwise): a request in
    another dialect is translated on its way here (modelway/translation/).
    `responses_native`: POST /v1/responses is forwarded as is, not translated to chat."""

    default_models_path = "models"
    dialect: Dialect = OPENAI

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        responses_api = config.responses_api or ("native" if config.kind == "openai" else "translate")
        self.responses_native = responses_api == "native"
        self.credentials = CredentialPool(config.name, config.auth, config.keys)
        self.secrets = provider_secrets(config)  # kept out of the error answers passed on (redact.py)
        self.healthy = True  # set by active health checks, when enabled

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @abstractmethod
    async def send(self, request: UpstreamRequest, credential: Credential) -> UpstreamResponse:
        """Send one attempt with one credential. Raises UpstreamError subclasses only."""

    @abstractmethod
    async def list_models(self) -> list[dict[str, Any]]:
        """The provider's own model list (OpenAI list `data` entries)."""

    async def probe(self, path: str | None) -> None:
        """An active health check: returns when the provider answers, raises UpstreamError
        when it does not. `path` defaults to models_path."""
        await self.list_models()
