"""Client keys: who is calling and which public models they may use.

Keys are compared by SHA-256 digest, so the configured secret is never kept in a form a
log line could leak, and lookup costs one hash per request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from modelway.config.schema import AuthConfig, ClientKey
from modelway.errors import Forbidden, Unauthorized, clip
from modelway.mapping import PatternTable, pattern_set
from modelway.state.limits import Limits


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    name: str
    key: ClientKey
    allowed: PatternTable[bool] | None
    limits: Limits | None = None  # rpm/tpm; None: the key has no limits and pays nothing for them

    def may_use(self, model: str) -> bool:
        return self.allowed is None or self.allowed.lookup(model) is not None


class ClientKeys:
    def __init__(self, config: AuthConfig) -> None:
        self._by_digest: dict[str, ClientIdentity] = {}
        for key in config.keys:
            digest = key.key_sha256.lower() if key.key_sha256 else hashlib.sha256(key.key.encode()).hexdigest()  # type: ignore[union-attr]
            allowed = pattern_set(key.models) if key.models is not None else None
            limits = Limits(key.rpm, key.tpm)
            self._by_digest[digest] = ClientIdentity(key.name, key, allowed, limits if limits.any else None)

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    @property
    def limited(self) -> bool:
        """Some key has rpm or tpm."""
        return any(identity.limits is not None for identity in self._by_digest.values())

    def identify(self, authorization: str | None, api_key: str | None) -> ClientIdentity:
        secret = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                secret = value.strip()
        if secret is None and api_key:
            secret = api_key.strip()
        if not secret:
            raise Unauthorized("missing API key: send Authorization: Bearer <key> or x-api-key: <key>")
        identity = self._by_digest.get(hashlib.sha256(secret.encode()).hexdigest())
        if identity is None:
            raise Unauthorized("invalid API key")
        return identity


def authorize(identity: ClientIdentity | None, model: str) -> None:
    if identity is not None and not identity.may_use(model):
        raise Forbidden(f"key {identity.name!r} may not use model {clip(model)!r}", param="model")
