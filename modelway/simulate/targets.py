"""The targets the simulator checks (issues 4 and 15), per seed, on whatever the run holds:
a target whose runs are missing (a strategy, a workload or a gateway setup not in the run)
is left out.

At 80% utilisation, one gateway instance:
  independent  the best strategy's p99 TTFT <= 0.5x weighted round robin's and <= 1.2x the
               oracle's; prefix_affinity's p99 <= 1.05x expected_delay's
  multiturn    prefix_affinity's mean TTFT <= 0.5x expected_delay's, its p99 <= 0.7x
               expected_delay's and <= 1.25x the (cache-aware) oracle's
At every utilisation and workload: latency's p99 TTFT <= weighted round robin's.
Several instances sharing state: each strategy's p99 TTFT <= 1.2x its own with one instance
(with nothing shared the figure is reported, with no target).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from modelway.simulate.engine import ORACLE
from modelway.simulate.report import Summary

TARGET_UTILISATION = 0.8
WRR = "weighted_round_robin"
ED = "expected_delay"
PA = "prefix_affinity"


class Row(NamedTuple):
    seed: int
    workload: str
    target: str
    figures: str
    ratio: float
    bound: float | None  # None: reported, no target


def at(summaries: Sequence[Summary], utilisation: float) -> list[Summary]:
    return [s for s in summaries if s.utilisation is not None and abs(s.utilisation - utilisation) < 1e-9]


def compare(seed: int, workload: str, target: str, value: float, of: float, bound: float | None) -> Row:
    ratio = value / of if of > 0 else float("inf")
    return Row(seed, workload, target, f"{value:.2f}s vs {of:.2f}s", ratio, bound)


def rows(summaries: Sequence[Summary]) -> list[Row]:
    found: list[Row] = []
    for seed in dict.fromkeys(s.seed for s in summaries):
        mine = [s for s in summaries if s.seed == seed]
        for workload in dict.fromkeys(s.workload for s in mine):
            runs = [s for s in mine if s.workload == workload]
            one = [s for s in runs if s.gateways == "1"]
            found += target_rows(seed, workload, at(one, TARGET_UTILISATION))
            found += latency_rows(seed, workload, one)
            found += instance_rows(seed, workload, at(runs, TARGET_UTILISATION))
    return found


def target_rows(seed: int, workload: str, runs: list[Summary]) -> list[Row]:
    by = {s.strategy: s for s in runs}
    found: list[Row] = []
    oracle = by.get(ORACLE)
    if workload == "independent":
        contenders = [s for s in runs if s.strategy != ORACLE]
        best = min(contenders, key=lambda s: s.ttft_p99) if contenders else None
        if best is not None and WRR in by:
            target = f"best p99 ({best.strategy}) vs WRR"
            found.append(compare(seed, workload, target, best.ttft_p99, by[WRR].ttft_p99, 0.5))
        if best is not None and oracle is not None:
            target = f"best p99 ({best.strategy}) vs oracle"
            found.append(compare(seed, workload, target, best.ttft_p99, oracle.ttft_p99, 1.2))
        if PA in by and ED in by:
            target = "prefix_affinity p99 vs expected_delay"
            found.append(compare(seed, workload, target, by[PA].ttft_p99, by[ED].ttft_p99, 1.05))
    if workload == "multiturn" and PA in by:
        pa = by[PA]
        if ED in by:
            ed = by[ED]
            found.append(compare(seed, workload, "prefix_affinity mean vs ED", pa.ttft_mean, ed.ttft_mean, 0.5))
            found.append(compare(seed, workload, "prefix_affinity p99 vs ED", pa.ttft_p99, ed.ttft_p99, 0.7))
        if oracle is not None:
            found.append(compare(seed, workload, "prefix_affinity p99 vs oracle", pa.ttft_p99, oracle.ttft_p99, 1.25))
            found.append(
                compare(seed, workload, "prefix_affinity mean vs oracle", pa.ttft_mean, oracle.ttft_mean, None)
            )
    return found


def latency_rows(seed: int, workload: str, runs: list[Summary]) -> list[Row]:
    found: list[Row] = []
    for utilisation in dict.fromkeys(s.utilisation for s in runs):
        by = {s.strategy: s for s in runs if s.utilisation == utilisation}
        if "latency" in by and WRR in by:
            where = f"{utilisation:.0%}" if utilisation is not None else "trace"
            target = f"latency p99 vs WRR at {where}"
            found.append(compare(seed, workload, target, by["latency"].ttft_p99, by[WRR].ttft_p99, 1.0))
    return found


def instance_rows(seed: int, workload: str, runs: list[Summary]) -> list[Row]:
    found: list[Row] = []
    single = {s.strategy: s for s in runs if s.gateways == "1"}
    for s in runs:
        alone = single.get(s.strategy)
        if s.gateways == "1" or alone is None:
            continue
        bound = None if s.gateways.endswith("share none") else 1.2
        target = f"{s.strategy}: {s.gateways} vs 1 instance, p99"
        found.append(compare(seed, workload, target, s.ttft_p99, alone.ttft_p99, bound))
    return found


def targets_table(summaries: Sequence[Summary]) -> str | None:
    """A Markdown table of the targets the run can check, one row per seed and target."""
    found = rows(summaries)
    if not found:
        return None
    lines = [
        "| seed | workload | target | figures | ratio | needs | holds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in found:
        needs = f"<= {row.bound:g}x" if row.bound is not None else "(reported)"
        holds = "" if row.bound is None else ("yes" if row.ratio <= row.bound else "**no**")
        lines.append(
            f"| {row.seed} | {row.workload} | {row.target} | {row.figures} | {row.ratio:.2f}x | {needs} | {holds} |"
        )
    return "\n".join(lines)
