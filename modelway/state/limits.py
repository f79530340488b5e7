"""Per-key rate limits (`auth.keys[].rpm` and `tpm`): two token buckets per key.

A key with `rpm: 600` may send 600 requests at once and then 10 a second (the bucket holds
a minute's worth and refills continuously); `tpm` likewise in tokens. A request is let
through when the request bucket holds one request and the token bucket holds the request's
estimated tokens (its prompt: the body's bytes / 4); both are taken at once, and when the
answer's real usage is known the difference is charged (streams included), so a bucket
may go below zero and the next requests wait for it to refill. Over the limit: 429 with
Retry-After, the whole seconds until the buckets will hold enough.

With the memory backend the buckets live in the process. With the redis backend they live
in Redis and one Lua script takes from both atomically, on Redis's clock, so every
instance shares them exactly; only keys that have a limit pay for the round trip. When
Redis fails, the process's own buckets stand in (per instance) until it is back.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from modelway.state.link import RedisLink  # redis (and what it imports) only for the redis backend

BUCKET_TTL_S = 120  # a key idle for two minutes has full buckets again: its state may go


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None
    tpm: int | None

    @property
    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None


def estimate_tokens(body_size: int) -> int:
    """A prompt's tokens, roughly, from its JSON body: 4 bytes a token, at least 1."""
    return max(1, body_size // 4)


@dataclass(slots=True)
class Bucket:
    requests: float
    tokens: float
    at: float


def refill(bucket: Bucket, limits: Limits, now: float) -> None:
    elapsed = max(0.0, now - bucket.at)
    if limits.rpm is not None:
        bucket.requests = min(float(limits.rpm), bucket.requests + elapsed * limits.rpm / 60)
    if limits.tpm is not None:
        bucket.tokens = min(float(limits.tpm), bucket.tokens + elapsed * limits.tpm / 60)
    bucket.at = now


def wait_for(bucket: Bucket, limits: Limits, tokens: int) -> float:
    """Seconds until the buckets hold one request and `tokens` (at most a full bucket)."""
    wait = 0.0
    if limits.rpm is not None and bucket.requests < 1:
        wait = (1 - bucket.requests) * 60 / limits.rpm
    if limits.tpm is not None:
        want = min(tokens, limits.tpm)
        if bucket.tokens < want:
            wait = max(wait, (want - bucket.tokens) * 60 / limits.tpm)
    return wait


class RateLimiter(Protocol):
    async def take(self, name: str, limits: Limits, tokens: int) -> float:
        """0 when the request may go (and is counted); else the seconds to wait."""

    def charge_soon(self, name: str, limits: Limits, tokens: int) -> None:
        """Charge `tokens` more (or give back, when negative) once real usage is known,
        without making the caller wait for it."""


class MemoryLimits:
    """The buckets of one process."""

    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}

    def _bucket(self, name: str, limits: Limits, now: float) -> Bucket:
        bucket = self.buckets.get(name)
        if bucket is None:
            bucket = self.buckets[name] = Bucket(float(limits.rpm or 0), float(limits.tpm or 0), now)
        else:
            refill(bucket, limits, now)
        return bucket

    async def take(self, name: str, limits: Limits, tokens: int) -> float:
        """0 when the request may go (and is counted); else the seconds to wait."""
        bucket = self._bucket(name, limits, time.monotonic())
        wait = wait_for(bucket, limits, tokens)
        if wait == 0:
            bucket.requests -= 1
            bucket.tokens -= tokens
        return wait

    async def charge(self, name: str, limits: Limits, tokens: int) -> None:
        """Charge `tokens` more (or give back, when negative) once real usage is known."""
        self.charge_soon(name, limits, tokens)

    def charge_soon(self, name: str, limits: Limits, tokens: int) -> None:
        if limits.tpm is not None and tokens:
            self._bucket(name, limits, time.monotonic()).tokens -= tokens


# KEYS[1]: the key's bucket hash. ARGV: rpm (0: none), tpm (0: none), tokens, "take" | "charge",
# TTL, and tokens to charge first (earlier answers' usage, settled in the same round trip).
# Returns the seconds to wait as a string ("0": taken); Redis would truncate a Lua number.
BUCKET_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rpm, tpm, need = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local first = tonumber(ARGV[6] or '0')
local state = redis.call('HMGET', KEYS[1], 'r', 't', 'at')
local r = tonumber(state[1]) or rpm
local tok = tonumber(state[2]) or tpm
local at = tonumber(state[3]) or now
local elapsed = math.max(0, now - at)
if rpm > 0 then r = math.min(rpm, r + elapsed * rpm / 60) end
if tpm > 0 then tok = math.min(tpm, tok + elapsed * tpm / 60) end
tok = tok - first
local wait = 0
if ARGV[4] == 'take' then
  if rpm > 0 and r < 1 then wait = (1 - r) * 60 / rpm end
  if tpm > 0 then
    local want = math.min(need, tpm)
    if tok < want then wait = math.max(wait, (want - tok) * 60 / tpm) end
  end
  if wait == 0 then
    r = r - 1
    tok = tok - need
  end
else
  tok = tok - need
end
if wait == 0 or first ~= 0 then
  redis.call('HSET', KEYS[1], 'r', tostring(r), 't', tostring(tok), 'at', tostring(now))
  redis.call('EXPIRE', KEYS[1], ARGV[5])
end
return tostring(wait)
"""


class RedisLimits:
    """The buckets in Redis, shared by every instance; the process's own while Redis fails.

    A charge (an answer's real usage) does not make its request wait: it is kept until the
    state backend's writer sends it, or until the key's next request, which sends it first
    in its own script call. A key's charges and takes reach Redis in the order they were
    made, so a client that sends one request after another sees each one's usage counted.
    """

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.script = link.client.register_script(BUCKET_SCRIPT)
        self.local = MemoryLimits()
        self.pending: dict[str, tuple[Limits, int]] = {}  # key name → tokens to charge, not sent yet
        self.sending: frozenset[str] = frozenset()  # the names whose charges the writer is sending
        self.flushing = asyncio.Lock()  # held by the writer while it sends
        self.wake: Callable[[], None] = lambda: None  # the state backend's writer, which calls flush()

    async def _run(self, name: str, limits: Limits, tokens: int, mode: str, first: int = 0) -> float | None:
        key = self.link.key("limit", name)
        args: list[int | str] = [limits.rpm or 0, limits.tpm or 0, tokens, mode, BUCKET_TTL_S, first]
        result = await self.link.call(lambda _client: self.script(keys=[key], args=args))
        if result is None:
            return None
        return float(result.decode() if isinstance(result, bytes) else result)

    async def take(self, name: str, limits: Limits, tokens: int) -> float:
        if name in self.sending:  # an earlier charge of this key is on its way: land after it
            async with self.flushing:
                pass
        pending = self.pending.pop(name, None)
        first = pending[1] if pending is not None else 0
        wait = await self._run(name, limits, tokens, "take", first)
        if wait is None:
            if first:
                self.local.charge_soon(name, limits, first)
            return await self.local.take(name, limits, tokens)
        return wait

    async def charge(self, name: str, limits: Limits, tokens: int) -> None:
        if limits.tpm is None or not tokens:
            return
        if await self._run(name, limits, tokens, "charge") is None:
            self.local.charge_soon(name, limits, tokens)

    def charge_soon(self, name: str, limits: Limits, tokens: int) -> None:
        if limits.tpm is None or not tokens:
            return
        if not self.link.up:
            self.local.charge_soon(name, limits, tokens)
            return
        earlier = self.pending.get(name)
        self.pending[name] = (limits, tokens + (earlier[1] if earlier is not None else 0))
        self.wake()

    async def flush(self) -> None:
        """Send the pending charges (one script call per key); the local buckets take them
        when Redis fails."""
        async with self.flushing:
            batch, self.pending = self.pending, {}
            self.sending = frozenset(batch)
            try:
                for name, (limits, tokens) in batch.items():
                    if tokens:
                        await self.charge(name, limits, tokens)
            finally:
                self.sending = frozenset()


def retry_after_s(wait: float) -> int:
    """Retry-After in whole seconds, never 0 for a refused request."""
    return max(1, math.ceil(wait))
