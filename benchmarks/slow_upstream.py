"""A slow SSE upstream for the memory test: every POST answers a stream of `--chunks`
chat.completion.chunk events, one every `--interval` seconds, then `data: [DONE]`.
nginx cannot pace chunks, so this one is aiohttp. Events are numbered, so a client can
check each stream arrived whole and in order (`expected_body`).

    python -m benchmarks.slow_upstream --port 8001 --chunks 100 --interval 0.1
"""

from __future__ import annotations

import argparse
import asyncio

import uvloop
from aiohttp import web

DONE = b"data: [DONE]\n\n"


def event(i: int) -> bytes:
    return (
        b'data: {"id":"chatcmpl-slow","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"bench-slow","choices":[{"index":0,"delta":{"content":"token %d "},'
        b'"finish_reason":null}]}\n\n' % i
    )


def expected_body(chunks: int) -> bytes:
    return b"".join(event(i) for i in range(chunks)) + DONE


def make_app(chunks: int, interval: float) -> web.Application:
    async def stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(chunks):
            # Paced against the start, so the stream lasts chunks * interval however busy we are.
            await asyncio.sleep(max(0.0, start + (i + 1) * interval - loop.time()))
            await response.write(event(i))
        await response.write(DONE)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/{tail:.*}", stream)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="slow SSE upstream for the memory test")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    uvloop.run(serve(make_app(args.chunks, args.interval), args.port))


async def serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()  # until SIGTERM


if __name__ == "__main__":
    main()
