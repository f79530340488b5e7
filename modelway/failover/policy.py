"""What a failed attempt means for the deployment and its credential, in one place."""

from __future__ import annotations

import time
from collections.abc import Sequence

from modelway.config.schema import RoutingConfig
from modelway.deployment import Deployment
from modelway.failover import events
from modelway.failover.health import HealthState, MemoryHealth, parse_retry_after
from modelway.providers.credentials import Credential

KEY_STATUSES = frozenset({401, 403})  # the key was refused: disable it for a while
# Always a failure of the deployment, though not a retry_on class (it is never retried).
BROKEN_STREAM = "broken_stream"


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class Failover:
    def __init__(self, routing: RoutingConfig, health: HealthState | None = None) -> None:
        self.retry_on: frozenset[str | int] = frozenset(routing.retry_on)
        self.health: HealthState = health if health is not None else MemoryHealth(routing.cooldown)
        self.cooldown_s = routing.cooldown.cooldown_s
        self.key_retry_s = routing.cooldown.key_retry_s
        self.key_retry_max_s = max(routing.cooldown.key_retry_max_s, self.key_retry_s)

    def error(self, deployment: Deployment, kind: str, now: float | None = None) -> None:
        """A connection error, timeout or broken stream on this deployment."""
        failing = kind in self.retry_on or kind == BROKEN_STREAM
        if failing and self.health.failure(deployment.health, time.monotonic() if now is None else now):
            events.cooled(deployment, deployment.health.cooled_until, f"repeated failures (last: {kind})")

    def recovered(self, deployment: Deployment) -> None:
        """A probe sent while every deployment was cooling got an answer: this one is back."""
        cooling = deployment.health.cooling(time.monotonic())
        self.health.recovered(deployment.health, time.monotonic())
        if cooling:
            events.recovered(deployment)

    def status(
        self,
        deployment: Deployment,
        credential: Credential,
        status: int,
        headers: Sequence[tuple[bytes, bytes]],
        now: float | None = None,
    ) -> bool:
        """Record an upstream answer's status. True when another credential of the same
        deployment may be tried (the failure was the key's, not the deployment's)."""
        pool = deployment.provider.credentials
        if credential.disabled and status not in KEY_STATUSES and pool.enable(credential):
            self.health.credential(pool.provider, credential)  # a disabled key's test passed
        if status < 400:
            return False
        now = time.monotonic() if now is None else now
        if pool.pooled and status in KEY_STATUSES:
            if pool.disable(credential, status, now, self.key_retry_s, self.key_retry_max_s):
                self.health.credential(pool.provider, credential)
            return True
        retry_after = parse_retry_after(header(headers, b"retry-after")) if status in (429, 503) else None
        if pool.pooled and status == 429:
            if pool.cool(credential, now + (retry_after if retry_after is not None else self.cooldown_s)):
                self.health.credential(pool.provider, credential)
            return True
        if retry_after is not None:
            self.health.hold(deployment.health, now + retry_after)
            events.cooled(deployment, deployment.health.cooled_until, f"HTTP {status} with Retry-After")
        if status in self.retry_on and self.health.failure(deployment.health, now):
            events.cooled(deployment, deployment.health.cooled_until, f"repeated failures (last: HTTP {status})")
        return False
