"""What the attempt loop, the exchange and the relay take from the runtime: gathered once
per Runtime, so that those stages get these few things and not the runtime itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from modelway.accesslog import AccessLog
    from modelway.decisions import RecentDecisions
    from modelway.failover.policy import Failover
    from modelway.metrics import Metrics
    from modelway.passthrough import Passthrough
    from modelway.routes import ModelRoute
    from modelway.tracing import Tracing


class LoadSource(Protocol):
    def snapshot(self) -> Mapping[str, float]: ...


@dataclass(frozen=True, slots=True)
class ProxySettings:
    failover: Failover
    metrics: Metrics
    decisions: RecentDecisions  # the last answers, for the status page
    models: Mapping[str, ModelRoute]  # the public models, for metric labels
    max_attempts: int  # 1 + routing.retries
    model_key: tuple[str, ...]  # model_mapping.key, split at its dots
    selected_provider_header: bytes | None  # routing.selected_provider_header, lower-case
    rewrite_response_model: bool  # server.response_model: requested
    load: LoadSource | None  # the load-metrics source strategies read (View.load)
    access: AccessLog | None  # server.access_log: one JSON line per request on stdout
    passthrough: Passthrough | None  # when some model has a passthrough_url
    tracing: Tracing | None  # telemetry.otlp_endpoint: spans per request and attempt
    stream_ping_s: float = 10.0  # server.stream_ping_s: a translated stream's keep-alive interval; 0: none

    def metric_model(self, name: str) -> str:
        """The model label of an answer modelway gave itself: names the client made up
        (unknown models) would grow the metric series without bound, so they read ""."""
        return name if name in self.models else ""
