"""prefix_affinity's affinity tables shared by gateway instances (the redis state backend).

Each route's table stays in this process (a `MemoryAffinity`), so `matches` reads only
local memory. `record` records locally at once and appends to one bounded outbox: a
deque of at most OUTBOX_MAX records, the oldest dropped when full (while Redis is down,
say) — affinity is a hint, and a lost record costs a cache hit, never an answer. That
append is all sharing adds to the request path.

The state backend's ticker takes the outbox every INFLIGHT_INTERVAL_S as one `batch()`;
its reader hands the other instances' batches to `apply`. A record names its deployment
by `Deployment.key` (public model, provider, upstream model), the same on every instance
and across reloads, and carries the prompt's size and all its keys (not only those the
local `record` wrote, from the level it knew on: another instance may lack the shallower
ones, having started since or evicted them). Applied elsewhere, it records them for the
deployment of that key there, if there is one: an instance whose config lacks it ignores
the record. `modelway simulate --share all` models exactly this (simulate/view.py).

A reload builds new routes, whose tables are shared as well; each takes over the
contents of the table its public model had (its deployments matched by key), so the
conversations it knew keep their deployments.

A batch is JSON: a list of `[deployment key, prompt bytes, key, key, ...]`.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from modelway.strategies.prefix import BOUNDARIES, Prefix

if TYPE_CHECKING:
    from modelway.deployment import Deployment
    from modelway.strategies.affinity import AffinityTable, MemoryAffinity

log = logging.getLogger("modelway.state")

OUTBOX_MAX = 4096  # records waiting to be published: a quarter second of 16,000 requests a second

Pending = tuple["SharedAffinity", Prefix, int]  # (table, prefix, deployment index)


class SharedAffinity:
    """A route's table: the local one, its records also queued for the other instances."""

    __slots__ = ("__weakref__", "indexes", "keys", "local", "outbox")

    def __init__(self, local: MemoryAffinity, deployments: Sequence[Deployment], outbox: deque[Pending]) -> None:
        self.local = local
        self.outbox = outbox
        self.keys = {d.index: d.key for d in deployments}
        self.indexes: dict[str, int] = {}
        for d in deployments:
            self.indexes.setdefault(d.key, d.index)  # a deployment twice in a model: shared state is the first's

    def matches(self, prefix: Prefix, wanted: Collection[int]) -> dict[int, tuple[int, int]]:
        return self.local.matches(prefix, wanted)

    def record(self, prefix: Prefix, index: int, known: int) -> None:
        self.local.record(prefix, index, known)
        self.outbox.append((self, prefix, index))


class AffinityExchange:
    """This instance's shared tables, by the deployments they hold, and the records they
    made since the last batch."""

    def __init__(self, outbox_max: int = OUTBOX_MAX) -> None:
        self.outbox: deque[Pending] = deque(maxlen=outbox_max)
        # deployment key → the live tables that have it: a reload's new runtime and, until it
        # is gone, the old one (weak: a table lives as long as its strategy)
        self.tables: dict[str, weakref.WeakSet[SharedAffinity]] = {}
        self.latest: dict[str, weakref.ref[SharedAffinity]] = {}  # public model → its latest table
        self.sent = 0  # records published
        self.applied = 0  # records of other instances applied

    def table(self, deployments: Sequence[Deployment], local: MemoryAffinity) -> AffinityTable:
        """The table a route's strategy keeps: `local`, shared. A route of one deployment
        has nothing to choose: its table stays local."""
        if len({d.key for d in deployments}) < 2:
            return local
        for key in [k for k, held in self.tables.items() if not held]:  # those of routes gone
            del self.tables[key]
        for name in [n for n, ref in self.latest.items() if ref() is None]:
            del self.latest[name]
        shared = SharedAffinity(local, deployments, self.outbox)
        name = deployments[0].model_name
        before = self.latest.get(name)
        old = before() if before is not None else None
        if old is not None and not len(local):  # a reload: what the old route knew
            local.adopt(old.local, {i: shared.indexes[k] for i, k in old.keys.items() if k in shared.indexes})
        self.latest[name] = weakref.ref(shared)
        for key in shared.indexes:
            self.tables.setdefault(key, weakref.WeakSet()).add(shared)
        return shared

    def batch(self) -> bytes | None:
        """The records since the last batch, encoded; None when there are none."""
        outbox = self.outbox
        if not outbox:
            return None
        records: list[list[Any]] = []
        while outbox:
            table, prefix, index = outbox.popleft()
            records.append([table.keys[index], prefix.size, *prefix.keys])
        self.sent += len(records)
        return orjson.dumps(records)

    def apply(self, payload: bytes) -> None:
        """Another instance's batch, into the local tables of the deployments it names."""
        try:
            records = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("state backend: an affinity batch that is not JSON, ignored")
            return
        if not isinstance(records, list):
            return
        tables = self.tables
        for record in records:
            if not isinstance(record, list) or len(record) < 3:
                continue
            key, size, *keys = record
            held = tables.get(key) if isinstance(key, str) else None
            if (not held or not isinstance(size, int) or len(keys) > len(BOUNDARIES)
                    or not all(isinstance(k, int) for k in keys)):
                continue
            prefix = Prefix(tuple(keys), size)
            for table in held:
                table.local.record(prefix, table.indexes[key], 0)
            self.applied += 1

    def describe(self) -> Mapping[str, int]:
        return {"affinity_sent": self.sent, "affinity_applied": self.applied}
