"""A provider's credentials: `auth`, or a pool (`keys`) used in rotation.

A pooled key answered 401/403 is disabled, but not for good: a client can cause such an
answer (a header or field the provider refuses), and one client must not be able to take
every key of a pool out until a restart. A disabled key is usable again once its backoff
has passed; the request that picks it then tests it, and the pick re-arms the timer, so one
request per backoff period does. An answer other than 401/403 enables the key again;
another 401/403 doubles the backoff (`routing.cooldown.key_retry_s`, doubling up to
`key_retry_max_s`; the policy is modelway.failover.policy's). A key answered 429 cools down
(for Retry-After, else the cooldown period). Keys are named by their index in logs, never by
value. A provider with no usable key is out of routing.
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
    disabled: bool = False  # answered 401/403: tested again from `retry_at`
    retry_at: float = 0.0
    backoff_s: float = 0.0  # the wait before the next test
    tested: bool = False  # picked for a test since it was disabled or its backoff last grew
    cooled_until: float = 0.0

    def usable(self, now: float) -> bool:
        return self.cooled_until <= now and (not self.disabled or self.retry_at <= now)

    def usable_at(self) -> float:
        return max(self.cooled_until, self.retry_at) if self.disabled else self.cooled_until


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
                if candidate.disabled:  # due for a test: this request is it, the next waits
                    candidate.retry_at = now + candidate.backoff_s
                    candidate.tested = True
                    log.info("provider %s: testing disabled key #%d again", self.provider, candidate.index)
                return candidate
        return None

    def has_usable(self, now: float, exclude: set[int] | frozenset[int] = frozenset()) -> bool:
        if not self.pooled:  # the common case, on every candidate of every request
            only = self.credentials[0]
            return not only.disabled and only.cooled_until <= now and (not exclude or 0 not in exclude)
        return any(c.index not in exclude and c.usable(now) for c in self.credentials)

    def soonest_usable_at(self) -> float:
        return min(c.usable_at() for c in self.credentials)

    def disable(self, credential: Credential, status: int, now: float, first_s: float, max_s: float) -> bool:
        """A 401/403: out of rotation for `first_s`, or, when the key was tested since it was
        disabled (this is that test's answer, or one as late), for twice as long as before.
        True when that changed the key's state."""
        if not credential.disabled:
            credential.disabled = True
            credential.backoff_s = first_s
            log.warning("provider %s: key #%d disabled after HTTP %d; tried again in %g s",
                        self.provider, credential.index, status, first_s)
        elif credential.tested:
            credential.backoff_s = min(credential.backoff_s * 2, max_s)
            log.warning("provider %s: key #%d still answers HTTP %d; tried again in %g s",
                        self.provider, credential.index, status, credential.backoff_s)
        else:
            return False  # an answer to a request sent before the key was disabled: nothing new
        credential.tested = False
        credential.retry_at = now + credential.backoff_s
        return True

    def enable(self, credential: Credential) -> bool:
        """A disabled key answered something other than 401/403: back in rotation."""
        if not credential.disabled:
            return False
        credential.disabled = credential.tested = False
        credential.backoff_s = credential.retry_at = 0.0
        log.warning("provider %s: key #%d enabled again", self.provider, credential.index)
        return True

    def cool(self, credential: Credential, until: float) -> bool:
        if until <= credential.cooled_until:
            return False
        credential.cooled_until = until
        log.info("provider %s: key #%d cooling down after HTTP 429", self.provider, credential.index)
        return True
