from __future__ import annotations

from collections import Counter

from modelway.config.schema import ModelConfig
from modelway.deployment import Deployment
from modelway.strategies.base import FixedView
from modelway.strategies.weighted_round_robin import SmoothWeighted, WeightedRoundRobin


class FakeProvider:
    def __init__(self, name: str) -> None:
        self.name = name


def deployments(*weights: int) -> list[Deployment]:
    return [
        Deployment(index=i, model_name="m", provider=FakeProvider(chr(97 + i)), upstream_model=None, weight=w)  # type: ignore[arg-type]
        for i, w in enumerate(weights)
    ]


def names(picks: list[Deployment]) -> str:
    return "".join(d.provider.name for d in picks)


def test_nginx_sequence_for_5_1_1() -> None:
    # The example from nginx's commit introducing smooth weighted round robin.
    wrr = SmoothWeighted()
    ds = deployments(5, 1, 1)
    assert names([wrr.pick(ds, 0.0) for _ in range(7)]) == "aabacaa"


def test_3_to_1_is_interleaved() -> None:
    wrr = SmoothWeighted()
    ds = deployments(3, 1)
    assert names([wrr.pick(ds, 0.0) for _ in range(8)]) == "aabaaaba"


def test_exact_shares_over_whole_cycles() -> None:
    strategy = WeightedRoundRobin(ModelConfig.model_construct(name="m"), deployments(3, 1))
    ds = strategy.deployments
    picks = Counter(strategy.choose(FixedView(), ds).index for _ in range(40))
    assert picks == {0: 30, 1: 10}


def test_choosing_among_a_subset_keeps_the_subsets_ratio() -> None:
    wrr = SmoothWeighted()
    a, _, c = deployments(2, 1, 1)
    picks = Counter(wrr.pick([a, c], 0.0).index for _ in range(30))
    assert picks == {0: 20, 2: 10}


def test_single_candidate() -> None:
    (only,) = deployments(4)
    assert SmoothWeighted().pick([only], 0.0) is only
