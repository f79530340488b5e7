"""Provider quota awareness: upstreams such as OpenAI report what is left of their rate
limits in `x-ratelimit-remaining-requests` / `-tokens` (with `-limit-*` and `-reset-*`).
A deployment whose remaining share drops below LOW_SHARE is deprioritised until its
window resets — other candidates of the same priority go first — instead of waiting for
it to answer 429."""

from __future__ import annotations

import re
from collections.abc import Sequence

LOW_SHARE = 0.05  # below 5 % of the limit left
LOW_ABSOLUTE = 1  # or at most this many requests left, when no limit is reported
DEFAULT_RESET_S = 1.0
MAX_RESET_S = 120.0
PREFIX = b"x-ratelimit-"
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_reset(value: str) -> float:
    """OpenAI's reset durations: "1s", "6m0s", "20ms", or plain seconds."""
    try:
        return min(float(value), MAX_RESET_S)
    except ValueError:
        pass
    total = sum(float(n) * UNIT_S[unit] for n, unit in DURATION.findall(value))
    return min(total, MAX_RESET_S) if total > 0 else DEFAULT_RESET_S


def low_until(headers: Sequence[tuple[bytes, bytes]], now: float) -> float | None:
    """When a deployment that answered with these headers stops being low, or None."""
    found: dict[bytes, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith(PREFIX):
            found[lowered[len(PREFIX) :]] = value.decode("latin-1")
    if not found:
        return None
    until: float | None = None
    for kind in (b"requests", b"tokens"):
        remaining = _number(found.get(b"remaining-" + kind))
        if remaining is None:
            continue
        limit = _number(found.get(b"limit-" + kind))
        low = remaining <= LOW_ABSOLUTE if not limit else remaining / limit < LOW_SHARE
        if low:
            reset = found.get(b"reset-" + kind)
            end = now + (parse_reset(reset) if reset else DEFAULT_RESET_S)
            until = end if until is None else max(until, end)
    return until


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
