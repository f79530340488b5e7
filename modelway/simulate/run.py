"""`modelway simulate`: run each strategy over each seed, workload, utilisation and gateway
setup of a scenario, print the tables, check the targets (targets.py), save the plot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelway.importing import ImportFromStringError, resolve
from modelway.simulate.backends import BackendSpec
from modelway.simulate.engine import ORACLE, SHARES, Gateways, simulate
from modelway.simulate.report import Summary, plot, summarise, table
from modelway.simulate.scenarios import SCENARIOS
from modelway.simulate.sessions import SHAPES, arranged
from modelway.simulate.targets import targets_table
from modelway.simulate.workload import Workload, poisson, read_trace, rescaled, token_lengths
from modelway.strategies import STRATEGIES

DEFAULT_STRATEGIES = (
    "weighted_round_robin",
    "random",
    "least_busy",
    "latency",
    "least_load",
    "expected_delay",
    "prefix_affinity",
)
DEFAULT_UTILISATIONS = (0.5, 0.8, 0.95)
INDEPENDENT = "independent"
WORKLOADS = (INDEPENDENT, *SHAPES)


class SimulateError(ValueError):
    pass


@dataclass
class Options:
    scenario: str = "hetero"
    utilisations: Sequence[float] | None = None  # None: 50/80/95%, or a trace as recorded
    seed: int = 1
    seeds: Sequence[int] | None = None  # several seeds (None: `seed` alone)
    requests: int = 50_000
    trace: str | None = None
    workloads: Sequence[str] = (INDEPENDENT,)
    strategies: Sequence[str] = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    oracle: bool = True
    refresh_ms: int = 500
    instances: Sequence[int] = (1,)
    shares: Sequence[str] = ("inflight",)  # what instances share when there are several
    publish_ms: int = 100
    block_tokens: int = 16
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


def capacity_rps(lengths: Sequence[tuple[int, int]], specs: Sequence[BackendSpec]) -> float:
    """What the fleet completes per second with every prompt prefilled in full (no cache hit):
    the same arrival rate for every strategy, whatever it gets from the caches."""
    prompt = sum(p for p, _ in lengths) / len(lengths)
    output = sum(o for _, o in lengths) / len(lengths)
    return sum(s.capacity_rps(prompt, output) for s in specs)


def workloads(
    options: Options, specs: Sequence[BackendSpec], name: str = INDEPENDENT, seed: int | None = None
) -> list[tuple[float | None, Workload]]:
    seed = options.seed if seed is None else seed
    utilisations = options.utilisations or DEFAULT_UTILISATIONS
    if options.trace:
        recorded = read_trace(options.trace, options.block_tokens)
        if not options.utilisations:
            return [(None, recorded)]
        load = offered_load(recorded, specs)
        return [(u, rescaled(recorded, u / load)) for u in options.utilisations]
    if name == INDEPENDENT:
        lengths = token_lengths(options.requests, seed)
        capacity = capacity_rps(lengths, specs)
        return [(u, poisson(lengths, u * capacity, seed)) for u in utilisations]
    sessions = SHAPES[name](options.requests, seed)
    capacity = capacity_rps([(t.prompt, t.output) for s in sessions for t in s], specs)
    return [(u, arranged(sessions, options.requests, u * capacity, seed, name)) for u in utilisations]


def gateway_setups(options: Options) -> list[tuple[str, Gateways]]:
    setups = []
    for count in options.instances:
        if count == 1:
            setups.append(("1", Gateways()))
            continue
        for share in options.shares:
            setups.append((f"{count} share {share}", Gateways(count, share, options.publish_ms / 1000)))
    return setups


def check(options: Options) -> None:
    for name in options.strategies:
        if name == ORACLE:
            continue
        try:
            resolve(STRATEGIES, name, "strategy")
        except ImportFromStringError as exc:
            raise SimulateError(str(exc)) from None
    for name in options.workloads:
        if name not in WORKLOADS:
            raise SimulateError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})")
    for share in options.shares:
        if share not in SHARES:
            raise SimulateError(f"unknown share {share!r} (known: {', '.join(SHARES)})")
    if any(n < 1 for n in options.instances):
        raise SimulateError("instances: at least 1")


def check_strategies(names: Sequence[str]) -> None:
    check(Options(strategies=names))


def run(options: Options, out: Callable[[str], None] = print) -> list[Summary]:
    scenario = SCENARIOS.get(options.scenario)
    if scenario is None:
        raise SimulateError(f"unknown scenario {options.scenario!r} (known: {', '.join(SCENARIOS)})")
    check(options)
    names = [s for s in options.strategies if s != ORACLE]
    with_oracle = options.oracle or ORACLE in options.strategies
    specs = scenario.fleet()
    out(f"scenario {scenario.name}: {scenario.description}")
    for spec in specs:
        rates = f"prefill {spec.prefill_tps:g} tok/s, decode {spec.decode_tps:g} tok/s per request"
        prices = f"${spec.input_cost_per_mtok:g}/${spec.output_cost_per_mtok:g} per Mtok in/out"
        cache = f"prefix cache {spec.cache_tokens:,} tokens"
        out(f"  {spec.name}: {spec.slots} slots, {rates}, weight {spec.weight}, {prices}, {cache}")
    seeds = list(options.seeds or [options.seed])
    setups = gateway_setups(options)
    summaries: list[Summary] = []
    started = time.perf_counter()
    workload_names = ["trace"] if options.trace else list(options.workloads)
    for seed in seeds:
        for workload_name in workload_names:
            for utilisation, workload in workloads(options, specs, workload_name, seed):
                out(f"workload: {workload.source}")
                events = scenario.events(workload.span_s)
                for label, gateways in setups:
                    runs = [*names, *([ORACLE] if with_oracle and label == "1" else [])]
                    for name in runs:
                        refresh_s = options.refresh_ms / 1000
                        result = simulate(
                            name, specs, workload, events, seed, refresh_s, gateways, options.block_tokens
                        )
                        summaries.append(summarise(result, scenario.name, utilisation, workload_name, seed, label))
    out(f"({len(summaries)} runs in {time.perf_counter() - started:.1f} s of real time; times in seconds)")
    for seed in seeds:
        out(f"\nseed {seed}:\n" if len(seeds) > 1 else "")
        out(table([s for s in summaries if s.seed == seed]))
    verdicts = targets_table(summaries)
    if verdicts:
        out("\n" + verdicts)
    if options.json_path:
        with open(options.json_path, "w") as fh:
            json.dump([s.as_dict() for s in summaries], fh, indent=1)
        out(f"results written to {options.json_path}")
    if options.plot:
        seeds_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"median of seeds {', '.join(map(str, seeds))}"
        why_not = plot(summaries, options.plot, f"{scenario.name}, {seeds_text}")
        out(why_not or f"plot saved to {options.plot}")
    return summaries
