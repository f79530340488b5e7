"""A stub search backend of our own, so the web-search example runs without the internet.

    GET /search?q=<query>&n=<count>  →  {"results": [{"title", "url", "snippet"}, ...]}

Each result names the backend and echoes the query. `failing = True` makes it answer 503,
to see the example fall back to the other backend.

Run two for the example config:
    python examples/websearch/stub_search.py --name alpha --port 7701 &
    python examples/websearch/stub_search.py --name beta --port 7702 &
"""

from __future__ import annotations

import argparse
import asyncio
import threading

from aiohttp import web


class StubSearch:
    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.port = port
        self.failing = False
        self.queries: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/search"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/search", self.search)
        return app

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        self.queries.append(query)
        if self.failing:
            return web.json_response({"error": f"{self.name} is down"}, status=503)
        count = min(int(request.query.get("n", "3") or 3), 10)
        results = [
            {
                "title": f"{self.name} result {i + 1} for {query!r}",
                "url": f"https://{self.name}.example/{i + 1}",
                "snippet": f"What {self.name} knows about {query}.",
            }
            for i in range(count)
        ]
        return web.json_response({"results": results})

    # Running in a background thread with its own event loop (for tests).

    def start(self) -> StubSearch:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description="a stub search backend")
    parser.add_argument("--name", default="alpha")
    parser.add_argument("--port", type=int, default=7701)
    args = parser.parse_args()
    web.run_app(StubSearch(args.name, args.port).app(), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
