"""Token buckets of auth.keys[].rpm/tpm: in memory, and in a real redis-server shared by two
"instances" (two links), with Redis killed mid-way (the process's own buckets stand in)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from support.redis_server import RedisServer, started_redis

from modelway.state.limits import Limits, MemoryLimits, RedisLimits, retry_after_s
from modelway.state.link import RedisLink, safe_url


@pytest.fixture()
def redis_server() -> Iterator[RedisServer]:
    server = started_redis()
    yield server
    server.stop()


async def test_rpm_lets_a_minutes_worth_through_then_waits() -> None:
    limits = MemoryLimits()
    rule = Limits(rpm=3, tpm=None)
    assert [await limits.take("team", rule, 10) for _ in range(3)] == [0, 0, 0]
    wait = await limits.take("team", rule, 10)
    assert 19 < wait <= 20  # a third of a minute until one request has refilled
    assert retry_after_s(wait) == 20
    assert await limits.take("other-team", rule, 10) == 0  # another key is never affected


async def test_tpm_is_charged_with_real_usage() -> None:
    limits = MemoryLimits()
    rule = Limits(rpm=None, tpm=600)  # 10 tokens a second
    assert await limits.take("team", rule, 100) == 0
    await limits.charge("team", rule, 450)  # the answer really used 550 in all
    wait = await limits.take("team", rule, 100)
    assert 4.9 < wait <= 5.1  # 50 left: 50 more tokens take 5 s
    assert await limits.take("team", rule, 10_000) > 0  # never more than a full bucket is asked for


async def test_two_instances_share_the_buckets_exactly(redis_server: RedisServer) -> None:
    a = RedisLimits(RedisLink(redis_server.url, 200, "mw:"))
    b = RedisLimits(RedisLink(redis_server.url, 200, "mw:"))
    rule = Limits(rpm=10, tpm=None)
    results = []
    for i in range(14):
        results.append(await (a if i % 2 else b).take("team", rule, 1))
    assert results[:10] == [0] * 10 and all(w > 0 for w in results[10:])
    keys = redis_server.client().keys("*")
    assert keys == [b"mw:{limit}:team"]  # under the prefix, with a hash tag
    await a.link.close()
    await b.link.close()


async def test_redis_down_falls_back_to_local_buckets_and_recovers(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url, 100, "mw:")
    limits = RedisLimits(link)
    rule = Limits(rpm=1000, tpm=None)
    assert await limits.take("team", rule, 1) == 0
    redis_server.stop()
    started = time.monotonic()
    for _ in range(20):
        assert await limits.take("team", rule, 1) == 0  # never a failed request
    assert time.monotonic() - started < 1.0  # one timeout at most, then local buckets at once
    assert link.errors >= 1 and not link.up
    redis_server.start()
    assert await limits.take("team", rule, 1) == 0
    assert not link.up  # requests never probe a Redis that is down: the backend's own loop does
    link.retry_at = 0  # skip the backoff
    assert await link.call(lambda client: client.ping(), probe=True)
    assert link.up
    assert await limits.take("team", rule, 1) == 0
    await link.close()


def test_the_password_never_shows_in_the_logged_url() -> None:
    assert safe_url("rediss://:s3cret-pw@redis.example:6380/0") == "rediss://:***@redis.example:6380/0"
    assert safe_url("redis://user:s3cret-pw@host/1") == "redis://user:***@host/1"
    assert "s3cret" not in safe_url("redis://:s3cret-pw@host")


async def test_a_charge_not_sent_yet_lands_with_the_keys_next_take(redis_server: RedisServer) -> None:
    """The answer's usage waits for the writer or the key's next request, whichever comes
    first, and is counted before that request is: one round trip, in order."""
    link = RedisLink(redis_server.url, 200, "mw:")
    limits = RedisLimits(link)
    rule = Limits(rpm=None, tpm=600)
    assert await limits.take("team", rule, 100) == 0
    limits.charge_soon("team", rule, -90)  # it used 10, not 100 (no writer here: it stays pending)
    limits.charge_soon("other", rule, 5)
    assert await limits.take("team", rule, 550) == 0  # 600 - 10 >= 550; by the estimate alone, 500 < 550
    assert list(limits.pending) == ["other"]  # another key's charge is left to the writer
    await limits.flush()
    assert limits.pending == {}
    assert 594 <= float(redis_server.client().hget("mw:{limit}:other", "t") or 0) <= 596
    await link.close()


def test_the_memory_backend_never_imports_redis() -> None:
    """redis-py (which imports OpenTelemetry where it is installed) is loaded only by a
    config that needs it: a gateway on the memory backend does not pay for its import."""
    code = (
        "import sys; from modelway.app import create_app; from modelway.runtime import Runtime;"
        "from modelway.config import load_config; create_app(Runtime(load_config(None)));"
        "print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
