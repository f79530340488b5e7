"""`modelway simulate`: run each strategy over each utilisation of a scenario, print the
table, check the target, save the plot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelway.importing import ImportFromStringError, resolve
from modelway.simulate.backends import BackendSpec
from modelway.simulate.engine import ORACLE, simulate
from modelway.simulate.report import Summary, plot, summarise, table
from modelway.simulate.scenarios import SCENARIOS
from modelway.simulate.workload import Workload, poisson, read_trace, rescaled, token_lengths
from modelway.strategies import STRATEGIES

DEFAULT_STRATEGIES = (
    "weighted_round_robin",
    "random",
    "least_busy",
    "latency",
    "least_load",
    "expected_delay",
)
DEFAULT_UTILISATIONS = (0.5, 0.8, 0.95)
TARGET_UTILISATION = 0.8


class SimulateError(ValueError):
    pass


@dataclass
class Options:
    scenario: str = "hetero"
    utilisations: Sequence[float] | None = None  # None: 50/80/95%, or a trace as recorded
    seed: int = 1
    requests: int = 50_000
    trace: str | None = None
    strategies: Sequence[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    oracle: bool = True
    refresh_ms: int = 500
    plot: str | None = "modelway-simulate.png"
    json_path: str | None = None


def offered_load(workload: Workload, specs: Sequence[BackendSpec]) -> float:
    """The workload's arrival rate as a share of the fleet's capacity (its utilisation)."""
    requests = workload.requests
    prompt = sum(r.prompt_tokens for r in requests) / len(requests)
    output = sum(r.output_tokens for r in requests) / len(requests)
    capacity = sum(s.capacity_rps(prompt, output) for s in specs)
    rate = (len(requests) - 1) / workload.span_s if workload.span_s > 0 else float("inf")
    return rate / capacity


def workloads(options: Options, specs: Sequence[BackendSpec]) -> list[tuple[float | None, Workload]]:
    if options.trace:
        recorded = read_trace(options.trace)
        if not options.utilisations:
            return [(None, recorded)]
        load = offered_load(recorded, specs)
        return [(u, rescaled(recorded, u / load)) for u in options.utilisations]
    lengths = token_lengths(options.requests, options.seed)
    prompt = sum(p for p, _ in lengths) / len(lengths)
    output = sum(o for _, o in lengths) / len(lengths)
    capacity = sum(s.capacity_rps(prompt, output) for s in specs)
    return [
        (u, poisson(lengths, u * capacity, options.seed))
        for u in options.utilisations or DEFAULT_UTILISATIONS
    ]


def check_strategies(names: Sequence[str]) -> None:
    for name in names:
        if name == ORACLE:
            continue
        try:
            resolve(STRATEGIES, name, "strategy")
        except ImportFromStringError as exc:
            raise SimulateError(str(exc)) from None


def run(options: Options, out: Callable[[str], None] = print) -> list[Summary]:
    scenario = SCENARIOS.get(options.scenario)
    if scenario is None:
        raise SimulateError(f"unknown scenario {options.scenario!r} (known: {', '.join(SCENARIOS)})")
    check_strategies(options.strategies)
    names = [*options.strategies, *([ORACLE] if options.oracle and ORACLE not in options.strategies else [])]
    specs = scenario.fleet()
    out(f"scenario {scenario.name}: {scenario.description}")
    for spec in specs:
        rates = f"prefill {spec.prefill_tps:g} tok/s, decode {spec.decode_tps:g} tok/s per request"
        prices = f"${spec.input_cost_per_mtok:g}/${spec.output_cost_per_mtok:g} per Mtok in/out"
        out(f"  {spec.name}: {spec.slots} slots, {rates}, weight {spec.weight}, {prices}")
    summaries: list[Summary] = []
    started = time.perf_counter()
    for utilisation, workload in workloads(options, specs):
        out(f"workload: {workload.source}")
        events = scenario.events(workload.span_s)
        for name in names:
            result = simulate(name, specs, workload, events, options.seed, options.refresh_ms / 1000)
            summaries.append(summarise(result, scenario.name, utilisation))
    out(f"({len(summaries)} runs in {time.perf_counter() - started:.1f} s of real time; times in seconds)\n")
    out(table(summaries))
    verdict = target_check(summaries)
    if verdict:
        out("\n" + verdict)
    if options.json_path:
        with open(options.json_path, "w") as fh:
            json.dump([s.as_dict() for s in summaries], fh, indent=1)
        out(f"results written to {options.json_path}")
    if options.plot:
        why_not = plot(summaries, options.plot, f"modelway simulate: {scenario.name} (seed {options.seed})")
        out(why_not or f"plot saved to {options.plot}")
    return summaries


def target_check(summaries: Sequence[Summary]) -> str | None:
    """The issue's target at 80%: best strategy's p99 TTFT <= 0.5x WRR's and <= 1.2x the oracle's."""
    at = [
        s for s in summaries if s.utilisation is not None and abs(s.utilisation - TARGET_UTILISATION) < 1e-9
    ]
    by_name = {s.strategy: s for s in at}
    wrr, oracle = by_name.get("weighted_round_robin"), by_name.get(ORACLE)
    contenders = [s for s in at if s.strategy != ORACLE]
    if wrr is None or oracle is None or not contenders:
        return None
    best = min(contenders, key=lambda s: s.ttft_p99)
    vs_wrr = best.ttft_p99 / wrr.ttft_p99
    vs_oracle = best.ttft_p99 / oracle.ttft_p99
    met = vs_wrr <= 0.5 and vs_oracle <= 1.2
    return (
        f"target at 80%: best strategy {best.strategy} p99 TTFT {best.ttft_p99:.2f}s = {vs_wrr:.2f}x "
        f"weighted_round_robin ({wrr.ttft_p99:.2f}s; needs <= 0.5x) and {vs_oracle:.2f}x oracle "
        f"({oracle.ttft_p99:.2f}s; needs <= 1.2x): {'MET' if met else 'NOT met'}"
    )
