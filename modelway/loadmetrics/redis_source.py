"""Load metrics from Redis, as Higress's ai-load-balancer reads them: every deployment's
value at `<redis_prefix><metric_key>`, all fetched with one MGET per refresh.

Values that are missing or not numbers are left out (those deployments rank after the
ones with a value). Each poll is bounded by `state.timeout_ms`, and redis-py's own
retries are off, so a dead Redis costs one refused connect per refresh, off the
request path.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from modelway.loadmetrics.polling import PollingSource, log


class RedisMetrics(PollingSource):
    name = "redis"

    def __init__(
        self, url: str, prefix: str, keys: Sequence[str], refresh_s: float, timeout_s: float
    ) -> None:
        super().__init__(refresh_s)
        self.url = url
        self.keys = list(keys)
        self._redis_keys = [f"{prefix}{key}" for key in self.keys]
        self.timeout_s = timeout_s
        self._client: Redis | None = None

    async def open(self) -> None:
        if not self.keys:
            log.warning("metrics.source is redis but no deployment has a metric_key: nothing to read")
        self._client = Redis.from_url(
            self.url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def poll(self) -> dict[str, float]:
        if not self.keys:
            return {}
        assert self._client is not None, "poll() before open()"
        raw = await asyncio.wait_for(self._client.mget(self._redis_keys), self.timeout_s)
        return parse_values(self.keys, raw)


def parse_values(keys: Sequence[str], raw: Sequence[bytes | str | None]) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, value in zip(keys, raw, strict=True):
        if value is None:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            values[key] = number
    return values
