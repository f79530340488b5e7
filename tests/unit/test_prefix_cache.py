"""The simulator's prefix cache and the backends that use it, by hand-computed cases: which
blocks a prompt's segments hold, hits, LRU eviction (children before parents, a segment
cut back block by block), and prefill of the uncached part only, one prompt at a time."""

from __future__ import annotations

from modelway.simulate.backends import Backend, BackendSpec, Job
from modelway.simulate.cache import PrefixCache
from modelway.simulate.workload import SimRequest


def test_whole_blocks_only_and_a_block_across_two_segments_belongs_to_the_later() -> None:
    cache = PrefixCache(capacity_tokens=1000, block_tokens=16)
    cache.insert([(1, 40)])  # tokens 0..40: blocks [0, 32); 32..40 is not a whole block
    assert cache.used == 32
    assert cache.cached([(1, 40)]) == 32
    # the same start, then more: block [32, 48) spans both segments and is segment 2's
    assert cache.cached([(1, 40), (2, 70)]) == 32
    cache.insert([(1, 40), (2, 70)])
    assert cache.used == 64 and cache.cached([(1, 40), (2, 70)]) == 64  # [32, 64) added
    assert cache.cached([(1, 40), (9, 70)]) == 32  # another continuation: only the shared part
    assert cache.cached([(7, 40)]) == 0
    # a segment inside one block: it has no block of its own; the next one completes it
    cache.insert([(3, 10), (4, 12), (5, 40)])
    assert cache.nodes[5] == [0, 32] and 3 not in cache.nodes and 4 not in cache.nodes
    assert cache.cached([(3, 10), (4, 12), (5, 40)]) == 32


def test_lru_eviction_takes_children_before_parents_and_cuts_a_segment_back_by_blocks() -> None:
    cache = PrefixCache(capacity_tokens=64, block_tokens=16)
    cache.insert([(1, 40), (2, 70)])  # 1: [0, 32), 2: [32, 64); 64 tokens, full
    cache.insert([(3, 20)])  # 16 more: 16 over, taken from the least recent, segment 2 (the child)
    assert cache.used == 64
    assert cache.nodes[2] == [32, 48]  # cut back by one block
    assert cache.cached([(1, 40), (2, 70)]) == 48
    assert cache.cached([(3, 20)]) == 16
    cache.insert([(1, 40), (2, 70)])  # used again: segment 2 computed again, 3 is now the oldest
    assert cache.used == 64 and 3 not in cache.nodes and cache.cached([(1, 40), (2, 70)]) == 64
    cache.insert([(4, 64)])  # 64 new tokens: everything else goes, child first
    assert list(cache.nodes) == [4] and cache.used == 64
    assert cache.cached([(1, 40)]) == 0


def test_no_capacity_no_cache() -> None:
    cache = PrefixCache(capacity_tokens=0)
    cache.insert([(1, 400)])
    assert cache.cached([(1, 400)]) == 0 and cache.used == 0


def spec() -> BackendSpec:
    return BackendSpec("b", slots=2, prefill_tps=1000, decode_tps=10, cache_tokens=10_000)


def job(backend: Backend, request: SimRequest, at: float) -> Job:
    return Job(request, backend, None, None, at)  # type: ignore[arg-type]


def test_backend_prefills_only_the_uncached_part_one_prompt_at_a_time() -> None:
    backend = Backend(spec(), block_tokens=100)
    first = SimRequest(0.0, 1000, 120, segments=((1, 800), (2, 1000)), answer=3)
    again = SimRequest(0.0, 1300, 20, segments=((1, 800), (2, 1000), (3, 1120), (4, 1300)))
    other = SimRequest(0.0, 500, 10, segments=((9, 500),))
    a = job(backend, first, 0.0)
    assert backend.admit(a, 0.0)
    assert (a.cached, a.first_token, a.done) == (0, 1.0, 13.0)  # 1000 tokens at 1000/s, 120 at 10/s
    b = job(backend, other, 0.0)
    assert backend.admit(b, 0.0)  # a free slot, but the engine prefills a's prompt first
    assert (b.first_token, b.done) == (1.5, 2.5)
    backend.finish(b, 2.5)
    backend.finish(a, 13.0)  # a's answer is kept with its prompt: whole blocks up to token 1100
    c = job(backend, again, 20.0)
    assert backend.admit(c, 20.0)
    assert c.cached == 1100
    assert c.first_token == 20.2  # 200 tokens left to prefill


def test_the_oracle_counts_the_cache_and_the_prefill_queue() -> None:
    backend = Backend(spec(), block_tokens=100)
    backend.cache.insert([(1, 800)])
    running = job(backend, SimRequest(0.0, 1000, 20), 0.0)
    backend.admit(running, 0.0)  # prefills until 1.0
    cached = SimRequest(0.0, 1000, 20, segments=((1, 800), (2, 1000)))
    assert backend.expected_ttft(cached, 0.0) == 1.0 + 0.2  # after the running prefill, 200 tokens
    assert backend.expected_ttft(SimRequest(0.0, 1000, 20), 0.0) == 2.0
