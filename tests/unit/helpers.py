"""Deployments, strategies and views for candidates-in, candidate-out strategy tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelway.config.schema import ModelConfig, ProviderConfig
from modelway.deployment import Deployment
from modelway.importing import resolve
from modelway.providers.simulated import SimulatedProvider
from modelway.strategies import STRATEGIES
from modelway.strategies.base import FixedView


def deployment(
    index: int, provider: str, weight: int = 1, metric_key: str | None = None, inflight: int = 0
) -> Deployment:
    d = Deployment(
        index=index,
        model_name="m",
        provider=SimulatedProvider(ProviderConfig.model_validate({"name": provider, "kind": "simulated"})),
        upstream_model=provider,
        weight=weight,
        metric_key=metric_key,
    )
    d.stats.inflight = inflight
    return d


def strategy(name: str, deployments: Sequence[Deployment]) -> Any:
    model = ModelConfig.model_validate(
        {"name": "m", "strategy": name, "deployments": [{"provider": d.provider.name} for d in deployments]}
    )
    built = resolve(STRATEGIES, name, "strategy")(model, deployments)
    built.rng.seed(7)
    return built


def view(metrics: Mapping[str, float] | None = None, stream: bool = True, now: float = 0.0) -> FixedView:
    return FixedView(stream=stream, now=now, load=dict(metrics or {}))
