"""A backend's prefix cache, as vLLM's automatic prefix caching keeps it: the KV of whole
blocks of `block_tokens` tokens, up to `capacity_tokens`, least recently used evicted first.

A prompt is a chain of segments (a system prompt, each message, each answer), each named by
an identity that stands for the whole prompt up to its end — as chained block hashes do —
so two prompts share a segment only if they share everything before it too. A segment
`(identity, end)` covers tokens [previous end, end); its blocks are those that end inside
it: [⌊start/B⌋·B, ⌊end/B⌋·B). A block that straddles two segments belongs to the later one
(its content depends on both), and the tokens after the last whole block are never cached.

The cache keeps, per segment identity, how far its blocks are held: an operation costs one
step per segment, not per block. Eviction order is vLLM's: least recently used first, and
among blocks used at the same time the later ones in the prompt first (a segment is touched
before the ones it extends, so its children leave before it does). Blocks of running
requests cannot be evicted in vLLM; here the prompt is touched again when its request ends
(with its answer, which the next turn of a conversation reads), which restores them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

Segment = tuple[int, int]  # (identity, end token): the prompt up to `end` is named `identity`


class PrefixCache:
    __slots__ = ("block", "capacity", "nodes", "used")

    def __init__(self, capacity_tokens: int, block_tokens: int = 16) -> None:
        self.capacity = capacity_tokens
        self.block = block_tokens
        self.used = 0  # tokens held
        # identity -> [first token of its blocks, end of the blocks held]; least recent first
        self.nodes: OrderedDict[int, list[int]] = OrderedDict()

    def cached(self, segments: Sequence[Segment]) -> int:
        """How many leading tokens of this prompt are held (whole blocks)."""
        block = self.block
        start = 0
        hit = 0
        nodes = self.nodes
        for identity, end in segments:
            low, high = start // block * block, end // block * block
            start = end
            if high <= low:
                continue  # inside one block that a later segment completes
            held = nodes.get(identity)
            if held is None:
                return hit
            if held[1] < high:
                return max(held[1], hit)
            hit = high
        return hit

    def insert(self, segments: Sequence[Segment]) -> None:
        """The prompt's blocks are computed (or used again): hold them all, most recent first."""
        if self.capacity <= 0:
            return
        block = self.block
        nodes = self.nodes
        spans: list[tuple[int, int, int]] = []
        start = 0
        for identity, end in segments:
            low, high = start // block * block, end // block * block
            start = end
            if high > low:
                spans.append((identity, low, high))
        for identity, low, high in reversed(spans):  # the first segment ends up most recent
            held = nodes.get(identity)
            if held is None:
                nodes[identity] = [low, high]
                self.used += high - low
            else:
                if held[1] < high:
                    self.used += high - held[1]
                    held[1] = high
                nodes.move_to_end(identity)
        self._evict()

    def _evict(self) -> None:
        nodes = self.nodes
        block = self.block
        while self.used > self.capacity and nodes:
            identity, held = next(iter(nodes.items()))
            excess = self.used - self.capacity
            size = held[1] - held[0]
            if size <= excess:
                del nodes[identity]
                self.used -= size
            else:  # drop its last blocks only
                drop = -(-excess // block) * block
                held[1] -= drop
                self.used -= drop
                if held[1] <= held[0]:
                    del nodes[identity]
