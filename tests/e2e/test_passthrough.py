"""models[].passthrough_url: the LLM's non-stream answer is POSTed to a service of ours, and the
client gets that service's status, content type and body; streams are refused with a 400;
the service down or failing is a 502 naming it, within its timeout."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from support.gateway import Gateway, free_port
from support.http import post_json
from support.upstream import Upstream

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


class Service:
    """A passthrough service of ours: records what it got and answers with a verdict."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.status = 201
        self.loop = asyncio.new_event_loop()
        self.port = free_port()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self.start(), self.loop).result(10)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/check", self.check)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()

    async def check(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.headers.get("Content-Type", ""), body))
        return web.Response(status=self.status, text=f"verdict on {len(body)} bytes", content_type="text/plain")


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    yield Service()


def config(upstream: Upstream, url: str) -> dict[str, Any]:
    return {
        "providers": [{"name": "up", "kind": "vllm", "base_url": f"{upstream.url}/v1"}],
        "models": [
            {"name": "checked", "passthrough_url": url, "deployments": [{"provider": "up", "model": "real"}]},
            {"name": "plain", "deployments": [{"provider": "up", "model": "real"}]},
        ],
    }


def test_the_answer_goes_through_the_service(upstream_a: Upstream, service: Service) -> None:
    with Gateway(config(upstream_a, f"http://127.0.0.1:{service.port}/check")) as gateway:
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "checked", **CHAT})
        assert reply.status == 201
        assert reply.headers["content-type"].startswith("text/plain")
        (kind, body), = service.received
        assert kind.startswith("application/json") and b'"choices"' in body  # the answer as the client would get it
        assert reply.body.decode() == f"verdict on {len(body)} bytes"
        assert reply.headers["x-modelway-provider"] == "up"
        plain = post_json(gateway.url, "/v1/chat/completions", {"model": "plain", **CHAT})
        assert plain.status == 200 and len(service.received) == 1  # other models are untouched

        stream = post_json(gateway.url, "/v1/chat/completions", {"model": "checked", "stream": True, **CHAT})
        assert stream.status == 400
        assert stream.json()["error"]["param"] == "stream" and "stream false" in stream.error_message
        assert len([r for r in upstream_a.received if r.method == "POST"]) == 2  # no upstream was asked

        service.status = 503
        failing = post_json(gateway.url, "/v1/chat/completions", {"model": "checked", **CHAT})
        assert failing.status == 502 and "passthrough" in failing.error_message


def test_a_dead_service_is_a_502_not_a_hang(upstream_a: Upstream) -> None:
    with Gateway(config(upstream_a, f"http://127.0.0.1:{free_port()}/check")) as gateway:
        reply = post_json(gateway.url, "/v1/chat/completions", {"model": "checked", **CHAT})
        assert reply.status == 502
        assert "passthrough service" in reply.error_message
