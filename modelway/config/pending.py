"""Config keys that parse and validate (SPEC section 2) but whose behaviour this release
does not have yet. They are reported loudly — by `modelway check` and at startup — since a
security setting that is silently ignored (forward_auth, rate limits) leaves a gateway
more open than its operator believes."""

from __future__ import annotations

from modelway.config.schema import Config


def not_yet_enforced(config: Config) -> list[str]:
    found = []
    if config.auth.forward_auth is not None:
        found.append("auth.forward_auth: external auth is not called yet; only auth.keys are checked")
    for i, key in enumerate(config.auth.keys):
        if key.rpm is not None or key.tpm is not None:
            found.append(f"auth.keys[{i}]: rpm/tpm limits are not enforced yet")
    if config.state.backend == "redis":
        found.append("state.backend: redis is not available yet; state stays in this process")
    return found
