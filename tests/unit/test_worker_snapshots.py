"""--workers N: what a worker adds of the others' snapshots (workermetrics.combined) — the
gauges of live workers only, counters of every worker."""

from __future__ import annotations

import os
import subprocess
import sys

from modelway.metrics import Metrics
from modelway.workermetrics import combined


def test_gauges_come_from_live_workers_and_counters_from_all() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a worker that has exited
    snapshot = {
        "requests": [["chat", "a", "200", 3]],
        "inflight": {"a": 2},
        "held": {"chat": 4},
    }
    total, extra = combined(Metrics(), [(os.getpid(), snapshot), (gone.pid, snapshot)])
    assert total.requests[("chat", "a", "200")] == 6
    assert dict(extra.inflight) == {"a": 2}
    assert dict(extra.held) == {"chat": 4}
