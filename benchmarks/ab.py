"""Paired A/B of two modelway checkouts on the non-streaming path, for changes too small for
the full benchmark's spread (±10% between runs): both run side by side against the same
nginx upstream, in alternating short wrk runs, and what is reported is the median of the
per-round ratios B/A, which host-speed drift affects far less than the absolute figures.

    python -m benchmarks.ab /path/to/checkout-A [/path/to/checkout-B] [--rounds 8] [--seconds 3]

B defaults to this checkout. Same pinning as the full benchmark: gateways on CPU 0, wrk and
the upstream on CPU 1.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.loadgen import run_wrk
from benchmarks.procs import Services, ensure_tools
from benchmarks.systems import (
    CHAT_BODY,
    CHAT_PATH,
    GATEWAY_CPU,
    LOAD_CPU,
    System,
    service_port,
    start_modelway,
    start_upstream,
)

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path, help="checkout A (the baseline)")
    parser.add_argument("b", type=Path, nargs="?", default=HERE, help="checkout B (default: this one)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    nginx = ensure_tools()
    services = Services()
    try:
        with tempfile.TemporaryDirectory(prefix="modelway-ab-") as tmp:
            workdir = Path(tmp)
            upstream_port = start_upstream(services, nginx, workdir)
            providers = {"bench": f"http://127.0.0.1:{upstream_port}/v1"}
            systems = []
            for label, source in (("A", args.a), ("B", args.b)):
                service = start_modelway(services, workdir, label, providers, 1, GATEWAY_CPU, source.resolve())
                systems.append(System(label, str(source), service_port(service), CHAT_PATH, service))
            for system in systems:  # warm-up, not measured
                run_wrk(system.url(), connections=args.connections, seconds=2, body=CHAT_BODY, cpu=LOAD_CPU)
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            rps: dict[str, list[float]] = {"A": [], "B": []}
            for round_ in range(args.rounds):
                order = systems if round_ % 2 == 0 else systems[::-1]
                for system in order:
                    result = run_wrk(
                        system.url(),
                        connections=args.connections,
                        seconds=args.seconds,
                        body=CHAT_BODY,
                        cpu=LOAD_CPU,
                        measure_pids=system.pids(),
                    )
                    assert result.errors == 0, f"{system.name}: {result.errors} errors"
                    assert result.cpu_us_per_request is not None
                    cpu[system.name].append(result.cpu_us_per_request)
                    rps[system.name].append(result.rps)
                print(
                    f"round {round_ + 1}: A {cpu['A'][-1]:.1f} µs/req {rps['A'][-1]:,.0f} req/s"
                    f" | B {cpu['B'][-1]:.1f} µs/req {rps['B'][-1]:,.0f} req/s",
                    flush=True,
                )
            cpu_ratio = statistics.median(b / a for a, b in zip(cpu["A"], cpu["B"], strict=True))
            rps_ratio = statistics.median(b / a for a, b in zip(rps["A"], rps["B"], strict=True))
            print(f"\nA = {args.a}\nB = {args.b}")
            print(f"CPU µs/req: A median {statistics.median(cpu['A']):.1f}, B median {statistics.median(cpu['B']):.1f}")
            rps_a, rps_b = statistics.median(rps["A"]), statistics.median(rps["B"])
            print(f"req/s @{args.connections}: A median {rps_a:,.0f}, B median {rps_b:,.0f}")
            print(f"median of per-round ratios B/A: CPU {cpu_ratio:.3f}, req/s {rps_ratio:.3f}")
    finally:
        services.stop_all()


if __name__ == "__main__":
    main()
