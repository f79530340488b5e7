"""A provider's credentials: `auth`, or a pool (`keys`) used in rotation.

A key answered 401/403 is disabled for the life of this runtime; a key answered 429
cools down (for Retry-After, else the cooldown period). Keys are named by their index
in logs, never by value. A provider with no usable key is out of routing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from modelway.config.schema import ProviderAuth

log = logging.getLogger("modelway.credentials")


@dataclass(slots=True, eq=False)
class Credential:
    index: int
    auth: ProviderAuth
    disabled: bool = False
    cooled_until: float = 0.0

    def usable(self, now: float) -> bool:
        return not self.disabled and self.cooled_until <= now


class CredentialPool:
    __slots__ = ("_next", "credentials", "pooled", "provider")

    def __init__(self, provider: str, auth: ProviderAuth, keys: list[ProviderAuth]) -> None:
        self.provider = provider
        self.pooled = bool(keys)
        self.credentials = [Credential(i, a) for i, a in enumerate(keys or [auth])]
        self._next = 0

    def pick(self, now: float, exclude: set[int] | frozenset[int] = frozenset()) -> Credential | None:
        """The next usable credential in rotation, skipping `exclude`d indexes."""
        credentials = self.credentials
        if not self.pooled:
            only = credentials[0]
            return only if only.index not in exclude and only.usable(now) else None
        count = len(credentials)
        for step in range(count):
            candidate = credentials[(self._next + step) % count]
            if candidate.index not in exclude and candidate.usable(now):
                self._next = (candidate.index + 1) % count
                return candidate
        return None

    def has_usable(self, now: float, exclude: set[int] | frozenset[int] = frozenset()) -> bool:
        if not self.pooled:  # the common case, on every candidate of every request
            only = self.credentials[0]
            return not only.disabled and only.cooled_until <= now and (not exclude or 0 not in exclude)
        return any(c.index not in exclude and c.usable(now) for c in self.credentials)

    def soonest_usable_at(self) -> float | None:
        cooled = [c.cooled_until for c in self.credentials if not c.disabled]
        return min(cooled) if cooled else None

    def disable(self, credential: Credential, status: int) -> None:
        if not credential.disabled:
            credential.disabled = True
            log.warning("provider %s: key #%d disabled after HTTP %d", self.provider, credential.index, status)

    def cool(self, credential: Credential, until: float) -> None:
        if until > credential.cooled_until:
            credential.cooled_until = until
            log.info("provider %s: key #%d cooling down after HTTP 429", self.provider, credential.index)
