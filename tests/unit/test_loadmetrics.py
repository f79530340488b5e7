"""Metrics sources: Prometheus text parsing and scoring, Redis values, the polling loop."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest

from modelway.config.loader import parse_config
from modelway.loadmetrics import build_source
from modelway.loadmetrics.polling import PollingSource
from modelway.loadmetrics.prometheus_source import PrometheusMetrics, parse_samples, score_text
from modelway.loadmetrics.redis_source import RedisMetrics, parse_values
from modelway.loadmetrics.score import load_score, unpack_score

VLLM = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-7B"} 7.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen2.5-7B"} 5.0
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen2.5-7B"} 2.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen2.5-7B"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-7B"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen2.5-7B"} 0.5
vllm:prompt_tokens_total{model_name="Qwen/Qwen2.5-7B"} 123456.0
"""

SGLANG = """\
sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.28
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8
sglang:num_queue_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 4
"""


def test_score_orders_waiting_then_running_then_kv_use() -> None:
    ordered = [(0, 0, 0.0), (0, 0, 0.9), (0, 1, 0.0), (0, 500, 1.0), (1, 0, 0.0), (1, 3, 0.2), (40, 0, 0.0)]
    scores = [load_score(*parts) for parts in ordered]
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    for parts in ordered:
        waiting, running, kv = unpack_score(load_score(*parts))
        assert (waiting, running) == parts[:2] and math.isclose(kv, parts[2], abs_tol=1e-6)


def test_vllm_counts_are_summed_over_engines_and_kv_takes_the_highest() -> None:
    assert unpack_score(score_text(VLLM) or -1) == (3.0, 12.0, 0.5)


def test_sglang_and_older_vllm_gauges() -> None:
    waiting, running, kv = unpack_score(score_text(SGLANG) or -1)
    assert (waiting, running) == (4.0, 8.0) and kv == pytest.approx(0.28)
    old = "vllm:num_requests_running 3\nvllm:num_requests_waiting 0\nvllm:gpu_cache_usage_perc 0.75\n"
    assert unpack_score(score_text(old) or -1) == (0.0, 3.0, 0.75)


def test_no_known_gauges_is_no_score() -> None:
    assert score_text("# nothing\nprocess_cpu_seconds_total 12.5\n") is None


def test_parser_survives_labels_with_spaces_braces_and_junk() -> None:
    text = 'a{x="b c}",y="q\\"z"} 1.5 1700000000000\nb 2\n\nbroken{x="1" 3\nc NaN\nd not-a-number\n'
    assert list(parse_samples(text)) == [
        ("a", 1.5, 1700000000.0),
        ("b", 2.0, None),
        ("c", pytest.approx(math.nan, nan_ok=True), None),
    ]


def test_samples_with_old_timestamps_are_ignored() -> None:
    now = 1_700_000_100.0
    text = "vllm:num_requests_waiting 9 1700000000000\nvllm:num_requests_running 2 1700000099000\n"
    assert unpack_score(score_text(text, now_wall=now, stale_s=5) or -1) == (0.0, 2.0, 0.0)


def test_redis_values_that_are_missing_or_not_numbers_are_left_out() -> None:
    keys = ["a", "b", "c", "d", "e"]
    assert parse_values(keys, [b"90", None, b"x", b"inf", "1.5"]) == {"a": 90.0, "e": 1.5}


def test_build_source_reads_metric_keys_and_urls_from_config() -> None:
    text = """
state: {redis_url: "redis://127.0.0.1:1/0", timeout_ms: 150}
providers:
  - {name: p, kind: simulated}
  - {name: v, kind: vllm, base_url: "http://127.0.0.1:1/v1", metrics_url: "http://127.0.0.1:1/metrics"}
models:
  - name: auto
    strategy: least_load
    deployments: [{provider: p, metric_key: k2}, {provider: v, metric_key: k1}]
  - {name: other, deployments: [{provider: p, metric_key: k1}]}
metrics: {source: redis, refresh_ms: 250}
"""
    source = build_source(parse_config(text))
    assert isinstance(source, RedisMetrics)
    assert (source.url, source.keys, source.refresh_s, source.timeout_s) == (
        "redis://127.0.0.1:1/0",
        ["k1", "k2"],
        0.25,
        0.15,
    )
    prometheus = build_source(parse_config(text.replace("source: redis", "source: prometheus")))
    assert isinstance(prometheus, PrometheusMetrics)
    assert prometheus.targets == {"v": "http://127.0.0.1:1/metrics"}
    assert build_source(parse_config(text.replace("metrics: {source: redis, refresh_ms: 250}", ""))) is None


class Scripted(PollingSource):
    name = "scripted"

    def __init__(self, script: list[dict[str, float] | Exception]) -> None:
        super().__init__(refresh_s=0.01)
        self.script = script
        self.polls = 0

    async def poll(self) -> dict[str, float]:
        self.polls += 1
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        return step


async def test_polling_publishes_snapshots_and_logs_each_state_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = ConnectionError("refused")
    source = Scripted([{"a": 1.0}, down, down, down, {}, {}, {"a": 2.0}])
    caplog.set_level(logging.INFO, "modelway.loadmetrics")
    snapshots = []
    for _ in range(7):
        await source.refresh()
        snapshots.append(dict(source.snapshot()))
    assert snapshots == [{"a": 1.0}, {}, {}, {}, {}, {}, {"a": 2.0}]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages  # ok, unreachable, empty, ok again
    assert "unreachable" in messages[1] and "empty" in messages[2] and "recovered" in messages[3]


async def test_polling_runs_in_the_background_until_closed() -> None:
    source = Scripted([{"a": 1.0}])
    await source.start()
    await asyncio.sleep(0.06)
    await source.close()
    polls = source.polls
    assert polls >= 3
    await asyncio.sleep(0.03)
    assert source.polls == polls


async def test_redis_source_against_a_dead_port_degrades_quickly() -> None:
    source = RedisMetrics("redis://127.0.0.1:1/0", "ai_metric:", ["k"], refresh_s=0.05, timeout_s=0.2)
    await source.open()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await source.refresh()
        assert loop.time() - started < 1.0
        assert source.state == "unreachable" and source.snapshot() == {}
    finally:
        await source.shutdown()
