"""The last routing decisions of one process, for the status page (/ui).

Recording one is a tuple appended to a bounded deque on the request path; turning them
into words ("strategy weighted_round_robin, fallback of chat-a, attempt 2") is left to
the page's reads.
"""

from __future__ import annotations

import time
from collections import deque
from typing import NamedTuple

RECENT_DECISIONS = 50


class Decision(NamedTuple):
    at: float  # wall-clock time
    model: str  # the public model the client asked for (after mapping)
    served_by: str  # the public model whose deployment answered: another one after a fallback
    provider: str
    status: int | str
    attempts: int


Recorded = tuple[float, str, str, str, int | str, int]  # a Decision's fields: a plain tuple is cheaper to make


class RecentDecisions:
    """The last few routing decisions, newest last."""

    __slots__ = ("_items",)

    def __init__(self, size: int = RECENT_DECISIONS) -> None:
        self._items: deque[Recorded] = deque(maxlen=size)

    def add(self, model: str, served_by: str, provider: str, status: int | str, attempts: int) -> None:
        self._items.append((time.time(), model, served_by, provider, status, attempts))

    @property
    def items(self) -> list[Decision]:
        return [Decision._make(item) for item in self._items]
