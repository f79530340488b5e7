"""SharedHealth (state/shared.py): every change is published as an event, another
instance's events are applied to the local records (aged by the time they spent on the
way), applying publishes nothing, and `announcement` says everything still in force."""

from __future__ import annotations

import time
from typing import Any

from modelway.config.schema import CooldownConfig, ProviderConfig
from modelway.providers.simulated import SimulatedProvider
from modelway.state.shared import Event, SharedHealth, key_event

COOLDOWN = CooldownConfig(failures=2, window_s=60, cooldown_s=30)


def pair() -> tuple[SharedHealth, list[Event], SharedHealth, list[Event]]:
    sent_a: list[Event] = []
    sent_b: list[Event] = []
    return SharedHealth(COOLDOWN, sent_a.append), sent_a, SharedHealth(COOLDOWN, sent_b.append), sent_b


def wire(event: Event) -> dict[bytes, bytes]:
    """As the event comes out of the Redis stream: bytes."""
    return {k.encode(): v.encode() for k, v in event.items()}


def pooled_provider() -> Any:
    config = ProviderConfig(name="p", kind="simulated", keys=[{"header": {"Authorization": f"Bearer k{i}"}}
                                                                 for i in range(2)])
    return SimulatedProvider(config)


def test_a_cooldown_reached_on_one_instance_is_applied_on_the_other_and_not_sent_back() -> None:
    a, sent_a, b, sent_b = pair()
    now = time.monotonic()
    assert not a.failure(a.record("m|p|"), now)
    assert a.failure(a.record("m|p|"), now)  # the second failure: cooling
    assert [e["e"] for e in sent_a] == ["f", "f", "c"]
    for event in sent_a:
        b.apply(wire(event), 0.0, {})
    record = b.record("m|p|")
    assert record.cooling(time.monotonic())
    assert 29 < record.cooled_until - time.monotonic() <= 30
    assert sent_b == []  # applying never publishes


def test_a_late_event_is_aged_and_an_expired_one_changes_nothing() -> None:
    _, _, b, _ = pair()
    b.apply(wire({"e": "c", "k": "m|p|", "s": "30"}), 20.0, {})  # read 20 s after it was stamped
    left = b.record("m|p|").cooled_until - time.monotonic()
    assert 9 < left <= 10
    b.apply(wire({"e": "c", "k": "m|q|", "s": "30"}), 31.0, {})
    assert not b.record("m|q|").cooling(time.monotonic())


def test_a_hold_and_a_recovery_travel_too() -> None:
    a, sent_a, b, _ = pair()
    record = a.record("m|p|")
    a.hold(record, time.monotonic() + 120)
    a.recovered(record, time.monotonic())
    assert [e["e"] for e in sent_a] == ["h", "r"]
    b.apply(wire(sent_a[0]), 0.0, {})
    theirs = b.record("m|p|")
    assert theirs.held_until > time.monotonic() + 100 and theirs.cooling(time.monotonic())
    b.apply(wire(sent_a[1]), 0.0, {})
    assert not theirs.cooling(time.monotonic())


def test_pool_keys_disabled_cooled_and_enabled_on_another_instance() -> None:
    a, sent_a, b, _ = pair()
    mine, theirs = pooled_provider(), pooled_provider()
    now = time.monotonic()
    key = mine.credentials.credentials[0]
    assert mine.credentials.disable(key, 401, now, 30, 600)
    a.credential("p", key)
    b.apply(wire(sent_a[-1]), 0.0, {"p": theirs})
    copy = theirs.credentials.credentials[0]
    assert copy.disabled and not copy.usable(time.monotonic()) and copy.backoff_s == 30
    assert theirs.credentials.pick(time.monotonic()) is theirs.credentials.credentials[1]
    b.apply(wire(key_event("p", mine.credentials.credentials[1], now) | {"c": "40"}), 0.0, {"p": theirs})
    assert theirs.credentials.credentials[1].cooled_until > time.monotonic() + 35
    mine.credentials.enable(key)
    b.apply(wire(key_event("p", key, time.monotonic())), 0.0, {"p": theirs})
    assert not copy.disabled
    b.apply(wire(key_event("p", key, now) | {"i": "7"}), 0.0, {"p": theirs})  # no such key here: ignored


def test_the_announcement_holds_what_is_still_in_force() -> None:
    a, _, b, _ = pair()
    provider = pooled_provider()
    now = time.monotonic()
    a.cool(a.record("m|cool|"), now + 30)
    a.hold(a.record("m|held|"), now + 60)
    a.cool(a.record("m|over|"), now - 1)
    provider.credentials.disable(provider.credentials.credentials[1], 403, now, 30, 600)
    events = a.announcement({"p": provider})
    assert sorted((e["e"], e["k"]) for e in events) == [("c", "m|cool|"), ("h", "m|held|"), ("k", "p")]
    replica = pooled_provider()
    for event in events:
        b.apply(wire(event), 0.0, {"p": replica})
    assert b.record("m|cool|").cooling(time.monotonic()) and b.record("m|held|").held_until > now + 50
    assert replica.credentials.credentials[1].disabled
