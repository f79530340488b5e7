"""`modelway simulate`: deterministic for a seed, traces, the oracle, the plot, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from modelway.cli import main
from modelway.simulate.engine import simulate
from modelway.simulate.report import summarise
from modelway.simulate.run import Options, run
from modelway.simulate.scenarios import SCENARIOS
from modelway.simulate.workload import TraceError, poisson, read_trace, token_lengths


def quiet(_: str) -> None:
    return None


def small_run(seed: int) -> list[dict[str, object]]:
    strategies = ["random", "latency", "expected_delay"]
    options = Options(utilisations=[0.8], seed=seed, strategies=strategies, plot=None, requests=1500)
    return [s.as_dict() for s in run(options, out=quiet)]


def test_same_seed_same_results_other_seed_other_results() -> None:
    first, again, other = small_run(3), small_run(3), small_run(4)
    assert first == again
    assert first != other


def test_every_registered_strategy_runs_and_serves_every_request() -> None:
    specs = SCENARIOS["hetero"].fleet()
    workload = poisson(token_lengths(400, seed=1), rate=3.0, seed=1)
    for name in (
        "weighted_round_robin",
        "random",
        "consistent_hash",
        "least_busy",
        "latency",
        "least_load",
        "cost",
        "expected_delay",
        "prefix_affinity",
        "oracle",
    ):
        result = simulate(name, specs, workload)
        assert len(result.jobs) == 400 and result.rejected == 0, name
        assert all(j.arrival <= j.start < j.first_token <= j.done for j in result.jobs)
        assert all(j.deployment.stats.inflight == 0 for j in result.jobs)


def test_cost_strategy_sends_everything_to_the_cheapest_backend() -> None:
    specs = SCENARIOS["hetero"].fleet()
    workload = poisson(token_lengths(200, seed=2), rate=0.5, seed=2)
    summary = summarise(simulate("cost", specs, workload), "hetero", None)
    assert summary.share["small"] == 1.0


def test_oracle_beats_weighted_round_robin_at_high_load() -> None:
    options = Options(utilisations=[0.9], strategies=["weighted_round_robin"], requests=4000, plot=None)
    wrr, oracle = run(options, out=quiet)
    assert oracle.strategy == "oracle"
    assert oracle.ttft_p99 < wrr.ttft_p99


def test_degrade_scenario_slows_the_medium_backend_in_the_middle() -> None:
    specs = SCENARIOS["degrade"].fleet()
    workload = poisson(token_lengths(3000, seed=5), rate=2.0, seed=5)
    events = SCENARIOS["degrade"].events(workload.span_s)
    result = simulate("weighted_round_robin", specs, workload, events)
    third = workload.span_s / 3
    medium = [j for j in result.jobs if j.backend.name == "medium"]
    before = [j.first_token - j.start for j in medium if j.start < third]
    during = [j.first_token - j.start for j in medium if third < j.start < 2 * third]
    assert sum(during) / len(during) > 2 * sum(before) / len(before)


def test_trace_replay_and_rescaling(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    rows = [
        {"t": 10 + i * 0.5, "model": "chat" if i % 2 else "auto", "prompt_tokens": 500, "output_tokens": 50}
        for i in range(200)
    ]
    trace.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    workload = read_trace(trace)
    assert workload.requests[0].arrival == 0.0 and {r.model for r in workload.requests} == {"auto", "chat"}
    recorded = run(Options(trace=str(trace), strategies=["least_busy"], oracle=False, plot=None), out=quiet)
    assert [s.utilisation for s in recorded] == [None] and recorded[0].requests == 190
    scaled = run(
        Options(trace=str(trace), utilisations=[0.5, 0.9], strategies=["least_busy"], plot=None), out=quiet
    )
    assert [s.utilisation for s in scaled] == [0.5, 0.5, 0.9, 0.9]


def test_bad_trace_lines_name_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"t": 0, "prompt_tokens": 1, "output_tokens": 1}\n{"t": 1, "prompt_tokens": 5}\n')
    with pytest.raises(TraceError, match=r"bad\.jsonl:2"):
        read_trace(trace)


def test_plot_is_saved(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "p99.png"
    lines: list[str] = []
    run(
        Options(utilisations=[0.5, 0.8], strategies=["least_busy"], requests=500, plot=str(path)),
        out=lines.append,
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot saved to {path}" in lines


def test_plot_is_skipped_with_a_message_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    path = tmp_path / "p99.png"
    lines: list[str] = []
    run(
        Options(utilisations=[0.5], strategies=["least_busy"], requests=300, plot=str(path)), out=lines.append
    )
    assert not path.exists()
    assert any("matplotlib is not installed" in line for line in lines)


def test_cli_prints_the_table_and_the_target_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "r.json"
    code = main(
        [
            "simulate",
            "--requests",
            "800",
            "--utilisation",
            "0.5,0.8",
            "--no-plot",
            "--json",
            str(out_json),
            "--strategies",
            "weighted_round_robin,expected_delay",
            "--seed",
            "2",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "| hetero | independent | 80% | expected_delay |" in printed
    assert "| hetero | independent | 80% | oracle |" in printed
    assert "| 2 | independent | best p99 (expected_delay) vs WRR |" in printed
    assert len(json.loads(out_json.read_text())) == 6


def test_cli_rejects_unknown_strategy_and_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--strategies", "fastest", "--no-plot", "--requests", "200"]) == 2
    assert "unknown strategy 'fastest'" in capsys.readouterr().err
    assert main(["simulate", "--scenario", "moon", "--no-plot", "--requests", "200"]) == 2
    assert "unknown scenario" in capsys.readouterr().err
