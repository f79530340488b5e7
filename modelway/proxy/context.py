"""What one request carries through the pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from modelway.config.schema import HashOn
    from modelway.proxy.auth import ClientIdentity
    from modelway.runtime import Runtime

NO_METRICS: Mapping[str, float] = {}


@dataclass(slots=True)
class RequestContext:
    runtime: Runtime
    scope: dict[str, Any]
    path: str  # as the client sent it, e.g. "/v1/chat/completions"
    upstream_path: str  # relative to a provider's base_url, e.g. "chat/completions"
    payload: dict[str, Any]
    raw_body: bytes
    raw_headers: dict[bytes, bytes]  # every client header, lower-case names (the last of repeated ones)
    forward_headers: list[tuple[bytes, bytes]]  # the raw pairs fit to send upstream
    original_model: str | None = None  # as the client sent it
    requested_model: str = ""  # after model_mapping: the public model
    stream: bool = False
    anthropic: bool = False
    client: ClientIdentity | None = None
    # Headers added to whatever answer this request gets (e.g. x-modelway-route when debugging).
    extra_response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    _query: dict[str, str] | None = field(default=None, repr=False)
    _headers: dict[str, str] | None = field(default=None, repr=False)

    @property
    def headers(self) -> dict[str, str]:
        """Every client header, decoded on first use: most requests need only a few, read
        raw from `raw_headers`."""
        if self._headers is None:
            self._headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.raw_headers.items()}
        return self._headers

    def header(self, name: bytes) -> str | None:
        value = self.raw_headers.get(name)
        return None if value is None else value.decode("latin-1")

    @property
    def query_string(self) -> str:
        raw: bytes = self.scope.get("query_string", b"")
        return raw.decode("latin-1")

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query

    @property
    def client_ip(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    def hash_key(self, hash_on: HashOn) -> str | None:
        """The consistent-hash key this request carries, or None."""
        source, name = hash_on.source, (hash_on.name or "").lower()
        if source == "header":
            return self.headers.get(name) or None
        if source == "query":
            return self.query.get(hash_on.name or "") or None
        if source == "cookie":
            raw = self.headers.get("cookie")
            if not raw:
                return None
            morsel = SimpleCookie(raw).get(hash_on.name or "")
            return morsel.value if morsel else None
        if source == "consumer":
            return self.client.name if self.client else None
        return self.client_ip

    def load_metrics(self) -> Mapping[str, float]:
        """External load metrics snapshot for least_load; empty until a metrics source runs."""
        source = self.runtime.load_metrics
        return source.snapshot() if source is not None else NO_METRICS
