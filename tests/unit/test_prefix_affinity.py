"""prefix_affinity and its affinity table: candidates in, candidate out. The bounded-load
rule, the holder preferred while it has room, a hot prefix spread, expected_delay's choice
exactly when the cache tells the candidates apart no more than load does."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

from modelway.deployment import Deployment
from modelway.strategies.affinity import HOLDERS, MemoryAffinity
from modelway.strategies.base import FixedView, Outcome
from modelway.strategies.prefix import BOUNDARIES, Prefix
from modelway.strategies.prefix_affinity import EPSILON, PrefixAffinity

from .helpers import deployment, strategy


def prompt(session: int, levels: int, size: int | None = None) -> Prefix:
    """A prompt whose first `levels` keys are its session's (the same session: the same
    keys, as a conversation's turns share theirs)."""
    return Prefix(tuple(session * 100 + level for level in range(levels)), size or BOUNDARIES[levels - 1] + 100)


def ask(
    chooser: PrefixAffinity, candidates: Sequence[Deployment], prefix: Prefix | None, now: float = 0.0
) -> Deployment:
    return chooser.choose(FixedView(now=now, prompt=prefix), candidates)


def measured(deployments: Sequence[Deployment], slots: Sequence[int], name: str = "prefix_affinity") -> PrefixAffinity:
    """A strategy past its warm-up: slots known exactly (as the engines' gauges teach them,
    each seen queueing at its count), each deployment measured (0.2 s to first token, 6 s
    per request)."""
    chooser: PrefixAffinity = strategy(name, deployments)
    for d, n in zip(deployments, slots, strict=True):
        chooser.slots[d.index] = n
        chooser.saturated[d.index] = 0.0
        chooser.observe(Outcome(d, True, 200, None, 6.0, 0.2, True, 0.0))
        if isinstance(chooser, PrefixAffinity):
            chooser.typical[d.index] = 20_000.0
    return chooser


def first_turn_sent() -> tuple[PrefixAffinity, list[Deployment], Deployment, Deployment]:
    """Two measured deployments of 8 slots, and conversation 1's first turn (40 KB) sent:
    the strategy, both deployments, the one now holding the prefix, and the other."""
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = measured([a, b], [8, 8])
    holder = ask(chooser, [a, b], prompt(1, 8, 40_000))
    return chooser, [a, b], holder, b if holder is a else a


# the table


def test_the_table_gives_each_deployment_its_deepest_level_and_what_it_likely_holds() -> None:
    table = MemoryAffinity()
    table.record(prompt(1, 3, size=5000), index=0, known=-1)
    table.record(prompt(1, 6, size=13_000), index=1, known=-1)
    asked = prompt(1, 8, size=30_000)  # the conversation's next turn
    found = table.matches(asked, {0, 1, 2})
    assert found == {1: (5, 13_000), 0: (2, 5000)}  # held: the recorded prompt, not just the boundary
    # a recorded prompt longer than the next boundary: the prompts may part there unseen
    table.record(prompt(2, 2, size=100_000), index=2, known=-1)
    assert table.matches(prompt(2, 4, size=200_000), {2}) == {2: (1, BOUNDARIES[2])}
    assert table.matches(prompt(3, 4), {0, 1, 2}) == {}


def test_a_key_keeps_its_last_few_holders_and_the_table_its_last_keys() -> None:
    table = MemoryAffinity(capacity=10)
    shared = prompt(7, 1)
    for index in range(HOLDERS + 2):
        table.record(shared, index, known=-1)
    assert [h[0] for h in table.table[shared.keys[0]]] == [5, 4, 3, 2]  # latest first
    for session in range(20):
        table.record(prompt(session + 100, 1), 0, known=-1)
    assert len(table) == 10 and shared.keys[0] not in table.table  # least recently used went first


# the bounded-load rule


def test_bounded_load_holds_a_deployment_to_its_prefixes_only_with_room_or_near_the_mean() -> None:
    a, b, c = deployment(0, "a"), deployment(1, "b"), deployment(2, "c")
    chooser = measured([a, b, c], [8, 8, 8])
    assert EPSILON == 0.25
    counts = {0: 8.0, 1: 2.0, 2: 0.0}  # a full; its share: ceil(1.25 * 11 * 8/24) = 5
    assert chooser.within_bound([a, b, c], counts, measured=True) == {1, 2}
    counts = {0: 9.0, 1: 8.0, 2: 8.0}  # all full: ceil(1.25 * 26 / 3) = 11 each
    assert chooser.within_bound([a, b, c], counts, measured=True) == {0, 1, 2}
    counts = {0: 13.0, 1: 8.0, 2: 8.0}  # ceil(1.25 * 30 / 3) = 13 < 14
    assert chooser.within_bound([a, b, c], counts, measured=True) == {1, 2}
    # before slots are known, weights stand for capacities (no free-slot test)
    big, small = deployment(3, "big", weight=3), deployment(4, "small")
    fresh = strategy("prefix_affinity", [big, small])
    assert fresh.within_bound([big, small], {3: 0.0, 4: 0.0}, measured=False) == {3, 4}  # idle: both
    assert fresh.within_bound([big, small], {3: 0.0, 4: 3.0}, measured=False) == {3}  # ceil(1.25) = 2 < 4
    assert fresh.within_bound([big, small], {3: 8.0, 4: 1.0}, measured=False) == {3, 4}  # 10 and 4


def test_the_holder_gets_its_prefix_while_it_has_room_and_not_beyond_the_bound() -> None:
    chooser, (a, b), first, other = first_turn_sent()
    first.stats.inflight = 5
    # the next turn, once the first is answered: its holder is busier, but has a free slot
    # and 40 KB of the prompt
    assert ask(chooser, [a, b], prompt(1, 9, 50_000), now=10.0) is first
    first.stats.inflight = 12  # full, far past the mean: the other takes it
    assert ask(chooser, [a, b], prompt(1, 10, 60_000), now=20.0) is other
    # and holds the prefix from now on, for the turns after
    first.stats.inflight = 0
    other.stats.inflight = 3
    assert ask(chooser, [a, b], prompt(1, 11, 90_000), now=30.0) is other


def test_a_prompt_just_sent_to_the_holder_delays_its_prefix_while_it_prefills() -> None:
    """The engine prefills one prompt after another: a long uncached prompt sent to the
    holder a moment ago is ahead of the next turn there, however warm its cache."""
    chooser, (a, b), holder, other = first_turn_sent()
    # at t=10 a new conversation's 200 KB prompt goes to the holder too (both idle, same cost)
    other.stats.inflight = 1
    assert ask(chooser, [a, b], prompt(2, 8, 200_000), now=10.0) is holder
    # its prefill, about 2 s, is ahead of anything sent there now: the next turn would go
    # elsewhere (propose: the choice, not recorded)
    turn = prompt(1, 9, 50_000)
    assert chooser.propose(FixedView(now=10.1, prompt=turn), [a, b]) is other
    # once that prefill is done, the holder's cache wins again
    assert chooser.propose(FixedView(now=15.0, prompt=turn), [a, b]) is holder


def test_another_instances_prompts_at_the_holder_delay_its_prefix_too() -> None:
    """With the redis state backend the other instances publish the prefill backlog they
    expect at each deployment: it is ahead of this instance's next turn as its own would be."""
    chooser, (a, b), holder, other = first_turn_sent()
    turn = prompt(1, 9, 50_000)
    assert chooser.propose(FixedView(now=10.0, prompt=turn), [a, b]) is holder
    holder.stats.others_prefilled_at = 12.0  # about 2 s of prompts the others sent there
    assert chooser.propose(FixedView(now=10.0, prompt=turn), [a, b]) is other
    assert chooser.propose(FixedView(now=12.5, prompt=turn), [a, b]) is holder  # prefilled by now


def test_a_hot_prefix_spreads_with_its_load() -> None:
    """Everyone asks with one long system prompt and nothing ends: the holder takes it while
    it has room, then the bound sends it on; no deployment ends up far past the others."""
    deployments = [deployment(i, name) for i, name in enumerate("abc")]
    chooser = measured(deployments, [8, 8, 8])
    for _ in range(48):
        chosen = ask(chooser, deployments, prompt(42, 8, 40_000))
        chosen.stats.inflight += 1
    loads = sorted(d.stats.inflight for d in deployments)
    assert loads[0] >= 14 and loads[-1] <= 18


def test_without_a_prefix_to_tell_them_apart_it_chooses_as_expected_delay_does() -> None:
    """No keys (a short prompt, or a workload that shares nothing), or every candidate
    holding as much: the same choice as expected_delay, request after request."""
    picks: dict[str, list[str]] = {}
    for name in ("expected_delay", "prefix_affinity"):
        deployments = [deployment(0, "a", weight=4), deployment(1, "b", weight=2), deployment(2, "c")]
        chooser = measured(deployments, [16, 8, 8], name)
        rng = random.Random(5)
        running: list[tuple[float, Deployment]] = []
        now = 0.0
        chosen_names = []
        for number in range(400):
            now += rng.expovariate(3.0)
            while running and running[0][0] <= now:
                ends, done = running.pop(0)
                done.stats.inflight -= 1
                chooser.observe(Outcome(done, True, 200, None, 6.0, rng.uniform(0.1, 0.5), True, ends))
            keys = () if number % 2 else (999,)  # a key every candidate holds after a while
            size = rng.randrange(3000, 60_000) if keys else rng.randrange(100, 60_000)
            chosen = chooser.choose(FixedView(now=now, prompt=Prefix(keys, size)), deployments)
            if keys and number < 10 and isinstance(chooser, PrefixAffinity):
                for d in deployments:
                    chooser.affinity.record(Prefix(keys, 60_000), d.index, -1)
            chosen.stats.inflight += 1
            running.append((now + rng.uniform(2, 10), chosen))
            running.sort(key=lambda r: r[0])
            chosen_names.append(chosen.name)
        picks[name] = chosen_names
    assert picks["prefix_affinity"] == picks["expected_delay"]
    assert len(Counter(picks["expected_delay"])) == 3


def test_prefix_affinity_is_a_strategy_the_config_accepts() -> None:
    from modelway.config.loader import parse_config

    config = parse_config(
        "providers: [{name: p, kind: simulated}]\n"
        "models: [{name: m, strategy: prefix_affinity, deployments: [{provider: p}]}]\n"
    )
    assert config.models[0].strategy == "prefix_affinity"
