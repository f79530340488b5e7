"""Late binding (strategies/holding.py): when expected_delay and prefix_affinity hold a
request at the gateway, what a held request counts for, the gate held requests wait at,
and the simulator driving it as the request path does."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

from modelway.loadmetrics.score import load_score, provider_key
from modelway.proxy.exchange import Answer
from modelway.simulate.engine import Gateways, simulate
from modelway.simulate.scenarios import SCENARIOS
from modelway.simulate.workload import poisson, token_lengths
from modelway.strategies.base import FixedView, Outcome
from modelway.strategies.expected_delay import SATURATED_S
from modelway.strategies.holding import WAKE_PER_END, FleetLine, Holder, Holding, SlotGate
from modelway.strategies.prefix import BOUNDARIES, Prefix

from .helpers import deployment, strategy


def engines(**gauges: tuple[int, int]) -> dict[str, float]:
    """A metrics snapshot: provider name -> (waiting, running)."""
    return {provider_key(name): load_score(waiting, running, 0.5) for name, (waiting, running) in gauges.items()}


def measured(name: str = "expected_delay") -> tuple[object, list]:
    ds = [deployment(0, "a"), deployment(1, "b")]
    chooser = strategy(name, ds)
    for d in ds:
        chooser.observe(Outcome(d, True, 200, None, 6.0, 0.2, True, 0.0))
    return chooser, ds


def test_slots_are_trusted_for_holding_only_once_the_engine_queued_at_them() -> None:
    chooser, (a, b) = measured()
    assert isinstance(chooser, Holding)
    a.stats.inflight, b.stats.inflight = 4, 2  # every request at the engines is this gateway's
    busy = FixedView(load=engines(a=(0, 4), b=(0, 2)))
    chooser.propose(busy, [a, b])
    assert chooser.slots == {0: 4, 1: 2} and chooser.saturated == {}  # running alone: maybe more fit
    assert chooser.admit(busy, a) and not chooser.may_hold(busy, [a, b])  # never held on a guess
    a.stats.inflight = 5  # 4 running, 1 in the engine's line
    full = FixedView(load=engines(a=(1, 4), b=(0, 2)))
    chooser.propose(full, [a, b])
    assert set(chooser.saturated) == {0}
    assert not chooser.admit(full, a)
    assert chooser.may_hold(full, [a, b])
    a.stats.inflight, b.stats.inflight = 3, 1
    assert chooser.admit(full, a)  # a slot free again
    assert chooser.admit(full, b)  # b never queued: its slots are not trusted to hold for
    a.stats.inflight = 4
    assert not chooser.admit(full, a)
    later = FixedView(load=engines(a=(0, 4), b=(0, 2)), now=SATURATED_S + 1)
    assert chooser.admit(later, a)  # not seen queueing for a while: one more goes on, to see
    a.stats.inflight = 5
    assert not chooser.admit(later, a)  # one more, not all
    chooser.propose(FixedView(load=engines(a=(0, 5), b=(0, 2)), now=SATURATED_S + 2), [a, b])
    assert chooser.slots[0] == 5  # it ran it: more slots than it had shown


def test_held_requests_count_where_they_would_go() -> None:
    chooser, (a, b) = measured()
    snapshot = engines(a=(1, 2), b=(1, 2))
    view = FixedView(load=snapshot)
    chooser.propose(view, [a, b])
    assert chooser.propose(view, [a, b]) is a  # equal: the first
    chooser.held[0] = 3  # three held for a: the next request would wait behind them
    assert chooser.propose(view, [a, b]) is b


def test_prefix_affinity_records_where_a_request_goes_not_where_it_was_proposed() -> None:
    chooser, (a, b) = measured("prefix_affinity")
    prompt = Prefix((11, 12), BOUNDARIES[1] + 10)
    view = FixedView(prompt=prompt)
    proposed = chooser.propose(view, [a, b])
    assert chooser.affinity.matches(prompt, {0, 1}) == {}
    chosen = chooser.choose(view, [a, b])
    assert chosen is proposed
    assert set(chooser.affinity.matches(prompt, {0, 1})) == {chosen.index}


def test_the_gate_wakes_the_oldest_first_a_few_per_end_and_each_after_its_timeout() -> None:
    async def scenario() -> None:
        gate = SlotGate()
        woken: list[float] = []

        async def held(ticket: float, timeout_s: float) -> None:
            await gate.wait(ticket, timeout_s)
            woken.append(ticket)

        tickets = list(range(WAKE_PER_END + 3))  # when each began waiting
        tasks = [asyncio.ensure_future(held(t, 5.0)) for t in reversed(tickets)]  # waiting in any order
        leaving = asyncio.ensure_future(held(-1, 5.0))  # the oldest, but its client goes away
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.sleep(0)
        assert gate.held == WAKE_PER_END + 3
        gate.wake()
        await asyncio.sleep(0)
        assert woken == tickets[:WAKE_PER_END]  # oldest first, the cancelled one skipped
        late = WAKE_PER_END + 3
        await asyncio.gather(held(late, 0.05))
        assert woken[-1] == late  # its own timeout, the older ones still waiting
        gate.wake()
        await asyncio.gather(*tasks)
        assert woken[WAKE_PER_END + 1 :] == tickets[WAKE_PER_END:]
        assert gate.held == 0

    asyncio.run(scenario())


def test_the_gate_drops_waiters_left_behind_by_timeouts() -> None:
    async def scenario() -> None:
        gate = SlotGate()
        for _ in range(300):  # one request held again and again, no request ending meanwhile
            await gate.wait(1.0, 0)
        assert len(gate.waiters) <= 65

    asyncio.run(scenario())


def test_the_simulator_holds_at_the_gateway_what_the_engines_would_queue() -> None:
    specs = SCENARIOS["hetero"].fleet()
    workload = poisson(token_lengths(3000, seed=5), rate=4.2, seed=5)  # past 90% of the fleet
    held = simulate("expected_delay", specs, workload)
    plain = simulate("least_busy", specs, workload)  # holds nothing
    for result in (held, plain):
        assert len(result.jobs) == 3000 and len({id(j.request) for j in result.jobs}) == 3000
        assert all(j.arrival <= j.sent <= j.start < j.first_token <= j.done for j in result.jobs)
    assert any(j.sent > j.arrival for j in held.jobs)
    assert not any(j.sent > j.arrival for j in plain.jobs)
    queued = sum(j.start - j.sent for j in held.jobs)
    assert queued < 0.1 * sum(j.start - j.sent for j in plain.jobs)  # the line is at the gateway


def test_a_held_request_teaches_the_strategy_the_engine_times_not_its_wait() -> None:
    """A held request's metrics count from when it began waiting (what the client waited);
    the strategy learns from when it was sent, or the hold would read as a slow engine."""
    seen: list[Outcome] = []
    d = deployment(0, "a")
    d.stats.inflight = 1
    route = cast(Any, SimpleNamespace(gate=None, observes=True, strategy=SimpleNamespace(observe=seen.append)))
    upstream = cast(Any, SimpleNamespace(status=200, close=lambda: None))
    started = time.monotonic() - 5.0  # began waiting 5 s ago, sent 0.5 s ago
    answer = Answer(route, d, upstream, started, held_s=4.5)
    answer.ttft_s = 4.7
    answer.finish(ok=True)
    (outcome,) = seen
    assert outcome.ttft_s is not None and abs(outcome.ttft_s - 0.2) < 1e-9
    assert 0.5 <= outcome.duration_s < 0.6


def test_a_freed_slot_goes_to_the_instance_holding_the_fleets_oldest_request() -> None:
    line = FleetLine([Holder(10.0, "b", 1), Holder(12.0, "c", 2)])  # b's oldest began at 10 s, c's at 12 s
    assert line.claimant(own_oldest=9.0) is None  # this instance's own is older: it keeps the slot
    assert line.claimant(own_oldest=11.0) == "b"
    assert line.claimant(own_oldest=11.0) is None  # b held one: now this instance's is the oldest
    assert line.claimant(own_oldest=None) == "c"  # nothing held here
    assert line.claimant(own_oldest=None) == "c"
    assert line.claimant(own_oldest=None) is None  # every held request has had a slot
    assert FleetLine().claimant(own_oldest=None) is None


def test_the_gate_passes_a_freed_slot_on_or_wakes_its_own_oldest() -> None:
    async def scenario() -> None:
        gate = SlotGate()
        given: list[tuple[str, object]] = []
        d = deployment(0, "a")
        waiting = asyncio.ensure_future(gate.wait(5.0, 5.0))  # held here since 5 s
        await asyncio.sleep(0)
        assert gate.oldest() == 5.0
        gate.fleet = FleetLine([Holder(4.0, "b", 1)])
        gate.freed(d)  # no state backend to pass it on with: its own look again
        await asyncio.sleep(0)
        assert waiting.done() and given == []
        waiting = asyncio.ensure_future(gate.wait(5.0, 5.0))
        await asyncio.sleep(0)
        gate.give = lambda instance, dep: given.append((instance, dep))
        gate.freed(d)  # b's request is older
        await asyncio.sleep(0)
        assert given == [("b", d)] and not waiting.done()
        gate.freed(d)  # b had one: the next slot is this instance's
        await asyncio.sleep(0)
        assert given == [("b", d)] and waiting.done()
        assert gate.oldest() is None

    asyncio.run(scenario())


def test_the_simulated_instances_hold_one_line_for_the_fleet() -> None:
    """4 instances sharing state: a slot passed to the instance with the fleet's oldest held
    request, not left to whoever looks first, makes the longest holds one instance's."""
    specs = SCENARIOS["hetero"].fleet()
    workload = poisson(token_lengths(4000, seed=4), rate=4.2, seed=4)  # past 90% of the fleet
    fleet = simulate("expected_delay", specs, workload, gateways=Gateways(4, "inflight"))
    apart = simulate("expected_delay", specs, workload, gateways=Gateways(4, "inflight", pass_s=None))
    single = simulate("expected_delay", specs, workload)
    assert fleet.extra["passed"] > 100 and apart.extra["passed"] == 0

    def longest_holds(result: Any) -> float:
        waits = sorted(j.sent - j.arrival for j in result.jobs)
        return sum(waits[-len(waits) // 100 :])  # the 1% held longest

    assert longest_holds(fleet) < 0.7 * longest_holds(apart)  # seed 4: 581 s against 1,063 s
    assert longest_holds(fleet) < 1.1 * longest_holds(single)  # and 589 s
