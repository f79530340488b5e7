"""External authorization before routing (`auth.forward_auth`), as APISIX's forward-auth.

The auth service gets a GET with the configured `request_headers` of the client's request
(the client's Authorization only if listed), and, as APISIX sends them, X-Forwarded-Method
and X-Forwarded-Uri (the path and query the client asked for). A 2xx lets the request
proceed, and the `upstream_headers` of its answer are added to the upstream request (never
in place of the provider's credential, which the provider sets last; the client's own
values of those names are dropped, so a client cannot pose as someone the auth service
did not name). Any other status is the answer to the client, with the auth service's body.
Unreachable or slower than `timeout_ms`: `status_on_error`. One keep-alive session per
runtime: no client per request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from modelway.config.schema import ForwardAuth

log = logging.getLogger("modelway.forward_auth")

MAX_AUTH_BODY = 64 * 1024  # an auth service's refusal is relayed; more than this is cut


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    upstream_headers: tuple[tuple[bytes, bytes], ...] = ()
    failed: bool = False  # the service did not answer (in time): `status` is status_on_error


class ForwardAuthClient:
    def __init__(self, config: ForwardAuth) -> None:
        self.config = config
        self.url = config.url
        self.request_headers = [name.lower().encode("latin-1") for name in config.request_headers]
        self.upstream_headers = [name.lower() for name in config.upstream_headers]
        self.timeout = aiohttp.ClientTimeout(total=config.timeout_ms / 1000)
        self.session: aiohttp.ClientSession | None = None
        self.failing = False  # logged once when the service stops answering, once when it is back

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=60),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def check(self, client_headers: Mapping[bytes, bytes], method: str = "POST", uri: str = "") -> Verdict:
        session = self.session
        assert session is not None, "forward auth used before start()"
        headers = {
            name.decode("latin-1"): client_headers[name].decode("latin-1")
            for name in self.request_headers
            if name in client_headers
        }
        headers["X-Forwarded-Method"] = method
        if uri:
            headers["X-Forwarded-Uri"] = uri
        try:
            async with session.get(self.url, headers=headers, timeout=self.timeout, allow_redirects=False) as answer:
                body = await answer.content.read(MAX_AUTH_BODY)  # read, so the connection is kept
                if self.failing:
                    self.failing = False
                    log.warning("forward auth at %s answers again", self.url)
                if 200 <= answer.status < 300:
                    copied = tuple(
                        (name.encode("latin-1"), answer.headers[name].encode("latin-1"))
                        for name in self.upstream_headers
                        if name in answer.headers
                    )
                    return Verdict(True, answer.status, upstream_headers=copied)
                return Verdict(False, answer.status, body, answer.headers.get("Content-Type", "application/json"))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if not self.failing:
                self.failing = True
                log.warning("forward auth at %s failed (%s): answering %d until it answers again", self.url,
                            type(exc).__name__, self.config.status_on_error)
            return Verdict(False, self.config.status_on_error, failed=True)
