"""The gateway's connection to Redis, and what happens when Redis is slow or down.

Every call is bounded by `state.timeout_ms`. A call that times out or fails counts in
`modelway_state_backend_errors_total`, marks Redis down (one log line), and the caller goes
on with local state. While down, calls from the request path are not even tried: only the
state backend's own background loop tries again (`probe=True`), after a backoff doubling
from 0.5 s to 10 s, so a dead or hung Redis costs requests nothing after the moment it
failed. The first call that succeeds marks it up again (one log line) and tells the
listeners (`on_up`), which re-announce what this instance holds. redis-py's own retries are
off (one immediate retry on a broken pooled connection): a failure is known at once,
not after redis-py's backoff. The URL's password is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("modelway.state")

T = TypeVar("T")
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 10.0


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def connect(url: str, timeout_s: float | None, connect_timeout_s: float) -> aioredis.Redis:
    """A client for `url` (redis://, rediss:// with TLS, a password in the URL) that fails fast."""
    return aioredis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=connect_timeout_s,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 1),
    )


class RedisLink:
    def __init__(self, url: str, timeout_ms: int, key_prefix: str) -> None:
        self.url = url
        self.timeout_s = timeout_ms / 1000
        self.key_prefix = key_prefix
        self.client: aioredis.Redis = connect(url, self.timeout_s, self.timeout_s)
        self.errors = 0
        self.up = True
        self.retry_at = 0.0  # while down: no probe before this (monotonic)
        self.backoff_s = BACKOFF_MIN_S
        self.on_up: list[Callable[[], None]] = []  # called when Redis is back after being down

    def key(self, *parts: str) -> str:
        """A key under the prefix; the hash tag keeps a group of keys on one Redis Cluster slot."""
        return f"{self.key_prefix}{{{parts[0]}}}" + "".join(f":{p}" for p in parts[1:])

    async def call(self, operation: Callable[[aioredis.Redis], Awaitable[T]], probe: bool = False) -> T | None:
        """Run one Redis operation, bounded by the timeout; None when Redis failed or is down.
        While down, only a `probe` is tried, and not before the backoff has passed."""
        if not self.up and (not probe or time.monotonic() < self.retry_at):
            return None
        try:
            async with asyncio.timeout(self.timeout_s):  # no task per call, unlike wait_for
                result = await operation(self.client)
        except (aioredis.RedisError, OSError, TimeoutError) as exc:
            self.failed(exc)
            return None
        if not self.up:
            self.recovered()
        return result

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        if self.up:
            self.up = False
            self.backoff_s = BACKOFF_MIN_S
            log.warning("state backend: redis at %s is unreachable (%s); going on with local state",
                        safe_url(self.url), type(exc).__name__)
        else:
            self.backoff_s = min(self.backoff_s * 2, BACKOFF_MAX_S)
        self.retry_at = time.monotonic() + self.backoff_s

    def recovered(self) -> None:
        self.up = True
        self.backoff_s = BACKOFF_MIN_S
        log.warning("state backend: redis at %s is back; shared state resumes", safe_url(self.url))
        for listener in self.on_up:
            listener()

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a connection to a dead Redis may fail: nothing to do
            await self.client.aclose()

    def describe(self) -> dict[str, Any]:
        return {"url": safe_url(self.url), "up": self.up, "errors": self.errors}
