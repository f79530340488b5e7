"""One float per provider that orders engines by waiting queue, then running requests,
then KV-cache use — so `least_load` can compare it like any other metric — and its
inverse for strategies that want the parts back (`expected_delay` learns an engine's
concurrency from `running`).

KV use is at most 1 < RUNNING_UNIT, and running is capped below WAITING_UNIT /
RUNNING_UNIT, so comparing scores compares (waiting, running, kv) lexicographically.
"""

from __future__ import annotations

import math
from typing import NamedTuple

PROVIDER_KEY_PREFIX = "provider:"
RUNNING_UNIT = 2.0
WAITING_UNIT = 2.0**21
RUNNING_CAP = WAITING_UNIT / RUNNING_UNIT - 1


class EngineLoad(NamedTuple):
    waiting: float
    running: float
    kv_usage: float


def load_score(waiting: float, running: float, kv_usage: float) -> float:
    """Lower is less loaded: fewer waiting wins; then fewer running; then less KV use."""
    kv = min(max(kv_usage, 0.0), 1.0)
    return max(waiting, 0.0) * WAITING_UNIT + min(max(running, 0.0), RUNNING_CAP) * RUNNING_UNIT + kv


def unpack_score(score: float) -> EngineLoad:
    """The parts of a `load_score` (exact for whole request counts)."""
    waiting = math.floor(score / WAITING_UNIT)
    rest = score - waiting * WAITING_UNIT
    running = math.floor(rest / RUNNING_UNIT)
    return EngineLoad(float(waiting), float(running), rest - running * RUNNING_UNIT)


def provider_key(provider_name: str) -> str:
    """The snapshot key under which a provider-wide score (a Prometheus scrape) is published."""
    return PROVIDER_KEY_PREFIX + provider_name
