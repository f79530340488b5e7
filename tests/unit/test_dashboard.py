"""deploy/grafana/modelway-dashboard.json: importable as is, and every query names a metric of
SPEC section 7 that modelway really exports."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from modelway.config import load_config
from modelway.exposition import build_registry
from modelway.metrics import Metrics
from modelway.runtime import Runtime

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "modelway-dashboard.json"
SPEC_METRICS = {
    "modelway_requests_total", "modelway_attempts_total", "modelway_request_duration_seconds",
    "modelway_ttft_seconds", "modelway_inflight", "modelway_tokens_total", "modelway_cost_usd_total",
    "modelway_deployment_healthy", "modelway_router_errors_total", "modelway_state_backend_errors_total",
    "modelway_config_reloads_total",
}


def test_dashboard_is_importable_and_queries_spec_metrics() -> None:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len(panels) >= 10
    assert len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bmodelway_[a-z_]+", target["expr"]))
            assert names, target["expr"]
            used |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    assert used == SPEC_METRICS  # every SPEC metric is shown, and nothing else is queried


def test_every_metric_it_queries_is_exported() -> None:
    runtime = Runtime(load_config(None))
    registry = build_registry(Metrics(), lambda: runtime)
    exported = {metric.name for metric in registry.collect()}
    # prometheus_client drops the _total suffix from counter family names
    assert {name.removesuffix("_total") for name in SPEC_METRICS} <= exported
