"""Statistics per run, the results table, and the PNG plot of p99 TTFT against utilisation
(one panel per workload)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from modelway.simulate.engine import RunResult

WARMUP_SHARE = 0.05  # the first 5% of requests (by arrival) warm the system up: not measured


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    scenario: str
    utilisation: float | None
    strategy: str
    requests: int
    throughput_rps: float
    ttft_mean: float
    ttft_p50: float
    ttft_p99: float
    e2e_mean: float
    e2e_p50: float
    e2e_p99: float
    cost_usd: float
    share: dict[str, float]  # backend -> share of measured requests
    rejected: int
    hit_rate: float = 0.0  # share of prompt tokens the backends' prefix caches held
    workload: str = "independent"
    seed: int = 1
    gateways: str = "1"  # instances, and what they share when more than one: "4 shared all"

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def summarise(
    result: RunResult,
    scenario: str,
    utilisation: float | None,
    workload: str = "independent",
    seed: int = 1,
    gateways: str = "1",
) -> Summary:
    jobs = result.jobs[int(len(result.jobs) * WARMUP_SHARE) :]
    prompt_tokens = sum(j.request.prompt_tokens for j in jobs)
    ttft = sorted(j.first_token - j.arrival for j in jobs)
    e2e = sorted(j.done - j.arrival for j in jobs)
    cost = 0.0
    share = {b.name: 0.0 for b in result.backends}
    for job in jobs:
        spec = job.backend.spec
        request = job.request
        cost += (
            request.prompt_tokens * spec.input_cost_per_mtok
            + request.output_tokens * spec.output_cost_per_mtok
        ) / 1e6
        share[spec.name] += 1
    n = len(jobs)
    span = (max(j.done for j in jobs) - jobs[0].arrival) if jobs else 0.0
    return Summary(
        scenario=scenario,
        utilisation=utilisation,
        strategy=result.strategy,
        requests=n,
        throughput_rps=n / span if span > 0 else math.nan,
        ttft_mean=sum(ttft) / n if n else math.nan,
        ttft_p50=percentile(ttft, 0.50),
        ttft_p99=percentile(ttft, 0.99),
        e2e_mean=sum(e2e) / n if n else math.nan,
        e2e_p50=percentile(e2e, 0.50),
        e2e_p99=percentile(e2e, 0.99),
        cost_usd=cost,
        share={name: count / n if n else 0.0 for name, count in share.items()},
        rejected=result.rejected,
        hit_rate=sum(j.cached for j in jobs) / prompt_tokens if prompt_tokens else 0.0,
        workload=workload,
        seed=seed,
        gateways=gateways,
    )


def table(summaries: Sequence[Summary]) -> str:
    """A Markdown table, one row per (scenario, workload, utilisation, gateways, strategy)."""
    if not summaries:
        return "(no runs)"
    backends = list(summaries[0].share)
    instances = any(s.gateways != "1" for s in summaries)
    head = [
        "scenario",
        "workload",
        "util",
        *(["gateways"] if instances else []),
        "strategy",
        "req/s",
        "TTFT mean",
        "p50",
        "p99",
        "E2E mean",
        "p50",
        "p99",
        "hit",
        "cost $",
        "share " + ":".join(backends),
    ]
    rows = [head, ["---"] * len(head)]
    for s in summaries:
        rows.append(
            [
                s.scenario,
                s.workload,
                f"{s.utilisation:.0%}" if s.utilisation is not None else "trace",
                *([s.gateways] if instances else []),
                s.strategy,
                f"{s.throughput_rps:.2f}",
                f"{s.ttft_mean:.2f}",
                f"{s.ttft_p50:.2f}",
                f"{s.ttft_p99:.2f}",
                f"{s.e2e_mean:.2f}",
                f"{s.e2e_p50:.2f}",
                f"{s.e2e_p99:.2f}",
                f"{s.hit_rate:.0%}",
                f"{s.cost_usd:.2f}",
                ":".join(f"{s.share[b]:.0%}" for b in backends)
                + (f" ({s.rejected} rejected)" if s.rejected else ""),
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def plot(summaries: Sequence[Summary], path: str, title: str) -> str | None:
    """Save p99 TTFT against utilisation, one panel per workload and one line per strategy
    (and gateway setup), the median over seeds. Returns None when done, else why not
    (matplotlib missing, or nothing to plot)."""
    points = [s for s in summaries if s.utilisation is not None]
    if not points:
        return "no utilisation sweep to plot (a trace run without --utilisation)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'modelway[simulate]'): plot skipped"
    workloads = list(dict.fromkeys(s.workload for s in points))
    columns = min(2, len(workloads))
    rows = -(-len(workloads) // columns)
    figure, panels = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.5 * rows), squeeze=False)
    for axes in panels.flat[len(workloads) :]:
        axes.set_visible(False)
    for axes, workload in zip(panels.flat, workloads, strict=False):
        mine = [s for s in points if s.workload == workload]
        for line_name in dict.fromkeys(label(s) for s in mine):
            by_util: dict[float, list[float]] = {}
            for s in mine:
                if label(s) == line_name:
                    by_util.setdefault(s.utilisation or 0.0, []).append(s.ttft_p99)
            line = sorted((u, statistics.median(v)) for u, v in by_util.items())
            axes.plot(
                [u * 100 for u, _ in line],
                [v for _, v in line],
                marker="o",
                label=line_name,
                linestyle="--" if line_name.startswith("oracle") else "-",
            )
        axes.set_xlabel("utilisation (%)")
        axes.set_ylabel("p99 time to first token (s)")
        axes.set_yscale("log")
        axes.set_title(f"{title}: {workload}", fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def label(s: Summary) -> str:
    return s.strategy if s.gateways == "1" else f"{s.strategy} ({s.gateways})"
