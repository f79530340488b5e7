"""Provider kinds of the tests' own, loaded by the gateway as "support.providers:Class"
(the gateway subprocess needs tests/ on its PYTHONPATH: see `plugin_env`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from modelway.providers.base import Provider, UpstreamRequest, UpstreamResponse
from modelway.providers.credentials import Credential

TESTS = Path(__file__).resolve().parents[1]


def plugin_env() -> dict[str, str]:
    """The environment that lets the gateway subprocess import modules from tests/."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


class Buggy(Provider):
    """A provider with a bug: sending fails with an exception that is no UpstreamError."""

    async def send(self, request: UpstreamRequest, credential: Credential) -> UpstreamResponse:
        raise RuntimeError("a deliberate bug in a provider")

    async def list_models(self) -> list[dict[str, Any]]:
        return []


class BuggyStreamResponse(UpstreamResponse):
    status = 200
    headers: list[tuple[bytes, bytes]] = []
    content_type = "text/event-stream"

    async def read(self) -> bytes:
        raise AssertionError("a stream is not read whole")

    async def chunks(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        yield b'data: {"choices": [{"index": 0, "delta": {"content": "one"}}]}\n\n'
        raise RuntimeError("a deliberate bug in a stream")

    def close(self) -> None:
        pass


class BuggyStream(Buggy):
    """A provider whose stream fails with an exception that is no UpstreamError after a chunk."""

    async def send(self, request: UpstreamRequest, credential: Credential) -> UpstreamResponse:
        return BuggyStreamResponse()
