"""A hash ring with virtual nodes keyed by the model's `hash_on`.

Ring points are derived from each deployment's identity (provider + upstream model),
not its position in the config, so adding or removing one deployment moves only the
keys that land on its points. A key whose deployment is filtered out (cooling, tried)
walks on to the next point. A request without the key falls back to smooth WRR.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelway.strategies.base import BaseStrategy
from modelway.strategies.weighted_round_robin import SmoothWeighted

if TYPE_CHECKING:
    from modelway.config.schema import ModelConfig
    from modelway.deployment import Deployment
    from modelway.strategies.base import View

VIRTUAL_NODES_PER_WEIGHT = 160


def ring_hash(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


class ConsistentHash(BaseStrategy):
    def __init__(self, model: ModelConfig, deployments: Sequence[Deployment]) -> None:
        super().__init__(model, deployments)
        self._wrr = SmoothWeighted()
        points: list[tuple[int, int]] = []
        seen: dict[str, int] = {}
        for deployment in deployments:
            identity = deployment.name
            seen[identity] = seen.get(identity, 0) + 1
            if seen[identity] > 1:
                identity = f"{identity}~{seen[identity]}"
            for vnode in range(VIRTUAL_NODES_PER_WEIGHT * deployment.weight):
                points.append((ring_hash(f"{identity}#{vnode}"), deployment.index))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [i for _, i in points]

    def choose(self, view: View, candidates: Sequence[Deployment]) -> Deployment:
        key = view.hash_key(self.model.hash_on) if self.model.hash_on else None
        if key is None or len(candidates) == 1:
            return self._wrr.pick(candidates, view.now)
        by_index = {d.index: d for d in candidates}
        start = bisect.bisect(self._hashes, ring_hash(key))
        owners = self._owners
        for step in range(len(owners)):
            found = by_index.get(owners[(start + step) % len(owners)])
            if found is not None:
                return found
        return self._wrr.pick(candidates, view.now)
