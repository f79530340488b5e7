"""Statistics per run, the results table, and the PNG plot of p99 TTFT against utilisation."""

from __future__ import annotations

import math
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

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def summarise(result: RunResult, scenario: str, utilisation: float | None) -> Summary:
    jobs = result.jobs[int(len(result.jobs) * WARMUP_SHARE) :]
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
    )


def table(summaries: Sequence[Summary]) -> str:
    """A Markdown table, one row per (scenario, utilisation, strategy)."""
    if not summaries:
        return "(no runs)"
    backends = list(summaries[0].share)
    head = [
        "scenario",
        "util",
        "strategy",
        "req/s",
        "TTFT mean",
        "p50",
        "p99",
        "E2E mean",
        "p50",
        "p99",
        "cost $",
        "share " + ":".join(backends),
    ]
    rows = [head, ["---"] * len(head)]
    for s in summaries:
        rows.append(
            [
                s.scenario,
                f"{s.utilisation:.0%}" if s.utilisation is not None else "trace",
                s.strategy,
                f"{s.throughput_rps:.2f}",
                f"{s.ttft_mean:.2f}",
                f"{s.ttft_p50:.2f}",
                f"{s.ttft_p99:.2f}",
                f"{s.e2e_mean:.2f}",
                f"{s.e2e_p50:.2f}",
                f"{s.e2e_p99:.2f}",
                f"{s.cost_usd:.2f}",
                ":".join(f"{s.share[b]:.0%}" for b in backends)
                + (f" ({s.rejected} rejected)" if s.rejected else ""),
            ]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def plot(summaries: Sequence[Summary], path: str, title: str) -> str | None:
    """Save p99 TTFT against utilisation, one line per strategy. Returns None when done,
    else why not (matplotlib missing, or nothing to plot)."""
    points = [s for s in summaries if s.utilisation is not None]
    if not points:
        return "no utilisation sweep to plot (a trace run without --utilisation)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'modelway[simulate]'): plot skipped"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for strategy in dict.fromkeys(s.strategy for s in points):
        line = sorted((s.utilisation or 0.0, s.ttft_p99) for s in points if s.strategy == strategy)
        axes.plot(
            [u * 100 for u, _ in line],
            [v for _, v in line],
            marker="o",
            label=strategy,
            linestyle="--" if strategy == "oracle" else "-",
        )
    axes.set_xlabel("utilisation (%)")
    axes.set_ylabel("p99 time to first token (s)")
    axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return None
