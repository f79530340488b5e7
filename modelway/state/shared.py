"""Health shared by instances: every change of a deployment's health or of a pool key's
state becomes an event that the state backend publishes (state/redis_state.py), and every
other instance applies it to its own records, so the request path reads them locally.

    f   a failure of deployment k            → counted in the window, as a local one is
    c   deployment k cools for s more seconds → cooled (extended, never shortened)
    h   deployment k is held for s seconds    → cooled and held (the upstream's Retry-After)
    r   a probe of deployment k succeeded     → its cooldown ends
    k   key i of provider k: disabled (d), tested again in s seconds after a backoff of b;
        cooling for c more seconds            → the same on this instance's copy of the key

Times travel as durations, and an event read late (catching up after a start or an outage)
is aged by the time since Redis stamped it, so no two hosts' clocks are compared. Applying an
event never publishes one: `quiet` is set meanwhile.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from modelway.config.schema import CooldownConfig
from modelway.failover.health import HealthRecord, MemoryHealth

if TYPE_CHECKING:
    from modelway.providers.base import Provider
    from modelway.providers.credentials import Credential

log = logging.getLogger("modelway.state")

Event = dict[str, str]
Publish = Callable[[Event], None]
MAX_RECORDS = 10_000  # records made for deployments this instance has not built (yet)


def seconds(value: float) -> str:
    return f"{max(0.0, value):.3f}"


class SharedHealth(MemoryHealth):
    def __init__(self, config: CooldownConfig, publish: Publish) -> None:
        super().__init__(config)
        self.publish = publish
        self.quiet = False  # applying another instance's event: nothing to publish

    def failure(self, record: HealthRecord, now: float) -> bool:
        if not self.quiet:
            self.publish({"e": "f", "k": record.key})
        return super().failure(record, now)  # its cooldown, if any, is published by cool()

    def cool(self, record: HealthRecord, until: float) -> None:
        extended = until > record.cooled_until
        super().cool(record, until)
        if extended and not self.quiet:
            self.publish({"e": "c", "k": record.key, "s": seconds(until - time.monotonic())})

    def hold(self, record: HealthRecord, until: float) -> None:
        MemoryHealth.cool(self, record, until)  # one event, "h", says both
        record.held_until = max(record.held_until, until)
        if not self.quiet:
            self.publish({"e": "h", "k": record.key, "s": seconds(until - time.monotonic())})

    def recovered(self, record: HealthRecord, now: float) -> None:
        super().recovered(record, now)
        if not self.quiet:
            self.publish({"e": "r", "k": record.key})

    def credential(self, provider: str, credential: Credential) -> None:
        if not self.quiet:
            self.publish(key_event(provider, credential, time.monotonic()))

    def apply(self, event: Mapping[bytes, bytes], age_s: float, providers: Mapping[str, Provider]) -> None:
        """Apply another instance's event, `age_s` seconds old."""
        kind = event.get(b"e")
        key = event.get(b"k", b"").decode()
        now = time.monotonic()
        self.quiet = True
        try:
            if kind == b"k":
                provider = providers.get(key)
                if provider is not None:
                    apply_key_event(provider, event, age_s, now)
                return
            record = self.known(key) or (self.record(key) if len(self._records) < MAX_RECORDS else None)
            if record is None:
                return
            if kind == b"f":
                self.failure(record, now - age_s)
            elif kind in (b"c", b"h"):
                left = float(event.get(b"s", b"0")) - age_s
                if left > 0:
                    if kind == b"h":
                        self.hold(record, now + left)
                    else:
                        self.cool(record, now + left)
            elif kind == b"r":
                self.recovered(record, now)
        except (ValueError, IndexError):
            log.warning("state backend: an event could not be read: %r", dict(event))
        finally:
            self.quiet = False

    def announcement(self, providers: Mapping[str, Provider]) -> list[Event]:
        """Everything this instance holds that others should know: after Redis was down (and
        may have lost it all), so that the instances reconverge."""
        now = time.monotonic()
        events: list[Event] = []
        for record in self.records():
            if record.held_until > now:
                events.append({"e": "h", "k": record.key, "s": seconds(record.held_until - now)})
            if record.cooled_until > now and record.cooled_until > record.held_until:
                events.append({"e": "c", "k": record.key, "s": seconds(record.cooled_until - now)})
        for name, provider in providers.items():
            pool = provider.credentials
            if pool.pooled:
                events.extend(
                    key_event(name, c, now) for c in pool.credentials if c.disabled or c.cooled_until > now
                )
        return events


def key_event(provider: str, credential: Credential, now: float) -> Event:
    return {
        "e": "k",
        "k": provider,
        "i": str(credential.index),
        "d": "1" if credential.disabled else "0",
        "s": seconds(credential.retry_at - now),
        "b": seconds(credential.backoff_s),
        "c": seconds(credential.cooled_until - now),
    }


def apply_key_event(provider: Provider, event: Mapping[bytes, bytes], age_s: float, now: float) -> None:
    """Another instance's news of a pool key: disabled (with its backoff), enabled, or cooling."""
    pool = provider.credentials
    index = int(event[b"i"])
    if not pool.pooled or not 0 <= index < len(pool.credentials):
        return  # another config: this instance's provider has no such key
    credential = pool.credentials[index]
    if event.get(b"d") == b"1":
        if not credential.disabled:
            log.warning("provider %s: key #%d disabled (by another instance)", pool.provider, index)
        credential.disabled = True
        credential.tested = False
        credential.backoff_s = max(credential.backoff_s, float(event[b"b"]))
        credential.retry_at = max(credential.retry_at, now + float(event[b"s"]) - age_s)
    elif credential.disabled:
        credential.disabled = credential.tested = False
        credential.backoff_s = credential.retry_at = 0.0
        log.warning("provider %s: key #%d enabled again (by another instance)", pool.provider, index)
    cooled = float(event.get(b"c", b"0")) - age_s
    if cooled > 0:
        credential.cooled_until = max(credential.cooled_until, now + cooled)
