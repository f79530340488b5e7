"""What every translation offers the attempt loop and the relay.

A `Translation` is made per attempt, when the client's dialect and the provider's differ
(`modelway.translation.choose` picks the class): the exchange asks it for the request to
send (`outgoing`), and the relay for the answer, the stream and the errors on their way
back. The translating itself is `modelway.dialects`' pure code; this layer only knows which
piece applies where, and what the provider's kind and the deployment add (the output limit,
the options, the model name).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from modelway.providers.base import UpstreamRequest, UpstreamResponse

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.dialects.stream import StreamTranslation
    from modelway.proxy.incoming import Incoming

Headers = Sequence[tuple[bytes, bytes]]


class Translation:
    """One crossing, for one attempt. Subclasses set `name`, `path` and the four
    `translate`, `answer`, `error`, `stream`."""

    name: ClassVar[str]  # the crossing, as the log and the access log show it: "anthropic→openai"
    path: ClassVar[str]  # where the provider takes it, relative to its base_url: "chat/completions"
    local: ClassVar[bool] = False  # answered by the gateway itself, the provider never asked (local_body)

    __slots__ = ("deployment", "request", "shown", "target")

    def __init__(self, request: Incoming, deployment: Deployment, shown: str | None) -> None:
        self.request = request
        self.deployment = deployment
        self.shown = shown  # the model answers name (response_model: requested); None: the upstream's
        self.target = ""  # the model name sent upstream, once `outgoing` has run

    def outgoing(self, model: str, headers: Headers, fresh: bool) -> UpstreamRequest:
        """The request for the provider: the translated body, with the deployment's options
        merged over it (they are in the provider's dialect) and its model name."""
        deployment = self.deployment
        self.target = deployment.upstream_model or model
        body = self.translate()
        if deployment.options:
            body.update(deployment.options)
        body["model"] = self.target
        return UpstreamRequest(
            path=self.path,
            client_path="/v1/" + self.path,  # what an `endpoint` without a path appends
            headers=self.headers(headers),
            body=encode(body),
            stream=self.request.stream,
            fresh=fresh,
        )

    def translate(self) -> dict[str, Any]:
        """The client's body in the provider's dialect (raises BadRequest naming what it cannot read)."""
        raise NotImplementedError

    def headers(self, headers: Headers) -> Headers:
        """The client headers this provider gets (all that are fit to forward, by default)."""
        return headers

    def answer(self, body: bytes) -> bytes:
        """A 2xx non-stream answer, in the client's dialect."""
        raise NotImplementedError

    def error(self, status: int, body: bytes) -> bytes:
        """An upstream error answer, in the client's dialect, its status and message kept."""
        raise NotImplementedError

    def stream(self) -> StreamTranslation:
        """A new translator for this attempt's stream."""
        raise NotImplementedError

    def local_body(self) -> bytes:
        raise NotImplementedError

    def shown_model(self) -> str:
        """The model a translator that needs one names: the client's, or the one sent upstream."""
        return self.shown or self.target


def encode(body: dict[str, Any]) -> bytes:
    """orjson, or the standard library for what orjson refuses (an integer above 64 bits in
    a deployment's options)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


class LocalResponse(UpstreamResponse):
    """The answer of a translation that answers itself (`Translation.local`), shaped as an
    upstream's so that the attempt loop and the relay treat it like any other."""

    def __init__(self, body: bytes) -> None:
        self.status = 200
        self.headers = [(b"content-type", b"application/json")]
        self.content_type = "application/json"
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    def close(self) -> None:
        return None
