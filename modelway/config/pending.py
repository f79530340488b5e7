"""Config keys that parse and validate (SPEC section 2) but whose behaviour this release
does not have yet. They are reported loudly — by `modelway check` and at startup — since a
security setting that is silently ignored (forward_auth, rate limits) leaves a gateway
more open than its operator believes. Every key of SPEC section 2 is enforced now: the
list is empty, and stays the place for the next one."""

from __future__ import annotations

from modelway.config.schema import Config


def not_yet_enforced(config: Config) -> list[str]:
    return []
