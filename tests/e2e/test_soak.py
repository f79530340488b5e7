"""The soak (benchmarks/soak.py) in the suite, shortened to two minutes: mixed traffic
through one gateway process — JSON answers, streams, slow answers, clients leaving
mid-stream, failing upstreams (500, 429, dropped, too slow, broken streams) and config
reloads where the admin API exists — then: the gateway's RSS grew less than 5% after the
warm-up, no request had an outcome its kind should not have, and nothing is left (file
descriptors back to their count before the traffic, no upstream connection, no upstream
request in progress, `modelway_inflight` 0, no traceback in the gateway's log).

The figures are printed (`pytest -s`); `python -m benchmarks.soak` runs the full 30 minutes."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: benchmarks/

from benchmarks.soak import run_soak

SOAK_S = 120.0
WARMUP_S = 80.0


@pytest.mark.timeout(SOAK_S + 120)
def test_two_minutes_of_mixed_traffic_hold_memory_and_leave_nothing() -> None:
    out = io.StringIO()
    result = asyncio.run(
        run_soak(SOAK_S, WARMUP_S, concurrency=16, report_every_s=20, reload_every_s=30, out=out,
                 warmup_concurrency=48)
    )
    print(out.getvalue())
    assert result.requests > 1000, out.getvalue()
    assert result.unexpected == {}, out.getvalue()
    assert result.rss_growth < 0.05, out.getvalue()
    assert result.left_in_progress == 0, out.getvalue()
    assert result.upstream_cancelled >= result.disconnects > 0, out.getvalue()
    assert result.fds_after <= result.fds_before, out.getvalue()
    assert result.upstream_connections == 0, out.getvalue()
    assert result.inflight == 0, out.getvalue()
    assert result.tracebacks == 0, out.getvalue()
