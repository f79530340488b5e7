"""Affinity tables shared through the state backend (state/affinity.py), without Redis:
records reach another instance's table by deployment key (whatever its indexes), a batch
carries every key of the prompt, the outbox keeps the latest OUTBOX_MAX, bad or
unknown records are ignored, and the backends hand prefix_affinity routes the right table."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import Any

import orjson

from modelway.config.schema import Config
from modelway.deployment import Deployment
from modelway.runtime import Runtime
from modelway.state.affinity import AffinityExchange, SharedAffinity
from modelway.strategies.affinity import MemoryAffinity
from modelway.strategies.prefix import Prefix

from .helpers import deployment

CONVERSATION = Prefix((11, 12, 13, 14), 7000)


def shared(exchange: AffinityExchange, deployments: Sequence[Deployment]) -> SharedAffinity:
    table = exchange.table(deployments, MemoryAffinity())
    assert isinstance(table, SharedAffinity)
    return table


def test_a_record_reaches_another_instance_by_deployment_key_whatever_its_indexes() -> None:
    one, two = AffinityExchange(), AffinityExchange()
    mine = shared(one, [deployment(0, "a"), deployment(1, "b")])
    theirs = shared(two, [deployment(7, "c"), deployment(5, "b"), deployment(6, "a")])  # another config
    mine.record(CONVERSATION, index=1, known=-1)
    assert mine.matches(CONVERSATION, {0, 1}) == {1: (3, 7000)}  # at once, locally
    assert theirs.matches(CONVERSATION, {5, 6, 7}) == {}  # not before the batch is applied
    payload = one.batch()
    assert payload is not None
    two.apply(payload)
    assert theirs.matches(CONVERSATION, {5, 6, 7}) == {5: (3, 7000)}  # b is index 5 there
    assert (one.sent, two.applied) == (1, 1)


def test_a_batch_carries_every_key_of_each_prompt_and_is_taken_once() -> None:
    """Every key, not only those the local record wrote (from the level it knew on): the
    other instance may lack the shallower ones."""
    exchange = AffinityExchange()
    table = shared(exchange, [deployment(0, "a"), deployment(1, "b")])
    table.record(Prefix((1, 2), 3000), index=0, known=-1)
    table.record(Prefix((1, 2, 3, 4, 5), 20_000), index=0, known=1)  # the next turn: level 1 was known
    payload = exchange.batch()
    assert payload is not None
    assert orjson.loads(payload) == [["m|a|a", 3000, 1, 2], ["m|a|a", 20_000, 1, 2, 3, 4, 5]]
    assert exchange.batch() is None  # taken: the next batch has only what comes after


def test_the_outbox_keeps_the_latest_records_when_it_is_full() -> None:
    exchange = AffinityExchange(outbox_max=3)
    table = shared(exchange, [deployment(0, "a"), deployment(1, "b")])
    for n in range(5):  # Redis down: nothing takes the outbox
        table.record(Prefix((n,), 2048 + n), index=n % 2, known=-1)
    assert len(exchange.outbox) == 3
    payload = exchange.batch()
    assert payload is not None
    assert [record[1] for record in orjson.loads(payload)] == [2050, 2051, 2052]
    assert len(table.local) == 5  # locally every record was kept


def test_unknown_deployments_and_bad_batches_are_ignored() -> None:
    exchange = AffinityExchange()
    table = shared(exchange, [deployment(0, "a"), deployment(1, "b")])
    for payload in (b"not json", b'{"a": 1}', b"[1, [], [\"m|a|a\"], [\"m|a|a\", \"big\", 1]]",
                    orjson.dumps([["m|a|a", 3000, "k"], [7, 3000, 1], ["m|a|a", 3000, *range(40)]])):
        exchange.apply(payload)
    exchange.apply(orjson.dumps([["elsewhere|x|y", 3000, 1, 2], ["m|b|b", 3000, 1, 2]]))
    assert exchange.applied == 1
    assert len(table.local) == 2 and table.matches(Prefix((1, 2), 3000), {0, 1}) == {1: (1, 3000)}


def test_the_tables_of_a_replaced_runtime_drop_out() -> None:
    """A reload builds new routes: both tables get the others' records while the old one
    lives; once it is gone, only the new one."""
    exchange = AffinityExchange()
    old = shared(exchange, [deployment(0, "a"), deployment(1, "b")])
    new = shared(exchange, [deployment(2, "a"), deployment(3, "b")])
    exchange.apply(orjson.dumps([["m|b|b", 3000, 1, 2]]))
    assert old.matches(Prefix((1, 2), 3000), {0, 1}) == {1: (1, 3000)}
    assert new.matches(Prefix((1, 2), 3000), {2, 3}) == {3: (1, 3000)}
    del old
    gc.collect()
    assert [len(tables) for tables in exchange.tables.values()] == [1, 1]
    shared(exchange, [deployment(4, "c"), deployment(5, "d")])  # a later route prunes what is gone
    assert sorted(exchange.tables) == ["m|a|a", "m|b|b", "m|c|c", "m|d|d"]


def test_a_reloads_new_table_takes_over_what_the_old_one_knew_by_deployment_key() -> None:
    exchange = AffinityExchange()
    old = shared(exchange, [deployment(0, "a"), deployment(1, "b"), deployment(2, "c")])
    old.local.capacity = 3
    for n, index in enumerate((0, 1, 2, 1)):  # key n to deployment `index`; key 0 is evicted
        old.record(Prefix((n,), 3000 + n), index=index, known=-1)
    new = shared(exchange, [deployment(5, "b"), deployment(6, "a"), deployment(7, "d")])  # c went, d came
    assert list(new.local.table.items()) == [(1, ((5, 3001),)), (3, ((5, 3003),))]  # c's key left out
    old.local.capacity = 4
    old.record(Prefix((9,), 3009), index=0, known=-1)
    assert len(new.local) == 2  # taken over once, when built
    other = shared(exchange, [deployment(8, "a"), deployment(9, "b")])
    assert other.local.table  # the model's latest table is the one taken over
    assert exchange.outbox  # the old one's records still go out meanwhile


def test_a_route_of_one_deployment_keeps_its_own_table() -> None:
    exchange = AffinityExchange()
    local = MemoryAffinity()
    assert exchange.table([deployment(0, "a")], local) is local
    assert exchange.tables == {}


def config(backend: dict[str, Any]) -> Config:
    return Config.model_validate({
        "state": backend,
        "providers": [{"name": "a", "kind": "simulated"}, {"name": "b", "kind": "simulated"}],
        "models": [
            {"name": "pa", "strategy": "prefix_affinity", "deployments": [{"provider": "a"}, {"provider": "b"}]},
            {"name": "one", "strategy": "prefix_affinity", "deployments": [{"provider": "a"}]},
            {"name": "rr", "deployments": [{"provider": "a"}, {"provider": "b"}]},
        ],
    })


def test_the_redis_backend_shares_the_tables_of_prefix_affinity_routes_and_memory_keeps_them_local() -> None:
    runtime = Runtime(config({"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"}))  # never started
    assert isinstance(runtime.models["pa"].strategy.affinity, SharedAffinity)  # type: ignore[attr-defined]
    assert isinstance(runtime.models["one"].strategy.affinity, MemoryAffinity)  # type: ignore[attr-defined]
    assert not hasattr(runtime.models["rr"].strategy, "affinity")
    runtime = Runtime(config({"backend": "memory"}))
    assert isinstance(runtime.models["pa"].strategy.affinity, MemoryAffinity)  # type: ignore[attr-defined]
