"""Medians over repetitions, the markdown tables, and the issue's targets checked."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.loadgen import WrkResult
from benchmarks.streams import StreamsResult

JSON32, JSON1, SSE32 = "json@32", "json@1", "sse@32"
NO_VALUE = "-"


@dataclass
class Results:
    labels: dict[str, str]  # system name → label, in table order
    runs: dict[str, dict[str, list[WrkResult]]] = field(default_factory=dict)  # scenario → system → runs
    timings: dict[str, list[tuple[float, float]]] = field(
        default_factory=dict
    )  # system → (ttfb, ttlb) per rep
    slow_streams: dict[str, StreamsResult] = field(default_factory=dict)

    def add_run(self, scenario: str, system: str, result: WrkResult) -> None:
        self.runs.setdefault(scenario, {}).setdefault(system, []).append(result)

    def median(self, scenario: str, system: str, metric: Callable[[WrkResult], float | None]) -> float | None:
        values = [v for r in self.runs.get(scenario, {}).get(system, []) if (v := metric(r)) is not None]
        return statistics.median(values) if values else None

    def added(self, scenario: str, system: str, metric: Callable[[WrkResult], float]) -> float | None:
        """Median over repetitions of (system - direct), each pair taken from the same repetition."""
        mine = self.runs.get(scenario, {}).get(system, [])
        direct = self.runs.get(scenario, {}).get("direct", [])
        diffs = [metric(a) - metric(b) for a, b in zip(mine, direct, strict=False)]
        return statistics.median(diffs) if diffs else None

    def stream_median(self, system: str, index: int) -> float | None:
        values = [t[index] for t in self.timings.get(system, [])]
        return statistics.median(values) if values else None

    def stream_added(self, system: str, index: int) -> float | None:
        pairs = zip(self.timings.get(system, []), self.timings.get("direct", []), strict=False)
        diffs = [a[index] - b[index] for a, b in pairs]
        return statistics.median(diffs) if diffs else None


def fmt(value: float | None, digits: int = 3, suffix: str = "") -> str:
    if value is None:
        return NO_VALUE
    return f"{value:,.{digits}f}{suffix}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def request_tables(res: Results) -> list[str]:
    nginx_cpu = res.median(JSON32, "nginx", lambda r: r.cpu_us_per_request)
    rows = []
    for name, label in res.labels.items():
        if name not in res.runs.get(JSON32, {}):
            continue
        cpu = res.median(JSON32, name, lambda r: r.cpu_us_per_request)
        rows.append(
            [
                label,
                fmt(res.median(JSON32, name, lambda r: r.rps), 0),
                fmt(res.median(JSON32, name, lambda r: r.p50_ms)),
                fmt(res.median(JSON32, name, lambda r: r.p99_ms)),
                fmt(res.median(JSON1, name, lambda r: r.p50_ms)),
                fmt(res.median(JSON1, name, lambda r: r.p99_ms)),
                NO_VALUE if name == "direct" else fmt(res.added(JSON1, name, lambda r: r.p50_ms)),
                NO_VALUE if name == "direct" else fmt(res.added(JSON1, name, lambda r: r.p99_ms)),
                fmt(cpu, 1),
                fmt(cpu / nginx_cpu if cpu and nginx_cpu else None, 1, "x"),
            ]
        )
    lines = ["### Non-streaming: POST /v1/chat/completions (310-byte chat.completion)", ""]
    lines += table(
        [
            "system",
            "req/s @32",
            "p50 @32 ms",
            "p99 @32 ms",
            "p50 @1 ms",
            "p99 @1 ms",
            "added p50 @1 ms",
            "added p99 @1 ms",
            "CPU µs/req",
            "CPU vs nginx",
        ],
        rows,
    )
    rows = []
    for name, label in res.labels.items():
        if name not in res.runs.get(SSE32, {}) and name not in res.timings:
            continue
        direct = name == "direct"
        ms = 1000.0
        rows.append(
            [
                label,
                fmt(res.median(SSE32, name, lambda r: r.rps), 0),
                fmt(res.median(SSE32, name, lambda r: r.cpu_us_per_request), 1),
                fmt(scale(res.stream_median(name, 0), ms)),
                fmt(scale(res.stream_median(name, 1), ms)),
                NO_VALUE if direct else fmt(scale(res.stream_added(name, 0), ms)),
                NO_VALUE if direct else fmt(scale(res.stream_added(name, 1), ms)),
            ]
        )
    lines += ["", "### Streaming: 20 SSE events + [DONE] (3,760 bytes) per request", ""]
    lines += table(
        ["system", "req/s @32", "CPU µs/req", "TTFB ms", "TTLB ms", "added TTFB ms", "added TTLB ms"], rows
    )
    return lines


def scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def memory_table(res: Results) -> list[str]:
    if not res.slow_streams:
        return []
    rows = []
    for name, s in res.slow_streams.items():
        rows.append(
            [
                res.labels.get(name, name),
                str(s.streams),
                f"{s.ok} / {s.streams}",
                str(s.wrong),
                str(s.failed),
                fmt(s.seconds, 1),
                fmt(s.idle_rss_mib, 1),
                fmt(s.peak_rss_mib, 1),
                fmt(s.end_rss_mib, 1),
                fmt(s.cpu_us_per_chunk, 1),
            ]
        )
    first = next(iter(res.slow_streams.values()))
    lines = [
        "",
        f"### Slow streams: {first.streams} concurrent, {first.chunks_per_stream - 1} events each "
        "(1 per 100 ms) + [DONE], through one process",
        "",
    ]
    return lines + table(
        [
            "system",
            "streams",
            "complete & correct",
            "wrong",
            "failed",
            "wall s",
            "idle RSS MiB",
            "peak RSS MiB (VmHWM)",
            "RSS after MiB",
            "CPU µs/event",
        ],
        rows,
    )


def scale_out_table(res: Results) -> list[str]:
    one = res.median(JSON32, "modelway", lambda r: r.rps)
    two = res.median(JSON32, "modelway-w2", lambda r: r.rps)
    if two is None:
        return []
    lines = ["", "### Scale-out: non-streaming req/s at 32 connections", ""]
    return lines + table(
        ["modelway", "req/s @32", "factor"],
        [
            ["1 worker (CPU 0)", fmt(one, 0), "1.00x"],
            [
                "2 workers (CPUs 0-1, shared with wrk and upstream)",
                fmt(two, 0),
                fmt(two / one if one else None, 2, "x"),
            ],
        ],
    )


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**MISSED**")


def targets(res: Results) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met?) for modelway, as issue 3 states them."""
    cpu = res.median(JSON32, "modelway", lambda r: r.cpu_us_per_request)
    nginx_cpu = res.median(JSON32, "nginx", lambda r: r.cpu_us_per_request)
    bare_cpu = res.median(JSON32, "bare", lambda r: r.cpu_us_per_request)
    rps = res.median(JSON32, "modelway", lambda r: r.rps)
    bare_rps = res.median(JSON32, "bare", lambda r: r.rps)
    p50 = res.added(JSON1, "modelway", lambda r: r.p50_ms)
    p99 = res.added(JSON1, "modelway", lambda r: r.p99_ms)
    ttfb = scale(res.stream_added("modelway", 0), 1000.0)
    out: list[tuple[str, str, bool | None]] = []
    ratio = cpu / nginx_cpu if cpu and nginx_cpu else None
    out.append(
        (
            "CPU per request ≤ 8x nginx's",
            f"{fmt(cpu, 1)} µs = {fmt(ratio, 1)}x nginx ({fmt(nginx_cpu, 1)} µs)",
            None if ratio is None else ratio <= 8,
        )
    )
    out.append(
        (
            "CPU per request below the bare proxy's",
            f"{fmt(cpu, 1)} µs vs {fmt(bare_cpu, 1)} µs",
            None if cpu is None or bare_cpu is None else cpu < bare_cpu,
        )
    )
    out.append(
        ("≥ 10,000 req/s at 32 connections", f"{fmt(rps, 0)} req/s", None if rps is None else rps >= 10_000)
    )
    out.append(
        (
            "req/s above the bare proxy's",
            f"{fmt(rps, 0)} vs {fmt(bare_rps, 0)}",
            None if rps is None or bare_rps is None else rps > bare_rps,
        )
    )
    out.append(("added p50 at 1 connection ≤ 0.2 ms", f"{fmt(p50)} ms", None if p50 is None else p50 <= 0.2))
    out.append(("added p99 at 1 connection ≤ 0.5 ms", f"{fmt(p99)} ms", None if p99 is None else p99 <= 0.5))
    out.append(
        (
            "streaming adds ≤ 0.5 ms to time to first byte",
            f"{fmt(ttfb)} ms",
            None if ttfb is None else ttfb <= 0.5,
        )
    )
    slow = res.slow_streams.get("modelway")
    if slow is not None:
        out.append(
            (
                f"{slow.streams} slow streams all complete with correct content",
                f"{slow.ok} / {slow.streams}",
                slow.ok == slow.streams,
            )
        )
        out.append(
            (
                "peak RSS under 300 MB during them",
                f"{fmt(slow.peak_rss_mib * 1.048576, 1)} MB",
                slow.peak_rss_mib * 1.048576 < 300,
            )
        )
    return out


def spread_table(res: Results) -> list[str]:
    """Lowest and highest of each repetition, and how busy the rest of the machine was."""
    rows = []
    for name, label in res.labels.items():
        runs = res.runs.get(JSON32, {}).get(name, [])
        if len(runs) < 2:
            continue
        cpus = [r.cpu_us_per_request for r in runs if r.cpu_us_per_request is not None]
        every = [r for scenario in res.runs.values() for r in scenario.get(name, [])]
        rows.append(
            [
                label,
                f"{min(r.rps for r in runs):,.0f} - {max(r.rps for r in runs):,.0f}",
                f"{min(cpus):,.1f} - {max(cpus):,.1f}" if cpus else NO_VALUE,
                f"{max(r.foreign_cpu for r in every):.0%}",
                f"{max(r.steal for r in every):.0%}",
            ]
        )
    if not rows:
        return []
    lines = ["", "### Spread over repetitions (non-streaming, 32 connections) and machine noise", ""]
    return lines + table(
        ["system", "req/s min - max", "CPU µs/req min - max", "max other load", "max steal"], rows
    )


def errors_note(res: Results) -> list[str]:
    notes = []
    for scenario, systems in res.runs.items():
        for name, runs in systems.items():
            errors = sum(r.errors for r in runs)
            if errors:
                notes.append(
                    f"- wrk counted {errors} errors (socket errors or non-2xx) for {name} in {scenario}"
                )
    return ["", "**Errors during the runs:**", *notes] if notes else []


def render(res: Results, header: Sequence[str]) -> str:
    lines = [*header, "", *request_tables(res), *memory_table(res), *scale_out_table(res)]
    lines += [*spread_table(res), *errors_note(res)]
    checks = targets(res)
    if checks:
        lines += ["", "### Issue 3 targets for modelway (1 worker)", ""]
        lines += table(["target", "measured", "verdict"], [[t, m, verdict(ok)] for t, m, ok in checks])
    return "\n".join(lines) + "\n"
