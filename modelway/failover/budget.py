"""The retry budget (Envoy's and Finagle's idea): retries may add at most RATIO of the
requests seen over the last WINDOW_S, with a small floor so a quiet gateway can still
retry. A fleet that fails every request therefore sees at most ~1.2 attempts per request
instead of 1 + retries."""

from __future__ import annotations

import time

RATIO = 0.2
MIN_RETRIES = 3  # per window, whatever the traffic
WINDOW_S = 10


class RetryBudget:
    __slots__ = ("_requests", "_retries", "_stamps")

    def __init__(self) -> None:
        # One bucket per second over the window, reused in a ring.
        self._stamps = [-1] * WINDOW_S
        self._requests = [0] * WINDOW_S
        self._retries = [0] * WINDOW_S

    def _bucket(self, now: float) -> int:
        second = int(now)
        slot = second % WINDOW_S
        if self._stamps[slot] != second:
            self._stamps[slot] = second
            self._requests[slot] = 0
            self._retries[slot] = 0
        return slot

    def _totals(self, now: float) -> tuple[int, int]:
        oldest = int(now) - WINDOW_S
        requests = retries = 0
        for slot in range(WINDOW_S):
            if self._stamps[slot] > oldest:
                requests += self._requests[slot]
                retries += self._retries[slot]
        return requests, retries

    def request(self, now: float | None = None) -> None:
        self._requests[self._bucket(time.monotonic() if now is None else now)] += 1

    def try_retry(self, now: float | None = None) -> bool:
        """Spend one retry if the budget allows it."""
        now = time.monotonic() if now is None else now
        requests, retries = self._totals(now)
        if retries + 1 > max(MIN_RETRIES, RATIO * requests):
            return False
        self._retries[self._bucket(now)] += 1
        return True
