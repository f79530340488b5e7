"""The named scenarios: a fleet (backends and the weights their deployments carry) and
the events that change it during the run.

`hetero`: three backends with capacities 4:2:1 — `large` (16 slots, twice `medium`'s
GPUs), `medium` (8 slots) and `small` (8 slots on an older GPU at half the speed).
Prefill throughput (the engine's, shared by its requests) 16,000, 8,000 and 4,000
tokens/s; decode 40, 40 and 20 tokens/s per request. Weights are 4:2:1, as an operator
would set them for weighted round robin. Prefix caches (KV memory kept for prompts) of
512k, 256k and 128k tokens.
`degrade`: the same fleet; `medium` drops to a third of its speed for the middle third
of the run, then recovers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelway.simulate.backends import BackendSpec
from modelway.simulate.engine import SpeedChange

PREFILL_TPS = 8_000.0  # prompt tokens per second, the engine's (medium's; large has twice its GPUs)
DECODE_TPS = 40.0  # output tokens per second per request


def hetero_fleet() -> list[BackendSpec]:
    return [
        BackendSpec(
            "large",
            slots=16,
            prefill_tps=PREFILL_TPS * 2,
            decode_tps=DECODE_TPS,
            weight=4,
            input_cost_per_mtok=0.50,
            output_cost_per_mtok=1.50,
            cache_tokens=512_000,
        ),
        BackendSpec(
            "medium",
            slots=8,
            prefill_tps=PREFILL_TPS,
            decode_tps=DECODE_TPS,
            weight=2,
            input_cost_per_mtok=0.60,
            output_cost_per_mtok=1.80,
            cache_tokens=256_000,
        ),
        BackendSpec(
            "small",
            slots=8,
            prefill_tps=PREFILL_TPS / 2,
            decode_tps=DECODE_TPS / 2,
            weight=1,
            input_cost_per_mtok=0.30,
            output_cost_per_mtok=0.90,
            cache_tokens=128_000,
        ),
    ]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    fleet: Callable[[], list[BackendSpec]]
    events: Callable[[float], list[SpeedChange]]  # given the workload's span in seconds


def no_events(span_s: float) -> list[SpeedChange]:
    return []


def medium_degrades(span_s: float) -> list[SpeedChange]:
    return [SpeedChange(span_s / 3, "medium", 1 / 3), SpeedChange(2 * span_s / 3, "medium", 1.0)]


SCENARIOS: dict[str, Scenario] = {
    "hetero": Scenario(
        "hetero",
        "capacities 4:2:1 (large 16 slots, medium 8, small 8 at half speed), weights 4:2:1, "
        "prefill 16k:8k:4k tok/s, prefix caches 512k:256k:128k tokens",
        hetero_fleet,
        no_events,
    ),
    "degrade": Scenario(
        "degrade",
        "hetero fleet; medium runs at 1/3 speed during the middle third of the run",
        hetero_fleet,
        medium_degrades,
    ),
}
