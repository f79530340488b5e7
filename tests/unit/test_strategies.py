"""Strategies: candidates in, candidate out."""

from __future__ import annotations

from collections import Counter
from typing import Any

from modelway.config.schema import DeploymentConfig, HashOn, ModelConfig
from modelway.deployment import Deployment
from modelway.strategies.base import FixedView
from modelway.strategies.consistent_hash import ConsistentHash
from modelway.strategies.cost import Cheapest
from modelway.strategies.random import WeightedRandom


class FakeProvider:
    def __init__(self, name: str) -> None:
        self.name = name


def make(names: list[str], **fields: Any) -> list[Deployment]:
    return [
        Deployment(index=i, model_name="m", provider=FakeProvider(n), upstream_model=n, **fields)  # type: ignore[arg-type]
        for i, n in enumerate(names)
    ]


def hash_model() -> ModelConfig:
    return ModelConfig(
        name="m",
        strategy="consistent_hash",
        hash_on=HashOn(source="header", name="x-session"),
        deployments=[DeploymentConfig(provider="p")],
    )


def assignments(names: list[str]) -> dict[str, str]:
    ds = make(names)
    strategy = ConsistentHash(hash_model(), ds)
    return {f"user-{k}": strategy.choose(FixedView(key=f"user-{k}"), ds).provider.name for k in range(2000)}


def test_consistent_hash_is_sticky_and_spread() -> None:
    first = assignments(["a", "b", "c", "d"])
    assert first == assignments(["a", "b", "c", "d"])
    shares = Counter(first.values())
    assert all(350 <= n <= 650 for n in shares.values()), shares


def test_adding_a_deployment_moves_only_its_share() -> None:
    before = assignments(["a", "b", "c", "d"])
    after = assignments(["a", "b", "c", "d", "e"])
    moved = [k for k in before if before[k] != after[k]]
    assert all(after[k] == "e" for k in moved)  # keys only move to the newcomer
    assert 0.12 <= len(moved) / len(before) <= 0.28  # about 1/5


def test_removing_a_deployment_moves_only_its_keys() -> None:
    before = assignments(["a", "b", "c", "d"])
    after = assignments(["a", "b", "d"])
    moved = [k for k in before if before[k] != after[k]]
    assert all(before[k] == "c" for k in moved)


def test_unavailable_deployment_keys_walk_on_and_come_back() -> None:
    ds = make(["a", "b", "c"])
    strategy = ConsistentHash(hash_model(), ds)
    owner = strategy.choose(FixedView(key="sess"), ds)
    others = [d for d in ds if d is not owner]
    fallback = strategy.choose(FixedView(key="sess"), others)
    assert fallback in others
    assert strategy.choose(FixedView(key="sess"), ds) is owner


def test_no_key_falls_back_to_weighted_round_robin() -> None:
    ds = make(["a", "b"])
    strategy = ConsistentHash(hash_model(), ds)
    picks = Counter(strategy.choose(FixedView(key=None), ds).index for _ in range(10))
    assert picks == {0: 5, 1: 5}


def test_cost_picks_the_cheapest_and_breaks_ties_by_wrr() -> None:
    ds = make(["pricey", "cheap1", "cheap2"])
    ds[0].input_cost_per_mtok, ds[0].output_cost_per_mtok = 5.0, 15.0
    for d in ds[1:]:
        d.input_cost_per_mtok, d.output_cost_per_mtok = 0.5, 1.5
    strategy = Cheapest(ModelConfig.model_construct(name="m"), ds)
    picks = Counter(strategy.choose(FixedView(), ds).provider.name for _ in range(10))
    assert picks == {"cheap1": 5, "cheap2": 5}


def test_weighted_random_follows_weights() -> None:
    ds = make(["a", "b"])
    ds[0].weight = 3
    strategy = WeightedRandom(ModelConfig.model_construct(name="m"), ds)
    picks = Counter(strategy.choose(FixedView(), ds).provider.name for _ in range(4000))
    assert 0.70 <= picks["a"] / 4000 <= 0.80
