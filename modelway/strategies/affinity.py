"""Where `prefix_affinity` remembers which deployment each prompt prefix went to.

The table maps a prefix key (strategies/prefix.py) to the deployments that last got a
request with that prefix (at most HOLDERS, the latest first), each with the size of that
request's prompt: those whose engines most likely hold its KV cache, and how much of it.
A conversation's keys have one; a system prompt that many requests share, spread by the
load bound, gets several. It is bounded: least recently used keys go first, past
`capacity` keys (about 250 bytes each, 550 with four holders).

How much of a prompt a deployment holds: key i matched says the first BOUNDARIES[i]
bytes; the prompt recorded with it says more — a conversation's next turn extends the
last one's prompt, so it shares all of it — but never past the next boundary, where the
two prompts could part without a key to show it.

`AffinityTable` is the interface, so that a table shared by gateway instances can stand
in for the memory one: a strategy that keeps one (`KeepsAffinity`) is handed, once built,
to the state backend, which with redis wraps it in a table whose records also reach the
other instances (state/affinity.py); with memory it stays as it is.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from modelway.strategies.prefix import BOUNDARIES, Prefix

if TYPE_CHECKING:
    from modelway.deployment import Deployment

DEFAULT_CAPACITY = 32_768  # a conversation takes about ten keys
HOLDERS = 4


class AffinityTable(Protocol):
    def matches(self, prefix: Prefix, wanted: Collection[int]) -> dict[int, tuple[int, int]]:
        """For each deployment index in `wanted` that a key of `prefix` is recorded for:
        the deepest level recorded for it, and the bytes of the prompt it likely holds."""

    def record(self, prefix: Prefix, index: int, known: int) -> None:
        """A request with this prefix went to deployment `index`; `known` is the level up
        to which its keys were recorded for it already (-1: none)."""


class KeepsAffinity(Protocol):
    """A strategy with an affinity table (prefix_affinity, and a user's strategy alike): one
    whose `affinity` is a MemoryAffinity once built gets from the route table the one the
    state backend gives for it (routes.py: the same with memory, shared with redis)."""

    affinity: AffinityTable


class MemoryAffinity:
    """The table in this process: an LRU dict of key → ((deployment index, prompt bytes), ...),
    the latest first."""

    __slots__ = ("capacity", "table")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.table: OrderedDict[int, tuple[tuple[int, int], ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.table)

    def matches(self, prefix: Prefix, wanted: Collection[int]) -> dict[int, tuple[int, int]]:
        found: dict[int, tuple[int, int]] = {}
        table = self.table
        keys = prefix.keys
        for level in range(len(keys) - 1, -1, -1):
            holders = table.get(keys[level])
            if holders is None:
                continue
            limit = BOUNDARIES[level + 1] if level + 1 < len(BOUNDARIES) else prefix.size
            for index, size in holders:
                if index not in found and index in wanted:
                    found[index] = (level, max(BOUNDARIES[level], min(size, limit, prefix.size)))
            if len(found) == len(wanted):
                break
        return found

    def record(self, prefix: Prefix, index: int, known: int) -> None:
        table = self.table
        keys = prefix.keys
        entry = (index, prefix.size)
        for key in keys[max(known, 0) :]:  # the known level too: its prompt size is news
            holders = table.get(key)
            if holders is None:
                table[key] = (entry,)
            else:
                if holders[0] != entry:
                    table[key] = (entry, *(h for h in holders if h[0] != index))[:HOLDERS]
                table.move_to_end(key)
        while len(table) > self.capacity:
            table.popitem(last=False)

    def adopt(self, other: MemoryAffinity, moved: Mapping[int, int]) -> None:
        """Take `other`'s keys over, in their LRU order (a reload's new table, its
        predecessor's), each holder's deployment index mapped by `moved`: holders not in
        it are left out, and keys left with none."""
        table = self.table
        for key, holders in other.table.items():
            kept = tuple((moved[index], size) for index, size in holders if index in moved)
            if kept:
                table[key] = kept
        while len(table) > self.capacity:
            table.popitem(last=False)


# What a route's strategy gets its table from: the state backend's `affinity`, given the
# route's deployments and the table the strategy was built with.
ShareAffinity = Callable[[Sequence["Deployment"], MemoryAffinity], AffinityTable]
