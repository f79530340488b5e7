"""least_busy, latency, least_load and expected_delay: candidates in, candidate out."""

from __future__ import annotations

from collections import Counter

from modelway.loadmetrics.score import load_score
from modelway.strategies.base import Outcome

from .helpers import deployment, strategy, view


def outcome(d, ttft: float | None, duration: float, ok: bool = True, stream: bool = True, at: float = 0.0) -> Outcome:  # type: ignore[no-untyped-def]
    return Outcome(d, ok, 200 if ok else 500, None if ok else "500", duration, ttft, stream, at)


# least_busy


def test_least_busy_picks_fewest_inflight_relative_to_weight() -> None:
    a, b, c = (
        deployment(0, "a", weight=4, inflight=6),
        deployment(1, "b", weight=1, inflight=2),
        deployment(2, "c"),
    )
    c.stats.inflight = 1
    chooser = strategy("least_busy", [a, b, c])
    assert chooser.choose(view(), [a, b, c]) is c  # 1/1 < 6/4 < 2/1
    c.stats.inflight = 3
    assert chooser.choose(view(), [a, b, c]) is a  # 1.5 < 2 < 3


def test_least_busy_ties_go_round_robin() -> None:
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = strategy("least_busy", [a, b])
    assert Counter(chooser.choose(view(), [a, b]).name for _ in range(10)) == {"a/a": 5, "b/b": 5}


# latency


def test_latency_probes_each_unmeasured_deployment_once_then_picks_the_fastest() -> None:
    now = 100.0
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = strategy("latency", [a, b])
    first = {chooser.choose(view(now=now), [a, b]).name, chooser.choose(view(now=now), [a, b]).name}
    assert first == {"a/a", "b/b"}  # one probe each, not all traffic to the first one
    chooser.observe(outcome(a, ttft=0.9, duration=3.0, at=now))
    chooser.observe(outcome(b, ttft=0.1, duration=5.0, at=now))
    picks = Counter(chooser.choose(view(now=now), [a, b]).name for _ in range(200))
    assert picks == {"b/b": 200}  # nothing in flight: the clearly faster one
    b.stats.inflight = 2  # each holds b for 5 s: a, 0.9 s, is now clearly faster
    assert Counter(chooser.choose(view(now=now), [a, b]).name for _ in range(20)) == {"a/a": 20}


def test_latency_does_not_herd_onto_the_fastest() -> None:
    """Picks count the moment they are made: a burst spreads over both, faster one first
    (today's latency sent all of it to `fast`, which then queued)."""
    now = 100.0
    fast, slow = deployment(0, "fast"), deployment(1, "slow")
    chooser = strategy("latency", [fast, slow])
    chooser.observe(outcome(fast, ttft=0.2, duration=6.0, at=now))
    chooser.observe(outcome(slow, ttft=0.4, duration=8.0, at=now))
    picks = Counter()
    for _ in range(40):  # a burst: nothing ends meanwhile
        chosen = chooser.choose(view(now=now), [fast, slow])
        chosen.stats.inflight += 1
        picks[chosen.name] += 1
    assert 20 <= picks["fast/fast"] <= 28 and picks["slow/slow"] >= 12


def test_latency_keeps_the_weights_spread_when_nothing_tells_them_apart() -> None:
    now = 100.0
    big, small = deployment(0, "big", weight=3), deployment(1, "small")
    chooser = strategy("latency", [big, small])
    chooser.observe(outcome(big, ttft=0.3, duration=5.0, at=now))
    chooser.observe(outcome(small, ttft=0.3, duration=5.0, at=now))
    picks = Counter(chooser.choose(view(now=now), [big, small]).name for _ in range(40))
    assert picks == {"big/big": 30, "small/small": 10}  # round robin by weight


def test_latency_compares_streams_by_ttft_and_others_by_total_time() -> None:
    now = 0.0
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = strategy("latency", [a, b])
    for stream in (True, False):
        chooser.observe(outcome(a, ttft=0.1, duration=9.0, stream=stream, at=now))
        chooser.observe(outcome(b, ttft=0.5, duration=1.0, stream=stream, at=now))
    assert chooser.choose(view(stream=True, now=now), [a, b]) is a
    assert chooser.choose(view(stream=False, now=now), [a, b]) is b


def test_latency_retries_a_recovered_deployment() -> None:
    now = 0.0
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = strategy("latency", [a, b])
    chooser.observe(outcome(a, ttft=5.0, duration=6.0, at=now))  # a was slow
    chooser.observe(outcome(b, ttft=0.5, duration=1.0, at=now))
    assert chooser.choose(view(now=now), [a, b]) is b
    now = 20.0
    chooser.observe(outcome(b, ttft=0.5, duration=1.0, at=now))
    now = 31.0  # a has not been measured for STALE_AFTER_S: it gets one probe
    assert chooser.choose(view(now=now), [a, b]) is a
    assert chooser.choose(view(now=now), [a, b]) is b  # one probe, not a flood
    for _ in range(20):
        chooser.observe(outcome(a, ttft=0.1, duration=0.5, at=now))  # it has recovered
    assert chooser.choose(view(now=now), [a, b]) is a


def test_latency_failures_count_as_slow() -> None:
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = strategy("latency", [a, b])
    chooser.observe(outcome(a, ttft=None, duration=0.01, ok=False))
    chooser.observe(outcome(b, ttft=1.0, duration=2.0))
    assert chooser.choose(view(), [a, b]) is b


# least_load


def test_least_load_lowest_metric_wins_by_metric_key() -> None:
    minimax = deployment(0, "minmax", metric_key="minimax_1")
    qwen = deployment(1, "qianwen", metric_key="qwen_1")
    chooser = strategy("least_load", [minimax, qwen])
    assert chooser.choose(view({"minimax_1": 90, "qwen_1": 10}), [minimax, qwen]) is qwen
    assert chooser.choose(view({"minimax_1": 5, "qwen_1": 10}), [minimax, qwen]) is minimax


def test_least_load_without_metric_ranks_last_and_no_metrics_is_round_robin() -> None:
    a, b, c = deployment(0, "a", metric_key="ka"), deployment(1, "b", metric_key="kb"), deployment(2, "c")
    chooser = strategy("least_load", [a, b, c])
    assert chooser.choose(view({"kb": 1000.0}), [a, b, c]) is b  # the only one with a value
    picks = Counter(chooser.choose(view({}), [a, b, c]).name for _ in range(9))
    assert picks == {"a/a": 3, "b/b": 3, "c/c": 3}


def test_least_load_ties_are_weighted_round_robin() -> None:
    a, b = deployment(0, "a", weight=3, metric_key="ka"), deployment(1, "b", metric_key="kb")
    chooser = strategy("least_load", [a, b])
    picks = Counter(chooser.choose(view({"ka": 1, "kb": 1}), [a, b]).name for _ in range(8))
    assert picks == {"a/a": 6, "b/b": 2}


def test_least_load_reads_provider_scores_from_prometheus() -> None:
    a, b = deployment(0, "vllm-a"), deployment(1, "vllm-b")
    chooser = strategy("least_load", [a, b])
    metrics = {"provider:vllm-a": load_score(2, 10, 0.5), "provider:vllm-b": load_score(0, 60, 0.9)}
    assert chooser.choose(view(metrics), [a, b]) is b  # no queue beats a shorter running list


# expected_delay


def test_expected_delay_without_measurements_uses_weights_as_capacity() -> None:
    big, small = deployment(0, "big", weight=4, inflight=3), deployment(1, "small", weight=1)
    chooser = strategy("expected_delay", [big, small])
    assert chooser.choose(view(), [big, small]) is big  # (3+1)/4 = 1 = (0+1)/1, tie to the higher weight
    big.stats.inflight = 4
    assert chooser.choose(view(), [big, small]) is small


def test_expected_delay_prefers_a_free_slot_over_a_faster_queue() -> None:
    fast, slow = deployment(0, "fast", weight=4), deployment(1, "slow")
    chooser = strategy("expected_delay", [fast, slow])
    metrics = {
        "provider:fast": load_score(0, 8, 0.5),
        "provider:slow": load_score(0, 4, 0.5),
    }  # slots 8 and 4
    chooser.saturated.update({fast.index: 0.0, slow.index: 0.0})  # both seen queueing at them: exact
    chooser.observe(outcome(fast, ttft=0.1, duration=5.1))
    chooser.observe(outcome(slow, ttft=0.3, duration=10.3))
    fast.stats.inflight, slow.stats.inflight = 3, 0
    assert chooser.choose(view(metrics), [fast, slow]) is fast  # both have room: the faster prefill
    fast.stats.inflight = 8
    assert chooser.choose(view(metrics), [fast, slow]) is slow  # fast is full: a free slot, even a slow one
    slow.stats.inflight = 4
    # both full: fast's wait 1 * 5.1/8 s beats slow's 1 * 10.3/4 s
    assert chooser.choose(view(metrics), [fast, slow]) is fast


def test_expected_delay_counts_no_queue_where_the_slots_are_only_a_lower_bound() -> None:
    # slow has only ever run one request at a time (fast took the rest): its 1 is what it was
    # given, not what it holds. Taken for full, it would never be sent the requests that show it.
    fast, slow = deployment(0, "fast", weight=4), deployment(1, "slow")
    chooser = strategy("expected_delay", [fast, slow])
    metrics = {"provider:fast": load_score(1, 8, 1.0), "provider:slow": load_score(0, 1, 0.1)}
    chooser.choose(view(metrics), [fast, slow])  # fast queues at 8: exact; slow's 1 is a lower bound
    assert chooser.slots == {fast.index: 8, slow.index: 1}
    chooser.observe(outcome(fast, ttft=0.1, duration=5.1))
    chooser.observe(outcome(slow, ttft=0.5, duration=10.5))
    fast.stats.inflight, slow.stats.inflight = 8, 1
    assert chooser.choose(view(metrics), [fast, slow]) is slow  # fast's queue against slow's 0.5 s
    chooser.saturated[slow.index] = 0.0  # had slow queued at 1, 1 would be exact: 1 * 10.5 s to wait
    assert chooser.choose(view(metrics), [fast, slow]) is fast


def test_expected_delay_learns_slots_as_the_highest_running_count() -> None:
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = strategy("expected_delay", [a, b])
    for running in (3, 16, 9):
        chooser.choose(view({"provider:a": load_score(0, running, 0.1)}), [a, b])
    assert chooser.slots[a.index] == 16
    assert b.index not in chooser.slots


def test_expected_delay_probes_an_idle_deployment_not_seen_for_a_while() -> None:
    now = 0.0
    a, b = deployment(0, "a"), deployment(1, "b")
    chooser = strategy("expected_delay", [a, b])
    metrics = {"provider:a": load_score(0, 4, 0), "provider:b": load_score(0, 4, 0)}
    chooser.observe(outcome(a, ttft=3.0, duration=8.0, at=now))  # a looked slow
    chooser.observe(outcome(b, ttft=0.1, duration=5.0, at=now))
    assert chooser.choose(view(metrics, now=now), [a, b]) is b
    now = 20.0
    chooser.observe(outcome(b, ttft=0.1, duration=5.0, at=now))
    now = 40.0
    assert chooser.choose(view(metrics, now=now), [a, b]) is a  # a: 40 s unseen and idle, one probe
    assert chooser.choose(view(metrics, now=now), [a, b]) is b


def test_expected_delay_is_in_the_registry_and_config_validation() -> None:
    from modelway.config.loader import parse_config
    from modelway.errors import ConfigError

    config = parse_config(
        "providers: [{name: p, kind: simulated}]\n"
        "models: [{name: m, strategy: expected_delay, deployments: [{provider: p}]}]\n"
    )
    assert config.models[0].strategy == "expected_delay"
    try:
        parse_config(
            "providers: [{name: p, kind: simulated}]\n"
            "models: [{name: m, strategy: nope, deployments: [{provider: p}]}]\n"
        )
    except ConfigError as exc:
        assert "expected_delay" in str(exc)
    else:
        raise AssertionError("unknown strategy accepted")
