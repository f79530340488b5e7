"""A forward-auth service of the tests' own (aiohttp, in a thread): answers every GET with
the status, headers and body it is told to, after an optional delay, and records what it
received and from which connection."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from support.threaded import ThreadedServer


@dataclass
class Verdict:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Asked:
    headers: Mapping[str, str]  # case-insensitive names
    peer: tuple[str, int] | None


class AuthServer(ThreadedServer):
    def __init__(self) -> None:
        self.verdict = Verdict()
        self.asked: list[Asked] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/check"

    def reset(self, verdict: Verdict | None = None) -> None:
        self.verdict = verdict or Verdict()
        self.asked.clear()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/check", self._check)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _check(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.asked.append(Asked(request.headers.copy(), peer))
        verdict = self.verdict
        if verdict.delay_s:
            await asyncio.sleep(verdict.delay_s)
        return web.Response(status=verdict.status, body=verdict.body, headers={
            "Content-Type": verdict.content_type, **verdict.headers})
