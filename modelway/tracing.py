"""OpenTelemetry traces (optional: `pip install modelway[otel]`, `telemetry.otlp_endpoint`):
one span per proxied request, and one child span per upstream attempt, with the GenAI
semantic conventions' attributes (gen_ai.system, gen_ai.operation.name,
gen_ai.request.model, gen_ai.response.model, gen_ai.usage.input_tokens / output_tokens)
and the HTTP ones. Exported over OTLP/HTTP in batches, off the request path.

Nothing here is imported when telemetry is not configured: the request path then pays one
`is None` test per request and per attempt, and no OpenTelemetry module is loaded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from modelway.errors import ConfigError

if TYPE_CHECKING:
    from modelway.config.schema import TelemetryConfig
    from modelway.deployment import Deployment

GENAI_SYSTEMS = {"openai": "openai", "deepseek": "deepseek", "anthropic": "anthropic", "vllm": "vllm",
                 "gpustack": "gpustack", "openai-compatible": "openai", "simulated": "modelway.simulated"}


class Tracing:
    def __init__(self, config: TelemetryConfig) -> None:
        try:
            from opentelemetry import trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            raise ConfigError([("telemetry.otlp_endpoint",
                                "OpenTelemetry is not installed: pip install 'modelway[otel]'")]) from None
        endpoint = config.otlp_endpoint or ""
        if not endpoint.rstrip("/").endswith("/v1/traces"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"
        self.provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint),
                                                            schedule_delay_millis=500))
        self.tracer = self.provider.get_tracer("modelway")
        self.trace = trace

    async def request(self, handle: Callable[..., Awaitable[None]], scope: dict[str, Any], *args: Any) -> None:
        """Run `handle` inside the request's span (the current span, so attempts are its children)."""
        path: str = scope["path"]
        with self.tracer.start_as_current_span("POST " + path, kind=self.trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", "POST")
            span.set_attribute("url.path", path)
            await handle(*args)

    @contextmanager
    def attempt(self, deployment: Deployment) -> Iterator[Any]:
        name = f"attempt {deployment.provider.name}"
        with self.tracer.start_as_current_span(name, kind=self.trace.SpanKind.CLIENT) as span:
            span.set_attribute("gen_ai.system", GENAI_SYSTEMS.get(deployment.provider.kind, deployment.provider.kind))
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", deployment.model_name)
            span.set_attribute("gen_ai.response.model", deployment.upstream_model or deployment.model_name)
            span.set_attribute("modelway.provider", deployment.provider.name)
            yield span

    def answered(self, model: str, deployment: Deployment, status: int | str, attempts: int,
                 usage: tuple[int, int] | None) -> None:
        """The request's outcome, on its span."""
        span = self.trace.get_current_span()
        span.set_attribute("gen_ai.system", GENAI_SYSTEMS.get(deployment.provider.kind, deployment.provider.kind))
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("gen_ai.response.model", deployment.upstream_model or model)
        span.set_attribute("modelway.provider", deployment.provider.name)
        span.set_attribute("modelway.attempts", attempts)
        if isinstance(status, int):
            span.set_attribute("http.response.status_code", status)
        else:
            span.set_attribute("error.type", status)
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage[0])
            span.set_attribute("gen_ai.usage.output_tokens", usage[1])

    def refused(self, status: int, error: str) -> None:
        span = self.trace.get_current_span()
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("error.type", error)

    def close(self) -> None:
        self.provider.shutdown()  # flushes what is still batched
