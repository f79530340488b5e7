"""Stream checks shared by both directions: the output must not depend on where the
upstream's bytes were split."""

from __future__ import annotations

import random
from typing import Any

from . import golden


def splits(raw: bytes, seed: int) -> list[list[bytes]]:
    """The same bytes cut differently: one byte at a time, in two at every point, and at random."""
    ways = [[raw[i:i + 1] for i in range(len(raw))]]
    ways += [[raw[:i], raw[i:]] for i in range(1, len(raw))]
    rng = random.Random(seed)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(1, 12))))
        ways.append([raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)])
    return ways


def assert_split_anywhere(case: dict[str, Any]) -> None:
    whole = golden.stream_bytes(case)
    raw = "".join(case["input"]).encode()
    for n, chunks in enumerate(splits(raw, seed=len(raw))):
        assert golden.stream_bytes(case, chunks) == whole, f"split #{n} ({[len(c) for c in chunks][:12]}…)"
