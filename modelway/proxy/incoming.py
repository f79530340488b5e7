"""The first stage: one client request read, checked and parsed into an `Incoming`, the
value every later stage reads and none changes.

    check path (paths.py) → read body (size limit) → check content type → parse JSON
    → check fields → identify client → read the model name

Each failure is a GatewayError (400/401/408/413) that says what is wrong and where.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

from modelway.proxy.body import check_content_type, check_fields, parse_json_object, read_body, read_model
from modelway.proxy.dialect import Dialect, dialect_of
from modelway.proxy.forwarding import forwardable
from modelway.proxy.paths import forward_path, relative

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from modelway.asgi import Receive, Scope
    from modelway.config.schema import HashOn
    from modelway.proxy.auth import ClientIdentity, ClientKeys

REENTRY = "modelway.reentry"  # ASGI scope key of an executor's in-process call; HTTP clients cannot set scope keys
NO_SKIP: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Reentry:
    """What an executor's in-process call carries in its scope (proxy/executor.py): the
    routers to skip (its issuer, and any skipped already, so a chain of executors ends)
    and the caller's client key, which still applies."""

    skip: frozenset[str]
    client: ClientIdentity | None


@dataclass(slots=True)
class Incoming:
    """One parsed client request. Immutable: every field is Final, so mypy refuses a write
    anywhere (not `frozen=True`, whose __init__ would cost ~0.7 µs on every request)."""

    path: Final[str]  # as the client sent it (decoded once), e.g. "/v1/chat/completions"
    upstream_path: Final[str]  # checked, relative to a provider's base_url, percent-encoded (proxy/paths.py)
    dialect: Final[Dialect]  # the API the client speaks: decides the shape of errors and events
    raw_query: Final[bytes]  # for routers and hash keys (query()); never sent upstream (SPEC section 5)
    payload: Final[dict[str, Any]]  # the parsed body; no stage changes it (set_model copies)
    raw_body: Final[bytes]
    raw_headers: Final[Mapping[bytes, bytes]]  # every client header, lower-case names (the last of repeated ones)
    forward_headers: Final[Sequence[tuple[bytes, bytes]]]  # the raw pairs fit to send upstream (proxy/forwarding.py)
    stream: Final[bool]
    original_model: Final[str | None]  # as the client named it at model_mapping.key; None: not named
    client: Final[ClientIdentity | None]  # None on a gateway without client keys
    peer: Final[tuple[str, int] | None]  # the client's address
    skip: Final[frozenset[str]] = NO_SKIP  # routers a re-entered request must not run

    def headers(self) -> dict[str, str]:
        """Every client header, decoded: built on each call, for the few readers that want all."""
        return {k.decode("latin-1"): v.decode("latin-1") for k, v in self.raw_headers.items()}

    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.raw_query.decode("latin-1"), keep_blank_values=True))

    def hash_key(self, hash_on: HashOn) -> str | None:
        """The consistent-hash key this request carries, or None."""
        source, name = hash_on.source, hash_on.name or ""
        if source == "header":
            value = self.raw_headers.get(name.lower().encode("latin-1"))
            return value.decode("latin-1") if value else None
        if source == "query":
            return self.query().get(name) or None
        if source == "cookie":
            raw = self.raw_headers.get(b"cookie")
            if not raw:
                return None
            morsel = SimpleCookie(raw.decode("latin-1")).get(name)
            return morsel.value if morsel else None
        if source == "consumer":
            return self.client.name if self.client else None
        return self.peer[0] if self.peer else None


async def parse(
    scope: Scope, receive: Receive, *, max_body_bytes: int, client_keys: ClientKeys, model_key: tuple[str, ...]
) -> Incoming:
    """Read and check one request. `model_key` is model_mapping.key, split at its dots."""
    path: str = scope["path"]
    forwarded = forward_path(path, scope.get("raw_path"))
    raw_headers: dict[bytes, bytes] = dict(scope["headers"])
    length = raw_headers.get(b"content-length")
    body = await read_body(receive, length.decode("latin-1") if length is not None else None, max_body_bytes)
    content_type = raw_headers.get(b"content-type")
    check_content_type(content_type.decode("latin-1") if content_type is not None else None)
    payload = parse_json_object(body)
    stream = check_fields(payload, path)
    reentry: Reentry | None = scope.get(REENTRY)
    skip = NO_SKIP
    if reentry is not None:  # an executor's in-process call: its caller's key applies
        client, skip = reentry.client, reentry.skip
    elif client_keys.enabled:
        authorization, api_key = raw_headers.get(b"authorization"), raw_headers.get(b"x-api-key")
        client = client_keys.identify(
            authorization.decode("latin-1") if authorization is not None else None,
            api_key.decode("latin-1") if api_key is not None else None,
        )
    else:
        client = None
    return Incoming(
        path,
        relative(forwarded),
        dialect_of(path),
        scope.get("query_string", b""),
        payload,
        body,
        raw_headers,
        forwardable(scope["headers"], raw_headers),
        stream,
        read_model(payload, model_key),
        client,
        scope.get("client"),
        skip,
    )

