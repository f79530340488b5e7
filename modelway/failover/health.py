"""Passive health: cooldowns and slow start, per deployment.

A deployment that fails `cooldown.failures` times (failures of a retry_on class, or a
stream that broke) within `window_s` is skipped for `cooldown_s`. An upstream Retry-After
on 429/503 cools it for exactly that long, and holds it: no probe goes there before then.
Cooling again extends and never shortens. When a cooldown ends, the deployment's weight
ramps up over SLOW_START_S rather than taking a full share at once (nginx's slow_start idea).

A cooldown is the gateway's guess; while every deployment of a model is cooling, one
request at a time probes the one that recovers first (failover/chain.py), and a probe
that succeeds ends its cooldown (`recovered`).

The records live behind `HealthState`; this module's `MemoryHealth` keeps them in the
process, and `state.shared.SharedHealth` (the redis state backend's) also publishes each
change to the other instances, which apply it to their own records. Reads on the request
path are plain attribute reads on the record, whichever it is.
"""

from __future__ import annotations

import email.utils
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from modelway.config.schema import CooldownConfig

if TYPE_CHECKING:
    from modelway.providers.credentials import Credential

SLOW_START_S = 10.0
SLOW_START_FLOOR = 0.1  # a recovering deployment starts at a tenth of its weight
MAX_RETRY_AFTER_S = 3600.0


@dataclass(slots=True)
class HealthRecord:
    failures: deque[float] = field(default_factory=deque)
    cooled_until: float = 0.0  # monotonic time; 0: never cooled
    ramp_until: float = 0.0  # slow start ends here
    held_until: float = 0.0  # the upstream's own Retry-After: not even probed before this
    probing: bool = False  # a probe request is in flight to this deployment (per instance)
    key: str = ""  # the deployment's key (Deployment.key): its name in shared state

    def cooling(self, now: float) -> bool:
        return self.cooled_until > now

    def weight_factor(self, now: float) -> float:
        if self.ramp_until <= now:
            return 1.0
        ramp_start = self.ramp_until - SLOW_START_S
        if now <= ramp_start:
            return SLOW_START_FLOOR
        return max(SLOW_START_FLOOR, (now - ramp_start) / SLOW_START_S)


class HealthState(Protocol):
    def record(self, key: str) -> HealthRecord: ...

    def failure(self, record: HealthRecord, now: float) -> bool: ...

    def cool(self, record: HealthRecord, until: float) -> None: ...

    def hold(self, record: HealthRecord, until: float) -> None: ...

    def recovered(self, record: HealthRecord, now: float) -> None: ...

    def credential(self, provider: str, credential: Credential) -> None:
        """A key of `provider`'s pool was disabled, enabled or cooled (one process: nothing to do)."""


class MemoryHealth:
    def __init__(self, config: CooldownConfig) -> None:
        self.threshold = config.failures
        self.window_s = config.window_s
        self.cooldown_s = config.cooldown_s
        self._records: dict[str, HealthRecord] = {}

    def record(self, key: str) -> HealthRecord:
        found = self._records.get(key)
        if found is None:
            found = self._records[key] = HealthRecord(key=key)
        return found

    def known(self, key: str) -> HealthRecord | None:
        return self._records.get(key)

    def records(self) -> list[HealthRecord]:
        return list(self._records.values())

    def adopt(self, other: MemoryHealth) -> None:
        """Take over another one's records (a reload that changed the state backend)."""
        self._records = other._records

    def failure(self, record: HealthRecord, now: float) -> bool:
        """Count one failure; True when it put the deployment in cooldown."""
        failures = record.failures
        failures.append(now)
        horizon = now - self.window_s
        while failures and failures[0] < horizon:
            failures.popleft()
        if len(failures) >= self.threshold and self.cooldown_s > 0:
            failures.clear()
            self.cool(record, now + self.cooldown_s)
            return True
        return False

    def cool(self, record: HealthRecord, until: float) -> None:
        if until > record.cooled_until:
            record.cooled_until = until
            record.ramp_until = until + SLOW_START_S

    def hold(self, record: HealthRecord, until: float) -> None:
        """Cool until the time the upstream named, and send no probe before it."""
        self.cool(record, until)
        record.held_until = max(record.held_until, until)

    def recovered(self, record: HealthRecord, now: float) -> None:
        """A probe succeeded: the cooldown ends now, and slow start begins."""
        if record.cooled_until > now:
            record.cooled_until = now
            record.ramp_until = now + SLOW_START_S
        record.failures.clear()

    def credential(self, provider: str, credential: Credential) -> None:
        return None


def parse_retry_after(value: str | None, now_wall: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now_wall is None else now_wall)
    if seconds != seconds or seconds <= 0:  # NaN or past
        return None
    return min(seconds, MAX_RETRY_AFTER_S)
