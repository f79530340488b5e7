"""`modelway simulate`: deterministic for a seed, traces, the oracle, the plot, the CLI."""

from __future__ import annotations

import itertools
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


# prompts that share prefixes, and several gateway instances (issue 15)


def test_a_conversation_turn_extends_the_last_prompt_and_its_answer() -> None:
    from modelway.simulate.sessions import SHAPES

    sessions = SHAPES["multiturn"](300, seed=4)
    assert sessions == SHAPES["multiturn"](300, seed=4)
    long = next(s for s in sessions if len(s) >= 3)
    for before, after in itertools.pairwise(long):
        assert after.segments[: len(before.segments)] == before.segments  # the same prompt first
        assert after.segments[len(before.segments)] == (before.answer, before.prompt + before.output)
        assert after.prompt > before.prompt + before.output and after.offset > before.offset
    systems = {s[0].segments[0][0] for s in sessions}
    assert 1 < len(systems) <= 8  # a handful of system prompts, shared


def test_shared_prefixes_hit_the_caches_and_affinity_hits_them_more() -> None:
    options = Options(
        utilisations=[0.8], requests=1500, plot=None, workloads=["multiturn"], strategies=["random", "prefix_affinity"]
    )
    hits = {s.strategy: s.hit_rate for s in run(options, out=quiet)}
    assert 0 < hits["random"] < hits["prefix_affinity"] <= hits["oracle"] + 0.05
    options = Options(utilisations=[0.8], requests=500, plot=None, strategies=["random"], oracle=False)
    assert run(options, out=quiet)[0].hit_rate == 0.0


def test_trace_prefixes_as_blocks_parts_or_mooncake_hash_ids(tmp_path: Path) -> None:
    trace = tmp_path / "prefix.jsonl"
    trace.write_text(
        '{"t": 0, "prompt_tokens": 40, "output_tokens": 5, "prefix": ["sys", "a1"]}\n'
        '{"t": 1, "prompt_tokens": 900, "output_tokens": 5, "prefix": [["sys", 16], ["a1", 16], ["a2", 800]]}\n'
        '{"timestamp": 2500, "input_length": 1200, "output_length": 7, "hash_ids": [0, 1, 2]}\n'
    )
    first, second, third = read_trace(trace, block_tokens=16).requests
    assert first.segments == ((0, 16), (1, 32))
    assert second.segments == ((0, 16), (1, 32), (2, 832))  # the same identities: the same prefix
    assert (third.arrival, third.prompt_tokens, third.output_tokens) == (2.5, 1200, 7)
    assert third.segments == ((3, 16), (4, 32), (5, 48))  # Mooncake's ids are its own
    bad = tmp_path / "bad-prefix.jsonl"
    bad.write_text(
        '{"t": 0, "prompt_tokens": 40, "output_tokens": 5}\n'
        '{"t": 1, "prompt_tokens": 9, "output_tokens": 5, "prefix": [["x", 0]]}\n'
    )
    with pytest.raises(TraceError, match=r"bad-prefix\.jsonl:2: prefix part"):
        read_trace(bad)


def test_several_instances_each_route_their_share_and_share_what_they_are_told() -> None:
    from modelway.simulate.engine import Gateways

    specs = SCENARIOS["hetero"].fleet()
    (_, workload), = workloads_for("multiturn", 1200)
    for share in ("none", "inflight", "all"):
        result = simulate("prefix_affinity", specs, workload, gateways=Gateways(4, share, 0.1))
        assert len(result.jobs) == 1200 and result.rejected == 0
        assert {j.instance for j in result.jobs} == {0, 1, 2, 3}
        assert all(j.deployment.stats.inflight == 0 for j in result.jobs)


def test_shared_state_shows_every_instance_the_others_counts_and_records() -> None:
    from modelway.simulate.view import AffinityHub, ReplicatedAffinity, SimView
    from modelway.strategies.affinity import MemoryAffinity
    from modelway.strategies.prefix import Prefix

    from .helpers import deployment

    d = deployment(3, "a", inflight=2)
    view = SimView(0.0, {}, poisson([(8000, 10)], 1.0, 1).requests[0])
    assert view.inflight(d) == 2 and view.prefix().size == 32_000 and view.prefix().keys == ()
    d.stats.others, d.stats.peers, d.stats.published = 5, 3, 2  # published with 2 of its own
    assert view.inflight(d) == 7
    d.stats.inflight = 3  # one more since: each of the 3 others is guessed to have sent one too
    assert view.inflight(d) == 3 + 5 + 3
    d.stats.inflight = 0  # two fewer: theirs are not guessed to have ended with them
    assert view.inflight(d) == 5
    tables = [MemoryAffinity(), MemoryAffinity()]
    hub = AffinityHub(list(tables))
    mine = ReplicatedAffinity(tables[0], hub, 0)
    mine.record(Prefix((1, 2), 5000), 3, -1)
    assert tables[1].matches(Prefix((1, 2), 9000), {3}) == {}  # not yet published
    hub.publish()
    assert tables[1].matches(Prefix((1, 2), 9000), {3}) == {3: (1, 4096)}  # up to the next boundary


def workloads_for(name: str, requests: int) -> list[tuple[float | None, object]]:
    from modelway.simulate.run import workloads

    options = Options(utilisations=[0.8], requests=requests)
    return workloads(options, SCENARIOS["hetero"].fleet(), name, 1)  # type: ignore[return-value]


def test_cli_runs_seeds_workloads_and_instances(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate", "--requests", "600", "--utilisation", "0.8", "--no-plot", "--seed", "1-2",
            "--workload", "multiturn", "--strategies", "expected_delay,prefix_affinity",
            "--instances", "1,2", "--share", "inflight,all",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "seed 2:" in printed and "| hetero | multiturn | 80% | 2 share all | prefix_affinity |" in printed
    assert "| 2 | multiturn | prefix_affinity p99 vs ED |" in printed
    assert "| 1 | multiturn | prefix_affinity: 2 share inflight vs 1 instance, p99 |" in printed
    assert main(["simulate", "--workload", "chat", "--no-plot", "--requests", "200"]) == 2
    assert "unknown workload 'chat'" in capsys.readouterr().err
    assert main(["simulate", "--seed", "x", "--no-plot", "--requests", "200"]) == 2
