"""`models[].passthrough_url` (as the seed's ai-proxy-multi `passthrough`): the LLM's
non-stream answer, exactly as the client would get it, is POSTed to that URL, and the
client gets that service's status, content type and body instead.

Streams cannot be passed through (there is no whole answer to post): a stream request for
such a model is refused with a 400 before any upstream is asked. The service down, slower
than PASSTHROUGH_TIMEOUT_S, or answering 5xx is a 502 naming the passthrough. One
keep-alive aiohttp session per runtime, opened only when some model has a passthrough_url.
"""

from __future__ import annotations

import logging

import aiohttp

from modelway.errors import AllAttemptsFailed

log = logging.getLogger("modelway.passthrough")

PASSTHROUGH_TIMEOUT_S = 30.0
MAX_PASSTHROUGH_BODY = 64 * 1024 * 1024


class Passthrough:
    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=PASSTHROUGH_TIMEOUT_S),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def post(self, url: str, body: bytes, content_type: str) -> tuple[int, bytes, bytes]:
        """(status, content type, body) of the passthrough service's answer to `body`."""
        session = self.session
        assert session is not None, "passthrough used before start()"
        try:
            async with session.post(url, data=body, headers={"Content-Type": content_type}) as answer:
                data = await answer.content.read(MAX_PASSTHROUGH_BODY)
                kind = answer.headers.get("Content-Type", "application/octet-stream")
                status = answer.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("passthrough %s failed: %s", url, type(exc).__name__)
            raise AllAttemptsFailed(
                f"the passthrough service {url} could not be reached ({type(exc).__name__})", code="passthrough_failed"
            ) from None
        if status >= 500:
            log.warning("passthrough %s answered %d", url, status)
            raise AllAttemptsFailed(f"the passthrough service {url} answered {status}", code="passthrough_failed")
        return status, kind.encode("latin-1"), data
