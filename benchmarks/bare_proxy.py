"""The reference point of issue 3: a bare uvicorn + aiohttp + orjson proxy that does nothing
but forward. It reads the body, parses it once with orjson (as any LLM proxy must, to find
`model` and `stream`), posts it unchanged to the upstream on a keep-alive pool, and relays the
answer: whole for JSON, chunk by chunk for SSE. No routing, no retries, no checks.

    python -m benchmarks.bare_proxy --port 9000 --upstream http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SKIP = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server"})
JSON_HEADERS = {"Content-Type": "application/json"}


class BareProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.forward(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=False)
                self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None
        message = await receive()
        body: bytes = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            body += message.get("body", b"")
        stream = orjson.loads(body).get("stream") is True
        url = self.upstream + scope["path"]
        async with self.session.post(url, data=body, headers=JSON_HEADERS) as response:
            headers = [(k.lower(), v) for k, v in response.raw_headers if k.lower() not in SKIP]
            if not stream:
                data = await response.read()
                headers.append((b"content-length", str(len(data)).encode()))
                await send({"type": "http.response.start", "status": response.status, "headers": headers})
                await send({"type": "http.response.body", "body": data})
                return
            await send({"type": "http.response.start", "status": response.status, "headers": headers})
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="origin to forward to; the path is kept")
    args = parser.parse_args()
    uvicorn.run(
        BareProxy(args.upstream),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
