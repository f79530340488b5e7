"""OpenTelemetry traces: one span per request and one child per attempt, exported over OTLP/HTTP
to a collector of ours, with the GenAI semantic conventions' attributes; and nothing of
OpenTelemetry loaded when telemetry is not configured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from support.gateway import Gateway, free_port
from support.http import post_json
from support.upstream import Behaviour, Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


class Collector:
    """An OTLP/HTTP trace collector of ours: decodes every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.start(), self.loop).result(10)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self.receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()

    async def receive(self, request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        for resource in message.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend(scope.spans)
        return web.Response(status=200, body=b"", content_type="application/x-protobuf")


def attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = value.string_value or value.int_value
    return out


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    yield Collector()


def test_a_request_and_its_attempts_are_spans(collector: Collector, upstream_a: Upstream,
                                             upstream_b: Upstream) -> None:
    config = {
        "telemetry": {"otlp_endpoint": f"http://127.0.0.1:{collector.port}"},
        "providers": [{"name": "bad", "kind": "vllm", "base_url": f"{upstream_a.url}/v1"},
                      {"name": "good", "kind": "vllm", "base_url": f"{upstream_b.url}/v1"}],
        "models": [{"name": "m", "strategy": "weighted_round_robin",
                    "deployments": [{"provider": "bad", "model": "bad-real", "priority": 1},
                                    {"provider": "good", "model": "good-real"}]}],
    }
    upstream_a.reset(Behaviour(status=503))
    with Gateway(config) as gateway:
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "m", **CHAT})
        assert reply.status == 200 and reply.headers["x-modelway-attempts"] == "2"
        deadline = time.monotonic() + 5
        while len(collector.spans) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    (request,) = [s for s in collector.spans if s.name == "POST /v1/chat/completions"]
    attempts = [s for s in collector.spans if s.name.startswith("attempt ")]
    assert sorted(s.name for s in attempts) == ["attempt bad", "attempt good"]
    for attempt in attempts:
        assert attempt.parent_span_id == request.span_id and attempt.trace_id == request.trace_id
    seen = attributes(request)
    assert seen["gen_ai.request.model"] == "m" and seen["gen_ai.response.model"] == "good-real"
    assert seen["gen_ai.system"] == "vllm" and seen["http.response.status_code"] == 200
    assert seen["gen_ai.usage.input_tokens"] == 3 and seen["gen_ai.usage.output_tokens"] == 3
    assert attributes(next(a for a in attempts if a.name == "attempt bad"))["http.response.status_code"] == 503


def test_no_opentelemetry_is_loaded_without_telemetry() -> None:
    code = (
        "import sys, asyncio; from modelway.app import create_app; from modelway.runtime import Runtime;"
        "from modelway.config import load_config; create_app(Runtime(load_config(None)));"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
