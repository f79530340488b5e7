from __future__ import annotations

import email.utils

from modelway.config.schema import CooldownConfig, ProviderAuth
from modelway.failover.budget import MIN_RETRIES, RetryBudget
from modelway.failover.health import SLOW_START_FLOOR, SLOW_START_S, HealthRecord, MemoryHealth, parse_retry_after
from modelway.providers.credentials import CredentialPool


def test_cooldown_after_threshold_within_window() -> None:
    health = MemoryHealth(CooldownConfig(failures=3, window_s=60, cooldown_s=30))
    record = HealthRecord()
    assert not health.failure(record, 100.0)
    assert not health.failure(record, 110.0)
    assert health.failure(record, 120.0)
    assert record.cooling(149.0) and not record.cooling(150.5)


def test_failures_outside_the_window_do_not_count() -> None:
    health = MemoryHealth(CooldownConfig(failures=3, window_s=10, cooldown_s=30))
    record = HealthRecord()
    health.failure(record, 0.0)
    health.failure(record, 5.0)
    assert not health.failure(record, 16.0)  # the first fell out of the window
    assert not record.cooling(16.0)


def test_cooling_again_extends_never_shortens() -> None:
    health = MemoryHealth(CooldownConfig())
    record = HealthRecord()
    health.cool(record, 100.0)
    health.cool(record, 50.0)
    assert record.cooled_until == 100.0
    health.cool(record, 130.0)
    assert record.cooled_until == 130.0


def test_slow_start_ramps_from_a_floor_to_full() -> None:
    record = HealthRecord()
    MemoryHealth(CooldownConfig()).cool(record, 100.0)
    assert record.weight_factor(100.0) == SLOW_START_FLOOR
    assert abs(record.weight_factor(100.0 + SLOW_START_S / 2) - 0.5) < 1e-9
    assert record.weight_factor(100.0 + SLOW_START_S) == 1.0


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("99999999") == 3600.0
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert abs((parse_retry_after(date, now_wall=1_000_000) or 0) - 30) < 1


def test_retry_budget_allows_a_floor_then_a_fifth_of_requests() -> None:
    budget = RetryBudget()
    allowed = sum(budget.try_retry(now=1.0) for _ in range(10))
    assert allowed == MIN_RETRIES
    for _ in range(100):
        budget.request(now=2.0)
    allowed += sum(budget.try_retry(now=2.0) for _ in range(100))
    assert allowed == 20  # 20% of 100 requests
    assert budget.try_retry(now=20.0)  # the window moved on


def pool(n: int) -> CredentialPool:
    keys = [ProviderAuth(header={"Authorization": f"Bearer k{i}"}) for i in range(n)]
    return CredentialPool("p", ProviderAuth(), keys)


def test_credentials_rotate_and_skip_disabled_and_cooling() -> None:
    keys = pool(3)
    assert [keys.pick(0.0).index for _ in range(4)] == [0, 1, 2, 0]  # type: ignore[union-attr]
    keys.disable(keys.credentials[1], 401, now=0.0, first_s=30.0, max_s=600.0)
    keys.cool(keys.credentials[2], until=10.0)
    assert [keys.pick(5.0).index for _ in range(3)] == [0, 0, 0]  # type: ignore[union-attr]
    assert keys.pick(11.0).index == 2  # type: ignore[union-attr]
    assert keys.pick(11.0, exclude={0, 2}) is None


def test_a_provider_with_no_usable_key_is_out() -> None:
    keys = pool(2)
    for credential in keys.credentials:
        keys.disable(credential, 403, now=0.0, first_s=30.0, max_s=600.0)
    assert not keys.has_usable(0.0)
    assert keys.pick(0.0) is None
    assert keys.soonest_usable_at() == 30.0


def test_a_disabled_key_is_tested_after_its_backoff_which_doubles_while_it_fails() -> None:
    keys = pool(2)
    bad = keys.credentials[1]
    keys.disable(bad, 401, now=0.0, first_s=30.0, max_s=100.0)
    keys.disable(bad, 401, now=1.0, first_s=30.0, max_s=100.0)  # an answer already on its way: no change
    assert bad.retry_at == 30.0
    assert [keys.pick(29.0).index for _ in range(2)] == [0, 0]  # type: ignore[union-attr]
    assert [keys.pick(30.0).index for _ in range(2)] == [1, 0]  # type: ignore[union-attr]  # one test
    keys.disable(bad, 401, now=30.5, first_s=30.0, max_s=100.0)  # the test failed
    assert (bad.backoff_s, bad.retry_at) == (60.0, 90.5)
    assert keys.pick(90.5, exclude={0}) is bad
    keys.disable(bad, 401, now=91.0, first_s=30.0, max_s=100.0)
    assert (bad.backoff_s, bad.retry_at) == (100.0, 191.0)  # capped
    assert keys.pick(191.0, exclude={0}) is bad
    keys.enable(bad)  # the test passed
    assert not bad.disabled and bad.usable(191.0)
    keys.disable(bad, 403, now=200.0, first_s=30.0, max_s=100.0)
    assert bad.retry_at == 230.0  # a fresh start


def test_single_auth_is_not_a_pool() -> None:
    keys = CredentialPool("p", ProviderAuth(header={"Authorization": "Bearer only"}), [])
    assert not keys.pooled
    assert keys.pick(0.0) is keys.pick(0.0)


def test_quota_headers_mark_a_deployment_low_until_reset() -> None:
    from modelway.failover.quota import low_until, parse_reset

    roomy = [(b"x-ratelimit-limit-requests", b"100"), (b"x-ratelimit-remaining-requests", b"50")]
    assert low_until(roomy, 0.0) is None
    nearly = [
        (b"X-RateLimit-Limit-Requests", b"100"),
        (b"X-RateLimit-Remaining-Requests", b"2"),
        (b"X-RateLimit-Reset-Requests", b"6m0s"),
    ]
    assert low_until(nearly, 10.0) == 10.0 + 120.0  # capped
    tokens = [(b"x-ratelimit-limit-tokens", b"10000"), (b"x-ratelimit-remaining-tokens", b"100"),
              (b"x-ratelimit-reset-tokens", b"1.5s")]
    assert low_until(tokens, 0.0) == 1.5
    assert low_until([(b"content-type", b"application/json")], 0.0) is None
    assert parse_reset("20ms") == 0.02
    assert parse_reset("2") == 2.0


def test_a_retry_after_holds_and_a_probe_success_ends_a_cooldown() -> None:
    health = MemoryHealth(CooldownConfig(failures=1, window_s=60, cooldown_s=30))
    record = HealthRecord()
    health.hold(record, 20.0)
    assert record.held_until == 20.0 and record.cooled_until == 20.0
    assert health.failure(record, 10.0)  # a failure on top extends the cooldown, not the hold
    assert record.cooled_until == 40.0 and record.held_until == 20.0
    health.recovered(record, 25.0)
    assert not record.cooling(25.0)
    assert record.weight_factor(25.0) == SLOW_START_FLOOR  # slow start from the probe's success
    assert not record.failures
